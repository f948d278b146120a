"""Where a photo was taken: latitude and longitude from its EXIF GPS block (drones, phones)."""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from serving.answer import GpsFix

GPS_IFD = 0x8825
_LAT_REF, _LAT, _LON_REF, _LON = 1, 2, 3, 4


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_exif_chunk(data: bytes) -> bytes | None:
    """The eXIf chunk of a PNG, found by walking the chunk headers. Pillow's getexif() on a PNG
    decodes every pixel first (the chunk may follow the image data), which costs a camera frame
    as much as its detection."""
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        if kind == b"eXIf":
            return data[offset + 8:offset + 8 + length]
        if kind == b"IEND":
            return None
        offset += 12 + length  # length, type, data, CRC
    return None


def read_gps(source: bytes | str | Path) -> GpsFix | None:
    """The GPS position of an image (its bytes or path); None when absent or malformed."""
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        if data.startswith(PNG_SIGNATURE):
            chunk = png_exif_chunk(data)
            if chunk is None:
                return None
            exif = Image.Exif()
            exif.load(chunk)
        else:
            with Image.open(io.BytesIO(data)) as im:
                exif = im.getexif()
        gps = exif.get_ifd(GPS_IFD)
    except Exception:  # noqa: BLE001 - any unreadable header simply has no position
        return None
    return gps_from_ifd(gps)


def gps_from_ifd(gps: dict[int, object]) -> GpsFix | None:
    """Decode a GPS IFD ({tag: value}) as Pillow returns it."""
    lat = _degrees(gps.get(_LAT), gps.get(_LAT_REF), "NS")
    lon = _degrees(gps.get(_LON), gps.get(_LON_REF), "EW")
    if lat is None or lon is None or abs(lat) > 90 or abs(lon) > 180:
        return None
    if lat == 0.0 and lon == 0.0:  # what many cameras write when they had no fix
        return None
    return GpsFix(lat=lat, lon=lon)


def _degrees(value: object, ref: object, hemispheres: str) -> float | None:
    """(degrees, minutes, seconds) rationals and an N/S or E/W ref -> signed decimal degrees."""
    if isinstance(ref, bytes):
        ref = ref.decode("ascii", "replace")
    if not isinstance(ref, str) or ref.strip("\x00 ").upper() not in hemispheres:
        return None
    parts = value if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else [value]
    if not 1 <= len(parts) <= 3:
        return None
    total = 0.0
    for part, scale in zip(parts, (1.0, 60.0, 3600.0)):
        number = _rational(part)
        if number is None or number < 0:
            return None
        total += number / scale
    sign = -1.0 if ref.strip("\x00 ").upper() == hemispheres[1] else 1.0
    return sign * total


def _rational(value: object) -> float | None:
    """An EXIF rational (Pillow's IFDRational, a (num, den) pair or a plain number) -> float."""
    try:
        if isinstance(value, tuple) and len(value) == 2:
            numerator, denominator = (float(v) for v in value)
            number = numerator / denominator if denominator else math.nan
        else:
            number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) else None
