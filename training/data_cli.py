"""`weedscan data`: dataset cards, fetch, import, check and merge; add-field for a field's own photos."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from serving.cli_options import fail

if TYPE_CHECKING:
    from training.data.convert import ImportResult

data_app = typer.Typer(help="Public weed datasets (list the cards, fetch or import, check, merge) "
                            "and field datasets (add-field).", no_args_is_help=True)


@contextmanager
def _errors() -> Iterator[None]:
    """Bad input becomes one `error: ...` line and exit code 2, never a traceback."""
    from serving.errors import ClientError
    from training.trainset import DatasetError

    try:
        yield
    except DatasetError as exc:
        fail(str(exc))
    except ClientError as exc:  # the field store's (a full quota, an unusable data folder)
        fail(exc.message)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        fail(f"{exc.strerror or exc}{':' if where else ''}{where}")


def parse_pairs(items: list[str], option: str, numeric: bool) -> dict[str, str]:
    """NAME=VALUE options (`--repeat cwfid=8`, `--remap weed=1`); a bad one is an `error:` line."""
    pairs = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key or not value or (numeric and (not value.isdigit() or int(value) < 1)):
            fail(f"{option} takes NAME={'COUNT with COUNT >= 1' if numeric else 'VALUE'}, "
                  f"got '{item}'")
        pairs[key] = value
    return pairs


def parse_repeats(items: list[str]) -> dict[str, int]:
    """`--repeat NAME=COUNT` of `weedscan train` and `weedscan data merge`."""
    return {k: int(v) for k, v in parse_pairs(items, "--repeat", numeric=True).items()}


@data_app.command("list")
def list_() -> None:
    """List the dataset cards: images, native format, licence, where fetch gets it.

    Example: weedscan data list
    """
    from training.data.cards import cards_dir, list_cards
    from training.data.fetch import default_cache_dir

    with _errors():
        cards = list_cards()
        cache = default_cache_dir()
    use = {True: "commercial use ok", False: "no commercial use", None: "licence unverified"}
    pad = " " * max([8, *(len(card.name) for card in cards)])
    for card in cards:
        fetched = cache / card.name / "data.yaml"
        typer.echo(f"{card.name:<{len(pad)}} {card.title}")
        typer.echo(f"{pad} {card.image_count} images {card.image_size[0]}x{card.image_size[1]}, "
                   f"{card.native_format}; {card.licence.name} ({use[card.licence.commercial_use]})")
        typer.echo(f"{pad} fetch: {card.download.url}"
                   + (f"\n{pad} fetched: {fetched}" if fetched.is_file() else ""))
    typer.echo(f"cards: {cards_dir()}")


@data_app.command()
def fetch(
    name: Annotated[str, typer.Argument(help="dataset name, as in `weedscan data list`")],
    cache_dir: Annotated[Path | None, typer.Option(help="cache folder (default ~/.cache/weedscan/datasets)")] = None,
    url: Annotated[str | None, typer.Option(
        help="download from here instead of the card's url (http(s), file:// or a local path)")] = None,
    sha256: Annotated[str | None, typer.Option(help="expected sha256 of the archive (overrides the card's)")] = None,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="check the archive's sha256")] = True,
) -> None:
    """Download a dataset, verify its checksum, extract it and convert it to YOLO (crop, weed).

    Example: weedscan data fetch cwfid --no-verify
    """
    from training.data.cards import load_card
    from training.data.fetch import fetch_dataset

    with _errors():
        card = load_card(name)
        result = fetch_dataset(card, cache_dir, url, sha256, verify)
    state = "verified" if result.verified else "NOT verified"
    typer.echo(f"sha256 {result.sha256} ({state}): {result.archive}")
    _print_import(result.imported)
    if card.licence.commercial_use is not True:
        typer.echo(f"licence: {card.licence.name}")


@data_app.command("import")
def import_(
    name: Annotated[str, typer.Argument(help="dataset name, as in `weedscan data list`")],
    source: Annotated[Path, typer.Option("--from", help="native release folder, or a YOLO folder with data.yaml")],
    out: Annotated[Path | None, typer.Option(
        help="output folder (default: the cache, ~/.cache/weedscan/datasets/NAME)")] = None,
) -> None:
    """Convert a dataset you have (native release or YOLO folder) to YOLO on crop, weed.

    --from is detected: a folder with data.yaml is taken as YOLO, anything else as the native
    release named by the dataset card.

    Example: weedscan data import cwfid --from ~/Downloads/dataset-master --out data/cwfid
    """
    from training.data.cards import load_card
    from training.data.convert import import_dataset
    from training.data.fetch import default_cache_dir

    with _errors():
        card = load_card(name)
        result = import_dataset(card, source, out or default_cache_dir() / card.name)
    _print_import(result)


@data_app.command("add-field")
def add_field(
    name: Annotated[str, typer.Argument(help="the field dataset's name: 1-64 of a-z 0-9 _ -")],
    source: Annotated[Path, typer.Option("--from", help="a YOLO or COCO export of CVAT, Label Studio or Roboflow: "
                                                        "its folder, its zip, or the COCO JSON")],
    crop: Annotated[str | None, typer.Option(
        help="the field's crop, free text (e.g. carrot); needed for a new dataset")] = None,
    map_: Annotated[list[str], typer.Option(
        "--map", help="map an exported class: NAME=crop|weed|drop (crop and weed map to themselves)")] = [],
    licence: Annotated[str, typer.Option(help="the photos' licence, written into the dataset card")] = "private",
    append: Annotated[bool, typer.Option(help="add to an existing field dataset")] = False,
    data_dir: Annotated[Path | None, typer.Option(
        help="the data folder (default: WEEDSCAN_DATA_DIR, else ~/.local/share/weedscan)")] = None,
) -> None:
    """Bring a field labelled elsewhere in as a field dataset (YOLO layout, card, catalogue).

    Reads the YOLO and COCO exports of CVAT, Label Studio and Roboflow; the photos are copied as
    they are, and photos saved twice are kept once. The result is DATA_DIR/NAME, ready for
    `weedscan finetune --data DATA_DIR/NAME` and shown on the page.

    Example: weedscan data add-field carrots-north --from ~/Downloads/project-1.zip --crop carrot
    --map Carrot=crop --map Thistle=weed --map Stone=drop
    """
    from serving.config import Settings
    from serving.fields.store import FieldStore
    from training.data.field_import import import_field, parse_map

    with _errors():
        mapping = parse_map(map_)
        settings = Settings(**({"data_dir": data_dir} if data_dir else {}))
        store = FieldStore(settings.data_dir, int(settings.max_data_gb * 1024 ** 3),
                           settings.max_pixels)
        report = import_field(source, store, name, crop, mapping, licence, append)
        info = store.get_dataset(name)
    splits = ", ".join(f"{split} {n}" for split, n in sorted(report.splits.items())) or "none"
    typer.echo(f"{report.layout} export -> {report.folder}: {report.saved} new photo(s) ({splits})"
               + (f", {report.duplicates} already there (labels replaced)" if report.duplicates else ""))
    typer.echo(f"{name}: {info.images} photo(s), boxes crop {info.counts['crop']}, weed "
               f"{info.counts['weed']}")
    for cls, n in sorted(report.dropped.items()):
        typer.echo(f"dropped {n} box(es) of {cls}")
    if report.clipped or report.empty:
        typer.echo(f"{report.clipped} box(es) clipped to their photo, {report.empty} without area "
                   "left out")


@data_app.command()
def check(
    folder: Annotated[Path, typer.Argument(help="YOLO dataset folder (with data.yaml) or its data YAML")],
    strict: Annotated[bool, typer.Option(help="also fail on images without labels and labels without images")] = False,
) -> None:
    """Validate a YOLO dataset and print its counts per split and class.

    Every image must decode, every label line be `class cx cy w h` in [0, 1] with a known class,
    and no image may appear twice (same bytes) in or across splits. Exit 1 on a problem, naming
    the file and line.

    Example: weedscan data check ../shared/data/cwfid
    """
    from training.data.check import check_dataset, format_report

    with _errors():
        report = check_dataset(folder, strict=strict, progress=True)
    typer.echo(format_report(report))
    for warning in report.warnings:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    for problem in report.problems:
        typer.secho(f"problem: {problem}", err=True)
    if report.problems:
        fail(f"{len(report.problems)} problem(s) in {folder}; the first: {report.problems[0]}", 1)
    typer.echo(f"ok: no problems ({len(report.warnings)} warning(s))")


@data_app.command()
def merge(
    folders: Annotated[list[Path], typer.Argument(help="YOLO dataset folders (or data YAMLs)")],
    out: Annotated[Path, typer.Option(help="output folder")],
    repeat: Annotated[list[str], typer.Option(help="oversample a dataset's train split: NAME=COUNT")] = [],
    remap: Annotated[list[str], typer.Option(help="map a class name: OLD=crop|weed|drop")] = [],
    copy: Annotated[bool, typer.Option("--copy/--link", help="copy images, or symlink them")] = False,
) -> None:
    """Merge YOLO datasets into one on the canonical classes crop, weed.

    Example: weedscan data merge ../shared/data/sesame ../shared/data/cwfid --out data/merged --repeat cwfid=8
    """
    from training.data.merge import merge_datasets

    repeats = parse_repeats(repeat)
    with _errors():
        data_yaml = merge_datasets(folders, out, repeats, parse_pairs(remap, "--remap", numeric=False),
                                   "copy" if copy else "link")
    typer.echo(f"merged: {data_yaml}")


def _print_import(result: ImportResult) -> None:
    counts = ", ".join(f"{split} {n}" for split, n in sorted(result.images.items()))
    typer.echo(f"{result.layout} layout -> {result.data_yaml} ({counts} images, "
               f"{result.boxes} boxes)")
