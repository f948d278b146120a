"""The ONNX detector: letterbox -> ONNX Runtime -> decode -> boxes on the upright original."""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from serving.config import cpu_count
from serving.detections import Detections
from serving.errors import ModelCardError
from serving.model_card import ModelCard, load_card
from serving.postprocess import decode_output, infer_layout
from serving.preprocess import Letterbox, letterbox, to_blob
from serving.result import DetectionResult
from serving.tiling import TileSlicer, should_tile
from serving.vegetation import COVER_WORK_SIDE, VegetationOptions, vegetation_mask

# Best first; whatever this ONNX Runtime build offers, CPU last as the fallback.
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CoreMLExecutionProvider", "CPUExecutionProvider")
TILE_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class DetectOptions:
    conf: float | None = None  # None: the card's default
    iou: float | None = None
    classes: tuple[int, ...] | None = None
    max_det: int = 300
    tile: str = "auto"


COVER_OPTIONS = VegetationOptions(work_side=COVER_WORK_SIDE)


@dataclass(frozen=True)
class TilingConfig:
    tile_scale: float = 2.0  # tile side = tile_scale x model input, in original pixels
    overlap: float = 0.2
    # `auto` tiles when the longer side exceeds both of these: whole frames up to ~2000 px look
    # like the training images (CWFID is 1296 px), drone and phone photos do not.
    auto_factor: float = 4.0  # x model input
    auto_min_side: int = 2048
    # Tiles per ONNX Runtime run. Its arena keeps what the largest run needed: after an
    # 8000x8000 photo a process holds ~483 MB at 16 tiles a run, ~211 MB at 4 (~170 MB before the
    # photo), at the same speed (benchmarks/RESULTS.md, tiles per run). Each run is also one step of the inference lane (Detector.detect_steps):
    # frames queued behind a big photo wait for one run of tiles, not for the whole photo.
    max_batch: int = 4


def available_providers() -> list[str]:
    offered = set(ort.get_available_providers())
    return [p for p in PREFERRED_PROVIDERS if p in offered] or ["CPUExecutionProvider"]


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
                 idle_spin: bool = True, input_border: int | None = None) -> None:
        """`idle_spin=False` stops ONNX Runtime's worker threads from spinning after each run (by
        default they busy-wait ~50 ms for the next one: good for back-to-back runs, a burnt core
        for a server whose next request is still on the wire). `input_border`: the grey frame
        around each image in model-input pixels; None: the model card's."""
        self.model_path = Path(model_path)
        self.model_card: ModelCard = load_card(self.model_path, verify=verify)
        self.class_names: list[str] = list(self.model_card.classes)
        self.tiling = tiling or TilingConfig()

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpu_count()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if not idle_spin:
            options.add_session_config_entry("session.force_spinning_stop", "1")
        self.session = ort.InferenceSession(str(self.model_path), options,
                                            providers=available_providers())
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.input_size = int(self.model_card.input_size or model_input.shape[2])
        self.input_border = self.model_card.input_border if input_border is None else input_border
        if not 0 <= 2 * self.input_border < self.input_size:
            raise ModelCardError(f"an input border of {self.input_border} px leaves no room for the image "
                                 f"in the {self.input_size} px input of {self.model_path.name}")
        self.dynamic_batch = not isinstance(model_input.shape[0], int)
        # Dynamic height/width: a single frame is padded only to the stride (as Ultralytics does).
        dynamic_shape = not all(isinstance(d, int) for d in model_input.shape[2:])
        stride = int(self.session.get_modelmeta().custom_metadata_map.get("stride", 32))
        self.frame_stride: int | None = stride if dynamic_shape else None
        output_shape = self.session.get_outputs()[0].shape
        self.layout = self.model_card.output_layout or infer_layout(output_shape, len(self.class_names))
        self.default_conf = self.model_card.thresholds.conf
        self.default_iou = self.model_card.thresholds.iou

    @property
    def model_info(self) -> dict[str, str]:
        return self.model_card.model_info()

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def class_ids_for(self, names: Sequence[str]) -> tuple[int, ...]:
        """Class names -> ids; ValueError names the unknown ones."""
        return lookup_class_ids(names, self.class_names)

    def warmup(self, runs: int = 2) -> None:
        blank = np.full((self.input_size, self.input_size, 3), 114, np.uint8)
        for _ in range(runs):
            self._run([blank])

    def _run(self, images: list[np.ndarray]) -> np.ndarray:
        if self.dynamic_batch or len(images) == 1:
            return self.session.run(None, {self.input_name: to_blob(images)})[0]
        return np.concatenate([self.session.run(None, {self.input_name: to_blob([im])})[0]
                               for im in images])

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
        """detect() as a generator: it pauses after each ONNX Runtime run (of up to
        TilingConfig.max_batch tiles) and returns the result. The server runs each step as its
        own job on the inference lane, so frames queued meanwhile get in between the runs of a
        big tiled photo."""
        options = options or DetectOptions()
        conf, iou = self._thresholds(options)
        height, width = image.shape[:2]
        start = time.perf_counter()

        slicer = self._slicer()
        windows = [(0, 0, width, height)]
        if self.tiles(width, height, options):
            windows = slicer.windows(width, height)
        stride = self.frame_stride if len(windows) == 1 else None  # a tile batch needs one shape

        parts: list[Detections] = []
        step = self.tiling.max_batch if self.dynamic_batch else 1
        for first in range(0, len(windows), step):
            if first:
                yield  # the lane may run another request's job here
            inputs, boxes_back = [], []
            for x0, y0, x1, y1 in windows[first:first + step]:  # letterboxed per run: less memory
                # Tiles fill the input: the merge tells a plant cut by a seam by its box reaching
                # the tile's edge, which a grey frame would keep it from.
                border = self.input_border if (x0, y0, x1, y1) == (0, 0, width, height) else 0
                padded, lb = letterbox(image[y0:y1, x0:x1], self.input_size, stride, border)
                inputs.append(padded)
                boxes_back.append((lb, x0, y0))
            outputs = self._run(inputs)
            parts += [self._boxes_back(output, lb, x0, y0, conf, iou, options)
                      for output, (lb, x0, y0) in zip(outputs, boxes_back)]
        if len(windows) > 1:
            yield  # the merge of the tiles' boxes is a step of its own
        detections = slicer.merge(parts, windows, width, height, iou, options.max_det)
        return self._result(image, detections, start)

    def detect_frames(self, frames: Sequence[np.ndarray],
                      options: Sequence[DetectOptions]) -> list[DetectionResult]:
        """Whole frames (none tiled) of several requests, each with its own options, in one
        ONNX Runtime run per input shape (frames of one camera share it): the server's micro-
        batch. Each answer is the one detect() gives that frame alone, up to float rounding."""
        start = time.perf_counter()
        letterboxed = [letterbox(frame, self.input_size, self.frame_stride, self.input_border)
                       for frame in frames]
        outputs: list[np.ndarray | None] = [None] * len(frames)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, (padded, _) in enumerate(letterboxed):
            by_shape.setdefault(padded.shape, []).append(i)
        for members in by_shape.values():
            for i, output in zip(members, self._run([letterboxed[i][0] for i in members])):
                outputs[i] = output
        results = []
        slicer = self._slicer()
        for frame, (_, lb), output, opts in zip(frames, letterboxed, outputs, options):
            conf, iou = self._thresholds(opts)
            height, width = frame.shape[:2]
            part = self._boxes_back(output, lb, 0, 0, conf, iou, opts)
            detections = slicer.merge([part], [(0, 0, width, height)], width, height, iou, opts.max_det)
            results.append(self._result(frame, detections, start))
        return results

    def _boxes_back(self, output: np.ndarray, lb: Letterbox, x0: int, y0: int, conf: float, iou: float,
                    options: DetectOptions) -> Detections:
        """One model output as detections in the pixels of the image its window was cut from."""
        dets = decode_output(output, self.layout, conf, iou, options.max_det, options.classes)
        return Detections(lb.undo(dets.boxes), dets.scores, dets.class_ids).shifted(x0, y0)

    def _result(self, image: np.ndarray, detections: Detections, start: float) -> DetectionResult:
        height, width = image.shape[:2]
        result = DetectionResult(detections, width, height, self.class_names, self.model_info)
        if len(result._weed_boxes()):  # plant-area weed cover, only when needed, from a coarse mask
            result.vegetation = vegetation_mask(image, COVER_OPTIONS, full_resolution=False).mask
        result.timing_ms = {"inference": (time.perf_counter() - start) * 1000}
        return result
