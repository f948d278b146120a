"""Headless Chromium (Debian's, through Playwright) and real `weedscan serve` processes.

The browser tests skip, saying why, where Playwright or /usr/bin/chromium is missing
(`.venv/bin/pip install -e '.[dev]'` and `apt-get install chromium`; never `playwright install`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving.conftest import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Chromium for one test module: Playwright's sync API keeps an event loop running in this
    thread while it is open, which would refuse the asyncio.run of other files' tests run after
    it in the same test process."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", exc_type=ImportError,
        reason="Playwright for Python is not installed: .venv/bin/pip install -e '.[dev]'")
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (see .ci/run)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def web_server(browser: object, live_server: LiveServer) -> LiveServer:
    """An open server (no API keys): the test process's default one, started only when a browser
    is there."""
    return live_server
