"""`weedscan train`: Ultralytics training, offline, with field-photo augmentations and bf16 on CPU."""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from training import augment
from training.bf16 import cpu_has_native_bf16
from training.offline import import_ultralytics
from training.trainset import build_training_set

RUN_RECORD = "weedscan_train.json"


@dataclass
class TrainConfig:
    data: list[str]
    model: str = "yolo26n.yaml"  # architecture YAML: training from scratch
    weights: str | None = None  # a local .pt, or an Ultralytics ONNX export, to fine-tune from
    imgsz: int = 416
    epochs: int = 100
    time: float | None = None  # hours; overrides epochs when set
    batch: int = 16
    device: str = "cpu"
    seed: int = 0
    workers: int = 2
    patience: int = 100
    warmup_epochs: float = 3.0  # Ultralytics' default; shorten when fine-tuning briefly
    close_mosaic: int = 5  # last epochs without mosaic
    bf16: bool | None = None  # bf16 autocast on CPU; None: only where the CPU has native bf16
    threads: int | None = None  # torch threads on CPU; None: Ultralytics' choice (cores - 1)
    repeats: dict[str, int] = field(default_factory=dict)
    project: str = "runs/train"
    name: str = "weedscan"
    plots: bool = True
    # Further Ultralytics train arguments (e.g. optimizer, lr0, nbs, freeze), as a recipe sets them.
    overrides: dict[str, Any] = field(default_factory=dict)


class MachineInfo(BaseModel):
    platform: str
    processor: str
    device: str  # Ultralytics' device: cpu, 0, 0,1 ...


class RunRecord(BaseModel):
    """RUN_DIR/weedscan_train.json: how a run was made, what its model card says of it."""

    model_config = ConfigDict(extra="allow")  # fields a newer weedscan adds are kept

    config: TrainConfig | None = None  # None: weights with no record beside them
    ultralytics_args: dict[str, Any] = {}  # Ultralytics' own train arguments, as passed
    pretrained: dict[str, Any] | None = None  # the starting weights (training/pretrained.py)
    augmentation: dict[str, Any] = {}
    versions: dict[str, str] = {}  # library versions
    machine: MachineInfo | None = None
    started: str | None = None
    finished: str | None = None
    wall_seconds: float | None = None
    epochs_completed: int | None = None  # counted from results.csv when the card is written

    def write(self, run_dir: Path) -> None:
        (run_dir / RUN_RECORD).write_text(json.dumps(self.model_dump(mode="json", exclude_unset=True),
                                                     indent=2), encoding="utf-8")

    @classmethod
    def read(cls, run_dir: Path) -> RunRecord:
        """The run's record; an empty one when the folder has none."""
        record_file = run_dir / RUN_RECORD
        return cls.model_validate_json(record_file.read_bytes()) if record_file.is_file() else cls()


def run_dir_of(config: TrainConfig) -> Path:
    return Path(config.project).absolute() / config.name


def fresh_run_name(project: str | Path, name: str) -> str:
    """NAME, or NAME-2, NAME-3 ... when an earlier run holds that folder: a new run never
    writes into an old one (carry an old run on with --resume)."""
    candidate, number = name, 1
    while (Path(project) / candidate).exists():
        number += 1
        candidate = f"{name}-{number}"
    return candidate


def _library_versions() -> dict[str, str]:
    import torch
    import ultralytics

    versions = {"ultralytics": ultralytics.__version__, "torch": torch.__version__,
                "python": platform.python_version()}
    try:
        import albumentations

        versions["albumentations"] = albumentations.__version__
    except ImportError:
        pass
    return versions


def ultralytics_args(config: TrainConfig, data_yaml: Path) -> dict[str, Any]:
    args: dict[str, Any] = {
        "data": str(data_yaml), "imgsz": config.imgsz, "epochs": config.epochs,
        "batch": config.batch, "device": config.device, "seed": config.seed,
        "deterministic": False, "workers": config.workers, "patience": config.patience,
        "project": str(Path(config.project).absolute()), "name": config.name, "exist_ok": True,
        "plots": config.plots, "amp": config.device != "cpu", "val": True,
        "augmentations": augment.field_transforms(), **augment.ULTRALYTICS_AUGMENT,
        "warmup_epochs": config.warmup_epochs, "close_mosaic": config.close_mosaic,
    }
    if config.time:
        args["time"] = config.time
    return {**args, **config.overrides}


def _starting_weights(config: TrainConfig, data_yaml: Path) -> tuple[str | None, dict[str, Any] | None]:
    """The checkpoint to start from (an ONNX export is rebuilt into one, its BatchNorm calibrated
    on training images) and what the model card records of it."""
    if not config.weights:
        return None, None
    from training.pretrained import starting_checkpoint

    train_list = (data_yaml.parent / "train.txt").read_text(encoding="utf-8").split()
    calibration = [Path(p) for p in sorted(set(train_list))][::max(1, len(set(train_list)) // 64)]
    checkpoint, origin = starting_checkpoint(Path(config.weights), calibration,
                                             run_dir_of(config) / "pretrained")
    return str(checkpoint), origin


def train(config: TrainConfig, prepare_data: Callable[[Path], Path] | None = None,
          callbacks: dict[str, Callable[[Any], None]] | None = None) -> Path:
    """Train; returns the path of best.pt. The run's settings go to RUN_DIR/weedscan_train.json.
    `prepare_data(folder)` writes the training set's data.yaml into folder instead of the one
    built from config.data (fine-tuning lists its own mix of field and public photos);
    `callbacks` are Ultralytics trainer callbacks by event name (e.g. on_fit_epoch_end)."""
    import_ultralytics()
    from ultralytics import YOLO

    from training.bf16 import make_trainer_class

    config.name = fresh_run_name(config.project, config.name)
    run_dir = run_dir_of(config)
    run_dir.mkdir(parents=True)
    try:
        data_yaml = (prepare_data(run_dir / "data") if prepare_data
                     else build_training_set(config.data, run_dir / "data", config.repeats))
        start_weights, pretrained = _starting_weights(config, data_yaml)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # refused before training: leave no empty run behind
        raise
    model = YOLO(start_weights or config.model, task="detect")
    for event, callback in (callbacks or {}).items():
        model.add_callback(event, callback)
    bf16 = cpu_has_native_bf16() if config.bf16 is None else config.bf16
    trainer = make_trainer_class(bf16, config.threads)
    args = ultralytics_args(config, data_yaml)
    record = RunRecord(
        config=config, ultralytics_args={k: v for k, v in args.items() if k != "augmentations"},
        pretrained=pretrained, augmentation=augment.describe(), versions=_library_versions(),
        machine=MachineInfo(platform=platform.platform(), processor=platform.processor(),
                            device=config.device),
        started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    record.write(run_dir)
    start = time.time()
    model.train(trainer=trainer, **args)
    record.wall_seconds = round(time.time() - start, 1)
    record.finished = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    record.write(run_dir)
    return run_dir / "weights" / "best.pt"


def resumed_precision(last_pt: Path, bf16: bool | None, threads: int | None) -> tuple[bool, int | None]:
    """bf16 and threads for a resumed run: as given, else as the run was started, else the default."""
    started = RunRecord.read(last_pt.parent.parent).config
    if bf16 is None and started is not None:
        bf16 = started.bf16
    if threads is None and started is not None:
        threads = started.threads
    return (cpu_has_native_bf16() if bf16 is None else bool(bf16)), threads


def resume(last_pt: Path, bf16: bool | None = None, threads: int | None = None) -> Path:
    """Carry on an interrupted run from its last.pt, with the settings it was started with."""
    import_ultralytics()
    from ultralytics import YOLO

    from training.bf16 import make_trainer_class

    bf16, threads = resumed_precision(last_pt, bf16, threads)
    model = YOLO(str(last_pt), task="detect")
    model.train(resume=True, trainer=make_trainer_class(bf16, threads))
    return last_pt.parent / "best.pt"
