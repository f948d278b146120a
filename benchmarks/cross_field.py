"""Cross-field check: train without one dataset, score on that dataset's val split (a field,
crop and camera the model never saw), for each direction and each recipe.

    .venv/bin/python benchmarks/cross_field.py --hours 0.5 [--recipe new|old|both] [--imgsz 320]

  sesame -> cwfid   trained on sesame only, scored on CWFID val
  cwfid  -> sesame  trained on CWFID only (repeated x8 per epoch), scored on sesame val
  recipe old: yolo26n.yaml from scratch (the first shipped model's recipe)
  recipe new: yolov8n from ../shared/pretrained/yolov8n-coco-int8.onnx (COCO-pretrained)

Every run has the same time budget; runs go to runs/cross_field/ and each finished score is kept
in runs/cross_field/scores.json, so an interrupted check resumes with the runs still missing.
Writes benchmarks/results/cross_field.md from all scores gathered so far.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, RESULTS_DIR, provenance, save_result  # noqa: E402

SHARED = REPO.parent / "shared"
DATA = {"sesame": SHARED / "data" / "sesame", "cwfid": SHARED / "data" / "cwfid"}
RECIPES = {
    "old": ["--model", "yolo26n.yaml"],
    "new": ["--model", "yolov8n.yaml", "--weights", str(SHARED / "pretrained" / "yolov8n-coco-int8.onnx"),
            "--warmup-epochs", "1"],
}
WORK = REPO / "runs" / "cross_field"


def weedscan(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "training.cli", *args], cwd=REPO, check=True)


def run_one(recipe: str, train_on: str, score_on: str, hours: float, imgsz: int) -> dict:
    name = f"{recipe}-{train_on}-only"
    project = WORK / "train"
    shutil.rmtree(project / name, ignore_errors=True)  # an unfinished run restarts whole
    repeat = ["--repeat", f"{train_on}=8"] if train_on == "cwfid" else []
    weedscan("train", "--data", str(DATA[train_on]), *repeat, *RECIPES[recipe], "--imgsz", str(imgsz),
             "--time", str(hours), "--project", str(project), "--name", name)
    models = WORK / "models"
    weedscan("export", str(project / name / "weights" / "best.pt"), "--name", name, "--models-dir",
             str(models), "--force", "--data", str(DATA[train_on]))
    report = WORK / f"{name}-on-{score_on}.json"
    weedscan("eval", str(models / f"{name}.onnx"), "--data", str(DATA[score_on]), "--report", str(report))
    seen = json.loads((models / f"{name}.json").read_text(encoding="utf-8"))["metrics"][train_on]
    unseen = json.loads(report.read_text(encoding="utf-8"))["datasets"][score_on]
    epochs = json.loads((models / f"{name}.json").read_text(encoding="utf-8"))["training_recipe"]["epochs_completed"]
    return {"recipe": recipe, "train_on": train_on, "score_on": score_on, "hours": hours,
            "imgsz": imgsz, "epochs": epochs, "seen_mAP50": seen["mAP50"],
            "unseen_mAP50": unseen["mAP50"], "unseen_mAP50-95": unseen["mAP50-95"],
            "unseen_recall": unseen["recall"], "unseen_precision": unseen["precision"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=0.5, help="time budget of each training run")
    parser.add_argument("--recipe", choices=["old", "new", "both"], default="both")
    parser.add_argument("--imgsz", type=int, default=320)
    args = parser.parse_args()

    WORK.mkdir(parents=True, exist_ok=True)
    scores_file = WORK / "scores.json"
    scores = json.loads(scores_file.read_text(encoding="utf-8")) if scores_file.is_file() else {}
    header = provenance()
    recipes = ["old", "new"] if args.recipe == "both" else [args.recipe]
    for recipe in recipes:
        for train_on, score_on in (("sesame", "cwfid"), ("cwfid", "sesame")):
            key = f"{recipe}:{train_on}->{score_on}:{args.hours}h:{args.imgsz}"
            if key not in scores:
                scores[key] = run_one(recipe, train_on, score_on, args.hours, args.imgsz)
                scores_file.write_text(json.dumps(scores, indent=2), encoding="utf-8")

    lines = ["## Cross-field check (`benchmarks/cross_field.py`)", "", header, "",
             "Each model is trained on one dataset only and scored (`weedscan eval`, val split) on the "
             "other: a crop, field and camera it never saw. Same time budget per run, CPU.", "",
             "| recipe | trained on | budget h | epochs | imgsz | mAP50 on its own val | scored on | "
             "mAP50 | mAP50-95 | P / R |", "|---|---|---|---|---|---|---|---|---|---|"]
    for entry in scores.values():
        lines.append(f"| {entry['recipe']} | {entry['train_on']} | {entry['hours']} | {entry['epochs']} | "
                     f"{entry['imgsz']} | {entry['seen_mAP50']:.3f} | {entry['score_on']} | "
                     f"{entry['unseen_mAP50']:.3f} | {entry['unseen_mAP50-95']:.3f} | "
                     f"{entry['unseen_precision']:.2f} / {entry['unseen_recall']:.2f} |")
    lines += ["", "Recipes: old = yolo26n.yaml from scratch; new = yolov8n from "
                  "`yolov8n-coco-int8.onnx` (COCO), both with the field augmentations."]
    text = "\n".join(lines) + "\n"
    save_result(RESULTS_DIR / "cross_field.md", text)
    print(text)


if __name__ == "__main__":
    main()
