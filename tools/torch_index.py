"""Prints the pip option that installs PyTorch's CPU build, or nothing.

PyPI's Linux torch wheels are CUDA builds: on a machine without an NVIDIA GPU they bring ~4 GiB of
`nvidia-*` and `triton` that never run. PyTorch's own CPU index has the same releases as
`+cpu` builds, which pip then prefers (a local version sorts after the public one). The README's
install commands call this script: it names that index only where no NVIDIA GPU is present and the
index answers (a machine that reaches only a local mirror keeps what its mirror has, without
pip retrying an unreachable index for every package). Standard library only: it runs before the
venv has anything.

    python3 tools/torch_index.py    # prints "--extra-index-url https://download.pytorch.org/whl/cpu" or ""
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.error
import urllib.request

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PROBE_TIMEOUT_S = 3.0
NO_INDEX_ENV = "WEEDSCAN_NO_TORCH_INDEX"  # set to any value: never add the index


def has_nvidia_gpu() -> bool:
    """An NVIDIA driver is loaded (or its tool installed): the CUDA build is the one to use."""
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def index_answers(url: str = CPU_INDEX, timeout: float = PROBE_TIMEOUT_S) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{url}/torch/", method="HEAD"), timeout=timeout):
            return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def pip_options(gpu: bool, reachable: bool, platform: str = sys.platform) -> list[str]:
    """What to add to `pip install` for torch: the CPU index on Linux without a GPU, if it answers."""
    if gpu or not platform.startswith("linux") or not reachable:
        return []
    return ["--extra-index-url", CPU_INDEX]


def main() -> None:
    if os.environ.get(NO_INDEX_ENV) or has_nvidia_gpu() or not sys.platform.startswith("linux"):
        return
    print(" ".join(pip_options(gpu=False, reachable=index_answers())))


if __name__ == "__main__":
    main()
