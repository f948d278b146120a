"""The card's default confidence is the one of maximum F1, measured on labelled images."""

from __future__ import annotations

import numpy as np

from training.evaluate import ImageStats, max_f1_conf


def image(confident_hits: int, weak_misses: int, objects: int, index: int) -> ImageStats:
    """Boxes: hits at conf 0.7-0.9 (true positives), false alarms at conf 0.1-0.3."""
    rng = np.random.default_rng(index)
    conf = np.concatenate([rng.uniform(0.7, 0.9, confident_hits), rng.uniform(0.1, 0.3, weak_misses)])
    tp = np.zeros((len(conf), 10), bool)
    tp[:confident_hits] = True
    n = len(conf)
    return ImageStats(tp=tp, conf=conf, pred_cls=np.ones(n, int), target_cls=np.ones(objects, int),
                      pred_boxes=np.zeros((n, 4)), target_boxes=np.zeros((objects, 4)), name=f"{index}.jpg")


def test_max_f1_sits_between_the_false_alarms_and_the_hits() -> None:
    stats = [image(confident_hits=4, weak_misses=6, objects=5, index=i) for i in range(20)]
    conf = max_f1_conf(stats, ["crop", "weed"])
    assert conf is not None and 0.3 <= conf <= 0.7, conf


def test_no_detections_leave_no_threshold_to_choose() -> None:
    stats = [image(confident_hits=0, weak_misses=0, objects=3, index=i) for i in range(3)]
    assert max_f1_conf(stats, ["crop", "weed"]) is None
