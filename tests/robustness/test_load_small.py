"""A small load run against a real server with a tight in-flight limit: it sheds load with 503 +
Retry-After, never fails, keeps answering, and its memory stays bounded. No timing assertions
(benchmarks/load_test.py measures capacity and latency)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx

from tests import images
from tests.robustness.conftest import LiveServer, rss_bytes

JPEG = images.encode(images.field_like(640, 480), ".jpg")
REQUESTS, CONCURRENCY, WARMUP = 200, 8, 40


async def _hammer(url: str, count: int, concurrency: int) -> list[tuple[int, str | None, str | None]]:
    """`count` detect requests, `concurrency` at a time; (status, Retry-After, error code) each."""
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        async def one() -> tuple[int, str | None, str | None]:
            async with gate:
                response = await http.post("/v1/detect", content=JPEG, headers={"Content-Type": "image/jpeg"})
                code = response.json().get("error", {}).get("code") if response.status_code != 200 else None
                return response.status_code, response.headers.get("retry-after"), code

        return await asyncio.gather(*(one() for _ in range(count)))


def test_overload_is_shed_with_503_and_memory_stays_bounded(shipped_model: Path, tmp_path: Path) -> None:
    server = LiveServer(shipped_model, env={"WEEDSCAN_THREADS": "1", "WEEDSCAN_MAX_INFLIGHT": "2"},
                        log_path=tmp_path / "server.log")
    try:
        asyncio.run(_hammer(server.url, WARMUP, CONCURRENCY))  # warm-up: allocator pools, caches
        rss_warm = rss_bytes(server.process.pid)
        results = asyncio.run(_hammer(server.url, REQUESTS, CONCURRENCY))
        rss_end = rss_bytes(server.process.pid)

        statuses = Counter(status for status, _, _ in results)
        assert set(statuses) <= {200, 503}, statuses
        assert statuses[200] > 0, statuses
        for status, retry_after, code in results:
            if status == 503:
                assert code == "overloaded"
                assert retry_after is not None and int(retry_after) >= 1
        # Still answering, and nothing left counted in flight.
        http = server.http
        assert http.get("/readyz").status_code == 200
        after = http.post("/v1/detect", content=JPEG, headers={"Content-Type": "image/jpeg"})
        assert after.status_code == 200
        metrics = http.get("/metrics").text
        assert "weedscan_inflight_requests 0.0" in metrics
        rejected = [line for line in metrics.splitlines() if line.startswith("weedscan_overload_rejections_total")]
        assert rejected and float(rejected[0].split()[-1]) >= statuses[503]
        growth = rss_end - rss_warm
        print(f"statuses {dict(statuses)}; RSS after warm-up {rss_warm / 2**20:.1f} MiB, "
              f"after {REQUESTS} requests {rss_end / 2**20:.1f} MiB ({growth / 2**20:+.1f} MiB)")
        assert growth < 100 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB"
    finally:
        log = server.stop()
    assert "Traceback" not in log, log[-4000:]
