"""Bytes to an upright BGR image: type and pixel count checked from the header first."""

from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from serving.config import size_text
from serving.errors import ClientError, PayloadTooLarge, TooManyPixels, UndecodableImage, UnsupportedMediaType

# Media types the API accepts, and the Pillow format names that may hide behind them.
SUPPORTED_MEDIA_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/tiff")
_SUPPORTED_FORMATS = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png",
                      "WEBP": "image/webp", "BMP": "image/bmp", "TIFF": "image/tiff"}
# File suffixes taken for images when walking folders (batch, detect, datasets).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}


class NotARegularFile(ClientError):
    status, code = 400, "not_a_regular_file"


def read_image_file(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """A local image file's bytes, for `weedscan detect` and `batch`: a regular file only (a
    FIFO, a device such as /dev/zero or a socket, also behind a link, is refused before a byte
    is read, so it can neither hang the run nor fill its memory), of at most `max_bytes`
    (the upload limit) as it is read."""
    if not stat.S_ISREG(os.stat(path).st_mode):  # before opening: opening a FIFO blocks
        raise NotARegularFile(f"{os.fspath(path)} is not a regular file")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    with open(fd, "rb", closefd=True) as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the stat
            raise NotARegularFile(f"{os.fspath(path)} is not a regular file")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"{os.fspath(path)} is over the per-image limit of "
                              f"{size_text(max_bytes)}, WEEDSCAN_MAX_UPLOAD_MB")
    return data


@dataclass(frozen=True)
class ImageHeader:
    media_type: str
    width: int  # upright, after EXIF orientation
    height: int
    orientation: int


def read_header(data: bytes) -> ImageHeader:
    """Identify the image and its upright size without decoding the pixels."""
    if not data:
        raise UndecodableImage("the body is empty: send the image bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                fmt, (width, height) = im.format, im.size
                orientation = _orientation(im)
    except Image.DecompressionBombError as exc:  # Pillow refuses > 2x its own limit outright
        raise TooManyPixels(f"the image header declares too many pixels ({exc})") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, ImportError) as exc:
        # ImportError: Ultralytics, when imported in the same process, wraps Image.open with an
        # optional HEIF plugin import that fails on unidentifiable data.
        raise UndecodableImage("the data is not a decodable image") from exc
    if fmt not in _SUPPORTED_FORMATS:
        raise UnsupportedMediaType(
            f"{fmt} images are not supported; send one of {', '.join(SUPPORTED_MEDIA_TYPES)}")
    if orientation in _SWAPS_AXES:
        width, height = height, width
    return ImageHeader(_SUPPORTED_FORMATS[fmt], width, height, orientation)


def _orientation(im: Image.Image) -> int:
    """EXIF orientation from the header only: Pillow's getexif() on a PNG decodes the whole image
    when the eXIf chunk is not ahead of the pixel data, which must not happen before the size check."""
    if im.format == "PNG":
        raw = im.info.get("exif")
        if not raw:
            return 1
        exif = Image.Exif()
        exif.load(raw)
    else:
        exif = im.getexif()
    try:
        return int(exif.get(_EXIF_ORIENTATION, 1) or 1)
    except (TypeError, ValueError):
        return 1


def check_pixels(header: ImageHeader, max_pixels: int) -> None:
    pixels = header.width * header.height
    if pixels > max_pixels:
        raise TooManyPixels(
            f"the image has {header.width}x{header.height} = {pixels} pixels; the limit is {max_pixels}")


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode to an upright 8-bit BGR array (EXIF orientation applied by OpenCV)."""
    header = read_header(data)
    check_pixels(header, max_pixels)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise UndecodableImage("the image could not be decoded (truncated or corrupt)")
    if sorted(image.shape[:2]) != sorted((header.width, header.height)):
        raise UndecodableImage("the decoded image does not match its header (corrupt file)")
    if header.media_type == "image/jpeg" and not _jpeg_is_complete(data):
        raise UndecodableImage("the JPEG data is truncated")
    return image


def _jpeg_is_complete(data: bytes) -> bool:
    # libjpeg pads a truncated stream with grey instead of failing; a whole JPEG ends in EOI.
    return b"\xff\xd9" in data[-4096:]


def warm_up_decoding() -> None:
    """Load Pillow's format plugins and OpenCV's decoders now rather than on a client's first image,
    which would wait for them."""
    Image.init()
    blank = np.full((16, 16, 3), 114, np.uint8)
    for extension in (".jpg", ".png"):
        ok, encoded = cv2.imencode(extension, blank)
        if ok:
            decode_image(encoded.tobytes(), max_pixels=blank.shape[0] * blank.shape[1])
