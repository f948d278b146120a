"""Assemble benchmarks/RESULTS.md from the latest result of each benchmark (results/*.md).

    .venv/bin/python benchmarks/collect.py
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["training", "eval_agreement", "serving", "int8", "load", "batch", "train_precision"]


def main() -> None:
    parts = sorted((HERE / "results").glob("*.md"),
                   key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else len(ORDER), p.stem))
    body = ["# Benchmark results", "",
            "Each section is the latest output of one script in `benchmarks/`, with the commit and "
            "machine it ran on. Timings come from a shared, noisy 2-core machine: compare rows of "
            "one section (measured side by side in one run), not numbers across sections.", ""]
    for part in parts:
        body += [part.read_text().strip(), ""]
    (HERE / "RESULTS.md").write_text("\n".join(body))
    print(f"wrote {HERE / 'RESULTS.md'} from {len(parts)} result files")


if __name__ == "__main__":
    main()
