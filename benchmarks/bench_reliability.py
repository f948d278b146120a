"""How well the page's "unreliable answer" warning separates fields a model knows from fields it
never saw.

    flock /tmp/weedscan-cpu.lock .venv/bin/python benchmarks/bench_reliability.py

The page (serving/static/reliability.js) judges each analysed photo from the answer it got at
`?vegetation_mask=true`: the plant pixels of the coarse mask the weed cover uses, and the boxes
above the slider. This script computes the same figures from the same detector and mask, per photo:

- vegetation: the share of the mask's pixels that are plant;
- unexplained: the share of the plant pixels under no box shown (crop or weed);
- strongest: the highest confidence of any box (0 without one).

It runs two models on the same photos: models/weedscan.onnx (taught all four fields) and
/work/bases/base-sc.onnx (taught sesame and CWFID only), at each model card's confidence. Known
fields: the val splits of sesame and CWFID (../shared/data). Fields the base never saw: potato-uav
and sugarbeet-jmpap (/work/data), val and test splits. It reports, per model and field, how often
the page warns, and the area under the ROC curve of each figure for "the base never saw this
field". The per-photo figures land in runs/reliability/figures.json (a rerun reuses them; --fresh
measures again); the summary in benchmarks/results/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, RESULTS_DIR, provenance, save_result
from serving.detector import DetectOptions, Detector
from serving.vegetation import box_raster

SHARED = REPO.parent / "shared" / "data"
FIELDS = {  # name: (folder, splits, whether the base model was taught this field)
    "sesame": (SHARED / "sesame", ("val",), True),
    "cwfid": (SHARED / "cwfid", ("val",), True),
    "potato-uav": (Path("/work/data/potato-uav"), ("val", "test"), False),
    "sugarbeet-jmpap": (Path("/work/data/sugarbeet-jmpap"), ("val", "test"), False),
}
MODELS = {"shipped": REPO / "models" / "weedscan.onnx", "base-sc": Path("/work/bases/base-sc.onnx")}
FLOOR = 0.05          # what the page asks /v1/detect for
WORK = REPO / "runs" / "reliability"
SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}

# The page's rule (serving/static/reliability.js): enough plants to judge, and most of them
# outside every box, or not one box the model is sure of.
MIN_VEGETATION = 0.02
MAX_UNEXPLAINED = 0.3
MIN_STRONGEST = 0.5


@dataclass
class Figures:
    model: str
    field: str
    file: str
    conf: float
    vegetation: float
    unexplained: float
    strongest: float
    shown: int


def figures(detector: Detector, model: str, field: str, path: Path) -> Figures:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    result = detector.detect(image, DetectOptions(conf=FLOOR, cover="always"))
    conf = float(detector.default_conf)
    mask = np.asarray(result.vegetation, bool)
    wire = result.answer().detections   # the boxes as the page gets them (0.1 px, 4 places)
    shown = [d for d in wire if d.confidence >= conf - 1e-9]
    boxes = np.array([[d.box.x1, d.box.y1, d.box.x2, d.box.y2] for d in shown], np.float64).reshape(-1, 4)
    scale = np.array([mask.shape[1] / result.width, mask.shape[0] / result.height] * 2)
    inside = box_raster(boxes * scale, mask.shape)
    plants = int(mask.sum())
    return Figures(model, field, path.name, conf, plants / mask.size,
                   float((mask & ~inside).sum()) / plants if plants else 0.0,
                   max((d.confidence for d in wire), default=0.0), len(shown))


def warns(f: Figures) -> bool:
    """serving/static/reliability.js's judgement."""
    if f.vegetation < MIN_VEGETATION:
        return False
    return f.unexplained > MAX_UNEXPLAINED or f.strongest < MIN_STRONGEST


def auroc(scores: list[float], positive: list[bool]) -> float:
    """P(score of a photo of an unseen field > score of a photo of a known field), ties half."""
    pos = np.array([s for s, p in zip(scores, positive) if p])
    neg = np.array([s for s, p in zip(scores, positive) if not p])
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + ties / 2)


def measure(fresh: bool) -> tuple[list[Figures], str]:
    """The figures of every photo and where they were measured (from the cache unless fresh)."""
    WORK.mkdir(parents=True, exist_ok=True)
    cache = WORK / "figures.json"
    if cache.is_file() and not fresh:
        kept = json.loads(cache.read_text(encoding="utf-8"))
        if isinstance(kept, dict):
            return [Figures(**row) for row in kept["rows"]], kept["provenance"]
    where = provenance()
    rows: list[Figures] = []
    for model, path in MODELS.items():
        detector = Detector(path, threads=2)
        for field, (folder, splits, _) in FIELDS.items():
            for split in splits:
                for image in sorted((folder / "images" / split).iterdir()):
                    if image.suffix.lower() in SUFFIXES:
                        rows.append(figures(detector, model, field, image))
            print(f"{model} {field}: {sum(r.model == model and r.field == field for r in rows)} photos",
                  flush=True)
    cache.write_text(json.dumps({"provenance": where, "rows": [asdict(r) for r in rows]}), encoding="utf-8")
    return rows, where


def report(rows: list[Figures], where: str) -> str:
    lines = [
        "## Reliability warning on the page: fields a model knows and fields it never saw",
        "",
        f"`benchmarks/bench_reliability.py`; measured at {where}.",
        "",
        ("The page warns on a photo when at least "
         f"{MIN_VEGETATION:.0%} of the coarse plant mask is plant and either more than "
        f"{MAX_UNEXPLAINED:.0%} of those plant pixels lie in no box shown, or no box at all reaches "
        f"confidence {MIN_STRONGEST} (boxes asked at conf {FLOOR}, shown at the card's conf). "
         "`base-sc` was taught sesame and CWFID only; the shipped model all four fields."),
        "",
        "| model (card conf) | field | taught it | photos | warned | median unexplained | median strongest |",
        "|---|---|---|---|---|---|---|",
    ]
    taught = {"shipped": set(FIELDS), "base-sc": {f for f, v in FIELDS.items() if v[2]}}
    for model in MODELS:
        for field in FIELDS:
            these = [r for r in rows if r.model == model and r.field == field]
            if not these:
                continue
            warned = sum(warns(r) for r in these)
            lines.append(
                f"| {model} ({these[0].conf:.2f}) | {field} | {'yes' if field in taught[model] else 'no'} | "
                f"{len(these)} | {warned} ({warned / len(these):.0%}) | "
                f"{np.median([r.unexplained for r in these]):.2f} | "
                f"{np.median([r.strongest for r in these]):.2f} |")
    base = [r for r in rows if r.model == "base-sc"]
    unseen = [r.field not in taught["base-sc"] for r in base]
    known_warned = sum(warns(r) for r, u in zip(base, unseen) if not u)
    unseen_warned = sum(warns(r) for r, u in zip(base, unseen) if u)
    lines += [
        "",
        ("Separation for `base-sc` (unseen fields as positives, photos pooled): area under the ROC "
        f"curve of `unexplained` {auroc([r.unexplained for r in base], unseen):.3f}, of "
        f"`1 - strongest` {auroc([1 - r.strongest for r in base], unseen):.3f}, of the warning "
        f"itself {auroc([float(warns(r)) for r in base], unseen):.3f}; the warning comes on "
        f"{unseen_warned} of {sum(unseen)} photos of unseen fields "
        f"({unseen_warned / max(1, sum(unseen)):.0%}) and on {known_warned} of "
        f"{len(unseen) - sum(unseen)} photos of known fields "
         f"({known_warned / max(1, len(unseen) - sum(unseen)):.0%})."),
        "",
        ("How the two limits were chosen (on these same photos, so the rates above are in-sample): "
         "the share of photos warned for each pair of limits."),
        "",
        "| unexplained > | strongest < | base-sc, known fields | base-sc, unseen fields | shipped, all four |",
        "|---|---|---|---|---|",
    ]
    shipped = [r for r in rows if r.model == "shipped"]
    for limit in (0.3, 0.4, 0.5):
        for sure in (0.5, 0.6, 0.7):
            def judged(r: Figures, limit: float = limit, sure: float = sure) -> bool:
                return r.vegetation >= MIN_VEGETATION and (r.unexplained > limit or r.strongest < sure)

            def share(these: list[Figures]) -> float:
                return sum(map(judged, these)) / max(1, len(these))

            chosen = " (the page's)" if (limit, sure) == (MAX_UNEXPLAINED, MIN_STRONGEST) else ""
            lines.append(f"| {limit}{chosen} | {sure} | {share([r for r, u in zip(base, unseen) if not u]):.0%} | "
                         f"{share([r for r, u in zip(base, unseen) if u]):.0%} | {share(shipped):.0%} |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh", action="store_true", help="measure again, ignoring the cache")
    args = parser.parse_args()
    rows, where = measure(args.fresh)
    text = report(rows, where)
    save_result(RESULTS_DIR / "reliability.md", text)
    print(text)


if __name__ == "__main__":
    main()
