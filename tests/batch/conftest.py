"""A small survey on disk: generated field photos (some geotagged), one broken file, and real
images from ../shared when present."""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import pytest
from PIL import Image, TiffImagePlugin

from tests.conftest import SHARED_DATA
from tests.images import field_like

REAL_IMAGES = (
    "sesame/images/val/agri_0_1095.jpeg", "sesame/images/val/agri_0_1168.jpeg",
    "sesame/images/val/agri_0_1214.jpeg",
    "cwfid/images/val/cwfid_006.png", "cwfid/images/val/cwfid_014.png",
    "cwfid/images/val/cwfid_020.png",
)
BIG_SIZE = (2200, 1500)  # a drone photo, over the `auto` tiling threshold
# (file, latitude, longitude): all four hemispheres.
GEOTAGGED = (
    ("flight1/north_east.jpg", 52.2053, 0.1218),
    ("flight1/south_west.jpg", -34.6037, -58.3816),
    ("flight2/deep/south_east.jpg", -33.8688, 151.2093),
    ("flight2/north_west.JPG", 45.4215, -75.6972),
)


def dms(value: float) -> tuple[TiffImagePlugin.IFDRational, ...]:
    """Decimal degrees -> EXIF (degrees, minutes, seconds) rationals."""
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = Fraction((value - degrees - minutes / 60) * 3600).limit_denominator(10_000)
    return (TiffImagePlugin.IFDRational(degrees, 1), TiffImagePlugin.IFDRational(minutes, 1),
            TiffImagePlugin.IFDRational(seconds.numerator, seconds.denominator))


def geotagged_jpeg(lat: float, lon: float, width: int = 480, height: int = 360, seed: int = 0) -> bytes:
    pil = Image.fromarray(cv2.cvtColor(field_like(width, height, seed), cv2.COLOR_BGR2RGB))
    exif = Image.Exif()
    exif[0x8825] = {1: "N" if lat >= 0 else "S", 2: dms(lat), 3: "E" if lon >= 0 else "W", 4: dms(lon)}
    out = io.BytesIO()
    pil.save(out, format="JPEG", quality=90, exif=exif)
    return out.getvalue()


@dataclass
class Survey:
    root: Path
    images: list[Path]  # every file the batch should record, broken one included
    broken: Path
    geotagged: dict[Path, tuple[float, float]]  # path -> (lat, lon)
    real: list[Path]


def make_survey(root: Path, real: bool = True) -> Survey:
    images: list[Path] = []
    geotagged: dict[Path, tuple[float, float]] = {}
    for seed, (name, lat, lon) in enumerate(GEOTAGGED):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(geotagged_jpeg(lat, lon, seed=seed))
        images.append(path)
        geotagged[path] = (lat, lon)
    big = root / "flight2" / "drone_big.png"  # big enough for tile="auto" to tile it
    cv2.imwrite(str(big), field_like(*BIG_SIZE, seed=7))
    images.append(big)
    broken = root / "flight1" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    images.append(broken)
    (root / "flight1" / "notes.txt").write_text("not an image: skipped", encoding="utf-8")
    (root / "flight1" / "._north_east.jpg").write_bytes(b"macOS resource fork: skipped")
    copied: list[Path] = []
    if real and (SHARED_DATA / "sesame").is_dir():
        for rel in REAL_IMAGES:
            source = SHARED_DATA / rel
            if source.is_file():
                target = root / "real" / source.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                copied.append(target)
    images += copied
    return Survey(root, sorted(images), broken, geotagged, copied)


@pytest.fixture
def survey(tmp_path: Path) -> Survey:
    return make_survey(tmp_path / "survey")
