"""The answers the docs show agree with the requests they show: a `classes=` filter leaves the
other classes at 0, and a count is never below the boxes listed of its class."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# A bash block that posts to /v1/detect, then the json block of its answer.
EXAMPLE = re.compile(r"```bash\n(?P<request>[^`]*?/v1/detect[^`]*?)```\s*```json\n(?P<answer>.*?)```", re.DOTALL)


def examples() -> list[tuple[str, str, str]]:
    found = []
    for doc in DOCS:
        for match in EXAMPLE.finditer(doc.read_text(encoding="utf-8")):
            found.append((doc.relative_to(REPO).as_posix(), match["request"], match["answer"]))
    return found


def test_the_docs_show_detect_answers() -> None:
    assert examples(), "no request-and-answer example found: the pattern above is stale"


@pytest.mark.parametrize(("doc", "curl", "answer"), examples())
def test_a_shown_answer_agrees_with_its_request(doc: str, curl: str, answer: str) -> None:
    url = re.search(r"'(http[^']+)'", curl)
    assert url, f"{doc}: no quoted URL in {curl!r}"
    query = parse_qs(urlparse(url[1]).query)
    asked = {n for value in query.get("classes", []) for n in value.split(",")}
    shown = json.loads(answer)
    listed: dict[str, int] = {}
    for detection in shown["detections"]:
        listed[detection["class_name"]] = listed.get(detection["class_name"], 0) + 1
    for name, count in shown["counts"].items():
        if asked and name not in asked:
            assert count == 0, f"{doc}: classes={','.join(sorted(asked))} but {name}: {count}"
        assert count >= listed.get(name, 0), f"{doc}: {listed[name]} {name} boxes but {name}: {count}"
