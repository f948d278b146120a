"""Download a public dataset named by its card, verify its sha256, extract it and convert it.

Cache layout (default `~/.cache/weedscan/datasets`): downloads/NAME.zip, raw/NAME/ (the extracted
release), NAME/ (the converted YOLO dataset, data.yaml inside). Nothing is fetched at run time:
this runs only when a trainer asks for it."""

from __future__ import annotations

import hashlib
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from serving.model_card import sha256_of
from training.data.cards import DatasetCard
from training.data.convert import ImportResult, import_dataset
from training.offline import weedscan_cache_dir
from training.trainset import DatasetError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class FetchResult:
    archive: Path
    sha256: str
    verified: bool
    imported: ImportResult


def default_cache_dir() -> Path:
    return weedscan_cache_dir() / "datasets"


def fetch_dataset(card: DatasetCard, cache_dir: Path | None = None, url: str | None = None,
                  sha256: str | None = None, verify: bool = True,
                  progress: bool = True) -> FetchResult:
    """`sha256` overrides the card's; with neither, `verify=False` is required."""
    cache = (cache_dir or default_cache_dir()).expanduser().absolute()
    expected = (sha256 or card.download.sha256 or "").lower() or None
    if verify and expected is None:
        raise DatasetError(f"cannot verify the download of {card.name}: its card ({card.path}) has "
                           "no sha256; pass --sha256 HEX, or --no-verify to accept the download "
                           "unverified (its sha256 is printed)")
    archive = cache / "downloads" / f"{card.name}.zip"
    if not (verify and archive.is_file() and sha256_of(archive) == expected):
        download(url or card.download.url, archive, expected if verify else None, progress)
    digest = sha256_of(archive)
    raw = extract_zip(archive, cache / "raw" / card.name)
    imported = import_dataset(card, raw, cache / card.name, progress)
    return FetchResult(archive=archive, sha256=digest, verified=verify, imported=imported)


def download(url: str, target: Path, sha256: str | None, progress: bool = True) -> str:
    """Stream `url` into `target` (via a .part file); returns the sha256 of what arrived."""
    if "://" not in url and Path(url).exists():
        url = Path(url).absolute().as_uri()  # a local archive: handy on an offline machine
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {target.stem}",
                      disable=None if progress else True) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        if isinstance(exc, urllib.error.HTTPError):
            reason: object = f"HTTP {exc.code} {exc.reason}"
        else:
            reason = getattr(exc, "reason", None) or exc
        raise DatasetError(f"download failed: {url}: {reason}") from None
    got = digest.hexdigest()
    if sha256 is not None and got != sha256.lower():
        partial.unlink(missing_ok=True)
        raise DatasetError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {got}; "
                           "the download was deleted")
    partial.replace(target)
    return got


def extract_zip(archive: Path, dest: Path) -> Path:
    """Extract into a fresh `dest`, refusing members that would land outside it."""
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                if not (staging / member).resolve().is_relative_to(staging.resolve()):
                    raise DatasetError(f"{archive} holds an unsafe path: {member}")
            zf.extractall(staging)
    except zipfile.BadZipFile:
        shutil.rmtree(staging, ignore_errors=True)
        raise DatasetError(f"{archive} is not a valid zip archive") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return dest


