"""The page as an agronomist uses it on a field walk, in headless Chromium against a real server:
a phone photo (3264x2448, tiled by the server) shows the API's boxes, counts and cover at any
slider position after one upload; the large view zooms, pans and steps through the photos; the
geotagged photos download as GeoJSON; a summary per upload session; titles that fit the mode;
a warning where the model's answer is unreliable, judged as benchmarks/bench_reliability.py
measures it. Expected figures come from the API's answers, never from fixed numbers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from serving.mask_rle import decode_runs, encode_runs
from serving.vegetation import box_raster
from tests import images
from tests.serving.conftest import LiveServer
from tests.web.test_page import (
    PAGE_FLOOR,
    Upload,
    api_boxes,
    detect,
    open_page,
    page_cover_text,
    shown_boxes,
    wait_finished,
    with_gps,
)

sync_api = pytest.importorskip("playwright.sync_api", exc_type=ImportError,
                               reason="Playwright for Python is not installed")
expect = sync_api.expect

pytestmark = pytest.mark.slow

PHONE = (3264, 2448)
FIXES = {"phone.jpg": (48.1371, 11.5754), "sesame-gps.jpg": (-33.8651432, 151.2099123)}
# bench_reliability.py's limits (serving/static/reliability.js)
MIN_VEGETATION, MAX_UNEXPLAINED, MIN_STRONGEST = 0.02, 0.3, 0.5


@dataclass
class Walk:
    page: Any
    server: LiveServer
    first: list[Upload]               # the first pick of photos (upload session 1)
    second: list[Upload]              # the second pick (session 2)
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def uploads(self) -> list[Upload]:
        return [*self.first, *self.second]


def slider(page: Any, value: float) -> None:
    text = f"{value:.2f}"
    page.eval_on_selector(
        "#conf", "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }", text)
    expect(page.locator("#photos")).to_have_attribute("data-threshold", text)


@pytest.fixture(scope="module")
def walk(browser: Any, web_server: LiveServer, shared_data: Path) -> Iterator[Walk]:
    cwfid = sorted((shared_data / "cwfid" / "images" / "val").glob("*.png"))
    sesame = sorted((shared_data / "sesame" / "images" / "val").glob("*.jpeg"))
    if not cwfid or not sesame:
        pytest.skip("no cwfid or sesame val photos under ../shared/data")
    big = cv2.resize(cv2.imread(str(cwfid[0])), PHONE, interpolation=cv2.INTER_CUBIC)
    phone = with_gps(images.encode(big, ".jpg"), *FIXES["phone.jpg"], "JPEG")
    first = [Upload("phone.jpg", phone, "image/jpeg"),
             Upload("sesame-gps.jpg", with_gps(sesame[0].read_bytes(), *FIXES["sesame-gps.jpg"], "JPEG"),
                    "image/jpeg")]
    second = [Upload(cwfid[1].name, cwfid[1].read_bytes(), "image/png"),
              Upload("synthetic.jpg", images.encode(images.field_like(320, 240, seed=1), ".jpg"), "image/jpeg")]
    context, page, requests, errors = open_page(browser, web_server.url + "/")
    expect(page.locator("#model-info")).to_contain_text("Model:")
    page.get_by_label("Choose photos").set_input_files([u.payload() for u in first])
    wait_finished(page, timeout=180_000)
    page.get_by_label("Choose photos").set_input_files([u.payload() for u in second])
    wait_finished(page, timeout=180_000)
    for upload in [*first, *second]:
        expect(page.locator(f'li.photo[data-file="{upload.name}"]')).to_have_attribute("data-status", "done")
    yield Walk(page, web_server, first, second, requests, errors)
    context.close()


@pytest.fixture(autouse=True)
def viewer_closed_after(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "walk" in request.fixturenames:
        page = request.getfixturevalue("walk").page
        if page.locator("#viewer").is_visible():
            page.keyboard.press("Escape")


def close(a: list[tuple], b: list[tuple], tol: float = 1.0) -> bool:
    return len(a) == len(b) and all(
        x[0] == y[0] and all(abs(u - v) <= tol for u, v in zip(x[1:], y[1:])) for x, y in zip(a, b))


def test_a_phone_photo_shows_the_apis_boxes_counts_and_cover_after_one_upload(walk: Walk) -> None:
    page, http = walk.page, walk.server.http
    phone = walk.first[0]
    sent = [u for u in walk.requests if "/v1/detect" in u]
    assert len(sent) == len(walk.uploads), f"one upload per photo: {sent}"
    answers = {t: detect(http, phone, t) for t in (0.25, 0.5)}
    assert answers[0.25]["image"] == {"width": PHONE[0], "height": PHONE[1]}
    assert len(answers[0.25]["detections"]) > len(answers[0.5]["detections"]) > 0, "nothing to compare"
    for threshold, answer in answers.items():
        slider(page, threshold)
        assert close(shown_boxes(page, phone.name), api_boxes(answer)), (
            f"at conf {threshold} the page's boxes differ from POST /v1/detect's")
        row = page.locator(f'#summary-body tr[data-file="{phone.name}"]')
        for cls, count in answer["counts"].items():
            expect(row.locator(f'td[data-col="{cls}"]')).to_have_text(str(count))
        expect(row.locator('td[data-col="weed_cover"]')).to_have_text(page_cover_text(answer["weed_cover"]))
    assert [u for u in walk.requests if "/v1/detect" in u] == sent, "the slider sent the photo again"


def test_the_phone_photo_gets_the_same_boxes_in_the_page_the_api_detect_and_batch(
        walk: Walk, shipped_model: Path, tmp_path: Path) -> None:
    """One 3264x2448 photo at one threshold: the page (one upload at its floor, filtered in the
    browser), POST /v1/detect, `weedscan detect` and `weedscan batch` give the same boxes (within
    1 px), counts and weed cover."""
    from typer.testing import CliRunner

    from tests.batch.helpers import read_jsonl
    from weedscan_cli import app

    page, phone, threshold = walk.page, walk.first[0], 0.25
    photo = tmp_path / phone.name
    photo.write_bytes(phone.data)
    ran = CliRunner().invoke(app, ["detect", str(photo), "--conf", str(threshold), "--model", str(shipped_model)])
    assert ran.exit_code == 0, ran.output
    cli = json.loads(ran.stdout.strip().splitlines()[-1])
    ran = CliRunner().invoke(app, ["batch", str(photo), "--out", str(tmp_path / "out"), "--conf", str(threshold),
                                   "--model", str(shipped_model)])
    assert ran.exit_code == 0, ran.output
    batch = read_jsonl(tmp_path / "out")[0]
    api = detect(walk.server.http, phone, threshold)
    slider(page, threshold)
    shown = shown_boxes(page, phone.name)
    assert shown, "no box on the phone photo: nothing was compared"
    row = page.locator(f'#summary-body tr[data-file="{phone.name}"]')
    for name, answer in (("POST /v1/detect", api), ("weedscan detect", cli), ("weedscan batch", batch)):
        assert answer["image"] == {"width": PHONE[0], "height": PHONE[1]}, name
        assert close(shown, api_boxes(answer)), f"the page and {name} differ at conf {threshold}"
        for cls, count in answer["counts"].items():
            expect(row.locator(f'td[data-col="{cls}"]')).to_have_text(str(count))
        expect(row.locator('td[data-col="weed_cover"]')).to_have_text(page_cover_text(answer["weed_cover"]))


def test_the_run_length_decoder_reads_the_servers_encoding(walk: Walk) -> None:
    mask = np.random.default_rng(3).random((37, 53)) > 0.6
    mask[0, 0] = True                                   # the first run of 0s is empty
    runs = {"width": 53, "height": 37, "counts": encode_runs(mask)}
    decoded = walk.page.evaluate(
        """async runs => { const m = await import('/static/cover.js');
                           const d = m.decodeRuns(runs);
                           const bad = [];
                           for (const counts of [[1, 2], [-1, 1962], [1960, 2.5]]) {
                             try { m.decodeRuns({...runs, counts}); } catch { bad.push(true); continue; }
                             bad.push(false);
                           }
                           return [Array.from(d.pixels).join(''), d.plants, bad]; }""", runs)
    bits, plants, refused = decoded
    assert bits == "".join("1" if v else "0" for v in mask.ravel()) and plants == int(mask.sum())
    assert refused == [True, True, True], "runs that do not fill the mask exactly are refused"
    assert (decode_runs(runs["counts"], 53, 37) == mask).all()


def figure_box(page: Any) -> dict[str, float]:
    return page.locator("#viewer-figure").bounding_box()


def test_zoom_and_pan_in_the_large_view(walk: Walk) -> None:
    page = walk.page
    slider(page, 0.25)
    page.locator('li.photo[data-file="phone.jpg"] .photo-open').click()
    expect(page.locator("#viewer")).to_be_visible()
    before = figure_box(page)
    point = (before["x"] + before["width"] * 0.3, before["y"] + before["height"] * 0.4)
    page.mouse.move(*point)
    page.mouse.wheel(0, -400)                           # the wheel zooms in at the pointer
    expect(page.locator("#viewer-figure")).not_to_have_attribute("data-zoom", "1.000")
    zoom = float(page.get_attribute("#viewer-figure", "data-zoom"))
    after = figure_box(page)
    assert zoom > 1.5 and after["width"] == pytest.approx(before["width"] * zoom, rel=0.01)
    # the photo point under the pointer stays under it
    assert ((point[0] - after["x"]) / after["width"]
            == pytest.approx((point[0] - before["x"]) / before["width"], abs=0.01))
    # the boxes stay on their plants: the same place relative to the photo
    box = page.locator("#viewer svg.overlay g.box:not([hidden])").first.bounding_box()
    image = page.locator("#viewer-img").bounding_box()
    assert image["width"] == pytest.approx(after["width"], rel=0.01) and box["x"] >= image["x"] - 5
    page.mouse.down()                                   # a drag pans
    page.mouse.move(point[0] + 120, point[1] + 60, steps=5)
    page.mouse.up()
    panned = figure_box(page)
    # it moves with the pointer, but never so far that the photo stops filling its place
    assert panned["x"] == pytest.approx(min(after["x"] + 120, before["x"]), abs=2), (after, panned)
    assert panned["y"] == pytest.approx(min(after["y"] + 60, before["y"]), abs=2), (after, panned)
    page.keyboard.press("0")                            # back to the whole photo
    expect(page.locator("#viewer-figure")).to_have_attribute("data-zoom", "1.000")
    # two fingers pinch
    centre = (before["x"] + before["width"] / 2, before["y"] + before["height"] / 2)
    page.evaluate(
        """([x, y]) => { const s = document.getElementById('viewer-stage');
            const ev = (type, id, dx) => s.dispatchEvent(new PointerEvent(type, {pointerId: id,
              pointerType: 'touch', isPrimary: id === 1, clientX: x + dx, clientY: y, bubbles: true}));
            ev('pointerdown', 1, -40); ev('pointerdown', 2, 40);
            ev('pointermove', 1, -120); ev('pointermove', 2, 120);
            ev('pointerup', 1, -120); ev('pointerup', 2, 120); }""", list(centre))
    assert float(page.get_attribute("#viewer-figure", "data-zoom")) == pytest.approx(3.0, rel=0.02)
    page.get_by_role("button", name="Zoom out").click()
    assert float(page.get_attribute("#viewer-figure", "data-zoom")) == pytest.approx(2.0, rel=0.02)
    page.get_by_role("button", name="Fit").click()
    expect(page.locator("#viewer-figure")).to_have_attribute("data-zoom", "1.000")
    page.keyboard.press("Escape")
    assert not walk.errors, walk.errors


def test_previous_and_next_photo_with_buttons_and_arrow_keys(walk: Walk) -> None:
    page = walk.page
    names = [u.name for u in walk.uploads]
    page.locator(f'li.photo[data-file="{names[0]}"] .photo-open').click()
    title = page.locator("#viewer-title")
    expect(title).to_have_text(names[0])
    expect(page.get_by_role("button", name="← Previous")).to_be_disabled()
    expect(page.locator("#viewer-position")).to_have_text(f"Photo 1 of {len(names)}")
    page.keyboard.press("ArrowRight")
    expect(title).to_have_text(names[1])
    page.get_by_role("button", name="Next →").click()
    expect(title).to_have_text(names[2])
    assert shown_boxes(page, names[2], "#viewer") == shown_boxes(page, names[2]), "the new photo's boxes"
    page.keyboard.press("ArrowRight")
    expect(title).to_have_text(names[3])
    expect(page.get_by_role("button", name="Next →")).to_be_disabled()
    page.keyboard.press("ArrowLeft")
    expect(title).to_have_text(names[2])
    expect(page.locator("#viewer-position")).to_have_text(f"Photo 3 of {len(names)}")
    page.keyboard.press("Escape")
    expect(page.locator("#viewer")).to_be_hidden()
    expect(page.get_by_role("button", name=f"View {names[0]} large")).to_be_focused()


def test_geojson_download_of_the_geotagged_photos(walk: Walk) -> None:
    page = walk.page
    slider(page, 0.25)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download map (GeoJSON)").click()
    assert download.value.suggested_filename.endswith(".geojson")
    collection = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert collection["type"] == "FeatureCollection"
    features = {f["properties"]["file"]: f for f in collection["features"]}
    assert set(features) == set(FIXES), "only the photos with a GPS fix, each once"
    for name, (lat, lon) in FIXES.items():
        feature = features[name]
        assert feature["geometry"]["type"] == "Point"
        assert feature["geometry"]["coordinates"] == pytest.approx([lon, lat], abs=1e-6), "[lon, lat]"
        row = page.locator(f'#summary-body tr[data-file="{name}"]')
        for cls in ("crop", "weed"):
            assert str(feature["properties"][cls]) == row.locator(f'td[data-col="{cls}"]').inner_text()
        assert page_cover_text(feature["properties"]["weed_cover"]) == row.locator(
            'td[data-col="weed_cover"]').inner_text()
        assert feature["properties"]["conf"] == 0.25 and feature["properties"]["session"] == 1


def test_a_summary_per_upload_session(walk: Walk) -> None:
    page = walk.page
    slider(page, 0.25)
    rows = page.locator("#sessions-body tr")
    expect(rows).to_have_count(2)
    for index, uploads in ((1, walk.first), (2, walk.second)):
        row = page.locator(f'#sessions-body tr[data-session="{index}"]')
        expect(row.locator("th")).to_contain_text(f"Upload {index}")
        expect(row.locator('td[data-col="photos"]')).to_have_text(str(len(uploads)))
        covers = []
        for cls in ("crop", "weed"):
            total = sum(int(page.locator(f'#summary-body tr[data-file="{u.name}"] td[data-col="{cls}"]').inner_text())
                        for u in uploads)
            expect(row.locator(f'td[data-col="{cls}"]')).to_have_text(str(total))
        for u in uploads:
            text = page.locator(f'#summary-body tr[data-file="{u.name}"] td[data-col="weed_cover"]').inner_text()
            covers.append(float(text.split("\u00a0")[0]))
        shown = float(re.sub(r"[^\d.]", "", row.locator('td[data-col="mean_cover"]').inner_text()))
        assert shown == pytest.approx(np.mean(covers), abs=0.06), "the mean cover of the session's photos"
        warned = sum(page.get_attribute(f'li.photo[data-file="{u.name}"]', "data-unreliable") == "true"
                     for u in uploads)
        expect(row.locator('td[data-col="unreliable"]')).to_have_text(str(warned))
    expect(page.locator("#sessions thead")).to_contain_text("Mean weed cover")


def judgement(answer: dict[str, Any], threshold: float) -> tuple[float, float, float, bool]:
    """bench_reliability.py's figures from an answer asked with the plant mask."""
    runs = answer["vegetation_mask"]
    mask = decode_runs(runs["counts"], runs["width"], runs["height"])
    shown = [d["box"] for d in answer["detections"] if d["confidence"] >= threshold - 1e-9]
    boxes = np.array([[b["x1"], b["y1"], b["x2"], b["y2"]] for b in shown], np.float64).reshape(-1, 4)
    scale = np.array([mask.shape[1] / answer["image"]["width"], mask.shape[0] / answer["image"]["height"]] * 2)
    plants = int(mask.sum())
    unexplained = float((mask & ~box_raster(boxes * scale, mask.shape)).sum()) / plants if plants else 0.0
    strongest = max((d["confidence"] for d in answer["detections"]), default=0.0)
    vegetation = plants / mask.size
    warns = vegetation >= MIN_VEGETATION and (unexplained > MAX_UNEXPLAINED or strongest < MIN_STRONGEST)
    return vegetation, unexplained, strongest, warns


def test_a_plain_warning_where_the_answer_is_unreliable(walk: Walk) -> None:
    page, http = walk.page, walk.server.http
    slider(page, 0.25)
    verdicts = {}
    for upload in walk.uploads:
        answer = http.post("/v1/detect", params={"conf": PAGE_FLOOR, "vegetation_mask": "true"},
                           files={"image": (upload.name, upload.data, upload.mime)}).json()
        vegetation, unexplained, strongest, warns = judgement(answer, 0.25)
        card = page.locator(f'li.photo[data-file="{upload.name}"]')
        assert float(card.get_attribute("data-unexplained")) == pytest.approx(unexplained, abs=1e-6)
        assert float(card.get_attribute("data-vegetation")) == pytest.approx(vegetation, abs=1e-6)
        assert float(card.get_attribute("data-strongest")) == pytest.approx(strongest, abs=1e-9)
        expect(card).to_have_attribute("data-unreliable", str(warns).lower())
        warning = card.locator(".photo-warning")
        if warns:
            expect(warning).to_be_visible()
            expect(warning).to_contain_text("The model may not know this field")
            expect(warning.get_by_role("link", name="teach weedscan this field")).to_have_attribute("href", "#fields")
        else:
            expect(warning).to_be_hidden()
        verdicts[upload.name] = warns
    assert verdicts["synthetic.jpg"] and not all(verdicts.values()), (
        f"the check needs a photo that warns and one that does not: {verdicts}")
    page.locator('li.photo[data-file="synthetic.jpg"] .photo-open').click()
    expect(page.locator("#viewer-warning")).to_contain_text("The model may not know this field")
    page.keyboard.press("Escape")


def test_column_titles_fit_the_mode(browser: Any, web_server: LiveServer) -> None:
    context, page, _, errors = open_page(browser, web_server.url + "/")
    expect(page.locator("#model-info")).to_contain_text("Model:")
    page.get_by_label("Choose photos").set_input_files([
        {"name": "plot.jpg", "mimeType": "image/jpeg",
         "buffer": images.encode(images.field_like(320, 240, seed=2), ".jpg")}])
    wait_finished(page)
    head, sessions = page.locator("#summary-head"), page.locator("#sessions thead")
    expect(head).to_contain_text("Weed cover")
    expect(sessions).to_contain_text("Mean weed cover")
    page.get_by_label("Every green plant").check()
    wait_finished(page)
    expect(page.locator('li.photo[data-file="plot.jpg"]')).to_have_attribute("data-status", "done")
    expect(head).to_contain_text("Plant cover")
    expect(head).not_to_contain_text("Weed")
    expect(sessions).to_contain_text("Mean plant cover")
    expect(page.locator("#cover-help strong")).to_have_text("Plant cover")
    expect(page.locator('li.photo[data-file="plot.jpg"] .photo-counts')).to_contain_text("plant\u00a0cover")
    expect(page.locator('li.photo[data-file="plot.jpg"] .photo-warning')).to_be_hidden()
    page.get_by_label("Crops and weeds").check()
    wait_finished(page)
    expect(head).to_contain_text("Weed cover")
    assert not errors, errors
    context.close()
