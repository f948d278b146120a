"""Review mode and field datasets on the page (issue 21), in headless Chromium against a real
server with a data folder of its own: correct a photo's boxes (draw, switch, delete, undo), save
it to a new field dataset, reload, find exactly those boxes stored (on the page and through the
API), relabel and delete a saved photo. The teach test runs the whole loop with a real (short)
fine-tuning job: correct -> save -> fine-tune with progress -> compare -> promote -> the next
photo is answered by the new model."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest

from tests.serving.conftest import LiveServer
from tests.serving.registry_helpers import models_folder
from tests.web.test_page import open_page, synthetic_jpeg, wait_finished

sync_api = pytest.importorskip("playwright.sync_api", exc_type=ImportError,
                               reason="Playwright for Python is not installed")
expect = sync_api.expect

pytestmark = pytest.mark.slow

LAYER = ".review-layer g.box"
TOLERANCE = 1.5   # image pixels: where a drag lands, after the browser's rounding of the pointer


@pytest.fixture(scope="module")
def server(browser: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("review")
    live = LiveServer(None, env={"WEEDSCAN_DATA_DIR": str(root / "data")},
                      args=["--models-dir", str(models_folder(root))], log_path=root / "server.log")
    yield live
    live.stop()


def editor_boxes(page: Any, scope: str) -> list[tuple[str, tuple[float, ...]]]:
    """(class, (x1, y1, x2, y2)) of the boxes in the editor, as a save sends them."""
    raw = page.eval_on_selector_all(f"{scope} {LAYER}",
                                    "gs => gs.map(g => [g.dataset.class, g.dataset.box])")
    return sorted((cls, tuple(float(v) for v in box.split(","))) for cls, box in raw)


def stored(labels: list[dict[str, Any]]) -> list[tuple[str, tuple[float, ...]]]:
    return sorted((b["class_name"], tuple(b["box"][k] for k in ("x1", "y1", "x2", "y2"))) for b in labels)


def same_boxes(a: list, b: list, tol: float = 0.06) -> bool:
    return len(a) == len(b) and all(
        ca == cb and all(abs(u - v) <= tol for u, v in zip(ba, bb)) for (ca, ba), (cb, bb) in zip(a, b))


def to_screen(page: Any, figure: str, image: tuple[int, int], x: float, y: float) -> tuple[float, float]:
    rect = page.locator(figure).bounding_box()
    return rect["x"] + x / image[0] * rect["width"], rect["y"] + y / image[1] * rect["height"]


def drag(page: Any, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=3)
    page.mouse.move(*end, steps=3)
    page.mouse.up()


def draw(page: Any, figure: str, image: tuple[int, int], box: tuple[float, float, float, float]) -> None:
    drag(page, to_screen(page, figure, image, box[0], box[1]), to_screen(page, figure, image, box[2], box[3]))


def selected_box(page: Any, scope: str) -> tuple[str, tuple[float, ...]]:
    cls, box = page.eval_on_selector(f"{scope} {LAYER}.selected", "g => [g.dataset.class, g.dataset.box]")
    return cls, tuple(float(v) for v in box.split(","))


def add_photo(page: Any, name: str, data: bytes) -> None:
    page.get_by_label("Choose photos").set_input_files([{"name": name, "mimeType": "image/jpeg", "buffer": data}])
    wait_finished(page)


def open_review(page: Any, name: str) -> None:
    page.get_by_role("button", name=f"View {name} large").click()
    expect(page.locator("#viewer")).to_be_visible()
    page.get_by_role("button", name="Correct the boxes").click()
    expect(page.locator("#viewer-figure .review-layer")).to_be_visible()


def test_correct_save_reload_and_find_exactly_those_labels(browser: Any, server: LiveServer) -> None:
    context, page, _, errors = open_page(browser, server.url + "/")
    http = server.http
    name, size = "field-1.jpg", (640, 480)
    try:
        expect(page.locator("#fields-status")).to_contain_text("No field dataset yet")
        add_photo(page, name, synthetic_jpeg(11, *size))
        open_review(page, name)
        scope, figure = "#viewer-figure", "#viewer-figure"
        model_boxes = editor_boxes(page, scope)
        expect(page.locator(".review-help")).to_contain_text("Ctrl+Z undo")

        # draw a box (a new box is a weed), make it a crop with C
        draw(page, figure, size, (60, 50, 200, 160))
        cls, box = selected_box(page, scope)
        assert cls == "weed" and all(abs(a - b) <= TOLERANCE for a, b in zip(box, (60, 50, 200, 160))), box
        page.keyboard.press("c")
        assert selected_box(page, scope)[0] == "crop"
        # N, W (the class of the next box, as the last one chosen), then drag: a second box; a
        # click on the selected box switches its class
        page.keyboard.press("n")
        page.keyboard.press("w")
        expect(page.get_by_role("button", name="New box (N)")).to_have_attribute("aria-pressed", "true")
        draw(page, figure, size, (330, 240, 470, 400))
        assert selected_box(page, scope)[0] == "weed"
        page.mouse.click(*to_screen(page, figure, size, 400, 320))
        assert selected_box(page, scope)[0] == "crop"
        page.mouse.click(*to_screen(page, figure, size, 400, 320))
        assert selected_box(page, scope)[0] == "weed"
        # a third box, deleted; undo brings it back, redo takes it away again
        draw(page, figure, size, (500, 40, 600, 120))
        expect(page.locator(f"{scope} {LAYER}")).to_have_count(len(model_boxes) + 3)
        page.keyboard.press("Delete")
        expect(page.locator(f"{scope} {LAYER}")).to_have_count(len(model_boxes) + 2)
        page.keyboard.press("Control+z")
        expect(page.locator(f"{scope} {LAYER}")).to_have_count(len(model_boxes) + 3)
        page.keyboard.press("Control+Shift+z")
        expect(page.locator(f"{scope} {LAYER}")).to_have_count(len(model_boxes) + 2)
        # one of the model's own boxes deleted from the keyboard (Tab reaches the boxes)
        if model_boxes:
            page.locator(f"{scope} {LAYER}").first.focus()
            page.keyboard.press("Backspace")
            expect(page.locator(f"{scope} {LAYER}")).to_have_count(len(model_boxes) + 1)
        # Esc drops the selection first, and leaves the dialog open
        page.locator(f"{scope} {LAYER}").first.focus()
        page.keyboard.press("Escape")
        expect(page.locator("#viewer")).to_be_visible()
        expected = editor_boxes(page, scope)
        drawn = [(c, b) for c, b in expected if abs(b[0] - 60) <= TOLERANCE and abs(b[1] - 50) <= TOLERANCE]
        assert [c for c, _ in drawn] == ["crop"], expected

        # save to a new dataset
        expect(page.locator("#review-dataset")).to_have_value("__new__")
        page.locator("#review-new-crop").fill("carrot")
        page.locator("#review-new-name").fill("plot-a")
        page.get_by_role("button", name="Save to field dataset plot-a").click()
        expect(page.locator("#review-save-status")).to_contain_text("Saved to field dataset plot-a: a new photo")

        listing = http.get("/v1/datasets/plot-a/images").json()["images"]
        assert len(listing) == 1 and listing[0]["filename"] == name
        image_id = listing[0]["id"]
        labels = http.get(f"/v1/datasets/plot-a/images/{image_id}").json()["labels"]
        assert same_boxes(stored(labels), expected), (stored(labels), expected)
        page.keyboard.press("Escape")
        expect(page.locator("#viewer")).to_be_hidden()

        # reload: the dataset is listed with its counts, its photo opens with exactly those boxes
        page.reload()
        crops = sum(c == "crop" for c, _ in expected)
        row = page.locator('#dataset-list tr[data-dataset="plot-a"]')
        expect(row.locator('td[data-col="images"]')).to_have_text("1")
        expect(row.locator('td[data-col="crop"]')).to_have_text(str(crops))
        expect(row.locator('td[data-col="weed"]')).to_have_text(str(len(expected) - crops))
        page.get_by_role("button", name="Open field dataset plot-a").click()
        thumb = page.locator(f'#dataset-photos li.thumb[data-id="{image_id}"]')
        expect(thumb).to_be_visible()
        expect(page.locator("#dataset-photos li.thumb")).to_have_count(1)
        page.wait_for_function("id => document.querySelector(`li.thumb[data-id='${id}'] img`).naturalWidth > 0",
                               arg=image_id)
        thumb.get_by_role("button", name=f"Open {name} large").click()
        expect(page.locator("#field-viewer")).to_be_visible()
        expect(page.locator(f"#field-figure {LAYER}")).to_have_count(len(expected))
        assert same_boxes(editor_boxes(page, "#field-figure"), expected)

        # relabel it: the first box switches class, saved with PUT
        page.locator(f"#field-figure {LAYER}").first.focus()
        before = selected_box(page, "#field-figure")
        page.keyboard.press("w" if before[0] == "crop" else "c")
        save = page.get_by_role("button", name="Save the boxes")
        expect(save).to_be_enabled()
        after = editor_boxes(page, "#field-figure")
        save.click()
        expect(page.locator("#field-status")).to_contain_text("Saved:")
        labels = http.get(f"/v1/datasets/plot-a/images/{image_id}").json()["labels"]
        assert same_boxes(stored(labels), after) and not same_boxes(after, expected)

        # delete it
        page.once("dialog", lambda d: d.accept())
        page.get_by_role("button", name="Delete this photo").click()
        expect(page.locator("#field-viewer")).to_be_hidden()
        expect(page.locator("#dataset-photos li.thumb")).to_have_count(0)
        assert http.get("/v1/datasets/plot-a/images").json()["images"] == []
        expect(row.locator('td[data-col="images"]')).to_have_text("0")
        page.screenshot(path="/tmp/page-shots/fields.png", full_page=True)
        assert not errors, errors
    finally:
        context.close()
