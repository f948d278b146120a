"""Field datasets: /v1/datasets (list, create, delete), their images (save with boxes, list, read,
relabel, delete) and the YOLO zip export. The work is in serving/fields; these routes read
bounded bodies, call the store off the event loop and shape the answers.

Every route needs the API key when keys are configured (the photos are the user's private data),
the Host and cross-site checks of serving/api/origin.py hold for all of them, and nothing is
written to disk except by the POST / PUT / DELETE routes here.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from serving.api.auth import require_api_key
from serving.api.bodies import (
    EXTRA_PARTS,
    BodyPace,
    MissingField,
    media_type_of,
    parse_multipart_off_loop,
    read_limited,
)
from serving.api.deps import ServiceDep, get_fields
from serving.api.schemas import ErrorAnswer
from serving.errors import InvalidParameter, PayloadTooLarge, UnsupportedMediaType
from serving.fields.catalogue import ImageRecord, Split
from serving.fields.export import export_files, zip_chunks
from serving.fields.labels import MAX_LABELS_BYTES, LabelBox, parse_labels
from serving.fields.names import IMAGE_ID_PATTERN, NAME_PATTERN
from serving.fields.store import (
    DEFAULT_LICENCE,
    DatasetInfo,
    FieldStore,
    LabelledImage,
    SavedImage,
)

router = APIRouter(prefix="/v1/datasets", tags=["field datasets"],
                   dependencies=[Depends(require_api_key)])

_STATUS = {400: "undecodable image or malformed body", 401: "missing or wrong API key",
           403: "a write from another site's page", 404: "no such dataset or image",
           409: "the dataset exists already", 413: "body or pixel count over the limit",
           415: "not multipart/form-data or not a supported image",
           422: "bad name, labels or parameter", 503: "the data folder cannot be used (its path "
           "is named) or the server holds too many uploads", 507: "the field data quota "
           "(WEEDSCAN_MAX_DATA_GB) or the disk is full"}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorAnswer, "description": _STATUS[s]} for s in (401, 503, *statuses)}


DatasetName = Path(pattern=NAME_PATTERN, description="a field dataset's name")
ImageId = Path(pattern=IMAGE_ID_PATTERN, description="the first 16 hex digits of the photo's sha256")
JSON_BODY_LIMIT = MAX_LABELS_BYTES + 64 * 1024


class NewDataset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="1-64 of a-z 0-9 _ -; the folder's name")
    crop: str = Field(min_length=1, max_length=64, description="the field's crop, e.g. carrot")
    licence: str = Field(DEFAULT_LICENCE, min_length=1, max_length=64,
                         description="the photos' licence; private unless you say otherwise")


class NewLabels(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: list[LabelBox] = Field(description="every box of the photo (replaces the old ones)")


class DatasetList(BaseModel):
    datasets: list[DatasetInfo]


class ImageList(BaseModel):
    dataset: str
    images: list[ImageRecord]


StoreDep = Depends(get_fields)  # the jobs routes share it


def _pace(service: Any) -> BodyPace:
    return service.body_pace()


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)  # LabelBox and Box are in the components (the answers use them)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


_IMAGE_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["image", "labels"], "properties": {
        "image": {"type": "string", "format": "binary", "description": "the photo (JPEG, PNG, "
                  "WebP, BMP or TIFF), stored as sent"},
        "labels": {"type": "string", "description": "JSON list of {class_name: crop|weed, box: "
                   "{x1, y1, x2, y2}} in upright image pixels (the detect answer's boxes)"},
        "split": {"type": "string", "enum": ["train", "val", "test"], "default": "train"}}}}}}}


@router.get("", response_model=DatasetList, responses=_errors(),
            summary="The field datasets with their photo and box counts")
async def list_datasets(store: FieldStore = StoreDep) -> DatasetList:
    return DatasetList(datasets=await asyncio.to_thread(store.list_datasets))


@router.post("", status_code=201, response_model=DatasetInfo, openapi_extra=_body_schema(NewDataset),
             responses=_errors(403, 409, 413, 415, 422, 507),
             summary="Create a field dataset (a folder in the YOLO layout with its card)")
async def create_dataset(request: Request, service: ServiceDep,
                         store: FieldStore = StoreDep) -> DatasetInfo:
    new = await service.admission.json_body(request, NewDataset, JSON_BODY_LIMIT)
    return await asyncio.to_thread(store.create_dataset, new.name, new.crop, new.licence)


@router.get("/{name}", response_model=DatasetInfo, responses=_errors(404, 422),
            summary="One field dataset: its card's facts and counts")
async def get_dataset(name: str = DatasetName, store: FieldStore = StoreDep) -> DatasetInfo:
    return await asyncio.to_thread(store.get_dataset, name)


@router.delete("/{name}", status_code=204, response_class=Response,
               responses=_errors(403, 404, 422, 507),
               summary="Delete a field dataset: its folder, photos and labels")
async def delete_dataset(name: str = DatasetName, store: FieldStore = StoreDep) -> Response:
    await asyncio.to_thread(store.delete_dataset, name)
    return Response(status_code=204)


@router.post("/{name}/images", response_model=SavedImage, openapi_extra=_IMAGE_FORM,
             responses={201: {"model": SavedImage, "description": "a new photo"},
                        200: {"model": SavedImage, "description": "the photo was there already "
                              "(same bytes): its labels and split were replaced"},
                        **_errors(400, 403, 404, 413, 415, 422, 507)},
             summary="Save a photo with its boxes to a field dataset")
async def save_image(request: Request, service: ServiceDep, name: str = DatasetName,
                     store: FieldStore = StoreDep) -> Response:
    """multipart/form-data: the photo in field `image`, its boxes in field `labels` (JSON), and
    optionally `split` (train, val or test; default train). The photo is stored as sent; boxes are
    in pixels of the upright image (EXIF orientation applied, as the detect answer gives them).
    A box more than 1 px outside the image is refused (422); one within 1 px is clipped.
    Saving the same photo (same bytes) again replaces its labels: 200 instead of 201."""
    if media_type_of(request) != "multipart/form-data":
        raise UnsupportedMediaType("send multipart/form-data with the photo in field 'image' and "
                                   "its boxes in field 'labels'")
    limit = service.settings.max_upload_bytes
    with service.hold_body(request.client.host if request.client else None) as hold:
        body = await read_limited(request, limit + JSON_BODY_LIMIT, _pace(service), hold.take)
        parts = {p.name: p for p in await parse_multipart_off_loop(
            body, request.headers["content-type"], 3 + EXTRA_PARTS)}
        if "image" not in parts:
            raise MissingField("the multipart body has no 'image' field")
        if "labels" not in parts:
            raise MissingField("the multipart body has no 'labels' field (send [] for a photo "
                               "without plants)")
        image = parts["image"]
        if len(image.data) > limit:
            raise PayloadTooLarge(f"the photo is over the limit of {limit} bytes")
        labels = parse_labels(bytes(parts["labels"].data))
        split = parts["split"].data.decode("utf-8", "replace").strip() if "split" in parts else "train"
        if split not in ("train", "val", "test"):
            raise InvalidParameter(f"split: {split[:20]!r} is not one of train, val, test")
        saved = await asyncio.to_thread(store.add_image, name, bytes(image.data), labels,
                                        image.filename, cast(Split, split))  # checked above
    return Response(saved.model_dump_json(), status_code=201 if saved.created else 200,
                    media_type="application/json")


@router.get("/{name}/images", response_model=ImageList, responses=_errors(404, 422),
            summary="The photos of a field dataset: id, file name, size, box counts")
async def list_images(name: str = DatasetName, store: FieldStore = StoreDep) -> ImageList:
    return ImageList(dataset=name, images=await asyncio.to_thread(store.list_images, name))


@router.get("/{name}/images/{image_id}", response_model=LabelledImage,
            responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {},
                                         "image/bmp": {}, "image/tiff": {}},
                             "description": "the labels (JSON), or with raw=1 the photo as stored"},
                       **_errors(404, 422)},
            summary="A saved photo's boxes, or (raw=1) the photo itself")
async def get_image(name: str = DatasetName, image_id: str = ImageId,
                    raw: bool = Query(False, description="answer the photo's bytes instead"),
                    store: FieldStore = StoreDep) -> Any:
    if raw:
        path, media_type = await asyncio.to_thread(store.image_file, name, image_id)
        return FileResponse(path, media_type=media_type,
                            headers={"Cache-Control": "private, max-age=3600"})
    return await asyncio.to_thread(store.get_image, name, image_id)


@router.put("/{name}/images/{image_id}", response_model=LabelledImage,
            openapi_extra=_body_schema(NewLabels), responses=_errors(403, 404, 413, 415, 422, 507),
            summary="Replace a saved photo's boxes")
async def replace_labels(request: Request, service: ServiceDep, name: str = DatasetName,
                         image_id: str = ImageId, store: FieldStore = StoreDep) -> LabelledImage:
    new = await service.admission.json_body(request, NewLabels, JSON_BODY_LIMIT)
    return await asyncio.to_thread(store.replace_labels, name, image_id, new.labels)


@router.delete("/{name}/images/{image_id}", status_code=204, response_class=Response,
               responses=_errors(403, 404, 422, 507), summary="Delete a saved photo and its boxes")
async def delete_image(name: str = DatasetName, image_id: str = ImageId,
                       store: FieldStore = StoreDep) -> Response:
    await asyncio.to_thread(store.delete_image, name, image_id)
    return Response(status_code=204)


@router.get("/{name}/export", response_class=StreamingResponse,
            responses={200: {"content": {"application/zip": {}},
                             "description": "NAME/data.yaml, card.yaml, images/, labels/"},
                       **_errors(404, 422)},
            summary="The field dataset as a zip in the YOLO layout")
async def export_dataset(name: str = DatasetName, store: FieldStore = StoreDep) -> StreamingResponse:
    files = await asyncio.to_thread(export_files, store, name)
    return StreamingResponse(zip_chunks(files), media_type="application/zip",
                             headers={"Content-Disposition": f'attachment; filename="{name}.zip"'})
