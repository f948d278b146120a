"""Engines and precisions: what `auto` picks on which CPU with which card, what a forced choice
does, the OpenVINO engine against ONNX Runtime on real images, and the fallback of a server whose
OpenVINO cannot be imported (real `weedscan serve`, real HTTP)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serving.engines.choose import EngineChoiceError, choose_engine
from serving.engines.cpu import CpuFeatures, parse_cpuinfo, this_cpu
from serving.engines.openvino_engine import openvino_available
from serving.model_card import ModelCard, PrecisionCheck
from tests import images
from tests.serving.conftest import LiveServer, ServerExited

AVX2_ONLY = CpuFeatures(model="an AVX2 laptop", flags=frozenset({"avx", "avx2", "fma"}))
AVX512_BF16 = CpuFeatures(model="AMD EPYC", flags=frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}))
AMX = CpuFeatures(model="Intel Xeon", flags=frozenset({"avx2", "avx512f", "amx_tile", "amx_bf16", "amx_int8"}))
needs_openvino = pytest.mark.skipif(not openvino_available(), reason="the openvino extra is not installed")
needs_native_bf16 = pytest.mark.skipif(not this_cpu().native_bf16, reason="this CPU has no native bf16")


def bf16_check(drop: float) -> PrecisionCheck:
    return PrecisionCheck(engine="openvino", precision="bf16", map50={"sesame": 0.9 - drop, "cwfid": 0.75},
                          drop={"sesame": drop, "cwfid": 0.0}, latency_ms=13.0, cpu="AMD EPYC", measured="2026-12-06")


def card_with(shipped_model: Path, *checks: PrecisionCheck, precision: str | None = None) -> ModelCard:
    card = ModelCard.model_validate_json(shipped_model.with_suffix(".json").read_bytes())
    update: dict[str, object] = {"precision_checks": list(checks), "variants": []}
    if precision:
        update["precision"] = precision
    return card.model_copy(update=update)


# --- what auto picks -----------------------------------------------------------------------------

@pytest.mark.parametrize("cpu", [AVX512_BF16, AMX], ids=["avx512-bf16", "amx"])
def test_auto_runs_bf16_on_openvino_where_the_cpu_has_it_and_the_card_validated_it(
        shipped_model: Path, cpu: CpuFeatures) -> None:
    choice = choose_engine(card_with(shipped_model, bf16_check(0.004)), cpu=cpu, have_openvino=True)
    assert (choice.engine, choice.precision, choice.validated) == ("openvino", "bf16", True)
    assert "+0.004" in choice.reason and "sesame" in choice.reason


def test_auto_falls_back_to_onnxruntime_fp32_on_an_avx2_only_cpu(shipped_model: Path) -> None:
    choice = choose_engine(card_with(shipped_model, bf16_check(0.004)), cpu=AVX2_ONLY, have_openvino=True)
    assert (choice.engine, choice.precision) == ("onnxruntime", "fp32")
    assert "no native bf16" in choice.reason


def test_auto_falls_back_to_onnxruntime_fp32_without_openvino(shipped_model: Path) -> None:
    choice = choose_engine(card_with(shipped_model, bf16_check(0.004)), cpu=AMX, have_openvino=False)
    assert (choice.engine, choice.precision) == ("onnxruntime", "fp32")
    assert "OpenVINO is not installed" in choice.reason


@pytest.mark.parametrize("checks", [(), (bf16_check(0.0103),)], ids=["never-measured", "lost-too-much"])
def test_auto_keeps_fp32_when_bf16_was_not_validated(shipped_model: Path,
                                                     checks: tuple[PrecisionCheck, ...]) -> None:
    choice = choose_engine(card_with(shipped_model, *checks), cpu=AVX512_BF16, have_openvino=True)
    assert (choice.engine, choice.precision) == ("onnxruntime", "fp32")
    assert "no validated bf16" in choice.reason


def test_the_validation_bar_is_a_drop_of_at_most_0_01_on_every_split() -> None:
    assert bf16_check(0.01).validated and not bf16_check(0.0101).validated
    assert not PrecisionCheck(engine="openvino", precision="bf16", map50={}, drop={}).validated


def test_the_shipped_card_says_what_each_precision_costs(shipped_model: Path) -> None:
    """The shipped card's checks cover every val split its metrics name, and auto follows them."""
    card = ModelCard.model_validate_json(shipped_model.with_suffix(".json").read_bytes())
    assert card.precision_checks, "run `weedscan precision models/weedscan.onnx --data ...`"
    for check in card.precision_checks:
        assert set(check.drop) == set(card.metrics), check
    int8, bf16 = card.precision_check("openvino", "int8"), card.precision_check("openvino", "bf16")
    expected = ("int8" if card.variant("openvino", "int8") and int8 is not None and int8.validated
                else "bf16" if bf16 is not None and bf16.validated else "fp32")
    choice = choose_engine(card, cpu=AVX512_BF16, have_openvino=True, model_path=shipped_model, verify=True)
    assert choice.precision == expected


# --- forced choices ------------------------------------------------------------------------------

def test_a_forced_unvalidated_precision_runs_and_says_what_it_costs(shipped_model: Path) -> None:
    choice = choose_engine(card_with(shipped_model, bf16_check(0.03)), "openvino", "bf16",
                           cpu=AVX512_BF16, have_openvino=True)
    assert (choice.engine, choice.precision, choice.validated) == ("openvino", "bf16", False)
    assert "NOT validated" in choice.reason and "+0.030" in choice.reason


def test_forced_bf16_on_a_cpu_without_it_is_allowed_with_a_warning(shipped_model: Path) -> None:
    choice = choose_engine(card_with(shipped_model, bf16_check(0.004)), "auto", "bf16",
                           cpu=AVX2_ONLY, have_openvino=True)
    assert choice.precision == "bf16" and "emulated" in choice.reason


@pytest.mark.parametrize(("engine", "precision", "have_openvino", "says"), [
    ("onnxruntime", "bf16", True, "bf16 needs WEEDSCAN_ENGINE=openvino"),
    ("openvino", "auto", False, "OpenVINO is not installed"),
    ("auto", "bf16", False, "bf16 needs OpenVINO"),
    ("auto", "int8", True, "weedscan quantize"),
])
def test_a_choice_that_cannot_run_here_is_refused_with_the_reason(
        shipped_model: Path, engine: str, precision: str, have_openvino: bool, says: str) -> None:
    with pytest.raises(EngineChoiceError, match=says):
        choose_engine(card_with(shipped_model), engine, precision,  # type: ignore[arg-type]
                      cpu=AVX512_BF16, have_openvino=have_openvino)


def test_an_int8_file_runs_as_int8(shipped_model: Path) -> None:
    card = card_with(shipped_model, precision="int8 (ONNX Runtime static quantization, QDQ, per-channel)")
    assert choose_engine(card, cpu=AMX, have_openvino=True).model_dump(include={"engine", "precision"}) == {
        "engine": "onnxruntime", "precision": "int8"}
    with pytest.raises(EngineChoiceError, match="runs as int8"):
        choose_engine(card, "auto", "bf16", cpu=AMX, have_openvino=True)


def test_cpu_flags_are_read_from_cpuinfo() -> None:
    cpu = parse_cpuinfo("processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu avx2 avx512f "
                        "avx512_vnni avx512_bf16\n\nprocessor\t: 1\nmodel name\t: other\nflags\t: sse\n")
    assert cpu.model == "AMD EPYC 9R14" and cpu.native_bf16 and cpu.native_int8 and not cpu.amx
    assert "avx512_bf16" in cpu.summary()
    assert not AVX2_ONLY.native_bf16 and not AVX2_ONLY.native_int8 and AMX.amx


# --- the OpenVINO engine on real images ----------------------------------------------------------

def _matched_boxes(a: np.ndarray, b: np.ndarray) -> float:
    """The largest distance (px) from a box in `a` to its nearest box in `b`."""
    if len(a) == 0:
        return 0.0
    return float(max(np.abs(b - box).max(axis=1).min() for box in a))


def share_matched(a: np.ndarray, b: np.ndarray, tolerance: float) -> float:
    """The share of boxes in `a` with a box in `b` within `tolerance` px on every side."""
    if len(a) == 0:
        return 1.0
    return sum(bool(len(b)) and float(np.abs(b - box).max(axis=1).min()) < tolerance for box in a) / len(a)


@needs_openvino
@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=needs_native_bf16)])
def test_openvino_finds_what_onnxruntime_finds(shipped_model: Path, shared_data: Path, precision: str) -> None:
    import cv2

    from serving.detector import DetectOptions, Detector

    reference = Detector(shipped_model, threads=2, engine="onnxruntime", precision="fp32")
    detector = Detector(shipped_model, threads=2, engine="openvino", precision=precision)  # type: ignore[arg-type]
    assert detector.model_info["engine"] == "openvino" and detector.model_info["precision"] == precision
    assert detector.providers == ["OpenVINO CPU"] and detector.frame_stride == reference.frame_stride
    photos = sorted((shared_data / "cwfid" / "images" / "val").glob("*"))[:2]
    photos += sorted((shared_data / "sesame" / "images" / "val").glob("*"))[:2]
    tolerance = 1.0 if precision == "fp32" else 12.0  # px; bf16 rounds every activation
    for photo in photos:
        image = cv2.imread(str(photo))
        want = np.asarray(reference.detect(image, DetectOptions(conf=0.5)).detections.boxes)
        got = np.asarray(detector.detect(image, DetectOptions(conf=0.5)).detections.boxes)
        assert abs(len(got) - len(want)) <= (0 if precision == "fp32" else 2), photo.name
        if precision == "fp32":
            assert _matched_boxes(want, got) < tolerance, photo.name
        else:  # a box near the threshold may cross it: most, not all, are found again
            assert share_matched(want, got, tolerance) >= 0.8, photo.name
    # several frames at once (the frame batcher's path) answer as one at a time does
    frames = [images.field_like(640, 480, seed) for seed in range(2)]
    together = detector.detect_frames(frames, [DetectOptions()] * 2)
    for frame, answer in zip(frames, together):
        alone = detector.detect(frame, DetectOptions()).detections
        assert np.allclose(np.asarray(answer.detections.boxes), np.asarray(alone.boxes), atol=0.1)


# --- a server whose OpenVINO cannot be imported --------------------------------------------------

def _without_openvino(tmp_path: Path) -> dict[str, str]:
    """An environment in which `import openvino` fails and find_spec finds nothing."""
    shim = tmp_path / "no-openvino"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text("import sys\nsys.modules['openvino'] = None\n", encoding="utf-8")
    repo = Path(__file__).resolve().parents[2]
    return {"PYTHONPATH": f"{shim}:{repo}"}


def _validated_copy(shipped_model: Path, folder: Path) -> Path:
    """The shipped model with a card that says bf16 kept accuracy (so auto would pick it)."""
    folder.mkdir()
    model = folder / "weedscan.onnx"
    shutil.copyfile(shipped_model, model)
    card = card_with(shipped_model, bf16_check(0.002))
    model.with_suffix(".json").write_text(card.model_dump_json(), encoding="utf-8")
    return model


def test_without_openvino_the_server_answers_with_onnxruntime_fp32(tmp_path: Path, shipped_model: Path) -> None:
    model = _validated_copy(shipped_model, tmp_path / "models")
    server = LiveServer(model, env=_without_openvino(tmp_path))
    try:
        answer = server.http.post("/v1/detect", content=images.encode(images.field_like(640, 480)),
                                  headers={"Content-Type": "image/jpeg"})
        assert answer.status_code == 200, answer.text
        assert {k: answer.json()["model"][k] for k in ("engine", "precision")} == {
            "engine": "onnxruntime", "precision": "fp32"}
        listed = server.http.get("/v1/models").json()["models"][0]
        assert listed["engine"]["engine"] == "onnxruntime" and "OpenVINO is not installed" in listed["engine"]["reason"]
        metrics = server.http.get("/metrics").text
        assert 'engine="onnxruntime"' in metrics and 'precision="fp32"' in metrics
        told = "weedscan.onnx runs on onnxruntime in fp32 (auto: fp32, because OpenVINO is not installed"
        assert told in server.log()  # the operator is told at start
    finally:
        server.stop()


def test_without_openvino_a_forced_openvino_server_stops_with_the_reason(tmp_path: Path,
                                                                         shipped_model: Path) -> None:
    with pytest.raises(ServerExited, match="OpenVINO is not installed"):
        LiveServer(shipped_model, env={**_without_openvino(tmp_path), "WEEDSCAN_ENGINE": "openvino"})


@needs_openvino
@needs_native_bf16
def test_auto_serves_a_validated_bf16_model_in_bf16_over_http(tmp_path: Path, shipped_model: Path) -> None:
    model = _validated_copy(shipped_model, tmp_path / "models")
    server = LiveServer(model)
    try:
        answer = server.http.post("/v1/detect", content=images.encode(images.field_like(640, 480)),
                                  headers={"Content-Type": "image/jpeg"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"]["engine"] == "openvino" and answer.json()["model"]["precision"] == "bf16"
    finally:
        server.stop()
    # and the same server told to use the reference answers in ONNX Runtime fp32
    server = LiveServer(model, env={"WEEDSCAN_ENGINE": "onnxruntime", "WEEDSCAN_PRECISION": "fp32"})
    try:
        answer = server.http.post("/v1/detect", content=images.encode(images.field_like(640, 480)),
                                  headers={"Content-Type": "image/jpeg"})
        assert answer.json()["model"]["engine"] == "onnxruntime"
    finally:
        server.stop()


def test_weedscan_detect_takes_the_engine_settings(tmp_path: Path, shipped_model: Path) -> None:
    image = tmp_path / "field.jpg"
    image.write_bytes(images.encode(images.field_like(640, 480)))
    env = {**_without_openvino(tmp_path), "WEEDSCAN_ENGINE": "onnxruntime", "WEEDSCAN_PRECISION": "bf16"}
    done = subprocess.run([sys.executable, "-m", "weedscan_cli", "detect", str(image), "--model", str(shipped_model)],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "bf16 needs WEEDSCAN_ENGINE=openvino" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    env["WEEDSCAN_PRECISION"] = "fp32"
    done = subprocess.run([sys.executable, "-m", "weedscan_cli", "detect", str(image), "--model", str(shipped_model)],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[0])["model"]["engine"] == "onnxruntime"
