"""All server settings in one place, from WEEDSCAN_* environment variables (pydantic-settings)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
DEFAULT_MODEL = MODELS_DIR / "weedscan.onnx"
DEFAULT_MAX_PIXELS = 64_000_000  # decoded size limit (WEEDSCAN_MAX_PIXELS)
DEFAULT_MAX_UPLOAD_MB = 20.0  # per image (WEEDSCAN_MAX_UPLOAD_MB)
DEFAULT_MAX_UPLOAD_BYTES = int(DEFAULT_MAX_UPLOAD_MB * 1024 * 1024)


def size_text(n_bytes: int) -> str:
    """A size limit as refusals state it: exact bytes, and the MiB that the *_MB settings count."""
    return f"{n_bytes} bytes ({n_bytes / (1024 * 1024):g} MiB)"


def default_data_dir() -> Path:
    """Where saved field datasets live: $XDG_DATA_HOME/weedscan, else ~/.local/share/weedscan."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share") / "weedscan"


def cpu_count() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WEEDSCAN_", extra="ignore")

    # The models folder (NAME.onnx + NAME.json each) the server offers; `model` (--model PATH)
    # pins the active model at start, otherwise the folder's `.active.json` (or `weedscan`) does.
    model: Path | None = None
    models_dir: Path = MODELS_DIR
    max_loaded_models: int = Field(4, ge=1)  # beyond: the least recently used one is unloaded
    # Set by `weedscan serve` for its workers (a Unix time): a worker (re)started after a swap
    # follows the models folder's choice rather than --model.
    serve_started: float | None = None
    host: str = "127.0.0.1"  # loopback unless the operator opens it (WEEDSCAN_HOST=0.0.0.0)
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)  # server processes
    api_keys: Annotated[list[str], NoDecode] = []  # comma-separated; empty: no auth
    # Host names the server answers for (comma-separated; `*.example.com` patterns, `*` any);
    # unset: loopback names when bound to loopback, any name otherwise (serving/api/origin.py).
    allowed_hosts: Annotated[list[str] | None, NoDecode] = None
    max_upload_mb: float = Field(DEFAULT_MAX_UPLOAD_MB, gt=0)
    max_batch_mb: float = Field(100.0, gt=0)
    max_batch_files: int = Field(32, ge=1)
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)
    max_inflight: int = Field(8, ge=1)  # requests decoding or inferring at once; beyond: 503
    max_frame_batch: int = Field(2, ge=1)  # frames run as one batch when queued together; 1: off
    # Decoded pixels of big images (over 4 MP) decoding or inferring at once; beyond: 503.
    # One image is always admitted alone, so this never refuses an image within max_pixels.
    max_inflight_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)
    # Model runs (tiles, plus the whole frame) one tiled image may take; beyond: 413. A square
    # image of max_pixels takes 145 with the shipped model; only slivers (a few pixels by
    # hundreds of thousands) need more.
    max_tiles: int = Field(256, ge=1)
    threads: int | None = Field(None, ge=1)  # inference threads per process
    # What runs the forward pass (serving/engines): `auto` picks, for this CPU and each model's
    # card, the fastest engine and precision whose accuracy the card validated.
    engine: Literal["auto", "onnxruntime", "openvino"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "int8"] = "auto"
    retry_after_s: int = Field(1, ge=1)
    # Under overload Retry-After grows with the pressure (refusals per answer over the last
    # seconds), up to this: clients that honour it come back when there may be room.
    retry_after_max_s: int = Field(30, ge=1)
    # One log line per request is noise at robot frame rates (and CPU on every frame); request
    # counts and latencies are in /metrics. Turn on to debug a client.
    access_log: bool = False
    # ONNX Runtime's threads busy-wait after every run unless told to stop. Stopping them cuts the
    # CPU a frame costs (other processes on a robot get it back) and raises throughput under
    # concurrent requests, for a little more latency when frames come slowly (benchmarks/RESULTS.md).
    spin_between_requests: bool = False
    # Idle keep-alive connections stay open this long. uvicorn's 5 s would close a robot's
    # connection during a pause at the headland, and its next frame could hit the closing socket.
    keep_alive_s: int = Field(75, ge=1)
    # A request body must arrive within body_timeout_s, plus one second per body_min_rate_kb_s
    # KiB received, and within body_max_s in all, with no pause over body_timeout_s: a stalled
    # or trickling upload gets 408 and never holds an inference slot.
    body_timeout_s: float = Field(15.0, gt=0)
    body_min_rate_kb_s: float = Field(16.0, gt=0)
    body_max_s: float = Field(120.0, gt=0)
    # Bodies are read before admission, so their memory has its own bound: bytes of request
    # bodies held at once by a process; a body that would pass it gets 503 (Retry-After). One
    # client address may hold at most this share of it (never less than one batch or image).
    max_body_memory_mb: float = Field(256.0, gt=0)
    max_client_body_share: float = Field(0.25, gt=0, le=1)
    # Each request head (request line and headers) must arrive within header_timeout_s of the
    # connection's start or of its first byte (a silent connection is closed, a slow head gets
    # 408); it may hold at most max_header_kb KiB and max_headers headers (else 431). Beyond
    # max_connections open connections, the longest-idle one is closed to make room.
    header_timeout_s: float = Field(10.0, gt=0)
    max_header_kb: int = Field(32, ge=1)
    max_headers: int = Field(100, ge=1)
    max_connections: int = Field(1000, ge=1)
    # Field datasets and their catalogue (serving/fields): written only when a user saves a photo.
    data_dir: Path = Field(default_factory=default_data_dir)
    max_data_gb: float = Field(10.0, gt=0)  # beyond: a save answers 507

    @field_validator("api_keys", "allowed_hosts", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_batch_bytes(self) -> int:
        return int(self.max_batch_mb * 1024 * 1024)

    @property
    def max_body_memory_bytes(self) -> int:
        """Never below one batch (or one image): the biggest allowed body always fits alone."""
        mb = max(self.max_body_memory_mb, self.max_batch_mb, self.max_upload_mb)
        return int(mb * 1024 * 1024)

    @property
    def max_client_body_bytes(self) -> int:
        """What one client address may hold of max_body_memory_bytes: its share, but always
        room for the biggest allowed body."""
        share = int(self.max_client_body_share * self.max_body_memory_bytes)
        return min(self.max_body_memory_bytes, max(share, self.max_batch_bytes, self.max_upload_bytes))

    @property
    def max_header_bytes(self) -> int:
        return self.max_header_kb * 1024

    @property
    def body_min_rate_bytes(self) -> float:
        return self.body_min_rate_kb_s * 1024

    def inference_threads(self) -> int:
        """Cores shared fairly between worker processes, so they do not oversubscribe the CPU."""
        if self.threads:
            return self.threads
        return max(1, cpu_count() // self.workers)
