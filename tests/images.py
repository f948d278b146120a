"""Image bytes for tests: good ones in every supported format, and the bad ones clients send."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
from PIL import Image


def field_like(width: int = 320, height: int = 240, seed: int = 0) -> np.ndarray:
    """A brown soil background with some green blobs (BGR)."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), (40, 70, 110), np.uint8)
    image = cv2.add(image, rng.integers(0, 30, image.shape, dtype=np.uint8))
    for _ in range(5):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.circle(image, centre, int(rng.integers(5, 30)), (40, 160, 60), -1)
    return image


def encode(image: np.ndarray, ext: str = ".jpg") -> bytes:
    ok, buffer = cv2.imencode(ext, image)
    assert ok
    return buffer.tobytes()


def jpeg_with_orientation(upright_bgr: np.ndarray, orientation: int) -> bytes:
    """Store the pixels turned so that EXIF `orientation` makes them upright again."""
    turns = {1: None, 3: cv2.ROTATE_180, 6: cv2.ROTATE_90_COUNTERCLOCKWISE, 8: cv2.ROTATE_90_CLOCKWISE}
    stored = upright_bgr if turns[orientation] is None else cv2.rotate(upright_bgr, turns[orientation])
    pil = Image.fromarray(cv2.cvtColor(stored, cv2.COLOR_BGR2RGB))
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    pil.save(out, format="JPEG", quality=95, exif=exif)
    return out.getvalue()


def png_header_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid PNG whose header claims width x height pixels; the data is tiny."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = b"\x00" + b"\x00" * (3 * width)
    idat = zlib.compress(row * 16, 9)  # a few rows only: the bomb is in the header
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def pil_bytes(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def cmyk_jpeg() -> bytes:
    rgb = Image.fromarray(cv2.cvtColor(field_like(), cv2.COLOR_BGR2RGB))
    return pil_bytes(rgb.convert("CMYK"), "JPEG")


def multipage_tiff() -> bytes:
    pages = [Image.fromarray(cv2.cvtColor(field_like(seed=s), cv2.COLOR_BGR2RGB)) for s in range(3)]
    return pil_bytes(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def png16() -> bytes:
    return encode(field_like().astype(np.uint16) * 257, ".png")


def gray_png() -> bytes:
    return encode(cv2.cvtColor(field_like(), cv2.COLOR_BGR2GRAY), ".png")


def rgba_png() -> bytes:
    bgra = cv2.cvtColor(field_like(), cv2.COLOR_BGR2BGRA)
    bgra[..., 3] = 128
    return encode(bgra, ".png")


def webp() -> bytes:
    return encode(field_like(), ".webp")


def gif() -> bytes:
    return pil_bytes(Image.new("RGB", (10, 10)), "GIF")


# --- added for tests/robustness ------------------------------------------------------------------

def one_pixel(ext: str = ".png") -> bytes:
    """The smallest image there is: 1x1, one green pixel."""
    return encode(np.full((1, 1, 3), (40, 160, 60), np.uint8), ext)


def multipage_tiff_sizes(sizes: tuple[tuple[int, int], ...] = ((320, 240), (160, 120), (64, 400))) -> bytes:
    """A multi-page TIFF whose pages differ in size, so an answer tells which page was read."""
    pages = [Image.fromarray(cv2.cvtColor(field_like(w, h, seed=i), cv2.COLOR_BGR2RGB))
             for i, (w, h) in enumerate(sizes)]
    return pil_bytes(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def _rational_dms(value: float) -> tuple[float, float, float]:
    degrees = int(value)
    minutes_float = (value - degrees) * 60
    minutes = int(minutes_float)
    return (float(degrees), float(minutes), round((minutes_float - minutes) * 60, 4))


def jpeg_with_gps(latitude: float, longitude: float, width: int = 320, height: int = 240) -> bytes:
    """A JPEG whose EXIF carries a GPS position (as phones and drones write it)."""
    pil = Image.fromarray(cv2.cvtColor(field_like(width, height, seed=7), cv2.COLOR_BGR2RGB))
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)  # GPSInfo
    gps[1] = "N" if latitude >= 0 else "S"      # GPSLatitudeRef
    gps[2] = _rational_dms(abs(latitude))       # GPSLatitude
    gps[3] = "E" if longitude >= 0 else "W"     # GPSLongitudeRef
    gps[4] = _rational_dms(abs(longitude))      # GPSLongitude
    exif[0x010F] = "WeedscanTestCam"            # Make
    return pil_bytes(pil, "JPEG", quality=90, exif=exif)


def jpeg_with_comment(comment: str, width: int = 320, height: int = 240) -> bytes:
    """A JPEG carrying `comment` in a COM segment: a marker to look for in logs and on disk."""
    pil = Image.fromarray(cv2.cvtColor(field_like(width, height, seed=11), cv2.COLOR_BGR2RGB))
    return pil_bytes(pil, "JPEG", quality=90, comment=comment.encode())


def png_with_text(text: str, width: int = 1200, height: int = 900) -> bytes:
    """A PNG (over 1 MB at the default size) carrying `text` in a tEXt chunk."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", text)
    pil = Image.fromarray(cv2.cvtColor(field_like(width, height, seed=3), cv2.COLOR_BGR2RGB))
    return pil_bytes(pil, "PNG", pnginfo=info)
