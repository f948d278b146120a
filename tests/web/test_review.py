"""Review mode and field datasets on the page, in headless Chromium against a real
server with a data folder of its own: correct a photo's boxes (draw, switch, delete, undo), save
it to a new field dataset, reload, find exactly those boxes stored (on the page and through the
API), relabel and delete a saved photo. The teach test runs the whole loop with a real fine-tuning
job (a few batches, WEEDSCAN_FINETUNE_MAX_BATCHES, replaying small stand-ins for the public sets):
correct -> save -> fine-tune with progress (on the page and through GET /v1/jobs/{id}) -> compare
-> the candidate listed with its lineage, not served -> promote -> the next photo is answered by
the new model, on the page and through POST /v1/detect."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest

from tests.serving.conftest import LiveServer
from tests.serving.registry_helpers import models_folder
from tests.training.test_finetune import tiny_public_sets
from tests.web.test_page import open_page, synthetic_jpeg, wait_finished
from training.finetune import MAX_BATCHES_ENV

sync_api = pytest.importorskip("playwright.sync_api", exc_type=ImportError,
                               reason="Playwright for Python is not installed")
expect = sync_api.expect

pytestmark = pytest.mark.slow

LAYER = ".review-layer g.box"
TOLERANCE = 1.5   # image pixels: where a drag lands, after the browser's rounding of the pointer


@pytest.fixture(scope="module")
def server(browser: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("review")
    env = {"WEEDSCAN_DATA_DIR": str(root / "data"), MAX_BATCHES_ENV: "2",
           "WEEDSCAN_PUBLIC_DATA_DIRS": str(tiny_public_sets(root / "public"))}
    live = LiveServer(None, env=env, args=["--models-dir", str(models_folder(root))], log_path=root / "server.log")
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


def near(got: tuple[str, tuple[float, ...]], want: tuple[str, tuple[float, ...]]) -> None:
    assert got[0] == want[0] and all(abs(a - b) <= 2 * TOLERANCE for a, b in zip(got[1], want[1])), (got, want)


def add_photo(page: Any, name: str, data: bytes) -> None:
    page.get_by_label("Choose photos").set_input_files(
        [{"name": name, "mimeType": "image/jpeg", "buffer": data}])
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
        # drag it to move it, drag its corner to resize it; two undos put it back
        drag(page, to_screen(page, figure, size, 130, 105), to_screen(page, figure, size, 150, 125))
        near(selected_box(page, scope), ("crop", (80, 70, 220, 180)))
        drag(page, to_screen(page, figure, size, 220, 180), to_screen(page, figure, size, 240, 200))
        near(selected_box(page, scope), ("crop", (80, 70, 240, 200)))
        page.keyboard.press("Control+z")
        page.keyboard.press("Control+z")
        near(selected_box(page, scope), ("crop", (60, 50, 200, 160)))
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
        expect(page.locator("#review-save-status")).to_contain_text(
            "Saved to field dataset plot-a: a new photo")

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
        page.wait_for_function(
            "id => document.querySelector(`li.thumb[data-id='${id}'] img`).naturalWidth > 0",
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


def test_on_a_phone_a_finger_draws_a_box_and_a_tap_switches_it(browser: Any, server: LiveServer) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(server.url + "/")
        name, size = "phone.jpg", (480, 360)
        add_photo(page, name, synthetic_jpeg(12, *size))
        open_review(page, name)
        scope = "#viewer-figure"
        before = page.locator(f"{scope} {LAYER}").count()
        start = to_screen(page, scope, size, 100, 80)
        end = to_screen(page, scope, size, 300, 260)
        cdp = context.new_cdp_session(page)   # a real touch drag: touchstart, moves, touchend
        cdp.send("Input.dispatchTouchEvent",
                 {"type": "touchStart", "touchPoints": [{"x": start[0], "y": start[1]}]})
        for k in range(1, 6):
            x, y = (start[0] + (end[0] - start[0]) * k / 5, start[1] + (end[1] - start[1]) * k / 5)
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        expect(page.locator(f"{scope} {LAYER}")).to_have_count(before + 1)
        cls, box = selected_box(page, scope)
        assert cls == "weed" and all(abs(a - b) <= 2 for a, b in zip(box, (100, 80, 300, 260))), box
        page.touchscreen.tap(*to_screen(page, scope, size, 200, 170))
        expect(page.locator(f"{scope} {LAYER}.selected")).to_have_attribute("data-class", "crop")
        expect(page.locator("#viewer")).to_be_visible()
        page.screenshot(path="/tmp/page-shots/review-phone.png")
        assert not errors, errors
    finally:
        context.close()


def yolo_boxes(label_file: Path, width: int, height: int) -> list[dict[str, Any]]:
    boxes = []
    for line in label_file.read_text(encoding="utf-8").splitlines():
        if line.strip():
            cls, cx, cy, w, h = (float(v) for v in line.split())
            boxes.append({"class_name": ["crop", "weed"][int(cls)], "box": {
                "x1": (cx - w / 2) * width, "y1": (cy - h / 2) * height,
                "x2": (cx + w / 2) * width, "y2": (cy + h / 2) * height}})
    return boxes


def test_teach_the_field_from_the_page_and_promote_the_candidate(browser: Any, server: LiveServer,
                                                                 tmp_path: Path) -> None:
    """The whole loop with a real fine-tuning job (a 1.7-minute budget, about the least that leaves
    time to train, on 6 tiny photos; it stops after two batches)."""
    from tests.training.test_chain import make_dataset

    synthetic = tmp_path / "synthetic"
    make_dataset(synthetic, train=6, val=0)
    photos = sorted((synthetic / "images" / "train").iterdir())
    http = server.http
    assert http.post("/v1/datasets", json={"name": "discs", "crop": "beet"}).status_code == 201
    for image in photos[:-1]:   # five saved through the API, the sixth corrected on the page
        height, width = cv2.imread(str(image)).shape[:2]
        labels = yolo_boxes(synthetic / "labels" / "train" / f"{image.stem}.txt", width, height)
        saved = http.post("/v1/datasets/discs/images", data={"labels": json.dumps(labels)},
                          files={"image": (image.name, image.read_bytes(), "image/jpeg")})
        assert saved.status_code == 201, saved.text

    context, page, _, errors = open_page(browser, server.url + "/")
    try:
        # correct: the model's boxes go, the true ones are drawn, each set to its class
        last = photos[-1]
        height, width = cv2.imread(str(last)).shape[:2]
        add_photo(page, last.name, last.read_bytes())
        open_review(page, last.name)
        scope = "#viewer-figure"
        while page.locator(f"{scope} {LAYER}").count():
            page.locator(f"{scope} {LAYER}").first.focus()
            page.keyboard.press("Delete")
        truth = yolo_boxes(synthetic / "labels" / "train" / f"{last.stem}.txt", width, height)
        for label in truth:   # N first: a drag that starts on a box would move that box
            b = label["box"]
            page.keyboard.press("n")
            draw(page, scope, (width, height), (b["x1"], b["y1"], b["x2"], b["y2"]))
            page.keyboard.press(label["class_name"][0])
        drawn = editor_boxes(page, scope)
        assert same_boxes(drawn, stored(truth), tol=TOLERANCE + 0.1), (drawn, stored(truth))
        page.locator("#review-dataset").select_option("discs")
        page.get_by_role("button", name="Save to field dataset discs").click()
        expect(page.locator("#review-save-status")).to_contain_text(
            "Saved to field dataset discs: a new photo")
        page.locator("#viewer-close").click()
        expect(page.locator("#viewer")).to_be_hidden()
        assert http.get("/v1/datasets/discs").json()["images"] == 6

        # fine-tune, following the progress
        page.get_by_role("button", name="Open field dataset discs").click()
        expect(page.locator("#dataset-photos li.thumb")).to_have_count(6)
        page.get_by_label("New model's name").fill("discs-1")
        page.get_by_label("Time budget (minutes)").fill("1.7")
        page.get_by_role("button", name="Teach weedscan this field").click()
        job = page.locator("#job")
        expect(job).to_be_visible()
        seen, api_saw_an_eta, deadline = set(), False, time.monotonic() + 600
        while job.get_attribute("data-state") in ("queued", "running"):
            # one look at the panel: the job may end between two reads
            status, value, cancel = page.evaluate(
                "() => [document.querySelector('#job-status').textContent,"
                " document.querySelector('#job-progress').getAttribute('value'),"
                " document.querySelector('#job-cancel').checkVisibility()]")
            if status.startswith("Epoch"):
                seen.add((status, value))
                assert cancel, "a running job can be cancelled"
            progress = http.get(f"/v1/jobs/{job.get_attribute('data-id')}").json()["progress"]
            api_saw_an_eta |= progress.get("stage") == "training" and "eta_seconds" in progress
            assert time.monotonic() < deadline, status
            page.wait_for_timeout(500)
        assert job.get_attribute("data-state") == "done", (page.locator("#job-status").text_content(),
                                                           server.log()[-3000:])
        assert seen, "no epoch was shown while the job ran"
        assert any(value not in (None, "0") for _, value in seen), seen
        # each epoch with the time left (or, after the last one, that the gate is scoring)
        assert all("left" in text or "scoring" in text for text, _ in seen), seen

        # compare: base and candidate side by side on the held-out field photos
        compare = page.locator("#job-compare")
        expect(compare).to_be_visible()
        field_row = compare.locator('tr[data-role="field"][data-dataset="discs"]')
        expect(field_row).to_have_count(1)
        for public in ("sesame", "cwfid"):  # what the candidate may have forgotten
            expect(compare.locator(f'tr[data-role="replay"][data-dataset="{public}"]')).to_have_count(1)
        assert api_saw_an_eta, "GET /v1/jobs/{id} reported an epoch with its ETA"
        result = http.get(f"/v1/jobs/{job.get_attribute('data-id')}").json()["result"]
        assert result["model"] == "discs-1" and result["base"]["name"] == "weedscan" and not result["promoted"]
        gate = next(g for g in result["gate"] if g["role"] == "field")
        for who in ("base", "candidate"):
            for key in ("mAP50", "weed_AP50"):
                expect(field_row.locator(f'td[data-col="{who}-{key}"]')).to_have_text(f"{gate[who][key]:.2f}")
        expect(page.locator("#job-verdict")).to_contain_text(result["verdict"])
        held_out = [f for field in result["field"] for f in field["gate_images"]]
        expect(page.locator("#job-photos li.pair")).to_have_count(len(held_out))
        for who, model in (("base", "weedscan"), ("candidate", "discs-1")):
            expect(page.locator(f'#job-photos figure[data-who="{who}"][data-model="{model}"]')
                   ).to_have_count(len(held_out))
        # the server follows its models folder, not the job: the candidate is listed, not served
        deadline = time.monotonic() + 60
        while True:
            listing = http.get("/v1/models").json()
            candidate = next((m for m in listing["models"] if m["name"] == "discs-1"), None)
            if candidate is not None and candidate.get("state") != "broken":
                break
            assert time.monotonic() < deadline, listing
            time.sleep(0.5)
        assert candidate["lineage"][0]["name"] == "weedscan", candidate
        assert listing["active"] == "weedscan", "not served before it is promoted"

        # promote: the selector shows it active, and the next photo is answered by it
        page.get_by_role("button", name="Promote discs-1").click()
        expect(page.locator("#job-promoted")).to_contain_text("discs-1 is the active model now")
        expect(page.locator('#model-select option[value=""]')).to_contain_text("discs-1")
        expect(page.locator('#model-list li[data-model="discs-1"]')).to_contain_text("active")
        assert http.get("/v1/models").json()["active"] == "discs-1"
        add_photo(page, "next.jpg", photos[0].read_bytes())
        expect(page.locator('li.photo[data-file="next.jpg"] .photo-model')).to_contain_text(
            "Answered by discs-1")
        answer = http.post("/v1/detect", content=photos[0].read_bytes(), headers={"Content-Type": "image/jpeg"})
        assert answer.status_code == 200 and answer.json()["model"]["name"] == "discs-1"
        page.screenshot(path="/tmp/page-shots/teach.png", full_page=True)
        assert not errors, errors
    finally:
        context.close()


def test_a_job_can_be_cancelled_and_rerun_from_the_page(browser: Any, server: LiveServer,
                                                         tmp_path: Path) -> None:
    from tests.training.test_chain import make_dataset

    synthetic = tmp_path / "synthetic"
    make_dataset(synthetic, train=4, val=0)
    http = server.http
    assert http.post("/v1/datasets", json={"name": "cancel-me", "crop": "beet"}).status_code == 201
    for image in sorted((synthetic / "images" / "train").iterdir()):
        labels = yolo_boxes(synthetic / "labels" / "train" / f"{image.stem}.txt", 160, 160)
        assert http.post("/v1/datasets/cancel-me/images", data={"labels": json.dumps(labels)},
                         files={"image": (image.name, image.read_bytes(), "image/jpeg")}).status_code == 201
    context, page, _, errors = open_page(browser, server.url + "/")
    try:
        page.get_by_role("button", name="Open field dataset cancel-me").click()
        expect(page.get_by_label("New model's name")).to_have_value(re.compile(r"^cancel-me-\d{8}-\d{4}$"))
        page.get_by_label("Time budget (minutes)").fill("30")
        page.get_by_role("button", name="Teach weedscan this field").click()
        job = page.locator("#job")
        expect(job).to_have_attribute("data-state", re.compile("queued|running"))
        first = job.get_attribute("data-id")
        page.get_by_role("button", name="Cancel", exact=True).click()
        expect(job).to_have_attribute("data-state", "cancelled")
        expect(page.locator("#job-status")).to_contain_text("The job was cancelled")
        expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_hidden()
        page.get_by_role("button", name="Rerun", exact=True).click()
        expect(job).not_to_have_attribute("data-id", first)
        expect(job).to_have_attribute("data-state", re.compile("queued|running"))
        rerun = http.get(f"/v1/jobs/{job.get_attribute('data-id')}").json()
        assert rerun["params"]["name"] == http.get(f"/v1/jobs/{first}").json()["params"]["name"]
        page.get_by_role("button", name="Cancel", exact=True).click()
        expect(job).to_have_attribute("data-state", "cancelled")
        assert not errors, errors
    finally:
        context.close()


def test_with_an_api_key_the_panel_waits_for_it_and_photos_load_with_it(browser: Any, shipped_model: Path,
                                                                         tmp_path: Path) -> None:
    key = "field-key-1"
    live = LiveServer(shipped_model, env={"WEEDSCAN_API_KEYS": key,
                                          "WEEDSCAN_DATA_DIR": str(tmp_path / "data")})
    context, page, _, errors = open_page(browser, live.url + "/")
    try:
        page.get_by_role("textbox", name="API key").fill(key)
        page.get_by_role("button", name="Use this key").click()
        expect(page.locator("#key-panel")).to_be_hidden()
        expect(page.locator("#fields-status")).to_contain_text("No field dataset yet")   # asked again, with it
        name, size = "keyed.jpg", (320, 240)
        add_photo(page, name, synthetic_jpeg(5, *size))
        open_review(page, name)
        page.keyboard.press("n")
        draw(page, "#viewer-figure", size, (20, 20, 120, 100))
        boxes = editor_boxes(page, "#viewer-figure")   # the model's and the one drawn
        page.locator("#review-new-crop").fill("onion")
        expect(page.locator("#review-new-name")).to_have_value("onion")   # the name follows the crop
        page.get_by_role("button", name="Save to field dataset onion").click()
        expect(page.locator("#review-save-status")).to_contain_text("Saved to field dataset onion")
        page.locator("#viewer-close").click()
        page.reload()   # the tab keeps the key: the saved photo (a key-only route) loads
        page.get_by_role("button", name="Open field dataset onion").click()
        page.wait_for_function("() => { const i = document.querySelector('#dataset-photos li.thumb img');"
                               " return i && i.naturalWidth === 320; }")
        listing = live.http.get("/v1/datasets/onion/images", headers={"X-API-Key": key}).json()["images"]
        crops = sum(c == "crop" for c, _ in boxes)
        assert [i["counts"] for i in listing] == [{"crop": crops, "weed": len(boxes) - crops}]
        assert live.http.get("/v1/datasets").status_code == 401
        assert not errors, errors
    finally:
        context.close()
        live.stop()


def test_a_job_cut_by_a_server_stop_shows_why_and_can_be_rerun(browser: Any, tmp_path: Path) -> None:
    from tests.training.test_chain import make_dataset

    synthetic = tmp_path / "synthetic"
    make_dataset(synthetic, train=4, val=0)
    models, data = models_folder(tmp_path), tmp_path / "data"
    args, env = ["--models-dir", str(models)], {"WEEDSCAN_DATA_DIR": str(data)}
    live = LiveServer(None, env=env, args=args)
    try:
        http = live.http
        assert http.post("/v1/datasets", json={"name": "cut", "crop": "beet"}).status_code == 201
        for image in sorted((synthetic / "images" / "train").iterdir()):
            labels = yolo_boxes(synthetic / "labels" / "train" / f"{image.stem}.txt", 160, 160)
            assert http.post("/v1/datasets/cut/images", data={"labels": json.dumps(labels)},
                             files={"image": (image.name, image.read_bytes(), "image/jpeg")}).status_code == 201
        job = http.post("/v1/jobs", json={"kind": "finetune", "datasets": ["cut"], "name": "cut-1",
                                          "time_hours": 0.5}).json()
        deadline = time.monotonic() + 60
        while http.get(f"/v1/jobs/{job['id']}").json()["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        live.stop()   # the server stops: its running job becomes interrupted
    live = LiveServer(None, env=env, args=args)
    context, page, _, errors = open_page(browser, live.url + "/")
    try:
        page.get_by_role("button", name="Open field dataset cut").click()
        shown = page.locator("#job")
        expect(shown).to_have_attribute("data-state", "interrupted")
        expect(page.locator("#job-status")).to_contain_text("The job was interrupted: the server stopped")
        page.get_by_role("button", name="Rerun", exact=True).click()
        expect(shown).to_have_attribute("data-state", re.compile("queued|running"))
        assert shown.get_attribute("data-id") != str(job["id"])
        page.get_by_role("button", name="Cancel", exact=True).click()
        expect(shown).to_have_attribute("data-state", "cancelled")
        assert not errors, errors
    finally:
        context.close()
        live.stop()
