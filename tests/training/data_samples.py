"""Tiny datasets for the `weedscan data` tests, written into tmp folders: a CWFID-style native
release, a sesame-style one (YOLO txt pairs), LabelMe JSON tiles (potato-uav), Pascal VOC frame
halves (sugarbeet-jmpap), a YOLO dataset folder, and zips of them."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import yaml

CWFID_SIZE = (130, 97)  # width, height: small, and not square
REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


def picture(seed: int, width: int = 64, height: int = 48) -> np.ndarray:
    """A distinct BGR image per seed: soil noise and a few green blobs."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), (40, 70, 110), np.uint8)
    image = cv2.add(image, rng.integers(0, 40, image.shape, dtype=np.uint8))
    for _ in range(4):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.circle(image, centre, int(rng.integers(3, max(4, width // 4))), (40, 170, 60), -1)
    return image


def write_image(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def write_cwfid_release(root: Path, ids: tuple[int, ...] = tuple(range(1, 11)),
                        split: dict[str, list[int]] | None = None, masks: bool = False) -> Path:
    """images/NNN_image.png, annotations/NNN_annotation.yaml (+ .png masks), train_test_split.yaml.

    Each image has a crop square (10..30, 20..40), a weed polygon running off the right edge, and a
    single-point weed that the converter must drop."""
    width, height = CWFID_SIZE
    for i in ids:
        write_image(root / "images" / f"{i:03d}_image.png", picture(i, width, height))
        plants = [
            {"type": "crop", "points": {"x": [10.0, 30.0, 30.0, 10.0], "y": [20.0, 20.0, 40.0, 40.0]}},
            {"type": "weed", "points": {"x": [100.0, 140.0, 120.0], "y": [50.0, 60.0, 90.0]}},
            {"type": "weed", "points": {"x": 5.0, "y": 5.0}},
        ]
        ann = root / "annotations" / f"{i:03d}_annotation.yaml"
        ann.parent.mkdir(parents=True, exist_ok=True)
        ann.write_text(yaml.safe_dump({"filename": f"{i:03d}_image.png", "annotation": plants}), encoding="utf-8")
        if masks:  # crop painted green on 15..25 x 25..35 only: the tight box is smaller
            mask = np.zeros((height, width, 3), np.uint8)
            mask[25:35, 15:25] = (0, 255, 0)
            mask[50:90, 100:130] = (0, 0, 255)
            write_image(ann.with_suffix(".png"), mask)
    if split is None:
        split = {"train": [i for i in ids if i % 3], "test": [i for i in ids if i % 3 == 0]}
    if split:
        (root / "train_test_split.yaml").write_text(yaml.safe_dump(split), encoding="utf-8")
    return root


def write_sesame_release(root: Path, bases: int = 3) -> Path:
    """dataset/classes.txt + dataset/agri_data/data/agri_0_N.jpeg|.txt, three variants per base
    photo (as is, flipped, turned), like the real augmented copies."""
    data = root / "dataset" / "agri_data" / "data"
    data.mkdir(parents=True)
    (root / "dataset" / "classes.txt").write_text("crop\nweed\n", encoding="utf-8")
    n = 0
    for b in range(bases):
        base = picture(100 + b, 64, 64)
        for variant in (base, base[:, ::-1], np.rot90(base)):
            write_image(data / f"agri_0_{n}.jpeg", np.ascontiguousarray(variant))
            (data / f"agri_0_{n}.txt").write_text(f"{b % 2} 0.5 0.5 0.25 0.3\n", encoding="utf-8")
            n += 1
    return root


def write_yolo_dataset(root: Path, counts: dict[str, int] | None = None,
                       names: list[str] | None = None, seed: int = 0) -> Path:
    """images/{split}/img_N.png + labels/{split}/img_N.txt + data.yaml; distinct images."""
    counts = counts or {"train": 3, "val": 1}
    names = names or ["crop", "weed"]
    n = seed * 1000
    for split, count in counts.items():
        for _ in range(count):
            write_image(root / "images" / split / f"img_{n}.png", picture(n))
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split / f"img_{n}.txt").write_text(
                f"{n % len(names)} 0.5 0.5 0.2 0.2\n{(n + 1) % len(names)} 0.25 0.3 0.1 0.2\n", encoding="utf-8")
            n += 1
    body = {split: f"images/{split}" for split in counts} | {"nc": len(names), "names": names}
    (root / "data.yaml").write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return root


def zip_folder(folder: Path, archive: Path, prefix: str) -> Path:
    """Zip `folder` with every member under `prefix/`, like a GitHub archive."""
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{prefix}/{path.relative_to(folder).as_posix()}")
    return archive


def shared_dataset(name: str) -> Path:
    """A dataset under ../shared/data, or skip the test with the reason."""
    import pytest

    folder = SHARED_DATA / name
    if not (folder / "data.yaml").is_file():
        pytest.skip(f"public dataset {name} not found at {folder} (../shared/data is absent)")
    return folder


TILE_SIZE = (80, 60)  # width, height of the LabelMe tiles: small, not square


def write_labelme_release(root: Path, columns: int = 10, rows: int = 2) -> Path:
    """dataset/annotation_json_raw/images/tile_<x>_<y>.jpg + .json (AnyLabeling, as in
    paglab/UAV-weed-detection-paper) and a json_labels/ copy of the JSONs.

    Each tile has a potato square (10..30, 5..25), a weed polygon running off the right edge and
    a zero-width weed polygon that the converter must drop."""
    folder = root / "dataset" / "annotation_json_raw" / "images"
    width, height = TILE_SIZE
    shapes = [
        {"label": "potato", "points": [[10, 5], [30, 5], [30, 25], [10, 25]], "shape_type": "polygon"},
        {"label": "weed", "points": [[60, 30], [95, 40], [70, 55]], "shape_type": "polygon"},
        {"label": "weed", "points": [[40, 10], [40, 20], [40, 30]], "shape_type": "polygon"},
    ]
    for x in range(columns):
        for y in range(rows):
            stem = f"tile_{x}_{y}"
            write_image(folder / f"{stem}.jpg", picture(x * 100 + y, width, height))
            body = {"version": "0.3.3", "flags": {}, "shapes": shapes,
                    "imagePath": f"..\\after_crop\\{stem}.jpg", "imageData": None,
                    "imageHeight": height, "imageWidth": width}
            for where in (folder, folder.parent / "json_labels"):
                where.mkdir(parents=True, exist_ok=True)
                (where / f"{stem}.json").write_text(json.dumps(body), encoding="utf-8")
    return root


VOC_SIZE = (64, 64)
VOC_OBJECTS = [("sugarbeet", 1, 10, 20, 30), ("weed", 40, 1, 70, 20), ("weed", 5, 50, 5, 60)]


def voc_xml(filename: str, size: tuple[int, int] = VOC_SIZE,
            objects: list[tuple[str, float, float, float, float]] | None = None) -> str:
    """A LabelImg-style Pascal VOC annotation."""
    parts = [f"<annotation><folder>train</folder><filename>{filename}</filename><path />"
             f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"]
    for name, x1, y1, x2, y2 in VOC_OBJECTS if objects is None else objects:
        parts.append(f"<object><name>{name}</name><difficult>0</difficult><bndbox>"
                     f"<xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax>"
                     "</bndbox></object>")
    return "".join(parts) + "</annotation>"


def write_voc_release(root: Path, videos: tuple[str, ...] = ("X", "X2"), frames: int = 10,
                      step: int = 20) -> Path:
    """data/{train,val}/{image,annotation}/<video>-<frame>-<half>.png|.xml, as in
    jmpap/YOLOV2-Tensorflow-2.0: every frame cut in two halves, and the repository's val holding
    the other half of some train frames (half 1 of every third frame)."""
    for v, video in enumerate(videos):
        for f in range(frames):
            frame = 10 + f * step
            for half in (0, 1):
                stem = f"{video}-{frame}-{half}"
                split = "val" if half == 1 and f % 3 == 0 else "train"
                write_image(root / "data" / split / "image" / f"{stem}.png",
                            picture(v * 10000 + frame * 2 + half, *VOC_SIZE))
                xml = root / "data" / split / "annotation" / f"{stem}.xml"
                xml.parent.mkdir(parents=True, exist_ok=True)
                xml.write_text(voc_xml(f"{stem}.png"), encoding="utf-8")
    return root
