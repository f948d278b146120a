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
        text = path.read_text()
        for name in HEAVY:
            assert f"import {name}" not in text and f"from {name}" not in text, f"{path} imports {name}"
