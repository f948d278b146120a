"""Reading request bodies with a size limit, and multipart parsing kept in memory.

Starlette's own form parser spools uploads over 1 MB to temporary files; uploaded images must
never touch the disk, so multipart is parsed here with python-multipart's streaming parser.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from serving.errors import (
    ClientError,
    InvalidParameter,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from serving.imaging import SUPPORTED_MEDIA_TYPES


class MalformedBody(ClientError):
    status, code = 400, "malformed_body"


class MissingField(ClientError):
    status, code = 422, "missing_field"


class BodyTimeout(ClientError):
    status, code = 408, "body_timeout"
    close_connection = True  # the rest of a stalled body is not worth waiting for


@dataclass(frozen=True)
class BodyPace:
    """How long a body may take to arrive: `grace_s`, plus one second per `min_rate` bytes
    received (Apache mod_reqtimeout's rule), at most `max_s` in all; and no pause between two
    pieces may last over `grace_s`. A client slower than `min_rate` runs out of time, and one
    that sends most of a body fast and then stalls or trickles cannot stretch its deadline past
    `max_s`, nor hold what it sent for longer than `grace_s` without sending more."""

    grace_s: float
    min_rate: float  # bytes per second
    max_s: float = float("inf")

    def allowed_s(self, received: int) -> float:
        return min(self.grace_s + received / self.min_rate, self.max_s)

    def describe(self) -> str:
        limit = f", {self.max_s:g} s in all" if self.max_s != float("inf") else ""
        return (f"at least {self.min_rate / 1024:g} KiB/s after the first {self.grace_s:g} s, "
                f"no pause over {self.grace_s:g} s{limit}")


@dataclass
class Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytearray = field(default_factory=bytearray)


Take = Callable[[int], None]  # accounts for each chunk's memory; raises to refuse it


async def read_limited(request: Request, limit: int, pace: BodyPace, take: Take) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed `limit` bytes, and
    with 408 when it arrives slower than `pace` allows. A client that leaves raises Starlette's
    ClientDisconnect."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {int(declared)} bytes; the limit is {limit} bytes")
    body = bytearray()
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        async with asyncio.timeout_at(start + pace.allowed_s(0)) as budget:
            async for chunk in request.stream():
                if len(body) + len(chunk) > limit:
                    raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes")
                take(len(chunk))
                body += chunk
                budget.reschedule(min(start + pace.allowed_s(len(body)), loop.time() + pace.grace_s))
    except TimeoutError:
        raise BodyTimeout(f"the body did not arrive in time ({len(body)} bytes in "
                          f"{loop.time() - start:.0f} s; {pace.describe()})") from None
    return bytes(body)


# Bodies up to this size are parsed on the event loop (briefly, even when all tiny parts); bigger
# ones in a worker thread: python-multipart is pure Python, so 20 MB of tiny parts would hold the
# loop (and /healthz) for seconds.
INLINE_PARSE_MAX_BYTES = 64 * 1024


async def parse_multipart_off_loop(body: bytes, content_type: str, max_parts: int) -> list[Part]:
    if len(body) <= INLINE_PARSE_MAX_BYTES:
        return parse_multipart(body, content_type, max_parts)
    return await asyncio.to_thread(parse_multipart, body, content_type, max_parts)


class TooManyParts(PayloadTooLarge):
    pass


def parse_multipart(body: bytes, content_type: str, max_parts: int) -> list[Part]:
    """The parts of a multipart body, in memory; 413 beyond `max_parts` parts (each part costs
    memory and parse time whatever its size)."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise MalformedBody("multipart body without a boundary")
    parts: list[Part] = []
    header_field, header_value = bytearray(), bytearray()
    headers: dict[str, str] = {}

    def on_part_begin() -> None:
        if len(parts) >= max_parts:
            raise TooManyParts(f"the multipart body has over {max_parts} parts")
        headers.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers[header_field.decode("latin-1").lower()] = header_value.decode("latin-1")
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(headers.get("content-disposition", ""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename")
        parts.append(Part(name, filename.decode("utf-8", "replace") if filename is not None else None,
                          headers.get("content-type")))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].data.extend(data[start:end])

    try:  # the constructor too: it raises for a boundary over 256 characters
        parser = MultipartParser(boundary, {
            "on_part_begin": on_part_begin, "on_header_field": on_header_field,
            "on_header_value": on_header_value, "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        })
        parser.write(body)
        parser.finalize()
    except TooManyParts:
        raise
    except Exception as exc:  # python-multipart raises its own error types for bad framing
        raise MalformedBody(f"the multipart body is malformed: {exc}") from exc
    return parts


# Declared types that say "some image" or nothing: the body's signature decides (415 if none fits).
SNIFFED_MEDIA_TYPES = ("image/jpg", "application/octet-stream")
_SIGNATURES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"),
               (b"BM", "image/bmp"), (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"))


def sniff_media_type(data: bytes) -> str | None:
    """The supported image type whose file signature `data` starts with, else None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((media for magic, media in _SIGNATURES if data.startswith(magic)), None)


def media_type_of(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


# Parts beyond the files themselves that a multipart body may carry (other form fields).
EXTRA_PARTS = 16


async def read_image_upload(request: Request, limit: int, pace: BodyPace, take: Take) -> bytes:
    """The image of a detect/annotate request: raw image body or multipart field `image`."""
    media_type = media_type_of(request)
    if media_type == "multipart/form-data":
        body = await read_limited(request, limit, pace, take)
        parts = await parse_multipart_off_loop(body, request.headers["content-type"], 1 + EXTRA_PARTS)
        for part in parts:
            if part.name == "image":
                return bytes(part.data)
        raise MissingField("the multipart body has no 'image' field")
    if media_type in SUPPORTED_MEDIA_TYPES:
        return await read_limited(request, limit, pace, take)
    if media_type in SNIFFED_MEDIA_TYPES:
        data = await read_limited(request, limit, pace, take)
        if data and sniff_media_type(data) is None:  # an empty body: 400 from the decoder
            raise UnsupportedMediaType(
                f"the {media_type} body is not a supported image (JPEG, PNG, WebP, BMP or TIFF)")
        return data
    raise UnsupportedMediaType(
        f"Content-Type '{media_type or '(none)'}' is not supported; send multipart/form-data with "
        f"the file in field 'image', or the raw bytes as one of "
        f"{', '.join(SUPPORTED_MEDIA_TYPES + SNIFFED_MEDIA_TYPES)}")


async def read_batch_uploads(request: Request, limit: int, max_files: int,
                             pace: BodyPace, take: Take) -> list[Part]:
    if media_type_of(request) != "multipart/form-data":
        raise UnsupportedMediaType("the batch endpoint takes multipart/form-data with files in "
                                   "field 'images'")
    body = await read_limited(request, limit, pace, take)
    parts = await parse_multipart_off_loop(body, request.headers["content-type"],
                                           max_files + EXTRA_PARTS)
    images = [p for p in parts if p.name == "images"]
    if not images:
        raise MissingField("the multipart body has no 'images' field")
    if len(images) > max_files:
        raise PayloadTooLarge(f"{len(images)} files in one batch; the limit is {max_files}")
    return images


JsonModel = TypeVar("JsonModel", bound=BaseModel)


async def read_json(request: Request, model: type[JsonModel], limit: int, pace: BodyPace,
                    take: Take) -> JsonModel:
    """A small JSON body (415 unless application/json), read within `limit` bytes and `pace`
    like any body, and validated: 422 naming the field."""
    if media_type_of(request) != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    body = await read_limited(request, limit, pace, take)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()))
        if err.get("type") == "literal_error":
            raise InvalidParameter(f"{where}: unknown value {str(err.get('input'))[:40]!r}; "
                                   f"{err.get('msg')}") from None
        raise InvalidParameter(f"{where}: {err.get('msg')}" if where else str(err.get("msg"))) from None
