"""The page's model choice, in headless Chromium against a real server whose models
folder holds two models and a broken one: the page lists every model with its state, lineage and
which one is active, analyses with the one chosen, and each photo says which model answered."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.serving.conftest import LiveServer
from tests.serving.registry_helpers import add_broken, models_folder
from tests.web.test_page import open_page, synthetic_jpeg, wait_finished

sync_api = pytest.importorskip("playwright.sync_api", exc_type=ImportError,
                               reason="Playwright for Python is not installed")
expect = sync_api.expect

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(browser: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = models_folder(tmp_path_factory.mktemp("page-models"), "weedscan-b")
    add_broken(folder)
    live = LiveServer(None, args=["--models-dir", str(folder)])
    yield live
    live.stop()


def photo_model(page: Any, name: str) -> Any:
    return page.locator(f'li.photo[data-file="{name}"] .photo-model')


def test_the_page_lists_the_models_and_analyses_with_the_chosen_one(browser: Any, server: LiveServer) -> None:
    # the broken ones are listed once the server has checked them (right after start)
    expect_states = {"weedscan": "loaded", "weedscan-b": "available", "damaged": "broken"}
    for _ in range(100):
        listed = {m["name"]: m["state"] for m in server.http.get("/v1/models").json()["models"]}
        if all(listed.get(k) == v for k, v in expect_states.items()):
            break
        time.sleep(0.1)
    context, page, requests, errors = open_page(browser, server.url + "/")
    try:
        expect(page.locator("#model-info")).to_contain_text("Model: weedscan")
        select = page.locator("#model-select")
        expect(select).to_be_enabled()
        options = page.eval_on_selector_all("#model-select option",
                                            "os => os.map(o => [o.value, o.textContent, o.disabled])")
        by_value = {value: (text, disabled) for value, text, disabled in options}
        assert "active" in by_value[""][0] and "weedscan" in by_value[""][0]
        assert "active" in by_value["weedscan"][0] and "loaded" in by_value["weedscan"][0]
        assert "available" in by_value["weedscan-b"][0] and not by_value["weedscan-b"][1]
        assert by_value["damaged"][1] and "broken" in by_value["damaged"][0]  # shown, not choosable
        page.locator(".model-details summary").click()
        listed = page.locator("#model-list")
        expect(listed.locator('li[data-model="weedscan"]')).to_contain_text("active")
        expect(listed.locator('li[data-model="weedscan"]')).to_contain_text("pretrained start yolov8n-coco-int8.onnx")
        expect(listed.locator('li[data-model="weedscan"]')).to_contain_text("AGPL-3.0")
        expect(listed.locator('li[data-model="damaged"]')).to_contain_text("cannot load the model")

        name = "frame.jpg"
        page.get_by_label("Choose photos").set_input_files(
            [{"name": name, "mimeType": "image/jpeg", "buffer": synthetic_jpeg(7)}])
        wait_finished(page)
        version = next(m["version"] for m in server.http.get("/v1/models").json()["models"]
                       if m["name"] == "weedscan")
        expect(photo_model(page, name)).to_have_text(f"Answered by weedscan {version}")

        select.select_option("weedscan-b")
        expect(photo_model(page, name)).to_contain_text("Answered by weedscan-b")
        wait_finished(page)
        assert any("model=weedscan-b" in url for url in requests), requests
        expect(page.locator("#model-info")).to_contain_text("Model: weedscan-b")

        page.get_by_label("Every green plant").check()  # green mode runs no model: no choice
        expect(select).to_be_disabled()
        expect(photo_model(page, name)).to_contain_text("green-on-brown")
        page.screenshot(path="/tmp/page-shots/models.png", full_page=False)
        assert not errors, errors
    finally:
        context.close()
