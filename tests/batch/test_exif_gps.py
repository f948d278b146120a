"""EXIF GPS: hemispheres, rationals in every form Pillow hands out, and None for anything odd."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import pytest
from PIL import Image, PngImagePlugin, TiffImagePlugin

from serving.exif_gps import GpsFix, gps_from_ifd, read_gps
from tests.batch.conftest import GEOTAGGED, dms, geotagged_jpeg
from tests.images import encode, field_like

R = TiffImagePlugin.IFDRational


@pytest.mark.parametrize(("name", "lat", "lon"), GEOTAGGED)
def test_reads_all_four_hemispheres(name: str, lat: float, lon: float) -> None:
    fix = read_gps(geotagged_jpeg(lat, lon))
    assert fix is not None, name
    assert fix.lat == pytest.approx(lat, abs=1e-6)
    assert fix.lon == pytest.approx(lon, abs=1e-6)


def test_reads_from_a_path(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "geo.jpg"
    path.write_bytes(geotagged_jpeg(-10.5, 20.25))
    fix = read_gps(path)
    assert fix is not None and (fix.lat, fix.lon) == (pytest.approx(-10.5), pytest.approx(20.25))


def png_with_exif_after_the_pixels(lat: float, lon: float) -> bytes:
    """A PNG whose eXIf chunk comes after its image data (as some tools write it)."""
    plain = cv2.imencode(".png", field_like(320, 240, 3))[1].tobytes()
    exif = Image.Exif()
    exif[0x8825] = {1: "N" if lat >= 0 else "S", 2: dms(lat), 3: "E" if lon >= 0 else "W", 4: dms(lon)}
    body = exif.tobytes()
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", zlib.crc32(b"eXIf" + body))
    end = plain.rindex(b"IEND") - 4
    return plain[:end] + chunk + plain[end:]


def test_a_png_position_is_read_without_decoding_its_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    data = png_with_exif_after_the_pixels(52.5, -4.25)
    with Image.open(io.BytesIO(data)) as im:  # a valid PNG that Pillow reads the same position from
        assert gps_from_ifd(im.getexif().get_ifd(0x8825)) == GpsFix(lat=52.5, lon=-4.25)

    def no_decoding(self: object) -> None:
        raise AssertionError("the PNG's pixels were decoded to read its EXIF")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decoding)
    assert read_gps(data) == GpsFix(lat=52.5, lon=-4.25)
    assert read_gps(cv2.imencode(".png", field_like(320, 240, 3))[1].tobytes()) is None


def test_rationals_as_pairs_bytes_refs_and_decimal_degrees() -> None:
    fix = gps_from_ifd({1: b"S\x00", 2: ((33, 1), (30, 1), (0, 1)), 3: b"W", 4: ((151, 2),)})
    assert fix == GpsFix(lat=-33.5, lon=-75.5)
    assert gps_from_ifd({1: "N", 2: R(4525, 100), 3: "e", 4: 7.5}) == GpsFix(lat=45.25, lon=7.5)


@pytest.mark.parametrize("ifd", [
    {},                                                            # no GPS block
    {1: "N", 2: (R(45, 1), R(0, 1), R(0, 1))},                     # latitude only
    {1: "X", 2: (45.0, 0.0, 0.0), 3: "E", 4: (7.0, 0.0, 0.0)},     # bad ref
    {1: "N", 2: (R(45, 0), 0.0, 0.0), 3: "E", 4: (7.0, 0.0, 0.0)},  # zero denominator
    {1: "N", 2: ((45, 0), 0.0, 0.0), 3: "E", 4: (7.0, 0.0, 0.0)},   # zero denominator, as a pair
    {1: "N", 2: (95.0, 0.0, 0.0), 3: "E", 4: (7.0, 0.0, 0.0)},     # latitude out of range
    {1: "N", 2: (45.0, 0.0, 0.0), 3: "E", 4: (181.0, 0.0, 0.0)},   # longitude out of range
    {1: "N", 2: (45.0, 0.0, 0.0, 1.0), 3: "E", 4: (7.0,)},         # four parts
    {1: "N", 2: ("a", "b", "c"), 3: "E", 4: (7.0,)},               # not numbers
    {1: "N", 2: (-45.0, 0.0, 0.0), 3: "E", 4: (7.0,)},             # negative with a ref
    {1: "N", 2: (0.0, 0.0, 0.0), 3: "E", 4: (0.0, 0.0, 0.0)},      # 0,0: the camera had no fix
])
def test_absent_or_malformed_is_none(ifd: dict) -> None:
    assert gps_from_ifd(ifd) is None


def test_images_without_gps_and_non_images_are_none() -> None:
    assert read_gps(encode(field_like(), ".jpg")) is None
    assert read_gps(encode(field_like(), ".png")) is None
    assert read_gps(b"not an image") is None
    assert read_gps(b"") is None
