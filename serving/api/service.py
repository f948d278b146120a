"""What the routes call: admission control, decoding off the event loop, one inference lane."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import numpy as np
from starlette.requests import ClientDisconnect, Request

from serving.api.admission import Admission, BodyHold, Slot, Upload
from serving.api.batcher import FrameBatcher
from serving.api.bodies import BodyPace
from serving.api.metrics import Metrics
from serving.config import Settings
from serving.detector import DetectOptions, Detector
from serving.errors import InvalidParameter, NotReady, Overloaded, TooManyTiles
from serving.green import GreenDetector
from serving.imaging import check_pixels, decode_image, read_header, warm_up_decoding
from serving.memory import return_memory
from serving.model_card import ModelCard
from serving.registry import (
    ModelRegistry,
    ModelSlot,
    ModelUnavailable,
    model_load_error,
)
from serving.result import DetectionResult
from serving.vegetation import VegetationOptions

log = logging.getLogger("weedscan")

# Bodies up to this size (a robot's camera frame) are decoded on the inference thread itself:
# one thread hop per request instead of two. Bigger uploads (phone and drone photos, slow to
# decode) are decoded in the thread pool so that they do
# not hold the inference lane while other requests wait.
INLINE_DECODE_MAX_BYTES = 1 << 20
WATCH_S = 0.5  # how often an idle process looks at the models folder for a swap
# Images up to this many pixels (a 2560x1560 frame) are "small": always admitted by the pixel
# budget (the request count bounds them) and, when their body is small too, decoded inline.
# A few bytes can declare a huge image (an RLE BMP of 1 KB decodes to 64 MP): the header decides.
SMALL_IMAGE_PIXELS = 4_000_000


class InferenceService:
    """Owns the detector. Inference runs in a single dedicated thread so one ONNX Runtime call at
    a time gets all of this process's cores; big images are decoded before, in the thread pool."""

    def __init__(self, settings: Settings, metrics: Metrics, detector: Detector | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.registry = ModelRegistry(settings.models_dir, self._make_detector,
                                      settings.max_loaded_models, pinned=settings.model,
                                      injected=detector, on_active=self._note_active,
                                      pinned_since=settings.serve_started)
        self.ready = False
        self.load_error: str | None = None
        self.admission = Admission(settings, metrics)
        self._big_pixels = 0  # decoded pixels of the big images in flight (see _pixel_budget)
        self._executor = _inference_executor()
        self._loader = _loader_executor()  # loads, checks and swaps models, one at a time
        self._refresh_queued = False
        self._closed = False
        self._batcher = FrameBatcher(lambda job: self._executor.submit(job), settings.max_pixels,
                                     settings.max_frame_batch)

    @property
    def detector(self) -> Detector | None:
        """The active model's detector (None until it has loaded)."""
        return self.registry.active_detector()

    # --- life cycle -------------------------------------------------------------------------
    def _make_detector(self, path: Path) -> Detector:
        return Detector(path, threads=self.settings.inference_threads(),
                        idle_spin=self.settings.spin_between_requests,
                        engine=self.settings.engine, precision=self.settings.precision)

    def _note_active(self, detector: Detector) -> None:
        self.metrics.set_model({**detector.model_info, "providers": ",".join(detector.providers)})

    def load(self) -> None:
        """Load and warm the active model; readiness turns on only after this. The folder's
        other models are checked after (sha256, session), on the same thread."""
        try:
            detector = self.registry.start()
            warm_up_decoding()
            self.ready = not self._closed  # a shutdown while loading wins
            log.info("model %s ready on %s", detector.model_info["name"], detector.providers)
        except Exception as exc:  # reported by /readyz; the CLI validates the card before start
            self.load_error = model_load_error(self.settings.model or self.settings.models_dir, exc)
            log.error("error: the model did not load, /readyz answers 503 until restarted with a "
                      "good one: %s", self.load_error)
        self.registry.check_all()

    def start_loading(self) -> None:
        if self._closed:  # the app's lifespan runs again (e.g. a test client entered twice)
            self._executor, self._loader, self._closed = _inference_executor(), _loader_executor(), False
        self._loader.submit(self.load)
        threading.Thread(target=self._watch, name="weedscan-watch", daemon=True).start()

    def close(self) -> None:
        # Not ready any more: a late request gets 503 instead of a 500 from the closed executor.
        self.ready, self._closed = False, True
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._loader.shutdown(wait=False, cancel_futures=True)
        self._batcher.fail_queued(NotReady("the server is shutting down"))

    # --- models -----------------------------------------------------------------------------
    def notice_disk_changes(self) -> None:
        """Per request, and every WATCH_S from a watcher thread: when the models folder changed
        (another worker's swap, `weedscan models`), follow it: at once when the new active model
        is loaded here, else on the loader thread while requests go on with the models they have."""
        if not self.ready or not self.registry.disk_changed():
            return
        self.registry.follow_loaded()
        if self._refresh_queued:
            return
        self._refresh_queued = True

        def refresh() -> None:
            self._refresh_queued = False
            self.registry.refresh()

        try:
            self._loader.submit(refresh)
        except RuntimeError:  # shutting down
            pass

    def _watch(self) -> None:
        """An idle worker follows a swap too, before its next request."""
        while not self._closed:
            time.sleep(WATCH_S)
            self.notice_disk_changes()

    def resolve_model(self, name: str | None) -> tuple[str, ModelCard]:
        """The model a request is for (the active one when it names none) and its card; 422
        naming the available models for an unknown or broken one."""
        self.require_ready()
        self.notice_disk_changes()
        name = name or self.registry.active
        try:
            slot = self.registry.usable(name or "")
        except ModelUnavailable as exc:
            raise InvalidParameter(f"model: {exc}") from exc
        assert slot.card is not None, "usable() returns only slots with a card"
        return slot.name, slot.card

    async def detector_for(self, name: str) -> Detector:
        """The loaded detector of model `name` (resolve_model's); an unloaded one is loaded on
        the loader thread while this request waits (the others do not)."""
        slot = self.registry.slot(name)
        detector = slot.detector if slot else None
        if detector is None:
            try:
                detector = await asyncio.wrap_future(self._loader.submit(self.registry.load, name))
            except ModelUnavailable as exc:  # broken (a damaged file): from now on too
                raise InvalidParameter(f"model: {exc}") from exc
            except RuntimeError as exc:  # the loader has shut down
                raise NotReady("the server is shutting down") from exc
            slot = self.registry.slot(name)
        if slot is not None:
            slot.last_used = time.monotonic()
        return detector

    async def activate(self, name: str) -> None:
        """Make `name` the active model (loaded and warmed first, off the request path)."""
        await asyncio.wrap_future(self._loader.submit(self.registry.activate, name))
        if not self.ready and not self._closed:  # a server whose first model failed recovers
            self.ready, self.load_error = True, None

    def model_slots(self) -> list[ModelSlot]:
        self.notice_disk_changes()
        return self.registry.slots()

    # --- per request ------------------------------------------------------------------------
    def require_ready(self) -> Detector:
        if not self.ready or self.detector is None:
            raise NotReady(f"the model is not loaded: {self.load_error}" if self.load_error
                           else "the model is still loading; retry shortly")
        return self.detector

    @property
    def inflight(self) -> int:
        return self.admission.inflight

    def saturated(self) -> bool:
        """Ready, and every inference slot taken: a new image would be refused."""
        return self.ready and self.admission.full()

    def note_shed(self, client: str | None = None) -> None:
        """A request refused for load (here or by the shedder in front of the app)."""
        self.admission.note_refused(client)

    def retry_after_base(self, client: str | None = None) -> int:
        """Retry-After's lower bound for `client` now (see Admission.retry_after_base)."""
        return self.admission.retry_after_base(client)

    def check_admission(self, client: str | None = None) -> None:
        """Refuse (503) when not ready or full; takes no slot."""
        self.require_ready()
        self.admission.refuse_if_full(client)

    def hold_body(self, client: str | None = None) -> BodyHold:
        """Accounts for a request body's memory while the `with` block runs; `client` (its
        address) holds at most its share (WEEDSCAN_MAX_CLIENT_BODY_SHARE)."""
        return self.admission.hold_body(client)

    def body_pace(self) -> BodyPace:
        return self.admission.body_pace()

    def admit(self, client: str | None = None) -> Slot:
        """An inference slot for `with`; refused like check_admission."""
        self.check_admission(client)
        return self.admission.slot(client)

    @asynccontextmanager
    async def upload(self, request: Request) -> AsyncIterator[Upload]:
        """One inference request's admission, for the routes: refused (503) before its body
        when not ready or full; its body's memory held while the block runs (read it with
        `image()` or `images()`), then `slot()` around the work."""
        client = request.client.host if request.client else None
        self.check_admission(client)
        with self.admission.hold_body(client) as hold:
            yield Upload(self.admission, hold, request)

    async def detect_bytes(self, data: bytes, options: DetectOptions,
                           green: VegetationOptions | None = None,
                           model: Detector | None = None,
                           gone: Callable[[], Awaitable[bool]] | None = None) -> tuple[DetectionResult, np.ndarray]:
        """Decode and detect one image with `model` (default: the active one); the caller holds
        an admission. With `green`, no model runs: the vegetation regions are the detections
        (green-on-brown). `gone` (the request's is_disconnected): a tiled image whose client has
        left stops after the current run, with ClientDisconnect."""
        detector: Detector | GreenDetector = model or self.require_ready()
        if green is not None:
            detector = GreenDetector(green)
        start = time.perf_counter()
        header = read_header(data)  # cheap: the size decides where to decode, and the budget
        check_pixels(header, self.settings.max_pixels)
        pixels = header.width * header.height
        runs = self._runs(detector, header.width, header.height, options)
        cost = pixels  # one run: its decoded pixels
        if runs > 1 and isinstance(detector, Detector):  # tiles (green mode runs once)
            cost = max(pixels, runs * detector.input_size ** 2)
        with self._pixel_budget(pixels, cost):
            if len(data) <= INLINE_DECODE_MAX_BYTES and pixels <= SMALL_IMAGE_PIXELS and runs == 1:
                # an untiled frame: decoded on the lane, and run with the other frames queued there
                image, decode_s, result = await self._batcher.detect(detector, data, options)
            else:  # decoded beside the inference lane, tiles run in steps: frames do not wait
                image = await asyncio.to_thread(decode_image, data, self.settings.max_pixels)
                decode_s = time.perf_counter() - start
                result = await self._detect_in_steps(detector, image, options, gone)
        done = time.perf_counter()
        inference_s = result.timing_ms["inference"] / 1000
        self.metrics.decode.observe(decode_s)
        self.metrics.inference.observe(inference_s)
        for name, count in result.counts().items():
            if count:
                self.metrics.detections.labels(class_name=name).inc(count)
        result.timing_ms = {"decode": decode_s * 1000, **result.timing_ms, "total": (done - start) * 1000}
        return result, image

    def _runs(self, detector: Detector | GreenDetector, width: int, height: int,
              options: DetectOptions) -> int:
        """The model runs an image takes (1, or its tiles and whole frame), from its header.
        A tiled image costs the pixel budget its decoded pixels or, when more, the pixels of
        those model inputs (a sliver: a few pixels by thousands); it is decoded beside the
        lane and its tiles run in steps. Over WEEDSCAN_MAX_TILES runs: 413, before decoding."""
        if not isinstance(detector, Detector):  # green mode: no model runs
            return 1
        runs = detector.runs(width, height, options)
        if runs > self.settings.max_tiles:
            raise TooManyTiles(
                f"a {width}x{height} image is cut into {runs} tiles; the limit is "
                f"{self.settings.max_tiles} (WEEDSCAN_MAX_TILES): send it in pieces, or with tile=off")
        return runs

    @contextmanager
    def _pixel_budget(self, pixels: int, cost: int) -> Iterator[None]:
        """Admission by cost: big images (costing over SMALL_IMAGE_PIXELS, see _cost) in flight
        may add up to WEEDSCAN_MAX_INFLIGHT_PIXELS; one more is refused (503) unless none is in
        flight (so the largest allowed image always gets through alone)."""
        big = cost > SMALL_IMAGE_PIXELS
        budget = self.settings.max_inflight_pixels
        if big and self._big_pixels and self._big_pixels + cost > budget:
            self.note_shed()
            raise Overloaded(f"the server is decoding or inferring {self._big_pixels} pixels of big "
                             f"images, its budget is {budget}; retry after the seconds in Retry-After")
        taken = cost if big else 0
        self._big_pixels += taken
        self.metrics.inflight_pixels.inc(pixels)
        try:
            yield
        finally:
            self._big_pixels -= taken
            self.metrics.inflight_pixels.dec(pixels)
            if big and not self._big_pixels:  # in a pool thread, once the answer has gone
                loop = asyncio.get_running_loop()
                loop.call_soon(loop.run_in_executor, None, return_memory)

    async def _detect_in_steps(self, detector: Detector | GreenDetector, image: np.ndarray,
                               options: DetectOptions,
                               gone: Callable[[], Awaitable[bool]] | None) -> DetectionResult:
        """A big image's detection, one lane job per ONNX Runtime run of its tiles: frames that
        arrive meanwhile are queued behind the current run only, not behind the whole image;
        nothing more runs once its client has gone (a retry would run it all again)."""
        loop = asyncio.get_running_loop()
        if isinstance(detector, GreenDetector):  # no model runs: one job
            return await loop.run_in_executor(self._executor, detector.detect, image, options)
        steps = detector.detect_steps(image, options)
        while True:
            finished, result = await loop.run_in_executor(self._executor, _next_step, steps)
            if finished and result is not None:
                return result
            if gone is not None and await gone():
                steps.close()
                raise ClientDisconnect()


def _next_step(steps: Generator[None, None, DetectionResult]) -> tuple[bool, DetectionResult | None]:
    """One step of a detection (StopIteration cannot cross into an asyncio future)."""
    try:
        next(steps)
    except StopIteration as done:
        return True, done.value
    return False, None


def _inference_executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="weedscan-infer")


def _loader_executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="weedscan-load")
