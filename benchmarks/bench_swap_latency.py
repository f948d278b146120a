"""Latency the model swaps add under load: camera clients (keep-alive, up to 10 fps each) against a
real `weedscan serve --models-dir`, first without swaps, then while the active model is swapped ten
times; p99 of both, warm swaps (both models stay loaded) and cold ones (one loaded at a time).
tests/serving/test_swap_live.py checks that no request fails; this measures what it costs.

    .venv/bin/python benchmarks/bench_swap_latency.py [--clients 8] [--seconds 8]

Writes benchmarks/results/swap_latency.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from benchmarks.common import RESULTS_DIR, provenance, save_result
from tests.serving import test_swap_live as swap
from tests.serving.conftest import LiveServer
from tests.serving.registry_helpers import models_folder


def measure(folder: Path, loaded: str, seconds: float) -> str:
    server = LiveServer(None, args=["--models-dir", str(folder)], env={"WEEDSCAN_MAX_LOADED_MODELS": loaded})
    try:
        swap.drive(server.url, 2.0)  # warm: connections, allocator
        quiet = swap.drive(server.url, seconds)

        def swap_ten_times() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as admin:
                for i in range(swap.SWAPS):
                    admin.post(f"/v1/models/{'weedscan-b' if i % 2 == 0 else 'weedscan'}/activate").raise_for_status()
                    time.sleep(0.8)

        busy = swap.drive(server.url, 0, during=swap_ten_times)
    finally:
        server.stop()
    failed = len(quiet.failures) + len(busy.failures)
    return (f"| {'warm' if loaded != '1' else 'cold'} ({loaded} loaded at most) | {len(quiet.answers)} | "
            f"{quiet.p99() * 1000:.0f} | {len(busy.answers)} | {busy.p99() * 1000:.0f} | "
            f"{busy.p99() / quiet.p99():.2f} | {failed} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the run without swaps")
    args = parser.parse_args()
    swap.CLIENTS = args.clients
    with tempfile.TemporaryDirectory() as tmp:
        folder = models_folder(Path(tmp), "weedscan-b")
        rows = [measure(folder, loaded, args.seconds) for loaded in ("4", "1")]
    text = "\n".join([
        "## Model swaps under load: p99 latency", "",
        provenance() + f"; {args.clients} clients at up to {swap.FPS:.0f} fps, 320x240 JPEG frames, "
        f"{swap.SWAPS} swaps 0.8 s apart.", "",
        "| swaps | frames without | p99 ms without | frames during | p99 ms during | ratio | failed |",
        "|---|---|---|---|---|---|---|", *rows, ""])
    save_result(RESULTS_DIR / "swap_latency.md", text)
    print(text)


if __name__ == "__main__":
    main()
