"""Shared bits of the benchmarks: where they ran, and latency statistics."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"
# Sections of RESULTS.md, in this order (results/NAME.md; others follow alphabetically).
RESULT_ORDER = ["training_coco", "models", "recipes", "cross_field", "training", "eval_agreement", "serving", "int8",
                "load", "batch", "train_precision"]


def provenance() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                               text=True).stdout.strip()
        commit += " (with uncommitted changes)" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"commit {commit}; {cpu}, {os.cpu_count()} cores, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}; "
            f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; load average at start {load:.2f}")


def stats_ms(seconds: list[float]) -> dict[str, float]:
    arr = np.asarray(seconds) * 1000
    return {"median": float(np.median(arr)), "p95": float(np.percentile(arr, 95)),
            "mean": float(arr.mean())}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def assemble_results() -> Path:
    """RESULTS.md from the latest result of each benchmark (results/*.md)."""
    parts = sorted(RESULTS_DIR.glob("*.md"), key=lambda p: (
        RESULT_ORDER.index(p.stem) if p.stem in RESULT_ORDER else len(RESULT_ORDER), p.stem))
    body = ["# Benchmark results", "",
            "Each section is the latest output of one script in `benchmarks/`, with the commit and "
            "machine it ran on. Timings come from a shared, noisy 2-core machine: compare rows of "
            "one section (measured side by side in one run), not numbers across sections.", ""]
    for part in parts:
        body += [part.read_text(encoding="utf-8").strip(), ""]
    RESULTS_MD.write_text("\n".join(body), encoding="utf-8")
    return RESULTS_MD


def save_result(path: Path, text: str) -> None:
    """Write one benchmark's section (results/NAME.md) and bring RESULTS.md up to date."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if path.parent.resolve() == RESULTS_DIR.resolve():
        assemble_results()
