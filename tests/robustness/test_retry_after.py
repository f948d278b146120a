"""Over real HTTP: 503 answers spread their clients' retries. Retry-After is a whole
number of seconds drawn from WEEDSCAN_RETRY_AFTER_S to 3x it (serving/api/errors.py), not the
same second for everyone."""

from __future__ import annotations

from pathlib import Path

import httpx

from serving.api.errors import RETRY_SPREAD
from tests.robustness.rawhttp import poll, stalled_upload
from tests.serving.conftest import LiveServer

REFUSED = 30


def test_503_answers_carry_spread_retry_after_values(shipped_model: Path) -> None:
    # 1 MiB of request bodies at most: one stalled upload of ~1 MB fills it, so every other
    # upload is refused (503, deterministic) as its first bytes arrive.
    base = 2
    server = LiveServer(shipped_model, env={
        "WEEDSCAN_MAX_UPLOAD_MB": "1", "WEEDSCAN_MAX_BATCH_MB": "1",
        "WEEDSCAN_MAX_BODY_MEMORY_MB": "1", "WEEDSCAN_RETRY_AFTER_S": str(base),
        # the base stays put: its growth with the pressure is test_shedding's
        "WEEDSCAN_RETRY_AFTER_MAX_S": str(RETRY_SPREAD * base)})
    try:
        holder = stalled_upload(server.port, declared=1_000_000, sent=b"\xff\xd8" + b"\0" * 990_000)

        def refused() -> bool:
            return httpx.post(f"{server.url}/v1/detect", content=b"\0" * 100_000, timeout=60,
                              headers={"Content-Type": "image/jpeg"}).status_code == 503

        assert poll(refused)  # the holder's bytes are in
        values = []
        for _ in range(REFUSED):
            response = httpx.post(f"{server.url}/v1/detect", content=b"\0" * 100_000, timeout=60,
                                  headers={"Content-Type": "image/jpeg"})
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "overloaded"
            values.append(int(response.headers["Retry-After"]))
        assert all(base <= v <= RETRY_SPREAD * base for v in values), values
        assert len(set(values)) >= 2, values  # (all equal: probability 3 x 3^-30)
        holder.close()
    finally:
        log = server.stop()
    assert "Traceback" not in log and "internal_error" not in log, log[-4000:]
