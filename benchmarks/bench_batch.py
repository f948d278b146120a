"""Batch throughput: `weedscan batch` locally (1 and N workers), on a local Ray instance, and
the same images one by one over HTTP; writes benchmarks/results/batch.md.

    .venv/bin/python benchmarks/bench_batch.py [--sesame 40] [--cwfid 8]

Times are end to end, as a user sees them: worker start-up and model loading included (for Ray,
not `ray.init`, which is reported apart; for HTTP, not the server start).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import RESULTS_DIR, provenance, save_result  # noqa: E402
from serving.answer import wire_dict  # noqa: E402
from serving.batch import outputs  # noqa: E402
from serving.batch.local_runner import cpu_count  # noqa: E402
from serving.batch.runner import run_batch  # noqa: E402
from serving.batch.work import BatchJob  # noqa: E402
from serving.config import DEFAULT_MODEL  # noqa: E402

SHARED_DATA = REPO.parent / "shared" / "data"
RESULTS = RESULTS_DIR / "batch.md"
MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


def pick_images(target: Path, sesame: int, cwfid: int) -> list[Path]:
    picked = (sorted((SHARED_DATA / "sesame" / "images" / "val").iterdir())[:sesame]
              + sorted((SHARED_DATA / "cwfid" / "images" / "val").iterdir())[:cwfid])
    target.mkdir(parents=True)
    for source in picked:
        shutil.copyfile(source, target / source.name)
    return sorted(target.iterdir())


def time_batch(images: Path, out: Path, **kwargs: object) -> float:
    start = time.perf_counter()
    run_batch([images], out, BatchJob(model=str(DEFAULT_MODEL)), progress=False, **kwargs)
    return time.perf_counter() - start


def time_http(files: list[Path]) -> float:
    from tests.serving.conftest import LiveServer

    server = LiveServer(DEFAULT_MODEL, env={"WEEDSCAN_THREADS": str(cpu_count())})
    try:
        server.http.post("/v1/detect", content=files[0].read_bytes(),  # warm the route up
                         headers={"Content-Type": MEDIA_TYPES[files[0].suffix.lower()]})
        start = time.perf_counter()
        for path in files:
            response = server.http.post("/v1/detect", content=path.read_bytes(),
                                        headers={"Content-Type": MEDIA_TYPES[path.suffix.lower()]})
            response.raise_for_status()
        return time.perf_counter() - start
    finally:
        server.stop()


def without_timing(out: Path) -> list[dict]:
    return [{k: v for k, v in wire_dict(r).items() if k != "timing_ms"}
            for r in outputs.load_records(out / outputs.JSONL)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sesame", type=int, default=40, help="sesame val images")
    parser.add_argument("--cwfid", type=int, default=8, help="CWFID val images (1296x966)")
    args = parser.parse_args()
    if not (SHARED_DATA / "sesame").is_dir():
        sys.exit(f"error: the public datasets are not at {SHARED_DATA}")

    load_before = os.getloadavg()[0]
    cores = cpu_count()
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / "images"
        files = pick_images(images, args.sesame, args.cwfid)
        count = len(files)
        print(f"{count} images, {cores} cores", flush=True)

        for workers in sorted({1, cores}):
            seconds = time_batch(images, Path(tmp) / f"local{workers}", workers=workers)
            rows.append((f"local, --workers {workers}", seconds))
            print(rows[-1], flush=True)

        ray_note = "Ray not installed"
        try:
            import ray
        except ImportError:
            ray = None
        if ray is not None:
            start = time.perf_counter()
            ray.init(num_cpus=cores, include_dashboard=False, logging_level="WARNING")
            ray_note = f"`ray.init` took {time.perf_counter() - start:.1f} s (not counted)"
            try:
                seconds = time_batch(images, Path(tmp) / "ray", ray_address="local")
            finally:
                ray.shutdown()
            rows.append((f"Ray (local instance, {cores} actors)", seconds))
            print(rows[-1], flush=True)
            same = without_timing(Path(tmp) / "ray") == without_timing(Path(tmp) / "local1")
            ray_note += f"; Ray output identical to the local run: {same}"

        rows.append(("HTTP, one image per request (`POST /v1/detect`)", time_http(files)))
        print(rows[-1], flush=True)

    lines = [
        "# weedscan batch throughput",
        "",
        f"- {provenance()}",
        f"- load average before the run: {load_before:.1f}",
        f"- python {platform.python_version()}, onnxruntime "
        f"{__import__('onnxruntime').__version__}, model {DEFAULT_MODEL.name} "
        f"(input {json.loads(DEFAULT_MODEL.with_suffix('.json').read_text(encoding='utf-8')).get('input_size')})",
        f"- images: {count} ({args.sesame} sesame 512x512, {args.cwfid} CWFID 1296x966)",
        f"- {ray_note}",
        "- times end to end: worker start-up and model loading included; HTTP excludes server start",
        "",
        "| how | seconds | images/s |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {seconds:.2f} | {count / seconds:.2f} |" for name, seconds in rows),
        "",
        "Command: `.venv/bin/python benchmarks/bench_batch.py`",
        "",
    ]
    save_result(RESULTS, "\n".join(lines))
    print(RESULTS.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
