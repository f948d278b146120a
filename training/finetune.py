"""`weedscan finetune`: teach a model one farm's field from a handful of labelled photos.

The job starts from a served ONNX model (rebuilt into trainable weights as `weedscan train
--weights` does), trains on the field's photos repeated to fill each epoch beside a sample of the
public training sets the base learnt from (replay, so it keeps what it knew), with one optimizer
step per batch, keeps part of the field's photos out to score base and candidate on them (the
evaluation gate), and writes the candidate as NAME.onnx + NAME.json whose card names its parent,
the field data, the recipe and the gate's comparison. The candidate is not made active here.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import cv2
import yaml
from pydantic import BaseModel, Field

from serving.model_card import card_path_for, load_card
from training.data.yolo import parse_label_line
from training.trainset import (
    CANONICAL_CLASSES,
    DatasetError,
    YoloDataset,
    labels_folder,
)

if TYPE_CHECKING:
    from training.evaluate import EvalReport

# Where `weedscan data fetch` keeps the public sets; more folders come from this variable
# (os.pathsep-separated), each holding NAME/data.yaml for the base card's training data.
PUBLIC_DATA_DIRS_ENV = "WEEDSCAN_PUBLIC_DATA_DIRS"
MIN_GATE_PHOTOS = 2
MIN_TRAIN_PHOTOS = 2
# Export, parity check and the gate's scoring run after training inside the same --time budget.
FINISHING_RESERVE_HOURS = 0.02
# A number of batches after which training stops even with time left: a dry run of the whole job
# (the tests run each job so). Unset: the time budget, or the epochs, end training.
MAX_BATCHES_ENV = "WEEDSCAN_FINETUNE_MAX_BATCHES"


class FinetuneError(Exception):
    """Input that cannot be fine-tuned on; the message names the file or option."""


class Recipe(BaseModel):
    """The few-photo training recipe (benchmarks/bench_finetune.py measured the choices)."""

    optimizer: Literal["SGD", "AdamW"] = "SGD"
    lr0: float = Field(0.003, gt=0, description="initial learning rate")
    lrf: float = Field(0.1, gt=0, le=1, description="final learning rate as a fraction of lr0")
    freeze: int = Field(0, ge=0, description="first N layers kept as the base has them (0: none)")
    batch: int = Field(16, ge=1)
    # Each epoch lists an equal share of photos from each public set, up to all of a big set: a
    # fixed part of a set is learnt by heart and the rest forgotten, and a small set beside a big
    # one is forgotten. Epochs are long; the time budget, not the epoch count, ends training.
    replay_images: int = Field(2048, ge=0, description="public photos per epoch")
    field_share: float = Field(0.5, gt=0, lt=1, description="share of each epoch that is field photos")
    field_images: int = Field(256, ge=8, description="field photos per epoch (repeated) when nothing is replayed")
    # Ultralytics warms up over at least 100 steps with a bias learning rate of 0.1: from a trained
    # model that wrecks what it knew before the field is learnt. 0: no warm-up.
    warmup_epochs: float = Field(0.0, ge=0)
    close_mosaic: int = Field(1, ge=0)

    def ultralytics_overrides(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer, "lr0": self.lr0, "lrf": self.lrf,
            # Ultralytics accumulates gradients up to a nominal batch of 64: with a handful of
            # photos the weights would move once every few epochs. One step per batch instead.
            "nbs": self.batch,
            "freeze": self.freeze or None,
            "cos_lr": True,
            "warmup_bias_lr": self.lr0,
        }


class FieldPhoto(BaseModel):
    image: Path
    label: Path | None  # None: a photo with nothing to find


class FieldSplit(BaseModel):
    """The field's photos: those trained on, and those kept out to score base and candidate."""

    name: str
    train: list[FieldPhoto]
    gate: list[FieldPhoto]
    gate_source: str  # how the gate photos were chosen
    labels_sha256: str


class DatasetScore(BaseModel):
    images: int
    mAP50: float
    weed_AP50: float
    crop_AP50: float


class GateComparison(BaseModel):
    """Base against candidate on the same images, threshold-free (AP)."""

    dataset: str
    role: Literal["field", "replay"]
    base: DatasetScore
    candidate: DatasetScore

    @property
    def gain(self) -> float:
        return round(self.candidate.mAP50 - self.base.mAP50, 4)


class EpochProgress(BaseModel):
    """What a running job reports after each epoch."""

    epoch: int
    epochs: int
    losses: dict[str, float]
    metrics: dict[str, float]  # on the gate photos
    elapsed_seconds: float
    eta_seconds: float


def _progress_callback(started: float, deadline: float | None,
                       report: Callable[[EpochProgress], None]) -> Callable[[Any], None]:
    def on_fit_epoch_end(trainer: Any) -> None:  # noqa: ANN401 - Ultralytics' trainer
        now = time.time()
        epoch = trainer.epoch + 1
        per_epoch = (now - trainer.train_time_start) / max(1, epoch - trainer.start_epoch)
        eta = (max(0.0, deadline - now) if deadline
               else per_epoch * max(0, trainer.epochs - epoch)) + FINISHING_RESERVE_HOURS * 3600
        losses = {k.split("/")[-1]: round(float(v), 4)
                  for k, v in trainer.label_loss_items(trainer.tloss, prefix="train").items()}
        metrics = {k.split("/")[-1].replace("(B)", ""): round(float(v), 4)
                   for k, v in (trainer.metrics or {}).items() if k.startswith("metrics/")}
        report(EpochProgress(epoch=epoch, epochs=max(epoch, trainer.epochs), losses=losses,
                             metrics=metrics, elapsed_seconds=round(now - started, 1),
                             eta_seconds=round(eta, 1)))
    return on_fit_epoch_end


class FieldReport(BaseModel):
    """One field dataset as the candidate's card records it."""

    name: str
    train_photos: int
    gate_photos: int
    gate: str  # how the gate photos were chosen
    gate_images: list[str]  # their file names, to show base and candidate side by side
    labels_sha256: str


class BaseModelRef(BaseModel):
    name: str
    file: str
    sha256: str


def _learning_rate_by_time(lrf: float) -> Callable[[Any], None]:
    """A cosine learning rate over the time budget, set before each batch. Ultralytics steps its
    schedule once an epoch and learns the epoch count only after the first one, so a budget of a
    few epochs of field and replay photos (or less than one) would train at lr0 throughout."""
    def on_train_batch_start(trainer: Any) -> None:  # noqa: ANN401 - Ultralytics' trainer
        budget = (trainer.args.time or 0) * 3600
        if budget <= 0:
            return
        done = min(1.0, (time.time() - trainer.train_time_start) / budget)
        factor = lrf + (1 - lrf) * 0.5 * (1 + math.cos(math.pi * done))
        for group in trainer.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
    return on_train_batch_start


def _stop_after(batches: int) -> Callable[[Any], None]:
    """Ends training after `batches` batches: the epoch then closes as at the end of the time
    budget (validation, checkpoint, progress), and the job goes on to export and scoring."""
    done = 0

    def on_train_batch_end(trainer: Any) -> None:  # noqa: ANN401 - Ultralytics' trainer
        nonlocal done
        done += 1
        if done >= batches:
            trainer.stop = True
    return on_train_batch_end


def max_batches_from_env() -> int | None:
    value = os.environ.get(MAX_BATCHES_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise FinetuneError(f"{MAX_BATCHES_ENV}={value!r}: a whole number of batches, at least 1")
    return int(value)


class FinetuneReport(BaseModel):
    """The job's report; the candidate's card carries it as `finetune`."""

    base: BaseModelRef
    field: list[FieldReport]
    replay: list[str]
    recipe: Recipe
    image_size: int
    time_budget_hours: float | None
    wall_seconds: float
    epochs_completed: int | None
    threads: int | None
    gate: list[GateComparison]
    better: bool
    verdict: str
    scoring_note: str


@dataclass
class FinetuneConfig:
    data: list[Path]
    base: Path
    name: str
    models_dir: Path = Path("models")
    time: float | None = 0.33  # hours for the whole job
    epochs: int = 60  # upper bound when no time is set
    imgsz: int | None = None  # None: from the photos' size
    replay: bool = True
    replay_data: list[Path] | None = None  # None: look for the base's training data
    recipe: Recipe | None = None
    seed: int = 0
    threads: int | None = None
    bf16: bool | None = None
    project: Path = Path("runs/finetune")
    max_forgetting: float = 0.03  # largest mAP50 a replayed val set may lose for "better"
    force: bool = False
    max_batches: int | None = None  # None: $WEEDSCAN_FINETUNE_MAX_BATCHES, or no cap


def _checked_label(label: Path) -> None:
    try:
        lines = label.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FinetuneError(f"label file {label} cannot be read: {exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            parse_label_line(line, len(CANONICAL_CLASSES))
        except ValueError as exc:
            raise FinetuneError(f"{label}:{number}: {exc}") from exc


def _photos(dataset: YoloDataset, split: str) -> list[FieldPhoto]:
    photos = []
    labels = labels_folder(dataset.splits[split])
    for image in dataset.images(split):
        if cv2.imread(str(image), cv2.IMREAD_REDUCED_GRAYSCALE_8) is None:
            raise FinetuneError(f"image {image} cannot be decoded")
        label = labels / image.relative_to(dataset.splits[split]).with_suffix(".txt")
        if label.is_file():
            _checked_label(label)
        photos.append(FieldPhoto(image=image, label=label if label.is_file() else None))
    return photos


def labels_digest(photos: list[FieldPhoto]) -> str:
    """sha256 over each photo's name and label bytes, in name order: what the card pins."""
    digest = hashlib.sha256()
    for photo in sorted(photos, key=lambda p: p.image.name):
        digest.update(photo.image.name.encode() + b"\0")
        digest.update(photo.label.read_bytes() if photo.label else b"")
        digest.update(b"\0")
    return digest.hexdigest()


def split_field(data: Path, seed: int) -> FieldSplit:
    """A field dataset's train photos, and its gate: its val split when it has one, else a few
    train photos held out (at least two)."""
    try:
        dataset = YoloDataset.from_yaml(data)
    except DatasetError as exc:
        raise FinetuneError(str(exc)) from exc
    if dataset.names != CANONICAL_CLASSES:
        raise FinetuneError(f"{data}: classes {dataset.names}; fine-tuning needs {CANONICAL_CLASSES} "
                            "(convert with `weedscan data import` or relabel)")
    if "train" not in dataset.splits or not dataset.splits["train"].is_dir():
        raise FinetuneError(f"{data}: no images/train folder of labelled field photos")
    photos = _photos(dataset, "train")
    has_val = "val" in dataset.splits and dataset.splits["val"].is_dir() and dataset.images("val")
    if has_val:
        gate = _photos(dataset, "val")
        train, source = photos, f"the dataset's val split ({len(gate)} photos)"
    else:
        held = max(MIN_GATE_PHOTOS, round(0.2 * len(photos)))
        if len(photos) - held < MIN_TRAIN_PHOTOS:
            raise FinetuneError(
                f"{data}: {len(photos)} labelled photo(s); fine-tuning needs at least "
                f"{MIN_GATE_PHOTOS + MIN_TRAIN_PHOTOS} ({MIN_GATE_PHOTOS} are kept out to score it) "
                "or a val split")
        shuffled = sorted(photos, key=lambda p: p.image.name)
        random.Random(seed).shuffle(shuffled)
        gate, train = shuffled[:held], shuffled[held:]
        source = f"{held} of the {len(photos)} train photos held out (seed {seed})"
    if not any(p.label for p in train):
        raise FinetuneError(f"{data}: none of the training photos has a label file")
    return FieldSplit(name=dataset.name if dataset.name not in ("", ".") else "field", train=train,
                      gate=gate, gate_source=source, labels_sha256=labels_digest(photos + (gate if has_val else [])))


# The public sets' copies that sit beside a development checkout (DESIGN.md: ../shared/data).
CHECKOUT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


def public_data_dirs() -> list[Path]:
    """Where the base's public training sets are looked for, in this order."""
    from training.data.fetch import default_cache_dir

    extra = [Path(p) for p in os.environ.get(PUBLIC_DATA_DIRS_ENV, "").split(os.pathsep) if p]
    return [*extra, default_cache_dir(), CHECKOUT_DATA_DIR]


def find_replay_data(base_card_data: list[str]) -> list[Path]:
    """The base's public training sets that are present on this machine (data.yaml paths)."""
    found = []
    for name in base_card_data:
        for folder in public_data_dirs():
            candidate = folder / name / "data.yaml"
            if candidate.is_file():
                found.append(candidate)
                break
    return found


def image_size_for(photos: list[FieldPhoto], base_input: int) -> int:
    """The base's input size, or the photos' long side (on the stride) where they are smaller.
    Not larger: the replayed sets were learnt at the base's size, and a model trained at another
    scale loses them as much from the scale change as from forgetting (bench_finetune.py)."""
    sides = []
    for photo in photos:
        image = cv2.imread(str(photo.image), cv2.IMREAD_REDUCED_GRAYSCALE_2)
        sides.append(2 * max(image.shape[:2]))
    side = max(32, int(statistics.median(sides)) // 32 * 32)
    return min(base_input, side)


def _link_photos(photos: list[FieldPhoto], root: Path, split: str) -> list[str]:
    """Photos linked as ROOT/images/SPLIT/NNN_name with labels beside (Ultralytics finds
    labels by path); a photo without labels gets an empty label file."""
    images, labels = root / "images" / split, root / "labels" / split
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    listed = []
    for index, photo in enumerate(photos):
        link = images / f"{index:04d}_{photo.image.name}"
        os.symlink(photo.image.resolve(), link)
        label = labels / f"{link.stem}.txt"
        if photo.label:
            os.symlink(photo.label.resolve(), label)
        else:
            label.write_text("", encoding="utf-8")
        listed.append(str(link))
    return listed


def balanced_sample(pools: list[list[str]], count: int, seed: int) -> list[str]:
    """`count` photos, an equal share from each public set: a big set is sampled, a small one
    repeated (else a set of a few dozen photos beside a thousand is forgotten)."""
    if not pools or count <= 0:
        return []
    rng = random.Random(seed)
    share = min(count // len(pools), max(len(p) for p in pools))
    chosen: list[str] = []
    for pool in pools:
        shuffled = rng.sample(pool, len(pool))
        chosen += (shuffled * math.ceil(share / len(pool)))[:share]
    return chosen


def write_training_set(folder: Path, fields: list[FieldSplit], replay: list[Path], recipe: Recipe,
                       seed: int) -> tuple[Path, list[Path]]:
    """The run's data.yaml (train: field photos repeated + replay sample; val: the gate photos)
    and one data.yaml per field whose val split is its gate, for scoring."""
    field_train: list[str] = []
    gate_yamls = []
    for field_split in fields:
        root = folder / "fields" / field_split.name
        field_train += _link_photos(field_split.train, root, "train")
        _link_photos(field_split.gate, root, "gate")
        gate_yaml = root / "data.yaml"
        gate_yaml.write_text(yaml.safe_dump({"path": str(root), "train": "images/train",
                                             "val": "images/gate", "names": CANONICAL_CLASSES}), encoding="utf-8")
        gate_yamls.append(gate_yaml)
    pools: list[list[str]] = []
    for data_yaml in replay:
        dataset = YoloDataset.from_yaml(data_yaml)
        linked = folder / "replay" / dataset.name / "images" / "train"
        linked.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(dataset.splits["train"].resolve(), linked, target_is_directory=True)
        (folder / "replay" / dataset.name / "labels").mkdir(parents=True, exist_ok=True)
        os.symlink(labels_folder(dataset.splits["train"]).resolve(),
                   folder / "replay" / dataset.name / "labels" / "train", target_is_directory=True)
        pools.append([str(linked / p.relative_to(dataset.splits["train"])) for p in dataset.images("train")])
    replay_list = balanced_sample(pools, recipe.replay_images, seed)
    replay_count = len(replay_list)
    field_slots = (round(replay_count * recipe.field_share / (1 - recipe.field_share)) if replay_count
                   else recipe.field_images)
    field_slots = max(len(field_train), field_slots)
    repeats = math.ceil(field_slots / len(field_train))
    train_list = (field_train * repeats)[:field_slots]
    train_list += replay_list
    gate_list = [str(p) for y in gate_yamls for p in sorted((y.parent / "images" / "gate").iterdir())]
    (folder / "train.txt").write_text("\n".join(train_list) + "\n", encoding="utf-8")
    (folder / "val.txt").write_text("\n".join(gate_list) + "\n", encoding="utf-8")
    data_yaml = folder / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"path": str(folder), "train": "train.txt", "val": "val.txt",
                                         "names": dict(enumerate(CANONICAL_CLASSES))}, sort_keys=False),
                         encoding="utf-8")
    return data_yaml, gate_yamls


def _score(report: EvalReport) -> dict[str, DatasetScore]:
    return {name: DatasetScore(images=r.images, mAP50=r.mAP50, weed_AP50=r.per_class["weed"].AP50,
                               crop_AP50=r.per_class["crop"].AP50)
            for name, r in report.datasets.items()}


def compare(base: Path, candidate: Path, gate_yamls: list[Path], replay: list[Path],
            threads: int | None) -> list[GateComparison]:
    """Score base and candidate, as served, on the gate photos and the replayed val splits."""
    from training.evaluate import evaluate

    replay_val = [y for y in replay if "val" in YoloDataset.from_yaml(y).splits]
    yamls = [*gate_yamls, *replay_val]
    before = _score(evaluate(base, yamls, "val", threads=threads))
    after = _score(evaluate(candidate, yamls, "val", threads=threads))
    gate_names = {YoloDataset.from_yaml(y).name for y in gate_yamls}
    return [GateComparison(dataset=name, role="field" if name in gate_names else "replay",
                           base=before[name], candidate=after[name]) for name in before]


def verdict(gate: list[GateComparison], max_forgetting: float) -> tuple[bool, str]:
    field = [g for g in gate if g.role == "field"]
    forgot = [g for g in gate if g.role == "replay" and -g.gain > max_forgetting]
    gain = sum(g.gain for g in field) / len(field)
    if gain <= 0:
        return False, f"not better on the field's held-out photos (mAP50 {gain:+.3f})"
    if forgot:
        names = ", ".join(f"{g.dataset} {g.gain:+.3f}" for g in forgot)
        return False, f"better on the field (mAP50 {gain:+.3f}) but forgot more than {max_forgetting}: {names}"
    return True, f"better on the field's held-out photos (mAP50 {gain:+.3f}), forgetting within {max_forgetting}"


def promote_if_better(report: FinetuneReport, models_dir: Path, name: str) -> bool:
    """Make the candidate the folder's active model when its gate says it is better (every
    server serving the folder follows); True when it did."""
    from serving.models_dir import write_active

    if report.better:
        write_active(models_dir, name)
    return report.better


def _epochs_completed(run_dir: Path) -> int | None:
    results = run_dir / "results.csv"
    return max(0, len(results.read_text(encoding="utf-8").splitlines()) - 1) if results.is_file() else None


def finetune(config: FinetuneConfig, progress: Callable[[str], None] = print,
             on_epoch: Callable[[EpochProgress], None] | None = None) -> tuple[Path, FinetuneReport]:
    """Run the job; returns the candidate's .onnx path (in config.models_dir) and its report.
    `on_epoch` hears after each epoch how far training is (for a job's progress bar)."""
    from training.export import ExistingModelError, export
    from training.lineage import lineage_from_parent
    from training.train import TrainConfig, run_dir_of, train

    started = time.time()
    recipe = config.recipe or Recipe()
    max_batches = config.max_batches or max_batches_from_env()
    target = config.models_dir / f"{config.name}.onnx"
    if not config.force and (target.exists() or card_path_for(target).exists()):
        raise FinetuneError(f"{target} exists; choose another --name or pass --force")
    base_card = load_card(config.base)  # refuses a model without its card or with a wrong sha256
    fields = [split_field(d, config.seed) for d in config.data]
    if len({f.name for f in fields}) < len(fields):
        raise FinetuneError("two --data folders have the same name; rename one")
    replay: list[Path] = []
    if config.replay:
        replay = list(config.replay_data) if config.replay_data is not None else find_replay_data(
            [d.get("name", "") for d in base_card.training_data])
    imgsz = config.imgsz or image_size_for([p for f in fields for p in f.train],
                                           base_card.input_size or 416)
    progress(f"field: {', '.join(f'{f.name} {len(f.train)} train / {len(f.gate)} gate' for f in fields)}; "
             f"replay: {', '.join(y.parent.name for y in replay) or 'none'}; image size {imgsz}")

    train_hours = None
    if config.time:
        train_hours = config.time - (time.time() - started) / 3600 - FINISHING_RESERVE_HOURS
        if train_hours <= 0.005:
            raise FinetuneError(f"--time {config.time} h leaves no time to train")
    gate_yamls: list[Path] = []

    def prepare(folder: Path) -> Path:
        data_yaml, yamls = write_training_set(folder, fields, replay, recipe, config.seed)
        gate_yamls.extend(yamls)
        return data_yaml

    train_config = TrainConfig(
        data=[str(d) for d in config.data], weights=str(config.base), imgsz=imgsz, epochs=config.epochs,
        time=train_hours, batch=recipe.batch, seed=config.seed, patience=10_000,
        warmup_epochs=recipe.warmup_epochs, close_mosaic=recipe.close_mosaic, bf16=config.bf16,
        threads=config.threads, project=str(config.project), name=config.name, plots=False,
        overrides=recipe.ultralytics_overrides())
    deadline = started + (config.time - FINISHING_RESERVE_HOURS) * 3600 if config.time else None
    callbacks: dict[str, Callable[[Any], None]] = {"on_train_batch_start": _learning_rate_by_time(recipe.lrf)}
    if on_epoch:
        callbacks["on_fit_epoch_end"] = _progress_callback(started, deadline, on_epoch)
    if max_batches:
        progress(f"training stops after {max_batches} batch(es), time left or not")
        callbacks["on_train_batch_end"] = _stop_after(max_batches)
    best = train(train_config, prepare_data=prepare, callbacks=callbacks)
    run_dir = run_dir_of(train_config)
    # The last weights, not best.pt: best.pt is chosen on the gate photos, which would then
    # score their own choice.
    weights = best.parent / "last.pt"

    config.models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{config.name}-finetune-", dir=config.models_dir))
    try:
        staged = export(weights, config.name, [*gate_yamls, *replay], models_dir=staging, imgsz=imgsz,
                        input_border=base_card.input_border)
        gate = compare(config.base, staged, gate_yamls, replay, config.threads)
        better, reason = verdict(gate, config.max_forgetting)
        report = FinetuneReport(
            base=BaseModelRef(name=base_card.name, file=config.base.name, sha256=base_card.sha256),
            field=[FieldReport(name=f.name, train_photos=len(f.train), gate_photos=len(f.gate),
                               gate=f.gate_source, gate_images=[p.image.name for p in f.gate],
                               labels_sha256=f.labels_sha256) for f in fields],
            replay=[y.parent.name for y in replay], recipe=recipe, image_size=imgsz,
            time_budget_hours=config.time, wall_seconds=round(time.time() - started, 1),
            epochs_completed=_epochs_completed(run_dir), threads=config.threads, gate=gate,
            better=better, verdict=reason,
            scoring_note=("AP on the held-out photos only; with a few photos it is noisy (one photo "
                          "can move it by tenths): read it with the counts and look at the photos"))
        card_file = card_path_for(staged)
        card = json.loads(card_file.read_text(encoding="utf-8"))
        card["lineage"] = [entry.model_dump() if hasattr(entry, "model_dump") else entry
                           for entry in lineage_from_parent(config.base)]
        card["finetune"] = report.model_dump(mode="json")
        card_file.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        load_card(staged)  # the card serving will read: valid, and its sha256 still matches
        (run_dir / "finetune_report.json").write_text(report.model_dump_json(indent=2), encoding="utf-8")
        if not config.force and (target.exists() or card_path_for(target).exists()):
            raise ExistingModelError(f"{target} appeared during the job; pass --force to replace it")
        os.replace(staged, target)
        os.replace(card_file, card_path_for(target))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress(f"{report.verdict}; candidate {target} (not active: promote it to serve it)")
    return target, report
