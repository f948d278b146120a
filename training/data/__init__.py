"""Public weed datasets: cards (datasets/*.yaml), fetch, convert to YOLO, check and merge.

Modules by topic: cards (the typed card), convert (native -> YOLO), split (seeded and
near-duplicate-aware splits), fetch (download + verify + extract), check (validate a YOLO folder),
merge (several datasets -> one), yolo (label-line and data.yaml helpers)."""

from training.data.cards import DatasetCard, list_cards, load_card
from training.data.check import CheckReport, check_dataset
from training.data.convert import ImportResult, import_dataset
from training.data.fetch import FetchResult, fetch_dataset
from training.data.merge import merge_datasets

__all__ = ["CheckReport", "DatasetCard", "FetchResult", "ImportResult", "check_dataset",
           "fetch_dataset", "import_dataset", "list_cards", "load_card", "merge_datasets"]
