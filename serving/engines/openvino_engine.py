"""OpenVINO (optional extra): the same ONNX file, compiled for this CPU, in fp32 or bf16; or a
model's int8 variant, an OpenVINO IR (.xml + .bin) that `weedscan quantize --engine openvino` made.

bf16 is OpenVINO's inference precision hint: weights and activations are rounded to bf16 where
the CPU multiplies bf16 natively (AVX-512 BF16, AMX), so the file stays the fp32 one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import locale
import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None  # type: ignore[assignment]

from serving.engines.base import EngineName, Precision
from serving.engines.cpu import this_cpu

log = logging.getLogger("weedscan.engines")

_PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def precision_hint(precision: Precision) -> str:
    """OpenVINO's inference precision for the layers a file holds in float. An int8 model keeps
    a few in float (its stem and the head's decoding): where the CPU multiplies bf16 natively
    they run in bf16, as the precision check that validated the variant measured them there."""
    if precision == "int8" and this_cpu().native_bf16:
        return "bf16"
    return _PRECISION_HINTS[precision]


# `import openvino` imports its model converter, which sends a Google Analytics event unless a
# consent file in the user's home says no. Its own fallback when the telemetry package cannot be
# imported is a stub that sends nothing; a None entry in sys.modules makes that import fail.
_TELEMETRY_PACKAGE = "openvino_telemetry"


def openvino_available() -> bool:
    """Installed (found without importing it)."""
    return importlib.util.find_spec("openvino") is not None


def import_openvino() -> ModuleType:
    """`openvino`, with its telemetry unable to load: nothing is sent, nothing written to $HOME."""
    if _TELEMETRY_PACKAGE not in sys.modules:
        sys.modules[_TELEMETRY_PACKAGE] = None  # type: ignore[assignment]
    import openvino

    return openvino


CACHE_ENV = "WEEDSCAN_ENGINE_CACHE"
COMPILE_LOCK = ".compile.lock"  # in the cache folder: one compile at a time across processes
_LOCALE_SWITCHING_CALLS = threading.Lock()


@contextlib.contextmanager
def locale_kept() -> Iterator[None]:
    """One OpenVINO read or compile at a time per process, the locale as it was afterwards.
    compile_model saves the process-wide C locale, sets "C" and restores what it saved: two at once
    (a model loading while the inference thread compiles a new shape) can save each other's "C"
    and leave the process there for good. While the locale is "C", a text file opened without an
    explicit encoding is ASCII, which is why every text read and write names UTF-8 (ruff PLW1514)."""
    with _LOCALE_SWITCHING_CALLS:
        before = locale.setlocale(locale.LC_ALL)
        try:
            yield
        finally:
            if locale.setlocale(locale.LC_ALL) != before:
                locale.setlocale(locale.LC_ALL, before)


def compile_lock(cache: Path) -> Path:
    """The cache folder's lock file, made if missing (touching an existing one would change it)."""
    lock = cache / COMPILE_LOCK
    if not lock.exists():
        lock.touch()
    return lock


@contextlib.contextmanager
def compiling(cache: Path | None) -> Iterator[None]:
    """Around compile_model: locale_kept, and with a compile cache, an exclusive lock on its
    folder. OpenVINO maps a cached model from its file while another process may still be
    writing that file (workers starting together, a CLI run beside the server): the reader then
    dies of SIGBUS. The lock makes the second compile wait and load the finished file."""
    with locale_kept():
        if cache is None or fcntl is None:  # no cache, or no flock (Windows)
            yield
            return
        with open(compile_lock(cache), "rb") as handle:  # flock needs no write access
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def compile_cache_dir() -> Path | None:
    """Where OpenVINO keeps what it compiled ($WEEDSCAN_ENGINE_CACHE), so that a restarted
    server, another worker or the next CLI run loads a model and its input shapes instead of
    compiling them again. Unset, or a folder that cannot be made: nothing is written. The folder
    holds compiled models only (keyed by model, shape and settings), never an image."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if not value:
        return None
    folder = Path(value).expanduser().resolve()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError("not writable")
        compile_lock(folder)
    except OSError as exc:
        log.warning("%s=%s cannot be used (%s): OpenVINO compiles without a cache", CACHE_ENV, value, exc)
        return None
    return folder


def _dims(partial_shape: object) -> tuple[int | None, ...]:
    return tuple(d.get_length() if d.is_static else None for d in partial_shape)  # type: ignore[attr-defined]


class OpenVinoEngine:
    """The model compiled once for any input shape, and once more for each of the first
    STATIC_SHAPES input shapes it meets: OpenVINO's CPU plugin runs a fixed shape faster than a
    dynamic one. A shape met first compiles on the spot, once per server (a camera's frames share
    one shape; the warm-up compiles the square one), so one photo gets the same boxes whatever the
    server ran before it; shapes beyond STATIC_SHAPES run on the dynamic model, so no client can
    make the server compile without end."""

    name: EngineName = "openvino"
    STATIC_SHAPES = 8

    def __init__(self, model_path: str, precision: Precision, threads: int, idle_spin: bool,
                 weights_path: str | None = None) -> None:
        """`weights_path`: an IR's .bin, named because OpenVINO would otherwise guess it."""
        ov = import_openvino()

        self.precision: Precision = precision
        self._core = ov.Core()
        self._cache = compile_cache_dir()
        if self._cache is not None:
            self._core.set_property({"CACHE_DIR": str(self._cache)})
        with locale_kept():
            model = (self._core.read_model(model_path, weights_path) if weights_path
                     else self._core.read_model(model_path))
        self._config = {
            "INFERENCE_PRECISION_HINT": precision_hint(precision),
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
        }
        self._model = model
        del idle_spin  # OpenVINO's threads sleep between runs already
        self.input_name: str = model.inputs[0].get_any_name()
        self.input_shape = _dims(model.inputs[0].get_partial_shape())
        self.output_shape = _dims(model.outputs[0].get_partial_shape())
        # The ONNX file's metadata (Ultralytics writes the stride there) is under "framework".
        has_stride = model.has_rt_info(["framework", "stride"])
        self.stride = int(model.get_rt_info(["framework", "stride"]).astype(str)) if has_stride else 32
        self._lock = threading.Lock()  # one run at a time: runs from several threads take turns
        self._by_shape: dict[tuple[int, ...], Any] = {}  # input shape -> the request of its own compile
        # The model as read (any input shape where the file leaves it open), compiled when first
        # needed: a model with open shapes runs each shape met on a compile of its own.
        self._any_shape: Any | None = None
        self._fixed_shape = all(d is not None for d in self.input_shape)
        if self._fixed_shape:
            self._any_shape_request()  # the only compile a fixed-shape model gets: now, not mid-request

    def run(self, blob: np.ndarray) -> np.ndarray:
        with self._lock:
            request = self._request_for(tuple(blob.shape))
            outputs = request.infer({0: blob})
            return np.array(outputs[0])  # a copy: the request's buffer is reused

    def _request_for(self, shape: tuple[int, ...]) -> Any:  # noqa: ANN401 - an openvino InferRequest
        request = self._by_shape.get(shape)
        if request is not None:
            return request
        if self._fixed_shape or len(self._by_shape) >= self.STATIC_SHAPES:
            return self._any_shape_request()
        try:
            model = self._model.clone()
            model.reshape({0: list(shape)})
            with compiling(self._cache):
                request = self._core.compile_model(model, "CPU", self._config).create_infer_request()
        except RuntimeError as exc:  # that shape keeps running on the dynamic model
            log.warning("OpenVINO could not compile input shape %s (%s); it runs on the dynamic model", shape, exc)
            request = self._any_shape_request()
        self._by_shape[shape] = request
        return request

    def _any_shape_request(self) -> Any:  # noqa: ANN401 - an openvino InferRequest
        if self._any_shape is None:
            with compiling(self._cache):
                self._any_shape = self._core.compile_model(self._model, "CPU", self._config).create_infer_request()
        return self._any_shape

    def providers(self) -> list[str]:
        return ["OpenVINO CPU"]
