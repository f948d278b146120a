"""The serving side stays light: importing it, and serving a request, never loads torch,
ultralytics or the trainer package."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import SHIPPED_MODEL

HEAVY = ("torch", "ultralytics", "training", "torchvision", "albumentations")


def test_serving_never_imports_torch_ultralytics_or_training() -> None:
    script = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        import serving
        for module in pkgutil.walk_packages(serving.__path__, "serving."):
            importlib.import_module(module.name)
        from fastapi.testclient import TestClient
        from serving.api.app import create_app
        from serving.config import Settings
        import time
        with TestClient(create_app(Settings(model=r"{SHIPPED_MODEL}"))) as client:
            for _ in range(300):
                if client.get("/readyz").status_code == 200:
                    break
                time.sleep(0.1)
            import cv2, numpy as np
            ok, jpeg = cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))
            r = client.post("/v1/detect", content=jpeg.tobytes(), headers={{"Content-Type": "image/jpeg"}})
            assert r.status_code == 200, r.text
        loaded = [name for name in {HEAVY!r} if name in sys.modules]
        print("LOADED:" + ",".join(loaded))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "LOADED:\n" in done.stdout or done.stdout.strip().endswith("LOADED:"), done.stdout


def test_serving_source_has_no_heavy_imports() -> None:
    from pathlib import Path

    import serving

    root = Path(serving.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for name in HEAVY:
            assert f"import {name}" not in text and f"from {name}" not in text, f"{path} imports {name}"


# The CLI root (weedscan_cli) on an install without the trainer side: `training` cannot be imported.
_NO_TRAINING = '''
import sys

class NoTraining:
    def find_spec(self, name, path=None, target=None):
        if name == "training" or name.startswith("training."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoTraining())
'''


def _weedscan(*args: str, block_training: bool) -> subprocess.CompletedProcess[str]:
    """`weedscan ARGS` through the console script's entry point; stderr's last line says which
    heavy modules it loaded."""
    script = (_NO_TRAINING if block_training else "import sys\n") + textwrap.dedent(f"""
        import atexit
        atexit.register(lambda: print("LOADED:" + ",".join(
            n for n in {HEAVY!r} if n in sys.modules), file=sys.stderr))
        sys.argv = ["weedscan", *{list(args)!r}]
        from weedscan_cli import main
        main()
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


def _loaded(done: subprocess.CompletedProcess[str]) -> str:
    return done.stderr.strip().splitlines()[-1]


def test_cli_help_and_serving_commands_need_nothing_from_training() -> None:
    for args in (["--help"], ["serve", "--help"], ["detect", "--help"], ["batch", "--help"]):
        done = _weedscan(*args, block_training=True)
        assert done.returncode == 0, (args, done.stderr)
        assert "Usage: weedscan" in done.stdout and "Traceback" not in done.stderr, args
        assert _loaded(done) == "LOADED:", (args, done.stderr)
    listing = _weedscan("--help", block_training=True).stdout
    for command in ("serve", "detect", "batch", "data", "train", "export", "eval", "quantize"):
        assert f" {command} " in listing, command


def test_a_trainer_command_without_training_is_one_line_saying_what_to_install() -> None:
    for args in (["train", "--help"], ["eval", "models/weedscan.onnx", "--data", "x"], ["data", "list"]):
        done = _weedscan(*args, block_training=True)
        assert done.returncode == 2, (args, done.stderr)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert errors == [f"error: weedscan {args[0]} needs the trainer side, which is not installed: "
                          "pip install -e '.[train]'"], done.stderr
        assert "Traceback" not in done.stderr


def test_the_root_imports_training_only_when_a_trainer_command_runs() -> None:
    listing = _weedscan("--help", block_training=False)
    assert listing.returncode == 0 and _loaded(listing) == "LOADED:", listing.stderr
    trainer = _weedscan("train", "--help", block_training=False)
    assert trainer.returncode == 0 and "Usage: weedscan train [OPTIONS]" in trainer.stdout
    assert "training" in _loaded(trainer).removeprefix("LOADED:").split(","), trainer.stderr


def test_the_roots_summaries_are_how_the_trainer_commands_help_starts() -> None:
    import typer

    from training.cli import app as trainer_app
    from weedscan_cli import TRAINER_COMMANDS

    commands = typer.main.get_group(trainer_app).commands
    assert set(commands) == set(TRAINER_COMMANDS)
    for name, summary in TRAINER_COMMANDS.items():
        assert " ".join((commands[name].help or "").split()).startswith(summary), name
