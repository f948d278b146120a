"""One training set from several YOLO datasets, without copying images.

Each source split is linked into the output folder (so Ultralytics writes its label caches there,
never into the source) and listed in train.txt / val.txt; a small dataset can be listed several
times (`repeats`) so that it is not drowned by a big one.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from serving.imaging import IMAGE_SUFFIXES  # noqa: F401 - training.data.* import it from here

CANONICAL_CLASSES = ["crop", "weed"]


class DatasetError(Exception):
    """A dataset folder or YAML that cannot be used; the message names the file."""


@dataclass(frozen=True)
class YoloDataset:
    name: str
    root: Path
    names: list[str]
    splits: dict[str, Path]  # split -> images folder

    @classmethod
    def from_yaml(cls, yaml_path: str | Path) -> YoloDataset:
        path = Path(yaml_path)
        if path.is_dir():
            path = path / "data.yaml"
        if not path.is_file():
            raise DatasetError(f"dataset YAML not found: {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise DatasetError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict) or "names" not in data:
            raise DatasetError(f"{path} is not a YOLO data YAML (it needs 'names' and splits)")
        names = data["names"]
        if isinstance(names, dict):
            names = [names[k] for k in sorted(names)]
        root = path.parent / data["path"] if data.get("path") else path.parent
        splits = {}
        for split in ("train", "val", "test"):
            if isinstance(data.get(split), str):
                splits[split] = (root / data[split]).absolute()
        return cls(name=path.parent.name, root=root.absolute(), names=[str(n) for n in names],
                   splits=splits)

    def images(self, split: str) -> list[Path]:
        folder = self.splits.get(split)
        if folder is None or not folder.is_dir():
            raise DatasetError(f"dataset {self.name} has no '{split}' image folder ({folder})")
        return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def densest_label_folder(source: Path, label_suffix: str) -> Path | None:
    """The folder under `source` holding the most images with a label file (`x.jpg` + `x.json`,
    or `x.txt`) beside them; None when there is none."""
    if not source.is_dir():
        return None
    pairs = Counter(p.parent for p in source.rglob("*")
                    if p.suffix.lower() in IMAGE_SUFFIXES and p.with_suffix(label_suffix).is_file())
    return pairs.most_common(1)[0][0] if pairs else None


def labels_folder(images_folder: Path) -> Path:
    """YOLO convention: .../images/<split> holds images, .../labels/<split> their labels."""
    parts = list(images_folder.parts)
    idx = len(parts) - 1 - parts[::-1].index("images")
    parts[idx] = "labels"
    return Path(*parts)


def build_training_set(yamls: list[str | Path], out_dir: str | Path,
                       repeats: dict[str, int] | None = None) -> Path:
    """Write out_dir/data.yaml (+ train.txt, val.txt, linked splits); returns the YAML path."""
    repeats = repeats or {}
    out = Path(out_dir).absolute()
    datasets = [YoloDataset.from_yaml(y) for y in yamls]
    for ds in datasets:
        if ds.names != CANONICAL_CLASSES:
            raise DatasetError(f"dataset {ds.name} has classes {ds.names}; training expects the "
                               f"canonical {CANONICAL_CLASSES} (convert it with `weedscan data import`)")
    unknown = set(repeats) - {ds.name for ds in datasets}
    if unknown:
        raise DatasetError(f"--repeat names unknown dataset(s): {', '.join(sorted(unknown))}")
    lists: dict[str, list[str]] = {"train": [], "val": []}
    for ds in datasets:
        for split in lists:
            if split not in ds.splits:
                continue
            linked = out / "sources" / ds.name / "images" / split
            _link(ds.splits[split], linked)
            _link(labels_folder(ds.splits[split]), out / "sources" / ds.name / "labels" / split)
            copies = repeats.get(ds.name, 1) if split == "train" else 1
            files = [str(linked / p.relative_to(ds.splits[split])) for p in ds.images(split)]
            lists[split] += files * copies
    if not lists["train"]:
        raise DatasetError("no training images found in " + ", ".join(map(str, yamls)))
    for split, files in lists.items():
        (out / f"{split}.txt").write_text("\n".join(files) + "\n", encoding="utf-8")
    data_yaml = out / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({
        "path": str(out), "train": "train.txt", "val": "val.txt" if lists["val"] else "train.txt",
        "names": dict(enumerate(CANONICAL_CLASSES)),
    }, sort_keys=False), encoding="utf-8")
    return data_yaml


def _link(source: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.resolve() == source.resolve():
            return
        link.unlink()
    os.symlink(source.resolve(), link, target_is_directory=True)
