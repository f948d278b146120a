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
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            anchors.add(heading_anchor(line.lstrip("#")))
    return anchors


def readme_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)[:2]


def test_readme_is_a_short_front_door() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200
    for guide in ("docs/api.md", "docs/operations.md", "docs/training.md", "docs/models.md", "docs/cli.md"):
        assert f"]({guide}" in README.read_text(encoding="utf-8"), guide


def test_readme_opens_with_the_serve_and_the_test_command() -> None:
    serve, test = readme_commands()
    assert serve.startswith("python3 -m venv .venv") and serve.endswith("weedscan serve")
    assert test.startswith("python3 -m venv .venv") and "pytest" in test


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    _, test = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test in ci.splitlines()


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: p.name)
def test_every_link_and_anchor_resolves(doc: Path) -> None:
    broken = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
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

    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    internal = {"serve_started"}  # set by `weedscan serve` for its own workers
    missing = [name for name in Settings.model_fields
               if name not in internal and f"WEEDSCAN_{name.upper()}" not in text]
    assert not missing, f"docs/operations.md does not document {missing}"


def test_operations_guide_names_every_metric() -> None:
    source = (ROOT / "serving" / "api" / "metrics.py").read_text(encoding="utf-8")
    metrics = set(re.findall(r'"(weedscan_[a-z_]+)"', source))
    assert metrics
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    missing = sorted(m for m in metrics if f"`{m}`" not in text)
    assert not missing, f"docs/operations.md does not document {missing}"


def test_models_doc_says_what_the_shipped_card_says() -> None:
    """docs/models.md's `card` block (what the model is, its data, its scores, the commands that
    reproduce them) is exactly what the card renders to: a re-exported model without a rerun of
    `python -m training.model_docs` fails here."""
    from serving.model_card import ModelCard
    from training.model_docs import MODELS_DOC, SHIPPED_CARD, generated_block, render_card

    card = ModelCard.model_validate_json(SHIPPED_CARD.read_bytes())
    assert generated_block(MODELS_DOC.read_text(encoding="utf-8"), "card") == render_card(card)


def test_models_doc_check_notices_a_changed_card() -> None:
    from serving.model_card import ModelCard
    from training.model_docs import MODELS_DOC, SHIPPED_CARD, generated_block, render_card

    card = ModelCard.model_validate_json(SHIPPED_CARD.read_bytes())
    changed = card.model_copy(deep=True)
    first = next(iter(changed.metrics))
    changed.metrics[first]["mAP50"] = changed.metrics[first]["mAP50"] - 0.05
    assert generated_block(MODELS_DOC.read_text(encoding="utf-8"), "card") != render_card(changed)
    changed = card.model_copy(update={"input_size": (card.input_size or 0) + 32})
    assert generated_block(MODELS_DOC.read_text(encoding="utf-8"), "card") != render_card(changed)


def test_models_doc_chain_follows_the_cards_lineage() -> None:
    """The `chain` block lists the card's lineage, parent first, and one run per model of the
    chain; where git holds the ancestors' commits (not in a shallow clone) it is exactly what their
    cards render to."""
    from serving.model_card import ModelCard
    from training.model_docs import MODELS_DOC, SHIPPED_CARD, ancestor_cards, generated_block, render_chain

    card = ModelCard.model_validate_json(SHIPPED_CARD.read_bytes())
    block = generated_block(MODELS_DOC.read_text(encoding="utf-8"), "chain")
    positions = [block.index(f"`{entry.sha256[:16]}…`") for entry in card.lineage]
    assert positions == sorted(positions) and card.lineage
    fine_tuned = [e for e in card.lineage if e.relation == "fine-tuned from"]
    assert block.count(".venv/bin/weedscan train ") == len(fine_tuned) + 1
    ancestors = ancestor_cards(card)
    if len(ancestors) == len(fine_tuned):
        assert block == render_chain(card, ancestors)


def test_docs_commands_use_data_a_user_can_get() -> None:
    """Commands in the docs read data sets by their card's name in the fetch cache, never a
    folder of this project's machines."""
    from training.model_docs import generated_block

    cards = {p.stem for p in (ROOT / "datasets").glob("*.yaml")}
    for doc in [README, *DOCS]:
        text = doc.read_text(encoding="utf-8")
        if doc.name == "models.md":  # the lineage quotes the card's sources verbatim
            text = text.replace(generated_block(text, "chain"), "")
        assert "../shared" not in text and "/work/" not in text, doc.name
        for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
            for name in re.findall(r"--data \$D/([\w-]+)", block):
                assert name in cards, f"{doc.name}: --data $D/{name} has no card in datasets/"
