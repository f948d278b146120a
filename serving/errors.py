"""Errors a client can cause, each with the HTTP status and code of the API contract."""

from __future__ import annotations


class ClientError(Exception):
    """A problem with what the client sent; never a server fault."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UndecodableImage(ClientError):
    status, code = 400, "undecodable_image"


class PayloadTooLarge(ClientError):
    status, code = 413, "payload_too_large"


class TooManyPixels(ClientError):
    status, code = 413, "too_many_pixels"


class TooManyTiles(ClientError):
    status, code = 413, "too_many_tiles"


class UnsupportedMediaType(ClientError):
    status, code = 415, "unsupported_media_type"


class InvalidParameter(ClientError):
    status, code = 422, "invalid_parameter"


class UnknownModel(ClientError):
    status, code = 404, "unknown_model"


class ModelBroken(ClientError):
    status, code = 409, "model_broken"


class ModelsDirNotWritable(ClientError):
    """The active choice could not be recorded in the models folder (a server-side problem)."""

    status, code = 500, "models_dir_not_writable"


class ModelCardError(Exception):
    """The model file and its card do not belong together (or the card is unreadable)."""


class ServiceUnavailable(ClientError):
    """503: the server is full or not ready yet; the client should retry (Retry-After)."""

    status, code = 503, "unavailable"


class Overloaded(ServiceUnavailable):
    code = "overloaded"


class NotReady(ServiceUnavailable):
    code = "not_ready"
