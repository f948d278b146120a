"""Fine-tuning on a few photos of a field the base never saw (leave one field out).

For each field X and each k: k labelled photos that show a weed, drawn from X's train split
(seed 0), form the
field dataset, X's val split is the job's gate, and `training.finetune.finetune` (what `weedscan
finetune` runs) trains from a base that never saw X. The candidate is scored on X's test split,
which nothing chose, and on the replayed public val splits (what it forgot). With
`--as-the-check`, the field dataset is exactly what an independent check gives: k train photos
and no val split, so the job holds 2 of them out as its gate.

    .venv/bin/python benchmarks/bench_finetune.py --base /tmp/base-sc.onnx \
        --field /work/data/sugarbeet-jmpap --field /work/data/potato-uav --k 2 4 8 16 \
        --replay ../shared/data/sesame --replay ../shared/data/cwfid --time 0.33 [--recipe lr0=0.005]

The base used for the committed results is the model shipped at 57fba1d (yolov8n, 320 px, trained
on sesame and CWFID only): `git show 57fba1d:models/weedscan.onnx > /tmp/base-sc.onnx` and the
same for models/weedscan.json. Writes benchmarks/results/finetune.md (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS_DIR, provenance, save_result  # noqa: E402
from training.evaluate import evaluate  # noqa: E402
from training.finetune import FinetuneConfig, Recipe, finetune  # noqa: E402
from training.trainset import YoloDataset, labels_folder  # noqa: E402


def has_weed(dataset: YoloDataset, image: Path) -> bool:
    source = dataset.splits["train"]
    label = labels_folder(source) / image.relative_to(source).with_suffix(".txt")
    return label.is_file() and any(line.split()[:1] == ["1"] for line in label.read_text(encoding="utf-8").splitlines())


def field_sample(field: Path, k: int, seed: int, out: Path, with_val: bool) -> Path:
    """out/NAME: k photos of the field's train split that show a weed, as a user labels them
    (a random draw of sugar beet frames gave 8 photos with 13 weeds, 10 of them in one), and
    its val split as the gate."""
    dataset = YoloDataset.from_yaml(field)
    chosen = random.Random(seed).sample([p for p in dataset.images("train") if has_weed(dataset, p)], k)
    root = out / dataset.name
    splits = {"train": chosen}
    if with_val:
        splits["val"] = dataset.images("val")
    for split, images in splits.items():
        source = dataset.splits[split]
        for image in images:
            label = labels_folder(source) / image.relative_to(source).with_suffix(".txt")
            for folder, path in ((root / "images" / split, image), (root / "labels" / split, label)):
                folder.mkdir(parents=True, exist_ok=True)
                if path.exists():
                    os.symlink(path.resolve(), folder / path.name)
    (root / "data.yaml").write_text("train: images/train\n" + ("val: images/val\n" if with_val else "")
                                    + "names: [crop, weed]\n", encoding="utf-8")
    return root


def base_at_size(base: Path, size: int, folder: Path) -> Path:
    """The base served at another input (its ONNX input is dynamic): the candidate trained at
    that size is compared with it, so the scale change is not counted as forgetting."""
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / f"{base.stem}-{size}.onnx"
    shutil.copyfile(base, copy)
    card = json.loads(base.with_suffix(".json").read_text(encoding="utf-8"))
    card.update(name=copy.stem, input_size=size)
    copy.with_suffix(".json").write_text(json.dumps(card), encoding="utf-8")
    return copy


def scores(model: Path, yamls: list[Path], split: str) -> dict[str, dict]:
    return evaluate(model, yamls, split).card_metrics()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--field", type=Path, action="append", required=True)
    parser.add_argument("--k", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--replay", type=Path, action="append", default=[])
    parser.add_argument("--time", type=float, default=0.33, help="hours per job")
    parser.add_argument("--recipe", action="append", default=[], help="KEY=VALUE of training.finetune.Recipe")
    parser.add_argument("--imgsz", type=int, default=None)
    parser.add_argument("--as-the-check", action="store_true", help="no val split: the job holds out 2 photos")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "finetune.md")
    parser.add_argument("--work", type=Path, default=Path("runs/bench_finetune"))
    args = parser.parse_args()

    recipe = Recipe(**dict(item.split("=", 1) for item in args.recipe))
    replay_val = [r for r in args.replay if "val" in YoloDataset.from_yaml(r).splits]
    header = provenance()
    base_replay = scores(args.base, replay_val, "val")
    base_input = json.loads(args.base.with_suffix(".json").read_text(encoding="utf-8")).get("input_size")
    rescaled = args.imgsz and args.imgsz != base_input
    base_same_scale = (scores(base_at_size(args.base, args.imgsz, args.work / "bases"), replay_val, "val")
                       if rescaled else base_replay)
    rows, records = [], []
    for field in args.field:
        test_yaml = field / "data.yaml" if field.is_dir() else field
        base_test = scores(args.base, [test_yaml], "test")
        name = YoloDataset.from_yaml(test_yaml).name
        for k in args.k:
            args.work.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=f"{name}-k{k}-", dir=args.work))
            data = field_sample(field, k, args.seed, work / "field", not args.as_the_check)
            started = time.time()
            config = FinetuneConfig(data=[data], base=args.base, name=f"{name}-k{k}", models_dir=work / "models",
                                    time=args.time, imgsz=args.imgsz, replay_data=args.replay,
                                    recipe=recipe, seed=args.seed, project=work / "runs")
            model, report = finetune(config)
            wall = time.time() - started
            after_test = scores(model, [test_yaml], "test")[name]
            after_replay = scores(model, replay_val, "val")
            before = base_test[name]
            forgot = {n: round(after_replay[n]["mAP50"] - base_replay[n]["mAP50"], 3) for n in after_replay}
            forgot_same_scale = {n: round(after_replay[n]["mAP50"] - base_same_scale[n]["mAP50"], 3)
                                 for n in after_replay}
            record = {"field": name, "k": k, "train_photos": report.field[0].train_photos,
                      "gate_photos": report.field[0].gate_photos, "wall_min": round(wall / 60, 1),
                      "epochs": report.epochs_completed, "imgsz": report.image_size,
                      "weed_before": before["per_class"]["weed"]["AP50"],
                      "weed_after": after_test["per_class"]["weed"]["AP50"],
                      "crop_before": before["per_class"]["crop"]["AP50"],
                      "crop_after": after_test["per_class"]["crop"]["AP50"],
                      "map_before": before["mAP50"], "map_after": after_test["mAP50"],
                      "forgot": forgot, "forgot_same_scale": forgot_same_scale, "gate_better": report.better}
            records.append(record)
            print(json.dumps(record), flush=True)
            forgot_text = ", ".join(f"{n} {v:+.3f}" + (f" ({forgot_same_scale[n]:+.3f})" if rescaled else "")
                                    for n, v in forgot.items()) or "not measured"
            rows.append(f"| {name} | {k} ({record['train_photos']} trained) | {record['imgsz']} | {record['epochs']} "
                        f"| {record['weed_before']:.3f} → **{record['weed_after']:.3f}** "
                        f"| {record['crop_before']:.3f} → {record['crop_after']:.3f} "
                        f"| {record['map_before']:.3f} → {record['map_after']:.3f} | {forgot_text} "
                        f"| {record['wall_min']} | {'yes' if record['gate_better'] else 'no'} |")
    recipe_text = ", ".join(f"{k}={v}" for k, v in recipe.model_dump().items())
    text = "\n".join([
        "## Fine-tuning on a few photos of an unseen field (`bench_finetune.py`"
        + (" --as-the-check)" if args.as_the_check else ")"), "",
        header, "",
        f"Base: `{args.base.name}` (never saw these fields). Recipe: {recipe_text}; time budget "
        f"{args.time} h per job; replay: {', '.join(r.name for r in args.replay) or 'none'}; "
        + ("the field dataset is k photos with no val split, so the job keeps 2 out as its gate"
           if args.as_the_check else "gate: the field's val split") + "; scores: the field's test split.", "",
        "| field | k photos | imgsz | epochs | weed AP50 (test) | crop AP50 | mAP50 | public val mAP50 change "
        "| wall min | gate says better |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows, "",
        "Public val mAP50 of the base: " + ", ".join(f"{n} {r['mAP50']:.3f}" for n, r in base_replay.items())
        + (f"; served at {args.imgsz} px, the candidates' input: " + ", ".join(
            f"{n} {r['mAP50']:.3f}" for n, r in base_same_scale.items())
           + ". In brackets, the change against the base at that same input (forgetting without the "
             "scale change)." if rescaled else "."), "",
    ])
    save_result(args.out, text)
    (args.out.with_suffix(".json")).write_text(json.dumps(records, indent=2), encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
