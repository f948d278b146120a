"""Assemble benchmarks/RESULTS.md from the latest result of each benchmark (results/*.md).
Every benchmark does this itself when it writes its result; this is for edits by hand.

    .venv/bin/python benchmarks/collect.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import assemble_results  # noqa: E402

if __name__ == "__main__":
    print(f"wrote {assemble_results()}")
