"""A small Python client of the weedscan HTTP API, for robots and scripts.

    from serving.client import WeedscanClient

    with WeedscanClient("http://10.0.0.5:8000", timeout=2.0) as weedscan:
        answer = weedscan.detect(jpeg_bytes, lanes=4, frame_id="cam1-000417")
        if any(answer.lanes):
            ...

- One keep-alive connection (httpx's pool) for every request of a client: no TCP handshake per
  frame. A client is meant to live as long as the program; close it (or use `with`).
- Timeouts on every request (`timeout` seconds: connect, each read and write).
- 503 (overloaded, not ready) and 429 are retried after the server's Retry-After, at most
  `RetryPolicy.retries` times and only when the wait is at most `RetryPolicy.max_wait_s`: a robot
  must not block longer than it can use the answer. Other errors are raised at once.
- Typed answers: the API's own pydantic models (`DetectAnswer`, `BatchAnswer`); a refusal is an
  `ApiError` with the JSON error's `code` and `message`; a network failure or timeout is a
  `TransportError`.

Needs only the serving install (httpx is one of its dependencies).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import httpx
from pydantic import ValidationError

from serving.answer import BatchAnswer, DetectAnswer, ErrorAnswer

__all__ = ["ApiError", "RetryPolicy", "TransportError", "WeedscanClient", "WeedscanError"]

DEFAULT_URL = "http://127.0.0.1:8000"
RETRIED_STATUSES = frozenset({429, 503})
# File suffix -> Content-Type of a raw upload; anything else goes as application/octet-stream,
# which the server accepts when the bytes are a supported image (it reads their signature).
MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
               ".webp": "image/webp", ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff"}

ImageInput = bytes | str | Path  # the image's bytes, or a file to read


class WeedscanError(Exception):
    """Any failure of a weedscan request."""


class TransportError(WeedscanError):
    """No answer: the server could not be reached, or did not answer within the timeout."""


class ApiError(WeedscanError):
    """The server refused the request: its HTTP status and its JSON error's code and message."""

    def __init__(self, status: int, code: str, message: str, retry_after_s: float | None = None,
                 request_id: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s  # the server's Retry-After, when it sent one
        self.request_id = request_id  # the X-Request-ID echoed, when one was sent

    @classmethod
    def of(cls, response: httpx.Response) -> ApiError:
        retry_after = retry_after_s(response.headers.get("Retry-After"))
        request_id = response.headers.get("X-Request-ID")
        try:
            body = ErrorAnswer.model_validate_json(response.content).error
            return cls(response.status_code, body.code, body.message, retry_after, request_id)
        except ValidationError:  # not the server's shape (a proxy's page, say)
            return cls(response.status_code, f"http_{response.status_code}",
                       response.text[:200] or response.reason_phrase, retry_after, request_id)


@dataclass(frozen=True)
class RetryPolicy:
    """How a 503 or 429 is retried: after the server's Retry-After (or `default_wait_s` when it
    sent none), at most `retries` times, and never when it asks for more than `max_wait_s`."""

    retries: int = 2
    max_wait_s: float = 10.0
    default_wait_s: float = 1.0


def retry_after_s(value: str | None) -> float | None:
    """A Retry-After header in seconds: delay-seconds or an HTTP date; None when absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _upload(image: ImageInput) -> tuple[bytes, str]:
    """The image's bytes and the Content-Type they go with."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image), "application/octet-stream"
    path = Path(image)
    return path.read_bytes(), MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")


def _query(params: Mapping[str, Any]) -> dict[str, str]:
    """The query string's values: None (not given) left out, booleans as true/false, lists
    comma-joined."""
    query = {}
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            query[name] = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            query[name] = ",".join(str(v) for v in value)
        else:
            query[name] = str(value)
    return query


class WeedscanClient:
    """A weedscan server's API v1 over one keep-alive connection. Thread-safe like httpx.Client."""

    def __init__(self, base_url: str = DEFAULT_URL, *, api_key: str | None = None,
                 timeout: float | httpx.Timeout = 10.0, retry: RetryPolicy | None = None,
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """`api_key`: sent as a Bearer token (when the server has WEEDSCAN_API_KEYS);
        `transport`: httpx's, e.g. for tests or a Unix socket; `sleep`: how a retry waits."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        # the underlying httpx.Client, for what this class does not offer (event hooks, say)
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout,
                                 transport=transport, limits=httpx.Limits(keepalive_expiry=60))

    def detect(self, image: ImageInput, *, conf: float | None = None, iou: float | None = None,
               classes: Sequence[str] | None = None, max_det: int | None = None,
               tile: Literal["auto", "on", "off"] | None = None, lanes: int | None = None,
               mode: Literal["model", "green"] | None = None, model: str | None = None,
               vegetation_mask: bool = False, frame_id: str | None = None,
               request_id: str | None = None, **more: Any) -> DetectAnswer:
        """POST /v1/detect with the image as the raw body. The answer echoes `frame_id` and
        `request_id` (sent as X-Request-ID) and has the server's `received_at`. `more`: any
        other query parameter of the API (veg_index, min_area ...)."""
        data, media_type = _upload(image)
        params = _query({"conf": conf, "iou": iou, "classes": classes, "max_det": max_det,
                         "tile": tile, "lanes": lanes, "mode": mode, "model": model,
                         "vegetation_mask": vegetation_mask or None, "frame_id": frame_id,
                         **more})
        headers = {"Content-Type": media_type, **({"X-Request-ID": request_id} if request_id else {})}
        response = self._send("POST", "/v1/detect", params=params, content=data, headers=headers)
        return DetectAnswer.model_validate_json(response.content)

    def detect_batch(self, images: Iterable[ImageInput | tuple[str, bytes]], *,
                     request_id: str | None = None, **params: Any) -> BatchAnswer:
        """POST /v1/detect/batch: one multipart request; the answer's items are in input order,
        each a `BatchItem` or a `BatchError` (a file the server could not read). `params` as
        for `detect` (conf, lanes, frame_id ...)."""
        files = []
        for index, image in enumerate(images):
            if isinstance(image, tuple):
                name, data = image
                media_type = MEDIA_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")
            else:
                data, media_type = _upload(image)
                name = Path(image).name if not isinstance(image, (bytes, bytearray, memoryview)) \
                    else f"image-{index}"
            files.append(("images", (name, data, media_type)))
        headers = {"X-Request-ID": request_id} if request_id else {}
        response = self._send("POST", "/v1/detect/batch", params=_query(params), files=files,
                              headers=headers)
        return BatchAnswer.model_validate_json(response.content)

    def ready(self) -> bool:
        """GET /readyz: whether the server's model is loaded and warmed (no retry)."""
        try:
            return self.http.get("/readyz").status_code == 200
        except httpx.HTTPError as exc:
            raise TransportError(f"GET /readyz: {type(exc).__name__}: {exc}") from exc

    def wait_ready(self, timeout_s: float = 60.0, poll_s: float = 0.5) -> None:
        """Block until the server is ready; TransportError when it is not within timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self.ready():
                    return
            except TransportError:
                pass
            if time.monotonic() >= deadline:
                raise TransportError(f"the server at {self.http.base_url} was not ready within "
                                     f"{timeout_s:g} s")
            self._sleep(poll_s)

    def _send(self, method: str, url: str, **request: Any) -> httpx.Response:
        """The response of a request that succeeded; retries 503 and 429 as `retry` says."""
        for attempt in range(self.retry.retries + 1):
            try:
                response = self.http.request(method, url, **request)
            except httpx.TimeoutException as exc:
                raise TransportError(f"{method} {url}: no answer within the timeout ({exc})") from exc
            except httpx.HTTPError as exc:
                raise TransportError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
            if response.is_success:
                return response
            error = ApiError.of(response)
            wait = self.retry.default_wait_s if error.retry_after_s is None else error.retry_after_s
            if (response.status_code not in RETRIED_STATUSES or attempt == self.retry.retries
                    or wait > self.retry.max_wait_s):
                raise error
            self._sleep(wait)
        raise AssertionError("unreachable")  # the loop returns or raises

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
