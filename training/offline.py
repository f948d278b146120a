"""Switch off everything in Ultralytics that talks to the network. Call before importing it."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

# Integrations Ultralytics enables by default; each one may phone out when its package is present.
_SETTINGS_OFF = {"sync": False, "clearml": False, "comet": False, "dvc": False, "mlflow": False,
                 "raytune": False, "tensorboard": False, "wandb": False, "vscode_msg": False,
                 "openvino_msg": False}
_FONTS = ("Arial.ttf", "Arial.Unicode.ttf")


def weedscan_cache_dir() -> Path:
    base = os.environ.get("WEEDSCAN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "weedscan")
    return Path(base)


def ultralytics_config_dir() -> Path:
    return weedscan_cache_dir() / "ultralytics"


def _install_local_font(config_dir: Path) -> None:
    """Ultralytics downloads Arial when it validates a dataset unless a font of that name is in its
    config folder. We place matplotlib's bundled DejaVu Sans there under those names: it is only
    used to draw labels on training plots."""
    from matplotlib import font_manager

    dejavu = Path(font_manager.findfont("DejaVu Sans", fallback_to_default=True))
    for name in _FONTS:
        target = config_dir / name
        if not target.exists():
            shutil.copyfile(dejavu, target)


def prepare_ultralytics() -> Path:
    """Set the offline environment switches and the config folder; returns that folder.

    The settings file itself is written by import_ultralytics(): Ultralytics resets a settings file
    whose keys differ from its own defaults, so the switches are applied through its own manager
    (which persists them) right after import, before anything could phone home."""
    if "ultralytics" in sys.modules:
        # Its settings are read at import time; setting the switches now would be too late.
        already = os.environ.get("YOLO_OFFLINE") == "1"
        if not already:
            raise RuntimeError("prepare_ultralytics() must run before ultralytics is imported")
    config_dir = ultralytics_config_dir()
    settings_dir = config_dir / "Ultralytics"
    settings_dir.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)  # Ultralytics appends "Ultralytics/"
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    os.environ["YOLO_VERBOSE"] = os.environ.get("YOLO_VERBOSE", "True")
    os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"  # ONNX Runtime, used by export and eval
    os.environ.setdefault("MPLBACKEND", "Agg")

    _install_local_font(settings_dir)
    return settings_dir


def import_ultralytics():  # noqa: ANN201 - returns the module
    """Import ultralytics after switching it offline; a clear error if the train extra is missing."""
    if importlib.util.find_spec("ultralytics") is None or importlib.util.find_spec("matplotlib") is None:
        raise SystemExit("error: this command needs the trainer side: pip install -e '.[train]'")
    prepare_ultralytics()
    import ultralytics
    from ultralytics.utils import SETTINGS

    wanted = {k: v for k, v in _SETTINGS_OFF.items() if k in SETTINGS and SETTINGS[k] != v}
    if wanted:
        SETTINGS.update(wanted)  # persisted to YOLO_CONFIG_DIR/settings.json
    return ultralytics
