"""The models folder on disk (WEEDSCAN_MODELS_DIR): NAME.onnx + NAME.json pairs (and a model's
variants, NAME.openvino-int8.xml/.bin) and the active choice.

One module for what `weedscan serve` (serving/registry.py) and `weedscan models` both need:
which files are models, whether one is good (card, sha256, an ONNX Runtime session whose outputs
fit the card's classes), and the file `.active.json` that names the default model. Every write
is atomic (a temporary file in the folder, then a rename), so a server that reads the folder
while the CLI writes it sees the old state or the new one, never half of one.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from serving.errors import ModelCardError
from serving.model_card import ModelCard, ModelVariant, card_json, card_path_for, load_card, variant_file_names

# A model's name is its file's stem: no path separator, no leading dot (hidden and temporary
# files, `.active.json`), so no name can reach outside the folder.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ACTIVE_FILE = ".active.json"


class ActiveChoice(BaseModel):
    """The content of `.active.json`."""

    active: str
    changed: str = ""


def check_name(name: str) -> str:
    """The name, or ValueError saying what a name may be."""
    if not NAME_PATTERN.fullmatch(name) or name.endswith(".onnx"):
        raise ValueError(f"{name[:80]!r} is not a model name: 1-64 letters, digits, '.', '_' or '-', "
                         "not starting with '.' (the file is NAME.onnx)")
    return name


def model_files(models_dir: Path) -> dict[str, Path]:
    """NAME -> NAME.onnx for every model file in the folder (by name; cards are checked later)."""
    try:
        found = sorted(models_dir.glob("*.onnx"))
    except OSError:
        return {}
    return {p.stem: p for p in found if NAME_PATTERN.fullmatch(p.stem) and p.is_file()}


def file_key(path: Path) -> tuple[int, int, int] | None:
    """Changes when the file is replaced or rewritten (inode, size, mtime); None: no file."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def output_problem(input_shape: list, output_shape: list, classes: int) -> str | None:
    """Why an ONNX model's input and output do not fit a detector of `classes` classes."""
    if len(input_shape) != 4 or (isinstance(input_shape[1], int) and input_shape[1] != 3):
        return f"its input is {input_shape}, not an image batch (N, 3, H, W)"
    if len(output_shape) != 3:
        return f"its output is {output_shape}, not a YOLO head (N, 4+classes, boxes) or (N, K, 6)"
    channels, last = output_shape[1], output_shape[2]
    if isinstance(channels, int) and channels != 4 + classes and last != 6:
        return (f"its output has {channels} channels but its card names {classes} classes "
                f"(a YOLO head has 4 + classes)")
    return None


def check_model(model_path: Path) -> ModelCard:
    """The card of a model that serving can load: card valid, sha256 matching, and an ONNX
    Runtime session (opened without optimisation, then dropped) whose input and output fit the
    card. ModelCardError or ONNX Runtime's own error otherwise."""
    import onnxruntime as ort

    card = load_card(model_path)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    problem = output_problem(list(session.get_inputs()[0].shape), list(session.get_outputs()[0].shape),
                             len(card.classes))
    if problem:
        raise ModelCardError(f"{model_path.name} does not fit its card: {problem}")
    return card


def read_active(models_dir: Path) -> str | None:
    """The name `.active.json` holds; None when there is none or it cannot be read."""
    try:
        return ActiveChoice.model_validate_json((models_dir / ACTIVE_FILE).read_bytes()).active
    except (OSError, ValidationError):
        return None


def _atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` to a temporary file beside `target`, flushed to disk, then renamed over it."""
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        with tmp.open("rb+") as done:
            os.fsync(done.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _atomic_copy(source: Path, target: Path) -> None:
    _atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))


def write_active(models_dir: Path, name: str) -> None:
    """Make `name` the active model of the folder, for every server that serves it."""
    choice = ActiveChoice(active=check_name(name),
                          changed=datetime.now(UTC).isoformat(timespec="seconds"))
    _atomic_write(models_dir / ACTIVE_FILE,
                  lambda tmp: tmp.write_text(choice.model_dump_json() + "\n", encoding="utf-8"))


def _variants_for(card: ModelCard, source: Path, name: str) -> list[tuple[ModelVariant, Path, Path]]:
    """The card's variants that can go with the model (files beside it, intact), renamed for NAME:
    (the variant as the new card names it, its graph, its weights)."""
    moved = []
    for variant in card.variants:
        if variant.source_sha256 != card.sha256 or variant.problem(source) is not None:
            continue  # a variant that cannot run here is left behind, not carried into the folder
        graph, weights = variant.paths(source)
        graph_name, weights_name = variant_file_names(name, variant.engine, variant.precision)
        moved.append((variant.model_copy(update={"file": graph_name, "weights_file": weights_name}),
                      graph, weights))
    return moved


def add_model(models_dir: Path, source: Path, name: str | None = None, replace: bool = False) -> Path:
    """Copy SOURCE.onnx, its card and its variants (an OpenVINO int8 IR) into the folder as NAME
    (default: the card's name), after checking them; the card's name becomes NAME. FileExistsError
    for a name already there unless `replace` (never the active model); ModelCardError for a bad
    model. A variant whose files are missing or altered is dropped from the copied card."""
    card = check_model(source)
    name = check_name(name or card.name)
    target = models_dir / f"{name}.onnx"
    if target.exists() and not replace:
        raise FileExistsError(f"a model named {name} is already in {models_dir}; remove it first "
                              "or choose another --name")
    if replace and read_active(models_dir) == name:
        raise FileExistsError(f"{name} is the active model of {models_dir}; activate another first")
    models_dir.mkdir(parents=True, exist_ok=True)
    variants = _variants_for(card, source, name)
    for variant, graph, weights in variants:  # before the card that names them
        _atomic_copy(weights, models_dir / variant.weights_file)
        _atomic_copy(graph, models_dir / variant.file)
    card = card.model_copy(update={"name": name, "variants": [v for v, _, _ in variants]})
    # The card first: the folder shows the model only once NAME.onnx is there, with its card.
    _atomic_write(card_path_for(target), lambda tmp: tmp.write_text(card_json(card), encoding="utf-8"))
    _atomic_copy(source, target)
    return target


def remove_model(models_dir: Path, name: str) -> None:
    """Delete NAME.onnx, its card and its variants' files; refuses the active model (ValueError)."""
    check_name(name)
    target = models_dir / f"{name}.onnx"
    if not target.is_file():
        raise FileNotFoundError(f"no model named {name} in {models_dir}")
    if read_active(models_dir) == name:
        raise ValueError(f"{name} is the active model of {models_dir}; activate another first")
    try:
        variants = load_card(target, verify=False).variants
    except ModelCardError:
        variants = []
    target.unlink()  # the model is gone for a server's next scan; its card and variants go after it
    card_path_for(target).unlink(missing_ok=True)
    for variant in variants:
        for path in variant.paths(target):
            path.unlink(missing_ok=True)


def default_active(models_dir: Path, names: list[str]) -> str | None:
    """The active model when none is chosen: `.active.json`'s, else `weedscan`, else the first."""
    chosen = read_active(models_dir)
    if chosen in names:
        return chosen
    if "weedscan" in names:
        return "weedscan"
    return names[0] if names else None


def resolve_model(value: str | Path | None, models_dir: Path) -> Path:
    """`--model NAME|PATH` of `detect` and `batch`: a model of the folder by name, else a file;
    none given: the folder's active model."""
    if value is None:
        names = list(model_files(models_dir))
        name = default_active(models_dir, names)
        if name is None:
            raise ModelCardError(f"no model in {models_dir} (WEEDSCAN_MODELS_DIR): give --model PATH")
        return models_dir / f"{name}.onnx"
    text = str(value)
    if NAME_PATTERN.fullmatch(text) and not text.endswith(".onnx"):
        candidate = models_dir / f"{text}.onnx"
        if candidate.is_file() or not Path(text).exists():
            return candidate  # a missing one fails with "model file not found" naming it
    return Path(value)


__all__ = ["ACTIVE_FILE", "ActiveChoice", "add_model", "check_model", "check_name", "default_active",
           "file_key", "model_files", "output_problem", "read_active", "remove_model",
           "resolve_model", "write_active"]
