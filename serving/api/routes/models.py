"""GET /v1/models (every model of the folder, its state and lineage, which one is active) and
POST /v1/models/{name}/activate (promotion and rollback, live)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Path

from serving.api.auth import require_api_key
from serving.api.deps import ServiceDep
from serving.api.listing import models_answer
from serving.api.schemas import ErrorAnswer, ModelsAnswer
from serving.api.service import InferenceService
from serving.errors import ModelBroken, ModelsDirNotWritable, UnknownModel
from serving.models_dir import NAME_PATTERN
from serving.registry import ModelUnavailable

router = APIRouter(prefix="/v1/models", dependencies=[Depends(require_api_key)])


def listing(service: InferenceService) -> ModelsAnswer:
    return models_answer(service.registry.active, service.model_slots())


@router.get("", response_model=ModelsAnswer, response_model_exclude_none=True,
            responses={401: {"model": ErrorAnswer}, 503: {"model": ErrorAnswer}},
            summary="Every model of the models folder: its card, state and which one is active")
async def models(service: ServiceDep) -> ModelsAnswer:
    service.require_ready()
    return listing(service)


@router.post("/{name}/activate", response_model=ModelsAnswer, response_model_exclude_none=True,
             responses={401: {"model": ErrorAnswer}, 403: {"model": ErrorAnswer},
                        404: {"model": ErrorAnswer}, 409: {"model": ErrorAnswer},
                        500: {"model": ErrorAnswer}},
             summary="Make a model the active one, live: loaded and warmed first, no request fails")
async def activate(service: ServiceDep, name: str = Path(min_length=1, max_length=64,
                                                         description="a model's name")) -> ModelsAnswer:
    """Requests already running finish on the old model; the choice is kept in the models folder
    (across restarts, and for every worker process)."""
    slot = service.registry.slot(name)
    if slot is None and NAME_PATTERN.fullmatch(name) and (service.settings.models_dir / f"{name}.onnx").is_file():
        # Written moments ago (a fine-tuning job just finished): read the folder now rather
        # than at the watcher's next look.
        await asyncio.to_thread(service.registry.scan, False)
        slot = service.registry.slot(name)
    if slot is None:
        available = ", ".join(s.name for s in service.registry.slots() if s.error is None)
        raise UnknownModel(f"unknown model {name[:64]!r}; available: {available or 'none'}")
    try:
        await service.activate(name)
    except ModelUnavailable as exc:
        raise ModelBroken(str(exc)) from exc
    except OSError as exc:
        raise ModelsDirNotWritable(f"the active choice cannot be written to "
                                   f"{service.settings.models_dir}: {exc}") from exc
    return listing(service)
