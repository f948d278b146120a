"""GET /v1/models' answer from the registry's slots."""

from __future__ import annotations

from serving.api.schemas import BrokenModel, ListedModel, ModelsAnswer
from serving.registry import ModelSlot


def models_answer(active: str | None, slots: list[ModelSlot]) -> ModelsAnswer:
    models: list[ListedModel | BrokenModel] = []
    for slot in slots:
        is_active = slot.name == active
        if slot.error is not None or slot.card is None:
            models.append(BrokenModel(name=slot.name, file=slot.path.name, active=is_active,
                                      reason=slot.error or "not read yet"))
            continue
        detector = slot.detector
        models.append(ListedModel(**slot.card.model_dump(), state=slot.state, active=is_active,
                                  file=slot.path.name,
                                  providers=detector.providers if detector else None,
                                  engine=detector.engine_choice if detector else None))
    return ModelsAnswer(active=active, models=models)
