"""The agronomists' page (GET /) in real headless Chromium against a real server on loopback.

What the page shows is checked against what the API answers for the same photo and the same
confidence threshold, never against a fixed number of boxes: the shipped model will change.
The screenshots (desktop and phone, a real field photo with its boxes) land in /tmp/page-shots.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image

from serving.answer import BatchRecord, summary_header
from serving.batch.outputs import summary_csv
from serving.exif_gps import read_gps
from serving.mask_rle import decode_runs
from serving.vegetation import vegetation_mask
from tests import images
from tests.serving.conftest import LiveServer

sync_api = pytest.importorskip(
    "playwright.sync_api", exc_type=ImportError,
    reason="Playwright for Python is not installed: .venv/bin/pip install -e '.[dev]'")
expect = sync_api.expect

pytestmark = pytest.mark.slow

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SCREENS = Path("/tmp/page-shots")
PAGE_FLOOR = 0.05                 # what the page asks /v1/detect for when the URL says nothing
FALLBACK_FLOORS = (0.01, 0.001)   # for a model too weak to find anything at the page's floor
CSV_HEADER = summary_header(["crop", "weed"])  # the one summary schema, as batch's summary.csv
COVER_HELP = ("share of the photo covered by weed plants (vegetation pixels inside weed boxes, "
              "not in crop boxes)")
BOX = "svg.overlay g.box[data-class]"
TIMEOUT_MS = 60_000
BROKEN = "broken.jpg"

expect.set_options(timeout=TIMEOUT_MS)


@dataclass
class Upload:
    name: str
    data: bytes
    mime: str

    def payload(self) -> dict[str, Any]:
        return {"name": self.name, "mimeType": self.mime, "buffer": self.data}


@dataclass
class Session:
    page: Any
    server: LiveServer
    uploads: list[Upload]
    floor: float
    step: float
    decimals: int
    middle: float                 # a slider position that must hide some boxes
    scored: list[tuple[float, str]]   # (confidence, class) of every box at the floor
    requests: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)


# ---- helpers --------------------------------------------------------------------------------

def detect(http: httpx.Client, upload: Upload, conf: float) -> dict[str, Any]:
    response = http.post("/v1/detect", params={"conf": conf},
                         files={"image": (upload.name, upload.data, upload.mime)})
    assert response.status_code == 200, response.text
    return response.json()


def box_key(cls: str, x1: float, y1: float, x2: float, y2: float) -> tuple:
    return (cls, round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1))


def api_boxes(answer: dict[str, Any]) -> list[tuple]:
    return sorted(box_key(d["class_name"], *(d["box"][k] for k in ("x1", "y1", "x2", "y2")))
                  for d in answer["detections"])


def shown_boxes(page: Any, name: str, scope: str | None = None) -> list[tuple]:
    scope = scope or f'li.photo[data-file="{name}"]'
    raw = page.eval_on_selector_all(
        f'{scope} {BOX}:not([hidden]) rect.line',
        """rects => rects.map(r => [r.parentNode.dataset.class, +r.getAttribute('x'),
                                  +r.getAttribute('y'), +r.getAttribute('x') + +r.getAttribute('width'),
                                  +r.getAttribute('y') + +r.getAttribute('height')])""")
    return sorted(box_key(*r) for r in raw)


def shown_locator(page: Any, name: str, cls: str | None = None) -> Any:
    which = f'[data-class="{cls}"]' if cls else "[data-class]"
    return page.locator(f'li.photo[data-file="{name}"] svg.overlay g.box{which}:not([hidden])')


def wait_covers(page: Any) -> None:
    """Until the server has answered the weed cover of every photo at the slider's threshold."""
    expect(page.locator('td[data-col="weed_cover"][data-state="pending"]')).to_have_count(0)


def page_cover_text(fraction: float) -> str:
    """The page's formatCover."""
    pct = fraction * 100
    return f"{pct:.2f}\u00a0%" if 0 < pct < 1 else f"{pct:.1f}\u00a0%"


def set_slider(session: Session, value: float) -> None:
    text = f"{value:.{session.decimals}f}"
    session.page.eval_on_selector(
        "#conf", "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }",
        text)
    expect(session.page.locator("#conf-value")).to_have_text(f"≥ {text}")
    expect(session.page.locator("#photos")).to_have_attribute("data-threshold", text)


def wait_finished(page: Any, timeout: float = TIMEOUT_MS) -> None:
    expect(page.locator("#status")).to_have_attribute("data-state", "finished", timeout=timeout)


def choose_floor(http: httpx.Client, uploads: list[Upload]) -> float:
    """The page's own floor when the model finds boxes there, else a lower one (with a warning)."""
    for floor in (PAGE_FLOOR, *FALLBACK_FLOORS):
        scores = {round(d["confidence"], 4) for u in uploads for d in detect(http, u, floor)["detections"]}
        if len(scores) >= 2:
            if floor != PAGE_FLOOR:
                warnings.warn(f"the shipped model finds no boxes at conf>={PAGE_FLOOR} on "
                              f"{[u.name for u in uploads]}; the page is tested with "
                              f"?min_conf={floor} instead", UserWarning, stacklevel=1)
            return floor
    pytest.fail(f"the model found no boxes (or only boxes of a single confidence) on "
                f"{[u.name for u in uploads]} even at conf={FALLBACK_FLOORS[-1]}: the page's boxes "
                f"and slider cannot be checked. Is models/weedscan.onnx a trained model?")


def pick_middle(scores: list[float], floor: float, step: float) -> float:
    """A slider position (on the slider's grid) with as many boxes below it as possible above,
    at least one below, and no box's confidence exactly on it."""
    best, best_key = None, None
    steps = round((1 - floor) / step)
    for k in range(1, steps + 1):
        t = round(floor + k * step, 6)
        if any(abs(s - t) < 1e-9 for s in scores):
            continue
        below = sum(s < t for s in scores)
        if below == 0:
            continue
        key = (min(below, len(scores) - below), below)
        if best_key is None or key > best_key:
            best, best_key = t, key
    assert best is not None, f"no slider position between the confidences {sorted(set(scores))}"
    return best


def open_page(browser: Any, url: str, viewport: dict[str, int] = DESKTOP) -> tuple[Any, Any, list, list]:
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    requests: list[str] = []
    errors: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    # Console errors too (a CSP violation shows there), except the browser's note on each 4xx/5xx
    # answer, which the tests cause on purpose.
    page.on("console", lambda m: errors.append(m.text) if m.type == "error"
            and not m.text.startswith("Failed to load resource") else None)
    page.goto(url)
    return context, page, requests, errors


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def synthetic_jpeg(seed: int, width: int = 320, height: int = 240) -> bytes:
    return images.encode(images.field_like(width, height, seed=seed), ".jpg")


# ---- the main session: two real photos and a broken file ------------------------------------

@pytest.fixture(scope="module")
def real_uploads(shared_data: Path) -> list[Upload]:
    sesame = sorted((shared_data / "sesame" / "images" / "val").glob("*.jpeg"))
    cwfid = sorted((shared_data / "cwfid" / "images" / "val").glob("*.png"))
    if not sesame or not cwfid:
        pytest.skip("no sesame val .jpeg or cwfid val .png under ../shared/data")
    return [Upload(sesame[0].name, sesame[0].read_bytes(), "image/jpeg"),
            Upload(cwfid[0].name, cwfid[0].read_bytes(), "image/png")]


@pytest.fixture(scope="module")
def session(browser: Any, web_server: LiveServer, real_uploads: list[Upload]) -> Iterator[Session]:
    floor = choose_floor(web_server.http, real_uploads)
    url = web_server.url + "/" + ("" if floor == PAGE_FLOOR else f"?min_conf={floor}")
    context, page, requests, errors = open_page(browser, url)
    expect(page.locator("#model-info")).to_contain_text("Model:")
    limits = page.eval_on_selector("#conf", "el => [+el.min, +el.step]")
    assert limits[0] == pytest.approx(floor), "the slider must start at the floor asked of the API"
    decimals = 4 if limits[1] < 0.01 else 2
    scored = [(round(d["confidence"], 4), d["class_name"]) for u in real_uploads
              for d in detect(web_server.http, u, floor)["detections"]]
    scores = [score for score, _ in scored]
    broken = Upload(BROKEN, b"this is not a photo, just some text\n" * 20, "image/jpeg")
    uploads = [*real_uploads, broken]
    page.get_by_label("Choose photos").set_input_files([u.payload() for u in uploads])
    wait_finished(page)
    wait_covers(page)
    yield Session(page, web_server, real_uploads, floor, limits[1], decimals,
                  pick_middle(scores, floor, limits[1]), scored, requests, errors)
    context.close()


@pytest.fixture(autouse=True)
def viewer_closed_after(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that fails with the large view open must not leave it over the next test's page."""
    yield
    if "session" in request.fixturenames:
        page = request.getfixturevalue("session").page
        if page.locator("#viewer").is_visible():
            page.keyboard.press("Escape")
            expect(page.locator("#viewer")).to_be_hidden()


def test_boxes_drawn_match_the_api_and_the_slider_hides_some(session: Session) -> None:
    page, http = session.page, session.server.http
    totals = {}
    for threshold in (session.floor, session.middle):
        set_slider(session, threshold)
        total = 0
        for upload in session.uploads:
            answer = detect(http, upload, threshold)
            for cls, count in answer["counts"].items():
                expect(shown_locator(page, upload.name, cls)).to_have_count(count)
                row = page.locator(f'#summary-body tr[data-file="{upload.name}"] td[data-col="{cls}"]')
                expect(row).to_have_text(str(count))
            assert shown_boxes(page, upload.name) == api_boxes(answer), (
                f"{upload.name} at conf {threshold}: the boxes drawn differ from the API's")
            total += len(answer["detections"])
        totals[threshold] = total
    assert totals[session.floor] > 0, "no boxes at the floor: nothing was checked"
    assert totals[session.middle] < totals[session.floor], (
        f"moving the slider from {session.floor} to {session.middle} hid no box: {totals}")


def test_one_upload_per_photo_and_the_slider_sends_nothing(session: Session) -> None:
    """Each photo goes to /v1/detect once (with the plant mask); the boxes, the counts and the
    weed cover follow the slider without another upload, and every analysed photo has a cover."""
    page = session.page
    detects = [u for u in session.requests if "/v1/detect" in u]
    assert len(detects) == len(session.uploads) + 1, f"one upload per photo (and the broken file): {detects}"
    assert all("vegetation_mask=true" in u for u in detects), detects
    set_slider(session, session.floor)
    all_shown = page.locator(f"{BOX}:not([hidden])").count()
    for threshold in (session.middle, 1.0, session.floor, session.middle):
        set_slider(session, threshold)
        page.wait_for_timeout(600)          # longer than any wait for the slider to rest
        for upload in session.uploads:
            cover = page.locator(f'#summary-body tr[data-file="{upload.name}"] td[data-col="weed_cover"]')
            expect(cover).to_have_text(re.compile(r"^\d+(\.\d+)?\u00a0%$"))
    set_slider(session, session.floor)
    expect(page.locator(f"{BOX}:not([hidden])")).to_have_count(all_shown)
    page.locator("#conf").focus()                      # the keyboard moves it too
    page.keyboard.press("End")
    expect(page.locator("#conf-value")).to_have_text(f"≥ {1:.{session.decimals}f}")
    expect(page.locator(f"{BOX}:not([hidden])")).to_have_count(0)
    page.keyboard.press("Home")
    expect(page.locator(f"{BOX}:not([hidden])")).to_have_count(all_shown)
    page.wait_for_timeout(600)
    assert [u for u in session.requests if "/v1/detect" in u] == detects, "the slider sent photos again"


def test_weed_cover_is_the_servers_plant_area(session: Session) -> None:
    page, http = session.page, session.server.http
    expect(page.locator("#cover-help")).to_contain_text(COVER_HELP)
    expect(page.locator("#summary-head")).to_contain_text("Weed cover")
    expect(page.locator("body")).not_to_contain_text("box cover")
    for threshold in (session.floor, session.middle):
        set_slider(session, threshold)
        wait_covers(page)
        for upload in session.uploads:
            answer = detect(http, upload, threshold)
            text = page_cover_text(answer["weed_cover"])
            expect(page.locator(f'#summary-body tr[data-file="{upload.name}"] td[data-col="weed_cover"]')
                   ).to_have_text(text)
            expect(page.locator(f'li.photo[data-file="{upload.name}"] .photo-counts')
                   ).to_contain_text(f"weed\u00a0cover\u00a0{text}")


def test_broken_file_gets_a_message_and_the_others_carry_on(session: Session) -> None:
    page = session.page
    broken = page.locator(f'li.photo[data-file="{BROKEN}"]')
    expect(broken).to_have_attribute("data-status", "failed")
    expect(broken.locator(".photo-error")).to_contain_text("could not be read as an image")
    expect(page.locator(f'#summary-body tr[data-file="{BROKEN}"] td[data-col="status"]')
           ).to_contain_text("Failed")
    for upload in session.uploads:
        expect(page.locator(f'li.photo[data-file="{upload.name}"]')).to_have_attribute(
            "data-status", "done")
    expect(page.locator("#status")).to_have_text(
        "Finished: 2 photos analysed, 1 failed — see the messages below.")


def test_csv_download_has_one_row_per_photo_with_the_page_numbers(session: Session) -> None:
    page, http = session.page, session.server.http
    set_slider(session, session.middle)
    wait_covers(page)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download table (CSV)").click()
    assert download.value.suggested_filename.endswith(".csv")
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    assert rows[0] == CSV_HEADER
    table = {row[0]: dict(zip(CSV_HEADER, row)) for row in rows[1:]}
    assert list(table) == [*(u.name for u in session.uploads), BROKEN], "one row per photo, in order"
    assert "could not be read as an image" in table[BROKEN]["error"]
    assert table[BROKEN]["weed"] == table[BROKEN]["weed_cover"] == ""
    for upload in session.uploads:
        row, answer = table[upload.name], detect(http, upload, session.middle)
        assert [int(row["crop"]), int(row["weed"])] == [answer["counts"]["crop"], answer["counts"]["weed"]]
        # the server's plant-area cover of the boxes above the slider, and its box-area figure,
        # as fractions like the API's (and batch's summary.csv)
        assert float(row["weed_cover"]) == pytest.approx(answer["weed_cover"], abs=1e-6)
        assert float(row["weed_box_cover"]) == pytest.approx(answer["weed_box_cover"], abs=1e-6)
        assert float(row["conf"]) == pytest.approx(session.middle)
        assert [row["mode"], row["latitude"], row["longitude"], row["error"]] == ["model", "", "", ""]
    # The same bytes as `weedscan batch`'s summary.csv for the same answers (CRLF, quoting, numbers),
    # but for the failed file's message, which is the page's own.
    raw = Path(download.value.path()).read_bytes().decode("utf-8")
    records = [BatchRecord.model_validate({**detect(http, u, session.middle), "path": u.name})
               for u in session.uploads]
    batch = summary_csv(records, conf=session.middle).split("\r\n")
    ours = raw.split("\r\n")
    assert ours[:len(batch) - 1] == batch[:-1] and ours[-1] == batch[-1] == "", (ours, batch)


def test_json_and_png_downloads(session: Session) -> None:
    page, http = session.page, session.server.http
    set_slider(session, session.middle)
    wait_covers(page)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download detections (JSON)").click()
    exported = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert exported["min_confidence"] == pytest.approx(session.middle)
    by_file = {p["file"]: p for p in exported["photos"]}
    assert "error" in by_file[BROKEN]
    for upload in session.uploads:
        answer = detect(http, upload, session.middle)
        assert by_file[upload.name]["counts"] == answer["counts"]
        assert len(by_file[upload.name]["detections"]) == len(answer["detections"])
        assert by_file[upload.name]["weed_cover"] == pytest.approx(answer["weed_cover"], abs=1e-6)
    first = session.uploads[0]
    with page.expect_download() as download:
        page.get_by_role("button", name=f"Download {first.name} with boxes as PNG").click()
    png = Path(download.value.path()).read_bytes()
    answer = detect(http, first, session.middle)
    assert png_size(png) == (answer["image"]["width"], answer["image"]["height"])


def test_page_talks_to_this_server_only(session: Session) -> None:
    own = session.server.url + "/"
    strangers = [u for u in session.requests if not u.startswith((own, "blob:", "data:"))]
    assert not strangers, f"the page fetched from elsewhere: {strangers}"
    assert not session.page_errors, f"uncaught errors in the page: {session.page_errors}"
    sources = session.page.eval_on_selector_all("li.photo img", "imgs => imgs.map(i => i.src)")
    assert sources and all(src.startswith("blob:") for src in sources), sources


def test_keyboard_and_labels(session: Session) -> None:
    page = session.page
    unlabelled = page.eval_on_selector_all(
        "input, select, textarea",
        "els => els.filter(e => !e.labels || e.labels.length === 0).map(e => e.id || e.outerHTML)")
    assert not unlabelled, f"inputs without a label: {unlabelled}"
    assert page.get_attribute("#status", "aria-live") == "polite"
    page.locator(".skip-link").focus()                 # the first stop on the page
    expect(page.locator(".skip-link")).to_be_in_viewport()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "file-input"
    outline = page.eval_on_selector("label[for=file-input]", "l => getComputedStyle(l).outlineStyle")
    assert outline != "none", "the file picker shows no focus ring"


# ---- looking at the photos: labels, the large view, the mask, GPS, green-on-brown -----------

def css_rgb(colour: str) -> tuple[float, float, float]:
    """'rgb(r, g, b)' or '#rrggbb' as 0-255 floats."""
    if colour.startswith("#"):
        return tuple(float(int(colour[i:i + 2], 16)) for i in (1, 3, 5))  # type: ignore[return-value]
    parts = re.findall(r"[\d.]+", colour)[:3]
    return tuple(float(v) for v in parts)  # type: ignore[return-value]


def luminance(rgb: tuple[float, ...]) -> float:
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (v / 255 for v in rgb)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def box_strokes(page: Any, scope: str, cls: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    line, halo = page.eval_on_selector(
        f'{scope} {BOX}[data-class="{cls}"]',
        "g => [getComputedStyle(g.querySelector('.line')).stroke,"
        " getComputedStyle(g.querySelector('.halo')).stroke]")
    return css_rgb(line), css_rgb(halo)


def test_crop_boxes_stand_out_on_green_plants_and_from_weed_boxes(session: Session) -> None:
    page, http = session.page, session.server.http
    set_slider(session, session.floor)
    field = session.uploads[1]                  # CWFID: crop and weed boxes on green plants
    answer = detect(http, field, session.floor)
    crops = [d["box"] for d in answer["detections"] if d["class_name"] == "crop"]
    if not crops or not answer["counts"]["weed"]:
        pytest.skip(f"the model finds no crop or no weed in {field.name}")
    image = cv2.imdecode(np.frombuffer(field.data, np.uint8), cv2.IMREAD_COLOR)
    plant = vegetation_mask(image).mask
    inside = np.zeros_like(plant)
    for b in crops:
        inside[int(b["y1"]):int(b["y2"]), int(b["x1"]):int(b["x2"])] = True
    green = tuple(float(v) for v in image[plant & inside].mean(axis=0)[::-1])   # RGB
    scope = f'li.photo[data-file="{field.name}"]'
    crop_line, crop_halo = box_strokes(page, scope, "crop")
    weed_line, _ = box_strokes(page, scope, "weed")
    assert contrast(crop_line, green) >= 3, (
        f"crop boxes {crop_line} are hard to see on the crop's leaves {green}")
    assert contrast(crop_line, crop_halo) >= 7, "the double outline needs a light line on a dark halo"
    assert contrast(crop_halo, (200.0, 190.0, 170.0)) >= 7, "the halo must read on pale soil too"
    assert np.linalg.norm(np.subtract(crop_line, weed_line)) > 150 and contrast(crop_line, weed_line) >= 2, (
        f"crop {crop_line} and weed {weed_line} boxes must differ, in brightness too (colour blindness)")
    legend = page.eval_on_selector_all("#legend .swatch", "s => s.map(e => [e.dataset.class, "
                                       "getComputedStyle(e).borderTopColor])")
    assert {cls: css_rgb(c) for cls, c in legend} == {"crop": crop_line, "weed": weed_line}


def test_box_labels_show_class_and_confidence_on_hover(session: Session) -> None:
    page = session.page
    set_slider(session, session.floor)
    name = session.uploads[1].name
    card = page.locator(f'li.photo[data-file="{name}"]')
    top = card.locator(f"{BOX}:not([hidden])").last       # drawn last: the smallest, on top
    cls, conf = top.get_attribute("data-class"), float(top.get_attribute("data-confidence"))
    label = card.locator(".box-label")
    expect(label).to_be_hidden()
    top.hover()
    expect(label).to_be_visible()
    expect(label).to_have_text(f"{cls} {conf:.2f}")
    page.mouse.move(1, 1)
    expect(label).to_be_hidden()


def test_a_photo_opens_large_with_its_boxes_labels_on_focus_and_tap(session: Session) -> None:
    page = session.page
    set_slider(session, session.middle)
    name = session.uploads[1].name
    card = page.locator(f'li.photo[data-file="{name}"]')
    viewer = page.locator("#viewer")
    expect(viewer).to_be_hidden()
    card.locator(".figure").click()                        # a click on the photo opens it
    expect(viewer).to_be_visible()
    expect(page.locator("#viewer-title")).to_have_text(name)
    assert shown_boxes(page, name, "#viewer") == shown_boxes(page, name), "the same boxes, large"
    assert shown_boxes(page, name, "#viewer"), "no boxes in the large view: nothing was checked"
    size = page.eval_on_selector("#viewer-figure", "f => [f.clientWidth, f.clientHeight]")
    card_size = page.eval_on_selector(f'li.photo[data-file="{name}"] .figure', "f => f.clientWidth")
    assert size[0] > 1.5 * card_size, f"the large view ({size}) is not larger than the card ({card_size})"
    expect(page.locator("#viewer-counts")).to_have_text(card.locator(".photo-counts").inner_text())
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    open_button = card.get_by_role("button", name=f"View {name} large")
    expect(open_button).to_be_focused()                    # focus goes back where it was
    open_button.press("Enter")
    expect(viewer).to_be_visible()
    expect(page.get_by_role("button", name="Close")).to_be_focused()
    page.keyboard.press("Tab")                             # the keyboard reaches each box
    focused = page.evaluate("[document.activeElement.dataset.class, +document.activeElement.dataset.confidence,"
                            " document.activeElement.getAttribute('aria-label')]")
    label = page.locator("#viewer-label")
    expect(label).to_be_visible()
    expect(label).to_have_text(f"{focused[0]} {focused[1]:.2f}")
    assert focused[2] == f"{focused[0]}, confidence {focused[1]:.2f}"
    # When the layout moves under a resting pointer the browser replays pointerover there (how CI
    # once saw a crop label over a focused weed): the focused box keeps the label.
    page.mouse.move(2, 2)
    replayed = page.evaluate(
        """() => { const boxes = [...document.querySelectorAll('#viewer .box')];
                   const other = boxes.find(b => b !== document.activeElement);
                   other.dispatchEvent(new PointerEvent('pointerover', {bubbles: true, clientX: 2, clientY: 2}));
                   return boxes.length; }""")
    assert replayed > 1, "one box only: the replay was not checked against another box"
    expect(label).to_have_text(f"{focused[0]} {focused[1]:.2f}")
    top = page.locator(f"#viewer {BOX}:not([hidden])").last
    top.click()                                            # a tap (click) on a box
    expect(label).to_have_text(f"{top.get_attribute('data-class')} "
                               f"{float(top.get_attribute('data-confidence')):.2f}")
    page.get_by_role("button", name="Close").click()
    expect(viewer).to_be_hidden()
    assert not session.page_errors


def test_vegetation_mask_overlay_is_the_servers_mask(session: Session, tmp_path: Path) -> None:
    """The overlay is the plant mask the server measures the cover on, as it sent it, pixel for
    pixel (the page no longer computes a mask of its own)."""
    page, http = session.page, session.server.http
    expect(page.locator("li.photo canvas.mask:visible")).to_have_count(0)
    page.locator("#show-mask").check()
    for upload in session.uploads:                    # a JPEG, a PNG
        canvas = page.locator(f'li.photo[data-file="{upload.name}"] canvas.mask')
        expect(canvas).to_have_attribute("data-ready", "true")
        expect(canvas).to_be_visible()
        width, height, bits = canvas.evaluate(
            """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                      const out = new Array(c.width * c.height);
                      for (let i = 0; i < out.length; i += 1) out[i] = d[4 * i + 3] ? '1' : '0';
                      return [c.width, c.height, out.join('')]; }""")
        runs = http.post("/v1/detect", params={"conf": session.floor, "vegetation_mask": "true"},
                         files={"image": (upload.name, upload.data, upload.mime)}).json()["vegetation_mask"]
        server = decode_runs(runs["counts"], runs["width"], runs["height"])
        ours = (np.frombuffer(bits.encode(), np.uint8) == ord("1")).reshape(height, width)
        assert ours.shape == server.shape and (ours == server).all(), f"{upload.name}: not the server's mask"
        assert server.mean() > 0.02, f"{upload.name}: hardly any plant: nothing was checked"
    page.locator(f'li.photo[data-file="{session.uploads[1].name}"] .photo-open').click()
    expect(page.locator("#viewer-show-mask")).to_be_checked()
    expect(page.locator("#viewer-mask")).to_have_attribute("data-ready", "true")
    expect(page.locator("#viewer-mask")).to_be_visible()
    save_screen(page, tmp_path, "weedscan-desktop-large-mask.png", full_page=False)
    page.locator("#viewer-show-mask").uncheck()          # one switch, in both places
    expect(page.locator("#viewer-mask")).to_be_hidden()
    page.keyboard.press("Escape")
    expect(page.locator("#show-mask")).not_to_be_checked()
    expect(page.locator("li.photo canvas.mask:visible")).to_have_count(0)


def test_on_a_phone_a_tap_opens_the_photo_and_a_tap_on_a_box_shows_its_label(
        browser: Any, web_server: LiveServer, real_uploads: list[Upload]) -> None:
    context = browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(web_server.url + "/")
    expect(page.locator("#model-info")).to_contain_text("Model:")
    field = real_uploads[1]
    page.get_by_label("Choose photos").set_input_files([field.payload()])
    wait_finished(page)
    card = page.locator(f'li.photo[data-file="{field.name}"]')
    card.locator(".figure").tap()
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    box = viewer.bounding_box()
    assert box["width"] <= PHONE["width"] + 0.5 and box["height"] <= PHONE["height"] + 0.5, box
    top = page.locator(f"#viewer {BOX}:not([hidden])").last
    if not top.count():
        pytest.skip(f"no box on {field.name} at the card's threshold")
    top.tap()
    label = page.locator("#viewer-label")
    expect(label).to_be_visible()
    expect(label).to_have_text(f"{top.get_attribute('data-class')} "
                               f"{float(top.get_attribute('data-confidence')):.2f}")
    label_box, screen = label.bounding_box(), PHONE["width"]
    assert label_box["x"] >= 0 and label_box["x"] + label_box["width"] <= screen + 0.5, label_box
    page.get_by_role("button", name="Close").tap()
    expect(viewer).to_be_hidden()
    assert page.evaluate("document.documentElement.scrollWidth") <= screen
    assert not errors
    context.close()


def _dms(value: float) -> tuple[float, float, float]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    return (float(degrees), float(minutes), round(((value - degrees) * 60 - minutes) * 60, 4))


def with_gps(jpeg: bytes, lat: float, lon: float, fmt: str) -> bytes:
    """The photo re-encoded as `fmt` with an EXIF GPS position, as phones and drones write it."""
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N" if lat >= 0 else "S", 2: _dms(abs(lat)), 3: "E" if lon >= 0 else "W",
                4: _dms(abs(lon))})
    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).convert("RGB").save(out, fmt, exif=exif.tobytes())
    return out.getvalue()


def gps_line(lat: float, lon: float) -> str:
    def part(v: float, plus: str, minus: str) -> str:
        return f"{abs(v):.6f}°\u00a0{minus if v < 0 else plus}"

    return f"Taken at {part(lat, 'N', 'S')}, {part(lon, 'E', 'W')} (GPS in the photo)"


def test_exif_gps_position_is_shown_where_the_photo_has_one(browser: Any, web_server: LiveServer,
                                                            real_uploads: list[Upload]) -> None:
    context, page, requests, errors = open_page(browser, web_server.url + "/")
    expect(page.locator("#model-info")).to_contain_text("Model:")
    photo = real_uploads[0].data
    uploads = [Upload("gps.jpg", with_gps(photo, -33.8651432, 151.2099123, "JPEG"), "image/jpeg"),
               Upload("gps.png", with_gps(photo, 52.5200066, -13.404954, "PNG"), "image/png"),
               Upload("gps.webp", with_gps(photo, 7.25, 80.6, "WEBP"), "image/webp"),
               Upload("no-gps.jpg", photo, "image/jpeg")]
    page.get_by_label("Choose photos").set_input_files([u.payload() for u in uploads])
    wait_finished(page)
    for upload in uploads[:3]:
        fix = read_gps(upload.data)                       # what `weedscan batch` reads
        assert fix is not None, f"{upload.name}: the test photo has no position for the server either"
        card = page.locator(f'li.photo[data-file="{upload.name}"]')
        expect(card.locator(".photo-gps")).to_have_text(gps_line(fix.lat, fix.lon))
        assert float(card.get_attribute("data-lat")) == pytest.approx(fix.lat, abs=1e-9)
        assert float(card.get_attribute("data-lon")) == pytest.approx(fix.lon, abs=1e-9)
    expect(page.locator('li.photo[data-file="no-gps.jpg"] .photo-gps')).to_be_hidden()
    page.locator('li.photo[data-file="gps.jpg"] .photo-open').click()
    expect(page.locator("#viewer-gps")).to_have_text(gps_line(-33.8651432, 151.2099123))
    page.keyboard.press("Escape")
    wait_covers(page)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download table (CSV)").click()
    rows = {r[0]: r for r in csv.reader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8")))}
    assert [float(v) for v in rows["gps.jpg"][-3:-1]] == pytest.approx([-33.8651432, 151.2099123], abs=1e-6)
    assert rows["no-gps.jpg"][-3:] == ["", "", ""]
    own = web_server.url + "/"
    assert all(u.startswith((own, "blob:", "data:")) for u in requests), "no map tiles or lookups"
    assert not errors
    context.close()


def test_green_on_brown_switch_asks_for_mode_green(browser: Any, web_server: LiveServer,
                                                   real_uploads: list[Upload]) -> None:
    context, page, requests, errors = open_page(browser, web_server.url + "/")
    expect(page.locator("#model-info")).to_contain_text("Model:")
    field = real_uploads[1]
    card = page.locator(f'li.photo[data-file="{field.name}"]')
    page.get_by_label("Choose photos").set_input_files([field.payload()])
    wait_finished(page)
    expect(card).to_have_attribute("data-status", "done")

    def detects() -> list[str]:
        return [u for u in requests if "/v1/detect" in u]

    assert not any("mode=green" in u for u in detects())
    sent = len(detects())
    page.get_by_label("Every green plant").check()
    wait_finished(page)
    expect(card).to_have_attribute("data-status", "done")
    expect(page.locator("#summary-head")).to_contain_text("Plants")
    assert len(detects()) == sent + 1 and "mode=green" in detects()[-1], detects()
    answer = web_server.http.post("/v1/detect", params={"conf": PAGE_FLOOR, "mode": "green"},
                                  files={"image": (field.name, field.data, field.mime)}).json()
    assert answer["counts"]["plant"] > 0, "no plant found: nothing was checked"
    expect(page.locator(f'#summary-body tr[data-file="{field.name}"] td[data-col="plant"]')
           ).to_have_text(str(answer["counts"]["plant"]))
    assert shown_boxes(page, field.name) == api_boxes(answer)
    expect(page.locator(f'#summary-body tr[data-file="{field.name}"] td[data-col="weed_cover"]')
           ).to_have_text(page_cover_text(answer["weed_cover"]))
    expect(page.locator("#conf")).to_be_disabled()
    expect(page.locator("#cover-help")).to_contain_text("vegetation pixels inside the plant boxes")
    page.get_by_label("Crops and weeds").check()            # and back to the model
    wait_finished(page)
    expect(card).to_have_attribute("data-status", "done")
    wait_covers(page)
    assert "mode=green" not in detects()[sent + 1]
    threshold = float(page.eval_on_selector("#conf", "c => c.value"))
    model = detect(web_server.http, field, threshold)
    expect(page.locator("#summary-head")).to_contain_text("Crops")
    expect(page.locator(f'#summary-body tr[data-file="{field.name}"] td[data-col="weed"]')
           ).to_have_text(str(model["counts"]["weed"]))
    expect(page.locator("#conf")).to_be_enabled()
    assert not errors
    context.close()


def showcase_threshold(session: Session) -> float:
    """For the screenshots: the highest slider position that still shows every class found."""
    classes = {cls for _, cls in session.scored}
    steps = round((1 - session.floor) / session.step)
    for k in range(steps, -1, -1):
        t = round(session.floor + k * session.step, 6)
        if {cls for score, cls in session.scored if score > t} == classes and \
                all(abs(score - t) > 1e-9 for score, _ in session.scored):
            return t
    return session.middle


def test_screenshots_desktop_and_phone(session: Session, tmp_path: Path) -> None:
    """Full page with results (a box label shown), then the large view with a box label, at
    desktop and phone size, at the model card's threshold (what a user sees first)."""
    page = session.page
    card_conf = session.server.http.get("/v1/models").json()["models"][0]["thresholds"]["conf"]
    scores = [score for score, _ in session.scored]
    usable = session.floor < card_conf < 1 and all(abs(s - card_conf) > 1e-9 for s in scores)
    set_slider(session, card_conf if usable else showcase_threshold(session))
    wait_covers(page)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    SCREENS.mkdir(parents=True, exist_ok=True)
    field = session.uploads[1].name
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        page.evaluate("window.scrollTo(0, 0)")
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= viewport["width"], f"{label}: the page is {overflow}px wide"
        page.evaluate("document.activeElement && document.activeElement.blur()")
        page.locator(f'li.photo[data-file="{field}"] {BOX}:not([hidden])').last.hover()
        expect(page.locator(f'li.photo[data-file="{field}"] .box-label')).to_be_visible()
        shot = tmp_path / f"weedscan-{label}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert png_size(shot.read_bytes())[0] == viewport["width"]
        shutil.copy(shot, SCREENS / shot.name)
        page.locator(f'li.photo[data-file="{field}"] .photo-open').click()
        viewer = page.locator("#viewer")
        expect(viewer).to_be_visible()
        page.keyboard.press("Tab")
        expect(page.locator("#viewer-label")).to_be_visible()
        box = viewer.bounding_box()
        assert box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= viewport["width"] + 0.5, (
            f"{label}: the large view {box} does not fit the screen")
        figure = page.locator("#viewer-figure").bounding_box()
        assert figure["y"] + figure["height"] <= viewport["height"] + 0.5, (
            f"{label}: the photo {figure} does not fit on the screen")
        save_screen(page, tmp_path, f"weedscan-{label}-large.png", full_page=False)
        page.keyboard.press("Escape")
        expect(viewer).to_be_hidden()
    page.set_viewport_size(DESKTOP)


# ---- 503, API keys, 413, TIFF, many photos ------------------------------------------------------

def test_busy_server_is_retried_then_reported(browser: Any, web_server: LiveServer) -> None:
    context, page, _, errors = open_page(browser, web_server.url + "/")
    attempts = {"retry.jpg": 0, "busy.jpg": 0}
    busy_body = json.dumps({"error": {"code": "overloaded", "message": "too many requests"}})

    def overloaded(route: Any) -> None:
        body = route.request.post_data_buffer or b""
        name = next((n for n in attempts if f'filename="{n}"'.encode() in body), None)
        if name:
            attempts[name] += 1
        if name == "busy.jpg" or (name == "retry.jpg" and attempts[name] <= 2):
            route.fulfill(status=503, headers={"Retry-After": "1"}, body=busy_body,
                          content_type="application/json")
        else:
            route.continue_()

    page.route("**/v1/detect*", overloaded)
    expect(page.locator("#model-info")).to_contain_text("Model:")
    page.get_by_label("Choose photos").set_input_files([
        {"name": name, "mimeType": "image/jpeg", "buffer": synthetic_jpeg(seed)}
        for seed, name in enumerate(attempts)])
    wait_finished(page)
    expect(page.locator('li.photo[data-file="retry.jpg"]')).to_have_attribute("data-status", "done")
    busy = page.locator('li.photo[data-file="busy.jpg"]')
    expect(busy).to_have_attribute("data-status", "failed")
    expect(busy.locator(".photo-error")).to_contain_text("server is busy")
    assert attempts == {"retry.jpg": 3, "busy.jpg": 3}, "a 503 is retried twice after Retry-After"
    page.unroute("**/v1/detect*")
    busy.get_by_role("button", name="Try busy.jpg again").click()
    expect(busy).to_have_attribute("data-status", "done")
    assert not errors
    context.close()


KEY = "field-key-7f3a"


@pytest.fixture()
def locked_server(browser: Any, shipped_model: Path) -> Iterator[LiveServer]:
    server = LiveServer(shipped_model, env={"WEEDSCAN_API_KEYS": KEY, "WEEDSCAN_MAX_UPLOAD_MB": "0.5"})
    yield server
    server.stop()


def save_screen(page: Any, tmp_path: Path, name: str, full_page: bool = True) -> None:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=full_page)
    SCREENS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SCREENS / name)


def test_api_key_form_too_big_tiff_and_rotated_photos(browser: Any, locked_server: LiveServer,
                                                      tmp_path: Path) -> None:
    context, page, _, errors = open_page(browser, locked_server.url + "/")
    seen_auth: list[str | None] = []
    page.on("request", lambda r: seen_auth.append(r.headers.get("authorization"))
            if "/v1/detect" in r.url else None)
    key_field = page.get_by_role("textbox", name="API key")
    expect(key_field).to_be_visible()
    expect(key_field).to_be_focused()
    key_field.fill("wrong-key")
    key_field.press("Enter")
    expect(page.locator("#key-error")).to_contain_text("not accepted")
    save_screen(page, tmp_path, "weedscan-api-key.png")
    key_field.fill(KEY)
    page.get_by_role("button", name="Use this key").click()
    expect(page.locator("#key-panel")).to_be_hidden()
    expect(page.locator("#model-info")).to_contain_text("Model:")

    upright = images.field_like(320, 240, seed=3)
    noise = np.random.default_rng(0).integers(0, 255, (700, 900, 3), dtype=np.uint8)
    uploads = [
        Upload("small.jpg", synthetic_jpeg(1), "image/jpeg"),
        Upload("rotated.jpg", images.jpeg_with_orientation(upright, 6), "image/jpeg"),
        Upload("field.tif", images.pil_bytes(Image.fromarray(upright[..., ::-1]), "TIFF"), "image/tiff"),
        Upload("field.webp", images.webp(), "image/webp"),
        Upload("huge.png", images.encode(noise, ".png"), "image/png"),
    ]
    assert len(uploads[-1].data) > 0.5 * 1024 * 1024 > len(uploads[2].data)
    page.get_by_label("Choose photos").set_input_files([u.payload() for u in uploads])
    wait_finished(page)
    for upload in uploads[:-1]:
        card = page.locator(f'li.photo[data-file="{upload.name}"]')
        expect(card).to_have_attribute("data-status", "done")
    huge = page.locator('li.photo[data-file="huge.png"]')
    expect(huge).to_have_attribute("data-status", "failed")
    expect(huge.locator(".photo-error")).to_contain_text("too big")
    # The TIFF (which Chromium cannot show) and the EXIF-rotated JPEG are shown upright at the
    # size the boxes are in.
    for name in ("field.tif", "rotated.jpg"):
        page.locator(f'li.photo[data-file="{name}"] img').scroll_into_view_if_needed()
        page.wait_for_function(
            "n => { const i = document.querySelector(`li.photo[data-file='${n}'] img`);"
            " return i.complete && i.naturalWidth === 320 && i.naturalHeight === 240; }", arg=name)
    save_screen(page, tmp_path, "weedscan-formats-and-limits.png")
    assert seen_auth and all(a == f"Bearer {KEY}" for a in seen_auth), seen_auth
    assert page.evaluate("sessionStorage.getItem('weedscan.apiKey')") == KEY
    assert page.evaluate("localStorage.length") == 0, "the key must stay in sessionStorage only"
    page.reload()                                   # the same tab remembers the key
    expect(page.locator("#model-info")).to_contain_text("Model:")
    expect(page.locator("#key-panel")).to_be_hidden()
    assert not errors
    context.close()


def test_fifty_photos_go_two_or_three_at_a_time(browser: Any, web_server: LiveServer) -> None:
    context, page, _, errors = open_page(browser, web_server.url + "/")
    flight = {"now": 0, "max": 0}

    def started(request: Any) -> None:
        if "/v1/detect" in request.url:
            flight["now"] += 1
            flight["max"] = max(flight["max"], flight["now"])

    def ended(request: Any) -> None:
        if "/v1/detect" in request.url:
            flight["now"] -= 1

    page.on("request", started)
    page.on("requestfinished", ended)
    page.on("requestfailed", ended)
    expect(page.locator("#model-info")).to_contain_text("Model:")
    files = [{"name": f"plot-{i:02d}.jpg", "mimeType": "image/jpeg",
              "buffer": synthetic_jpeg(i, 160, 120)} for i in range(50)]
    page.get_by_label("Choose photos").set_input_files(files)
    expect(page.locator("#progress")).to_be_visible()
    wait_finished(page, timeout=120_000)
    expect(page.locator("#status")).to_have_text("Finished: 50 photos analysed.")
    expect(page.locator('li.photo[data-status="done"]')).to_have_count(50)
    expect(page.locator("#summary-body tr")).to_have_count(50)
    assert 1 <= flight["max"] <= 3, f"{flight['max']} uploads at once"
    sources = page.eval_on_selector_all("li.photo img", "imgs => imgs.map(i => i.src)")
    assert len(sources) == 50 and all(src.startswith("blob:") for src in sources), (
        "photos must be object URLs")
    page.get_by_role("button", name="Clear all").click()
    expect(page.locator("li.photo")).to_have_count(0)
    expect(page.locator("#status")).to_have_text("No photos yet.")
    assert not errors
    context.close()


def test_photos_can_be_dropped_on_the_page(browser: Any, web_server: LiveServer) -> None:
    context, page, _, errors = open_page(browser, web_server.url + "/")
    expect(page.locator("#model-info")).to_contain_text("Model:")
    data = list(synthetic_jpeg(7))
    transfer = page.evaluate_handle(
        """bytes => { const dt = new DataTransfer();
                      dt.items.add(new File([new Uint8Array(bytes)], 'dropped.jpg', {type: 'image/jpeg'}));
                      return dt; }""", data)
    page.dispatch_event("#drop-zone", "dragenter", {"dataTransfer": transfer})
    expect(page.locator("#drop-zone")).to_have_class(re.compile("dragging"))
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    expect(page.locator('li.photo[data-file="dropped.jpg"]')).to_have_attribute("data-status", "done")
    expect(page.locator("#drop-zone")).not_to_have_class(re.compile("dragging"))
    assert page.url.startswith(web_server.url), "the browser must not navigate to the dropped file"
    assert not errors
    context.close()
