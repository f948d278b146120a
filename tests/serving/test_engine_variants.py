"""A model's int8 variant (an OpenVINO IR beside the .onnx, named in its card): when `auto` runs
it, when it falls back and says why, what a forced int8 does, how the models folder carries and
removes it, and the shipped variant against ONNX Runtime fp32 on real images and over real HTTP."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from serving.engines.choose import EngineChoiceError, choose_engine
from serving.model_card import ModelCard, ModelVariant, PrecisionCheck, load_card, sha256_of, variant_file_names
from serving.models_dir import add_model, remove_model
from tests import images
from tests.serving.conftest import LiveServer
from tests.serving.test_engines import AMX, AVX2_ONLY, AVX512_BF16, bf16_check, needs_openvino, share_matched

SPLITS = ("sesame", "cwfid", "potato-uav", "sugarbeet-jmpap")


def int8_check(drop: float) -> PrecisionCheck:
    return PrecisionCheck(engine="openvino", precision="int8", map50=dict.fromkeys(SPLITS, 0.8),
                          drop={**dict.fromkeys(SPLITS, 0.0), "sugarbeet-jmpap": drop}, latency_ms=12.0,
                          cpu="AMD EPYC", measured="2026-12-06", file="m.openvino-int8.xml")


def model_with_variant(shipped_model: Path, folder: Path, *checks: PrecisionCheck, name: str = "m") -> Path:
    """A copy of the shipped model as NAME in `folder`, with a small stand-in int8 variant (two
    files of bytes: only their presence and sha256 matter before an engine opens them)."""
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / f"{name}.onnx"
    shutil.copyfile(shipped_model, model)
    graph_name, weights_name = variant_file_names(name, "openvino", "int8")
    (folder / graph_name).write_bytes(b"<net/>")
    (folder / weights_name).write_bytes(b"\0" * 64)
    source = ModelCard.model_validate_json(shipped_model.with_suffix(".json").read_bytes())
    variant = ModelVariant(engine="openvino", precision="int8", file=graph_name, sha256=sha256_of(folder / graph_name),
                           weights_file=weights_name, weights_sha256=sha256_of(folder / weights_name),
                           source_sha256=source.sha256)
    card = source.model_copy(update={"name": name, "variants": [variant], "precision_checks": list(checks)})
    model.with_suffix(".json").write_text(card.model_dump_json(), encoding="utf-8")
    return model


def choose(model: Path, engine: str = "auto", precision: str = "auto", **kwargs: object):  # noqa: ANN201
    card = load_card(model)
    return choose_engine(card, engine, precision, model_path=model, verify=True,  # type: ignore[arg-type]
                         **{"cpu": AVX512_BF16, "have_openvino": True, **kwargs})  # type: ignore[arg-type]


# --- what auto picks -----------------------------------------------------------------------------

@pytest.mark.parametrize("cpu", [AVX2_ONLY, AVX512_BF16, AMX], ids=["avx2", "avx512-bf16", "amx"])
def test_auto_runs_a_validated_int8_variant_first(tmp_path: Path, shipped_model: Path, cpu: object) -> None:
    model = model_with_variant(shipped_model, tmp_path, int8_check(0.003), bf16_check(0.001))
    choice = choose(model, cpu=cpu)
    assert (choice.engine, choice.precision, choice.file, choice.validated) == (
        "openvino", "int8", "m.openvino-int8.xml", True)
    assert "kept accuracy" in choice.reason and "+0.003" in choice.reason


def test_auto_passes_over_an_int8_variant_that_lost_too_much(tmp_path: Path, shipped_model: Path) -> None:
    model = model_with_variant(shipped_model, tmp_path, int8_check(0.02), bf16_check(0.001))
    assert choose(model).precision == "bf16"
    model = model_with_variant(shipped_model, tmp_path / "other", int8_check(0.02))
    choice = choose(model)
    assert (choice.engine, choice.precision, choice.file) == ("onnxruntime", "fp32", None)
    assert "no validated int8" in choice.reason and "no validated bf16" in choice.reason


@pytest.mark.parametrize("damage", ["missing", "altered"])
def test_auto_falls_back_when_the_variant_files_are_missing_or_altered(
        tmp_path: Path, shipped_model: Path, damage: str) -> None:
    model = model_with_variant(shipped_model, tmp_path, int8_check(0.003))
    weights = tmp_path / "m.openvino-int8.bin"
    weights.unlink() if damage == "missing" else weights.write_bytes(b"\1" * 64)
    choice = choose(model)
    assert (choice.engine, choice.precision) == ("onnxruntime", "fp32")
    assert ("is missing" if damage == "missing" else "does not match the card") in choice.reason
    with pytest.raises(EngineChoiceError, match="variant cannot run"):
        choose(model, "openvino", "int8")


def test_a_variant_made_from_another_onnx_is_ignored(tmp_path: Path, shipped_model: Path) -> None:
    model = model_with_variant(shipped_model, tmp_path, int8_check(0.003))
    card = load_card(model)
    stale = card.variants[0].model_copy(update={"source_sha256": "0" * 64})
    model.with_suffix(".json").write_text(card.model_copy(update={"variants": [stale]}).model_dump_json(),
                                          encoding="utf-8")
    assert choose(model).precision == "fp32"


def test_without_openvino_auto_runs_onnxruntime_fp32_and_forced_int8_is_refused(
        tmp_path: Path, shipped_model: Path) -> None:
    model = model_with_variant(shipped_model, tmp_path, int8_check(0.003))
    choice = choose(model, have_openvino=False)
    assert (choice.engine, choice.precision) == ("onnxruntime", "fp32")
    assert "OpenVINO is not installed" in choice.reason
    with pytest.raises(EngineChoiceError, match="needs OpenVINO"):
        choose(model, "auto", "int8", have_openvino=False)


def test_forced_choices_beside_a_variant(tmp_path: Path, shipped_model: Path) -> None:
    model = model_with_variant(shipped_model, tmp_path, int8_check(0.02))
    forced = choose(model, "auto", "int8")  # not validated: obeyed, and what it costs is said
    assert (forced.engine, forced.precision, forced.validated) == ("openvino", "int8", False)
    assert "NOT validated" in forced.reason
    reference = choose(model, "onnxruntime", "fp32")
    assert (reference.engine, reference.precision, reference.file) == ("onnxruntime", "fp32", None)
    with pytest.raises(EngineChoiceError, match="WEEDSCAN_ENGINE=openvino"):
        choose(model, "onnxruntime", "int8")


# --- the models folder carries a model's variants ------------------------------------------------

def test_adding_a_model_copies_its_variant_under_the_new_name_and_removing_deletes_it(
        tmp_path: Path, shipped_model: Path) -> None:
    source = model_with_variant(shipped_model, tmp_path / "out", int8_check(0.003))
    folder = tmp_path / "models"
    target = add_model(folder, source, name="field7")
    card = load_card(target)
    assert [v.file for v in card.variants] == ["field7.openvino-int8.xml"]
    assert choose(target).file == "field7.openvino-int8.xml"  # found and intact under its new name
    remove_model(folder, "field7")
    assert sorted(p.name for p in folder.iterdir()) == []


def test_adding_a_model_whose_variant_is_missing_drops_it_from_the_card(tmp_path: Path, shipped_model: Path) -> None:
    source = model_with_variant(shipped_model, tmp_path / "out", int8_check(0.003))
    (tmp_path / "out" / "m.openvino-int8.xml").unlink()
    target = add_model(tmp_path / "models", source)
    assert load_card(target).variants == []
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["m.json", "m.onnx"]


# --- the shipped variant ---------------------------------------------------------------------------

def shipped_variant(shipped_model: Path) -> ModelVariant:
    variant = load_card(shipped_model).variant("openvino", "int8")
    if variant is None:
        pytest.skip("the shipped model has no int8 variant")
    return variant


def test_the_shipped_variant_is_intact_and_checked(shipped_model: Path) -> None:
    card = load_card(shipped_model)
    variant = shipped_variant(shipped_model)
    assert variant.problem(shipped_model) is None
    check = card.precision_check("openvino", "int8")
    assert check is not None and check.file == variant.file and set(check.drop) == set(card.metrics)


@needs_openvino
def test_the_shipped_int8_variant_finds_what_onnxruntime_fp32_finds(shipped_model: Path, shared_data: Path) -> None:
    import cv2

    from serving.detector import DetectOptions, Detector

    shipped_variant(shipped_model)
    reference = Detector(shipped_model, threads=2, engine="onnxruntime", precision="fp32")
    detector = Detector(shipped_model, threads=2, engine="openvino", precision="int8")
    assert (detector.model_info["engine"], detector.model_info["precision"]) == ("openvino", "int8")
    assert detector.frame_stride == reference.frame_stride
    photos = sorted((shared_data / "sesame" / "images" / "val").glob("*"))[:3]
    photos += sorted((shared_data / "cwfid" / "images" / "val").glob("*"))[:2]
    matched = total = 0.0
    for photo in photos:
        image = cv2.imread(str(photo))
        want = np.asarray(reference.detect(image, DetectOptions(conf=0.5)).detections.boxes)
        got = np.asarray(detector.detect(image, DetectOptions(conf=0.5)).detections.boxes)
        total += len(want)
        # int8 moves boxes a little: a confident box counts as found within 3% of the image side
        matched += share_matched(want, got, 0.03 * max(image.shape[:2])) * len(want)
    assert total and matched >= 0.9 * total, (matched, total)


@needs_openvino
def test_a_server_runs_the_shipped_int8_variant_by_default_and_onnxruntime_when_told(
        tmp_path: Path, shipped_model: Path) -> None:
    variant = shipped_variant(shipped_model)
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("weedscan.onnx", "weedscan.json", variant.file, variant.weights_file):
        shutil.copyfile(shipped_model.parent / name, folder / name)
    frame = images.encode(images.field_like(640, 480))
    expected = {(): ("openvino", "int8"),
                (("WEEDSCAN_ENGINE", "onnxruntime"), ("WEEDSCAN_PRECISION", "fp32")): ("onnxruntime", "fp32")}
    validated = load_card(shipped_model).precision_check("openvino", "int8")
    if validated is None or not validated.validated:
        expected[()] = ("onnxruntime", "fp32")
    for env, (engine, precision) in expected.items():
        server = LiveServer(folder / "weedscan.onnx", env=dict(env))
        try:
            answer = server.http.post("/v1/detect", content=frame, headers={"Content-Type": "image/jpeg"})
            assert answer.status_code == 200, answer.text
            assert (answer.json()["model"]["engine"], answer.json()["model"]["precision"]) == (engine, precision)
            listed = server.http.get("/v1/models").json()["models"][0]
            assert listed["engine"]["engine"] == engine
            assert f"weedscan.onnx runs on {engine} in {precision}" in server.log()
        finally:
            server.stop()


# --- OpenVINO compiles per input shape, a bounded number of times -------------------------------

@needs_openvino
def test_openvino_compiles_each_new_shape_once_up_to_its_cap_then_runs_dynamic(shipped_model: Path) -> None:
    from serving.engines.openvino_engine import OpenVinoEngine

    engine = OpenVinoEngine(str(shipped_model), "fp32", threads=2, idle_spin=False)
    engine.STATIC_SHAPES = 2
    shapes = [(1, 3, 416, 416), (1, 3, 320, 416), (1, 3, 256, 416)]
    blobs = [np.random.default_rng(i).random(shape, np.float32) for i, shape in enumerate(shapes)]
    first = [engine.run(blob) for blob in blobs]
    assert list(engine._by_shape) == shapes[:2]  # the third shape ran on the dynamic model
    static_requests = dict(engine._by_shape)
    again = [engine.run(blob) for blob in blobs]
    assert engine._by_shape == static_requests  # no compile the second time round
    for a, b in zip(first, again):  # the same input gives the same output whatever ran before
        assert np.array_equal(a, b)
    # a static compile computes what the dynamic model computes, up to float rounding
    dynamic = np.array(engine._any_shape_request().infer({0: blobs[0]})[0])
    assert np.allclose(dynamic, first[0], atol=0.05)


@needs_openvino
def test_a_shape_openvino_cannot_compile_runs_on_the_dynamic_model(shipped_model: Path, monkeypatch) -> None:
    from serving.engines.openvino_engine import OpenVinoEngine

    engine = OpenVinoEngine(str(shipped_model), "fp32", threads=2, idle_spin=False)
    any_shape = engine._any_shape_request()  # compiled when first needed: here, before the refusals

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no kernel for this shape")

    monkeypatch.setattr(engine._core, "compile_model", refuse)
    output = engine.run(np.zeros((1, 3, 320, 416), np.float32))
    assert output.shape[:2] == (1, 6) and engine._by_shape[(1, 3, 320, 416)] is any_shape
