import numpy as np
import pytest

from serving.config import DEFAULT_MAX_PIXELS
from serving.errors import TooManyPixels, UndecodableImage, UnsupportedMediaType
from serving.imaging import decode_image, read_header
from tests import images

LIMIT = DEFAULT_MAX_PIXELS


@pytest.mark.parametrize("data", [images.encode(images.field_like(), ".jpg"),
                                  images.encode(images.field_like(), ".png"),
                                  images.encode(images.field_like(), ".bmp"),
                                  images.webp(), images.png16(), images.gray_png(),
                                  images.rgba_png(), images.cmyk_jpeg(), images.multipage_tiff()],
                         ids=["jpeg", "png", "bmp", "webp", "png16", "gray", "rgba", "cmyk", "tiff"])
def test_supported_images_decode_to_8bit_bgr(data: bytes) -> None:
    image = decode_image(data, LIMIT)
    assert image.dtype == np.uint8 and image.shape == (240, 320, 3)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_is_applied(orientation: int) -> None:
    upright = images.field_like(320, 240)
    upright[:40, :40] = (255, 255, 255)  # a marker in the top-left corner
    data = images.jpeg_with_orientation(upright, orientation)
    header = read_header(data)
    assert (header.width, header.height) == (320, 240)
    image = decode_image(data, LIMIT)
    assert image.shape == (240, 320, 3)
    assert image[:30, :30].mean() > 200  # the marker is back in the top-left corner


def test_header_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(TooManyPixels, match="too many pixels"):
        decode_image(images.png_header_bomb(), LIMIT)


def test_pixel_limit() -> None:
    with pytest.raises(TooManyPixels):
        decode_image(images.encode(images.field_like(), ".png"), 320 * 240 - 1)


@pytest.mark.parametrize("data", [b"", b"hello, I am text\n", images.encode(images.field_like())[:2000],
                                  images.encode(images.field_like(), ".png")[:3000]],
                         ids=["empty", "text", "truncated-jpeg", "truncated-png"])
def test_undecodable(data: bytes) -> None:
    with pytest.raises(UndecodableImage):
        decode_image(data, LIMIT)


def test_unsupported_format() -> None:
    with pytest.raises(UnsupportedMediaType, match="GIF"):
        decode_image(images.gif(), LIMIT)


@pytest.mark.parametrize("data", [images.encode(images.field_like(), ".png"),
                                  images.encode(images.field_like(), ".jpg"),
                                  images.jpeg_with_orientation(images.field_like(), 6)],
                         ids=["png", "jpeg", "jpeg-exif"])
def test_header_is_read_without_decoding_pixels(data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import ImageFile

    def refuse(self: object) -> None:
        raise AssertionError("read_header decoded the pixels")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    header = read_header(data)
    assert header.width * header.height == 320 * 240
