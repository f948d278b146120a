"""Size limits are stated in one unit: the *_MB settings count MiB (1024 x 1024 bytes), the docs
say MiB wherever they name such a setting, and a refusal gives the exact bytes and the MiB."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from serving.config import Settings
from serving.errors import PayloadTooLarge
from serving.imaging import read_image_file

REPO = Path(__file__).resolve().parents[1]
MB_SETTINGS = [f"WEEDSCAN_{name.upper()}" for name in Settings.model_fields if name.endswith("_mb")]


def test_the_settings_count_mebibytes() -> None:
    assert MB_SETTINGS, "no *_MB setting found"
    assert Settings(max_upload_mb=1).max_upload_bytes == 1024 * 1024


@pytest.mark.parametrize("doc", [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))],
                         ids=lambda p: p.name)
def test_docs_state_those_limits_in_mib(doc: Path) -> None:
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        if any(name in line for name in MB_SETTINGS):
            assert not re.search(r"\d\s*MB\b", line), f"{doc.name}:{number} says MB: {line.strip()}"


def test_a_file_over_the_limit_is_refused_in_exact_bytes_and_mib(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff" * (1024 * 1024 + 1))
    with pytest.raises(PayloadTooLarge, match=r"limit of 1048576 bytes \(1 MiB\), WEEDSCAN_MAX_UPLOAD_MB"):
        read_image_file(big, 1024 * 1024)
