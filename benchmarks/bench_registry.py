"""Memory of a model loaded and unloaded by the server's registry: the process's RSS
before a second model is loaded, after it has loaded and answered frames, and after it is
unloaded (serving/registry.py: its session dropped, freed heap given back), over a few cycles.

Runs the server's own InferenceService in this process (no HTTP: the RSS is the registry's).

    .venv/bin/python benchmarks/bench_registry.py [--cycles 5] [--frames 20]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS_DIR, provenance, rss_mb, save_result  # noqa: E402
from serving.api.metrics import Metrics  # noqa: E402
from serving.api.service import InferenceService  # noqa: E402
from serving.config import Settings  # noqa: E402
from serving.detector import DetectOptions  # noqa: E402
from serving.memory import return_memory  # noqa: E402
from tests import images  # noqa: E402
from tests.serving.registry_helpers import models_folder  # noqa: E402

SIMD = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni")


def cpu_flags() -> str:
    """lscpu's model name and the SIMD flags ONNX Runtime's kernels care about."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "lscpu unavailable"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = set(fields.get("Flags", "").split())
    return (f"{fields.get('Model name', '?').strip()}; flags: "
            f"{', '.join(f for f in SIMD if f in flags) or 'none of ' + ', '.join(SIMD)}")


def run_frames(service: InferenceService, name: str, frames: list[bytes]) -> None:
    async def go() -> None:
        detector = await service.detector_for(name)
        for data in frames:
            with service.admit():
                await service.detect_bytes(data, DetectOptions(), None, detector)

    asyncio.run(go())


def settle() -> float:
    """RSS once garbage is collected and free heap is given back (before and after alike)."""
    gc.collect()
    return_memory()
    return rss_mb(os.getpid())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "registry.md")
    args = parser.parse_args()

    where = provenance()
    frames = [images.encode(images.field_like(640, 480, seed=s), ".jpg") for s in range(4)]
    frames = (frames * args.frames)[:args.frames]
    with tempfile.TemporaryDirectory() as tmp:
        folder = models_folder(Path(tmp), "weedscan-b")
        service = InferenceService(Settings(models_dir=folder, threads=2), Metrics())
        service.load()
        run_frames(service, "weedscan", frames)  # the active model's arena at its working size
        rows = []
        for cycle in range(1, args.cycles + 1):
            before = settle()
            run_frames(service, "weedscan-b", frames)  # loads it (on the loader thread), then frames
            loaded = settle()
            assert service.registry.unload("weedscan-b")
            after = settle()
            run_frames(service, "weedscan", frames[:4])  # the active model still answers
            rows.append((cycle, before, loaded, after))
        service.close()

    lines = [
        "## A model loaded and unloaded: the server's memory (`benchmarks/bench_registry.py`)", "",
        f"{where}. CPU (lscpu): {cpu_flags()}.", "",
        f"The server's InferenceService with two models in its folder (the shipped weights under "
        f"two names); the active one has answered {args.frames} 640x480 frames. Each cycle loads "
        f"the second model (a request for it), runs {args.frames} frames on it, and unloads it "
        "(the registry drops its session and gives freed heap back with malloc_trim).", "",
        "| cycle | RSS before load, MB | after load + frames, MB | after unload, MB | after / before |",
        "|---|---|---|---|---|",
    ]
    for cycle, before, loaded, after in rows:
        lines.append(f"| {cycle} | {before:.0f} | {loaded:.0f} | {after:.0f} | {after / before:.3f} |")
    start = rows[0][1]
    ratios = sorted(after / start for _, _, _, after in rows)
    added = sorted(loaded - before for _, before, loaded, _ in rows)
    lines += ["", f"After an unload the RSS is {ratios[len(ratios) // 2]:.3f}x (median; "
              f"{ratios[0]:.3f}-{ratios[-1]:.3f}x) what it was before the first load (target: "
              f"within 1.10x); a loaded model adds {added[len(added) // 2]:.0f} MB (median). The "
              "session itself is freed at each unload; what varies from cycle to cycle is heap the "
              "allocator keeps.", ""]
    text = "\n".join(lines)
    save_result(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
