"""The detector, in stages as Ultralytics' predictor has them, each timed:

  preprocess   letterbox each window (the whole image, or its tiles) into a model input
  inference    the network's forward pass, on the engine chosen for this CPU (serving/engines)
  postprocess  decode the outputs, boxes back onto the upright original, merge a tiled image
  cover        the coarse plant mask the weed cover needs (skipped where no one needs it)
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from serving.answer import ModelRef
from serving.config import cpu_count
from serving.detections import Detections
from serving.engines import Engine, EngineChoice, choose_engine, open_engine
from serving.engines.choose import EngineRequest, PrecisionRequest
from serving.errors import ModelCardError
from serving.model_card import ModelCard, load_card
from serving.postprocess import decode_output, infer_layout
from serving.preprocess import Letterbox, letterbox, to_blob
from serving.result import DetectionResult
from serving.tiling import TileSlicer, should_tile
from serving.vegetation import COVER_WORK_SIDE, VegetationOptions, vegetation_mask

TILE_MODES = ("auto", "on", "off")
STAGES = ("preprocess", "inference", "postprocess", "cover")

# A tiled image's windows are decoded and merged at this confidence (or the request's, when
# lower) and with these caps, whatever the request asks; only then are boxes under the request's
# conf dropped. So one photo gives the same boxes at a threshold whether a client asks at that
# threshold or asks lower and filters (as the page does): the merge of boxes cut by tile seams
# would otherwise change with the boxes that take part in it.
MERGE_FLOOR_CONF = 0.05
MERGE_WINDOW_MAX_DET = 300

# `auto`: the mask only when a weed box needs it for the cover; `always`: also for an answer that
# sends the mask itself; `off`: never (eval and export parity score boxes only).
CoverMode = Literal["auto", "always", "off"]


@dataclass(frozen=True)
class DetectOptions:
    conf: float | None = None  # None: the card's default
    iou: float | None = None
    classes: tuple[int, ...] | None = None
    max_det: int = 300
    tile: str = "auto"
    cover: CoverMode = "auto"


COVER_OPTIONS = VegetationOptions(work_side=COVER_WORK_SIDE)


@dataclass(frozen=True)
class TilingConfig:
    tile_scale: float = 2.0  # tile side = tile_scale x model input, in original pixels
    overlap: float = 0.2
    # `auto` tiles when the longer side exceeds both of these: whole frames up to ~2000 px look
    # like the training images (CWFID is 1296 px), drone and phone photos do not.
    auto_factor: float = 4.0  # x model input
    auto_min_side: int = 2048
    # Tiles per forward pass. The engine's memory arena keeps what the largest run needed, so
    # small runs keep a process small after a big photo, at the same speed (benchmarks/RESULTS.md,
    # tiles per run). Each run is also one step of the inference lane (Detector.detect_steps):
    # frames queued behind a big photo wait for one run of tiles, not for the whole photo.
    max_batch: int = 4


class StageClock:
    """Milliseconds spent per stage, summed over the steps of one detection."""

    def __init__(self) -> None:
        self.ms = dict.fromkeys(STAGES, 0.0)
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.ms[stage] += (now - self._last) * 1000
        self._last = now

    def restart(self) -> None:
        """Time between steps (the lane running other work) belongs to no stage."""
        self._last = time.perf_counter()


def lookup_class_ids(names: Sequence[str], class_names: Sequence[str],
                     knower: str = "this model") -> tuple[int, ...]:
    """Class names -> their ids in class_names; ValueError names the unknown ones."""
    unknown = [n for n in names if n not in class_names]
    if unknown:
        shown = ", ".join(n[:40] for n in unknown[:5])  # capped: never echo a whole list back
        if len(unknown) > 5:
            shown += f" and {len(unknown) - 5} more"
        raise ValueError(f"unknown class(es) {shown}; {knower} knows {', '.join(class_names)}")
    return tuple(list(class_names).index(n) for n in names)


class Detector:
    def __init__(self, model_path: str | Path, threads: int | None = None,
                 tiling: TilingConfig | None = None, verify: bool = True,
                 idle_spin: bool = True, input_border: int | None = None,
                 engine: EngineRequest = "auto", precision: PrecisionRequest = "auto") -> None:
        """`idle_spin=False` stops the engine's worker threads from busy-waiting after each run.
        `input_border`: the grey frame around each image in model-input pixels; None: the
        model card's. `engine`/`precision`: `auto` picks the fastest validated for this CPU
        (serving/engines/choose.py); EngineChoiceError when a forced one cannot run here."""
        self.model_path = Path(model_path)
        self.model_card: ModelCard = load_card(self.model_path, verify=verify)
        self.class_names: list[str] = list(self.model_card.classes)
        self.tiling = tiling or TilingConfig()
        self.engine_choice: EngineChoice = choose_engine(self.model_card, engine, precision,
                                                         model_path=self.model_path, verify=verify)
        # What each answer says about the model: the card's name, version and sha256, and the
        # engine and precision that ran it (built once; every result shares it).
        self.model_ref = ModelRef(**self.model_card.model_info(), engine=self.engine_choice.engine,
                                  precision=self.engine_choice.precision)
        self.engine: Engine = open_engine(self.model_path, self.model_card, self.engine_choice,
                                          threads or cpu_count(), idle_spin)
        input_shape = self.engine.input_shape
        self.input_size = int(self.model_card.input_size or input_shape[2] or 0)
        self.input_border = self.model_card.input_border if input_border is None else input_border
        if not 0 <= 2 * self.input_border < self.input_size:
            raise ModelCardError(f"an input border of {self.input_border} px leaves no room for the image "
                                 f"in the {self.input_size} px input of {self.model_path.name}")
        self.dynamic_batch = input_shape[0] is None
        # Dynamic height/width: a single frame is padded only to the stride (as Ultralytics does).
        dynamic_shape = any(d is None for d in input_shape[2:])
        self.frame_stride: int | None = self.engine.stride if dynamic_shape else None
        self.layout = self.model_card.output_layout or infer_layout(self.engine.output_shape,
                                                                    len(self.class_names))
        self.default_conf = self.model_card.thresholds.conf
        self.default_iou = self.model_card.thresholds.iou

    @property
    def model_info(self) -> dict[str, str]:
        """The model reference as plain labels (metrics, logs)."""
        return {k: str(v) for k, v in self.model_ref.model_dump(exclude_none=True).items()}

    @property
    def providers(self) -> list[str]:
        return self.engine.providers()

    def class_ids_for(self, names: Sequence[str]) -> tuple[int, ...]:
        """Class names -> ids; ValueError names the unknown ones."""
        return lookup_class_ids(names, self.class_names)

    def warmup(self, runs: int = 2) -> None:
        blank = np.full((self.input_size, self.input_size, 3), 114, np.uint8)
        for _ in range(runs):
            self.forward([blank])

    def forward(self, images: list[np.ndarray]) -> np.ndarray:
        """The network on letterboxed images of one shape: one output per image."""
        if self.dynamic_batch or len(images) == 1:
            return self.engine.run(to_blob(images))
        return np.concatenate([self.engine.run(to_blob([im])) for im in images])

    def detect(self, image: np.ndarray, options: DetectOptions | None = None) -> DetectionResult:
        """Detect on one upright BGR image; boxes come back in its pixels."""
        steps = self.detect_steps(image, options)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    def _thresholds(self, options: DetectOptions) -> tuple[float, float]:
        return (self.default_conf if options.conf is None else options.conf,
                self.default_iou if options.iou is None else options.iou)

    def _slicer(self) -> TileSlicer:
        return TileSlicer(round(self.input_size * self.tiling.tile_scale), self.tiling.overlap)

    def tiles(self, width: int, height: int, options: DetectOptions) -> bool:
        """Whether detect() cuts an image of this size into tiles."""
        return should_tile(width, height, self.input_size, options.tile, self.tiling.auto_factor,
                           self.tiling.auto_min_side)

    def runs(self, width: int, height: int, options: DetectOptions) -> int:
        """How many model inputs detect() runs for an image of this size: 1, or its windows
        (the whole frame and each tile) when it is tiled."""
        return self._slicer().count(width, height) if self.tiles(width, height, options) else 1

    def detect_steps(self, image: np.ndarray,
                     options: DetectOptions | None = None) -> Generator[None, None, DetectionResult]:
        """detect() as a generator: it pauses after each forward pass (of up to
        TilingConfig.max_batch tiles) and returns the result. The server runs each step as its
        own job on the inference lane, so frames queued meanwhile get in between the runs of a
        big tiled photo."""
        options = options or DetectOptions()
        conf, iou = self._thresholds(options)
        height, width = image.shape[:2]
        clock = StageClock()

        slicer = self._slicer()
        windows = [(0, 0, width, height)]
        if self.tiles(width, height, options):
            windows = slicer.windows(width, height)
        tiled = len(windows) > 1
        stride = None if tiled else self.frame_stride  # a tile batch needs one shape
        # A whole frame's NMS keeps the same boxes at or above conf whatever lower boxes took
        # part; a tiled image's merge does not, so it runs on a fixed floor (MERGE_FLOOR_CONF).
        window_conf = min(conf, MERGE_FLOOR_CONF) if tiled else conf
        window_max_det = max(options.max_det, MERGE_WINDOW_MAX_DET) if tiled else options.max_det

        parts: list[Detections] = []
        step = self.tiling.max_batch if self.dynamic_batch else 1
        for first in range(0, len(windows), step):
            if first:
                yield  # the lane may run another request's job here
                clock.restart()
            inputs, boxes_back = [], []
            for x0, y0, x1, y1 in windows[first:first + step]:  # letterboxed per run: less memory
                # Tiles fill the input: the merge tells a plant cut by a seam by its box reaching
                # the tile's edge, which a grey frame would keep it from.
                border = 0 if tiled and (x0, y0, x1, y1) != (0, 0, width, height) else self.input_border
                padded, lb = letterbox(image[y0:y1, x0:x1], self.input_size, stride, border)
                inputs.append(padded)
                boxes_back.append((lb, x0, y0))
            clock.lap("preprocess")
            outputs = self.forward(inputs)
            clock.lap("inference")
            parts += [self._boxes_back(output, lb, x0, y0, window_conf, iou, window_max_det, options.classes)
                      for output, (lb, x0, y0) in zip(outputs, boxes_back)]
            clock.lap("postprocess")
        if tiled:
            yield  # the merge of the tiles' boxes is a step of its own
            clock.restart()
            merged = slicer.merge(parts, windows, width, height, iou, window_max_det)
            detections = merged[merged.scores > conf][:options.max_det]  # decode keeps scores > conf
        else:
            detections = parts[0][:options.max_det]
        clock.lap("postprocess")
        return self._result(image, detections, clock, options.cover)

    def detect_frames(self, frames: Sequence[np.ndarray],
                      options: Sequence[DetectOptions]) -> list[DetectionResult]:
        """Whole frames (none tiled) of several requests, each with its own options, in one
        forward pass per input shape (frames of one camera share it): the server's micro-batch.
        Each answer is the one detect() gives that frame alone, up to float rounding; each
        frame's stage times are the batch's shared stages plus its own postprocess."""
        clock = StageClock()
        letterboxed = [letterbox(frame, self.input_size, self.frame_stride, self.input_border)
                       for frame in frames]
        clock.lap("preprocess")
        outputs: list[np.ndarray | None] = [None] * len(frames)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, (padded, _) in enumerate(letterboxed):
            by_shape.setdefault(padded.shape, []).append(i)
        for members in by_shape.values():
            for i, output in zip(members, self.forward([letterboxed[i][0] for i in members])):
                outputs[i] = output
        clock.lap("inference")
        results = []
        for frame, (_, lb), output, opts in zip(frames, letterboxed, outputs, options):
            assert output is not None
            conf, iou = self._thresholds(opts)
            frame_clock = StageClock()
            frame_clock.ms = dict(clock.ms)
            detections = self._boxes_back(output, lb, 0, 0, conf, iou, opts.max_det, opts.classes)
            frame_clock.lap("postprocess")
            results.append(self._result(frame, detections, frame_clock, opts.cover))
        return results

    def _boxes_back(self, output: np.ndarray, lb: Letterbox, x0: int, y0: int, conf: float, iou: float,
                    max_det: int, classes: tuple[int, ...] | None) -> Detections:
        """One model output as detections in the pixels of the image its window was cut from."""
        dets = decode_output(output, self.layout, conf, iou, max_det, classes)
        return Detections(lb.undo(dets.boxes), dets.scores, dets.class_ids).shifted(x0, y0)

    def _result(self, image: np.ndarray, detections: Detections, clock: StageClock,
                cover: CoverMode) -> DetectionResult:
        height, width = image.shape[:2]
        result = DetectionResult(detections, width, height, self.class_names, self.model_ref)
        if cover == "always" or (cover == "auto" and result.needs_vegetation()):
            result.vegetation = vegetation_mask(image, COVER_OPTIONS, full_resolution=False).mask
        clock.lap("cover")
        result.timing_ms = {stage: ms for stage, ms in clock.ms.items()}
        return result
