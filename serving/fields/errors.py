"""The field store's errors, each with the HTTP status and code of the API's error shape."""

from __future__ import annotations

from serving.errors import ClientError


class InvalidName(ClientError):
    status, code = 422, "invalid_name"


class InvalidLabels(ClientError):
    status, code = 422, "invalid_labels"


class DatasetNotFound(ClientError):
    status, code = 404, "dataset_not_found"


class ImageNotFound(ClientError):
    status, code = 404, "image_not_found"


class DatasetExists(ClientError):
    status, code = 409, "dataset_exists"


class JobNotFound(ClientError):
    status, code = 404, "job_not_found"


class QuotaExceeded(ClientError):
    """507 Insufficient Storage: the save would pass WEEDSCAN_MAX_DATA_GB, or the disk is full."""

    status, code = 507, "insufficient_storage"


class DataDirUnavailable(ClientError):
    """503: the data folder cannot be made, read or written (a read-only install, a bad path)."""

    status, code = 503, "data_dir_unavailable"
