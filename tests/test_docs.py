"""The documentation holds together: README is a short front door whose test command CI runs
verbatim, every link and anchor in README.md and docs/ resolves, and the operations guide names
every setting and metric the server has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def heading_anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors_of(path: Path) -> set[str]:
    in_code = False
    anchors = set()
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            anchors.add(heading_anchor(line.lstrip("#")))
    return anchors


def readme_commands() -> list[str]:
    text = README.read_text()
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)[:2]


def test_readme_is_a_short_front_door() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 200
    for guide in ("docs/api.md", "docs/operations.md", "docs/training.md", "docs/models.md", "docs/cli.md"):
        assert f"]({guide}" in README.read_text(), guide


def test_readme_opens_with_the_serve_and_the_test_command() -> None:
    serve, test = readme_commands()
    assert serve.startswith("python3 -m venv .venv") and serve.endswith("weedscan serve")
    assert test.startswith("python3 -m venv .venv") and "pytest" in test


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    _, test = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci.splitlines()


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: p.name)
def test_every_link_and_anchor_resolves(doc: Path) -> None:
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        file_part, _, anchor = target.partition("#")
        path = (doc.parent / file_part).resolve() if file_part else doc
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in anchors_of(path):
            broken.append(target)
    assert not broken, f"{doc.name}: {broken}"


def test_operations_guide_names_every_setting() -> None:
    from serving.config import Settings

    text = (ROOT / "docs" / "operations.md").read_text()
    internal = {"serve_started"}  # set by `weedscan serve` for its own workers
    missing = [name for name in Settings.model_fields
               if name not in internal and f"WEEDSCAN_{name.upper()}" not in text]
    assert not missing, f"docs/operations.md does not document {missing}"


def test_operations_guide_names_every_metric() -> None:
    source = (ROOT / "serving" / "api" / "metrics.py").read_text()
    metrics = set(re.findall(r'"(weedscan_[a-z_]+)"', source))
    assert metrics
    text = (ROOT / "docs" / "operations.md").read_text()
    missing = sorted(m for m in metrics if f"`{m}`" not in text)
    assert not missing, f"docs/operations.md does not document {missing}"
