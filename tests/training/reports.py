"""Typed stand-ins for what `weedscan eval` returns, for tests that replace the scoring."""

from __future__ import annotations

from typing import Any

from serving.answer import ModelRef
from training.evaluate import DatasetScores, EvalReport, MaxF1


def dataset_scores(mAP50: float = 0.5, conf: float = 0.3, images: int = 2) -> DatasetScores:
    return DatasetScores(images=images, instances=6, mAP50=mAP50, mAP50_95=mAP50 / 2, precision=0.5,
                         recall=0.5, conf=conf, max_f1=MaxF1(conf=conf, f1=0.5), per_class={})


def eval_report(conf: float = 0.3, conf_source: Any = "card", **datasets: DatasetScores) -> EvalReport:
    return EvalReport(model=ModelRef(name="m", version="1", sha256="0" * 64), split="val", conf=conf,
                      conf_source=conf_source, tile="auto", datasets=datasets)
