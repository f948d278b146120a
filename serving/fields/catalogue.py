"""The catalogue: one SQLite file (stdlib sqlite3, WAL) beside the field datasets.

Tables: `datasets` (name, crop, licence, created, updated), `images` (one row per photo of a
dataset, keyed by the dataset and the photo's sha256: the same bytes saved twice are one image)
and `jobs`, for long work such as fine-tuning.

Jobs, for a runner to build on (every call is one short transaction; safe across threads and
processes, so several server workers and a child process may share the file):

    cat = Catalogue(data_dir / "catalogue.sqlite")
    job = cat.create_job("finetune", {"dataset": "carrots", "base": "weedscan"})  # state queued
    job = cat.claim_next_job()            # the oldest queued job -> running; None if one runs
    cat.update_job(job.id, progress={"epoch": 3, "epochs": 30, "eta_s": 420})
    cat.update_job(job.id, state="done", result={"model": "carrots-1"})  # or failed + error=...
    cat.list_jobs(state="queued"); cat.get_job(job.id)
    cat.mark_interrupted()                # at start-up: jobs left `running` by a dead process

States: queued -> running -> done | failed | cancelled | interrupted (a queued job may also be
cancelled). `started` is set on entering running, `finished` on reaching a final state; params,
progress and result are JSON objects; error is text.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from serving.fields.errors import JobNotFound

SCHEMA_VERSION = 1
JobState = Literal["queued", "running", "done", "failed", "cancelled", "interrupted"]
FINAL_STATES: frozenset[str] = frozenset({"done", "failed", "cancelled", "interrupted"})
Split = Literal["train", "val", "test"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT PRIMARY KEY,
    crop TEXT NOT NULL,
    licence TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
    id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    filename TEXT,
    file TEXT NOT NULL,
    split TEXT NOT NULL CHECK (split IN ('train', 'val', 'test')),
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    crop INTEGER NOT NULL DEFAULT 0,
    weed INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (dataset, id),
    UNIQUE (dataset, sha256)
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN
        ('queued', 'running', 'done', 'failed', 'cancelled', 'interrupted')),
    params TEXT NOT NULL DEFAULT '{}',
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    progress TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, id);
"""


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _stamp() -> str:
    return now().isoformat()


class DatasetRecord(BaseModel):
    name: str
    crop: str
    licence: str
    created: datetime
    updated: datetime


class ImageRecord(BaseModel):
    dataset: str
    id: str = Field(description="the first 16 hex digits of the photo's sha256")
    sha256: str
    filename: str | None = Field(description="the name the photo was sent with (display only)")
    file: str = Field(description="the photo's path inside the dataset folder")
    split: Split
    width: int = Field(description="upright pixels (EXIF orientation applied)")
    height: int
    bytes: int
    counts: dict[str, int]
    created: datetime
    updated: datetime


class DatasetTotals(BaseModel):
    images: int = 0
    bytes: int = 0
    counts: dict[str, int] = Field(default_factory=lambda: {"crop": 0, "weed": 0})
    splits: dict[str, int] = Field(default_factory=dict)


class Job(BaseModel):
    id: int
    kind: str
    state: JobState
    params: dict[str, Any]
    created: datetime
    started: datetime | None
    finished: datetime | None
    progress: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None


def _image(row: sqlite3.Row) -> ImageRecord:
    return ImageRecord(dataset=row["dataset"], id=row["id"], sha256=row["sha256"],
                       filename=row["filename"], file=row["file"], split=row["split"],
                       width=row["width"], height=row["height"], bytes=row["bytes"],
                       counts={"crop": row["crop"], "weed": row["weed"]},
                       created=row["created"], updated=row["updated"])


def _job(row: sqlite3.Row) -> Job:
    return Job(id=row["id"], kind=row["kind"], state=row["state"], params=json.loads(row["params"]),
               created=row["created"], started=row["started"], finished=row["finished"],
               progress=json.loads(row["progress"]),
               result=json.loads(row["result"]) if row["result"] is not None else None,
               error=row["error"])


class Catalogue:
    """The SQLite catalogue at `path`; the file and its tables are made on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ready = False
        self._lock = threading.Lock()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as conn:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            if not self._ready:
                with self._lock:
                    conn.execute("PRAGMA journal_mode = WAL")
                    conn.executescript(_SCHEMA)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    self._ready = True
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: writers queue up rather than fail); the
        catalogue's folder is made if it is missing."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # --- datasets ------------------------------------------------------------------------------

    def add_dataset(self, record: DatasetRecord) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT INTO datasets VALUES (?, ?, ?, ?, ?)",
                         (record.name, record.crop, record.licence, record.created.isoformat(),
                          record.updated.isoformat()))

    def get_dataset(self, name: str) -> DatasetRecord | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM datasets WHERE name = ?", (name,)).fetchone()
        return DatasetRecord(**dict(row)) if row else None

    def list_datasets(self) -> list[DatasetRecord]:
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM datasets ORDER BY name").fetchall()
        return [DatasetRecord(**dict(r)) for r in rows]

    def touch_dataset(self, conn: sqlite3.Connection, name: str) -> None:
        conn.execute("UPDATE datasets SET updated = ? WHERE name = ?", (_stamp(), name))

    def delete_dataset(self, name: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM datasets WHERE name = ?", (name,))

    def totals(self, name: str, conn: sqlite3.Connection | None = None) -> DatasetTotals:
        """Photos, bytes, boxes per class and photos per split; inside a transaction when `conn`
        is given."""
        query = ("SELECT split, COUNT(*) AS n, SUM(bytes) AS b, SUM(crop) AS c, SUM(weed) AS w "
                 "FROM images WHERE dataset = ? GROUP BY split")
        if conn is not None:
            rows = conn.execute(query, (name,)).fetchall()
        else:
            with self._connect() as own:
                rows = own.execute(query, (name,)).fetchall()
        totals = DatasetTotals()
        for r in rows:
            totals.images += r["n"]
            totals.bytes += r["b"] or 0
            totals.counts["crop"] += r["c"] or 0
            totals.counts["weed"] += r["w"] or 0
            totals.splits[r["split"]] = r["n"]
        return totals

    def used_bytes(self, conn: sqlite3.Connection | None = None) -> int:
        """Bytes of every saved photo, all datasets."""
        query = "SELECT COALESCE(SUM(bytes), 0) FROM images"
        if conn is not None:
            return int(conn.execute(query).fetchone()[0])
        with self._connect() as own:
            return int(own.execute(query).fetchone()[0])

    # --- images --------------------------------------------------------------------------------

    def get_image(self, dataset: str, image_id: str,
                  conn: sqlite3.Connection | None = None) -> ImageRecord | None:
        """The image's row; inside a transaction when `conn` is given."""
        query = "SELECT * FROM images WHERE dataset = ? AND id = ?"
        if conn is not None:
            row = conn.execute(query, (dataset, image_id)).fetchone()
        else:
            with self._connect() as own:
                row = own.execute(query, (dataset, image_id)).fetchone()
        return _image(row) if row else None

    def list_images(self, dataset: str) -> list[ImageRecord]:
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM images WHERE dataset = ? ORDER BY created, id",
                                (dataset,)).fetchall()
        return [_image(r) for r in rows]

    def put_image(self, conn: sqlite3.Connection, record: ImageRecord) -> None:
        """Insert or replace the row of (dataset, id), inside the caller's transaction."""
        conn.execute(
            "INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (dataset, id) DO UPDATE SET filename = excluded.filename, "
            "file = excluded.file, split = excluded.split, crop = excluded.crop, "
            "weed = excluded.weed, updated = excluded.updated",
            (record.dataset, record.id, record.sha256, record.filename, record.file, record.split,
             record.width, record.height, record.bytes, record.counts.get("crop", 0),
             record.counts.get("weed", 0), record.created.isoformat(), record.updated.isoformat()))
        self.touch_dataset(conn, record.dataset)

    def delete_image(self, conn: sqlite3.Connection, dataset: str, image_id: str) -> None:
        conn.execute("DELETE FROM images WHERE dataset = ? AND id = ?", (dataset, image_id))
        self.touch_dataset(conn, dataset)

    # --- jobs ----------------------------------------------------------------------------------

    def create_job(self, kind: str, params: dict[str, Any] | None = None) -> Job:
        """A new job in state `queued`."""
        with self.transaction() as conn:
            cursor = conn.execute("INSERT INTO jobs (kind, state, params, created) "
                                  "VALUES (?, 'queued', ?, ?)",
                                  (kind, json.dumps(params or {}), _stamp()))
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (cursor.lastrowid,)).fetchone()
        return _job(row)

    def get_job(self, job_id: int) -> Job | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def list_jobs(self, state: JobState | None = None, kind: str | None = None,
                  limit: int = 100) -> list[Job]:
        """Newest first."""
        query, args = "SELECT * FROM jobs WHERE 1 = 1", list[str]()
        if state is not None:
            query, args = query + " AND state = ?", [*args, state]
        if kind is not None:
            query, args = query + " AND kind = ?", [*args, kind]
        with self._connect() as conn:
            rows = conn.execute(query + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [_job(r) for r in rows]

    def update_job(self, job_id: int, *, state: JobState | None = None,
                   progress: dict[str, Any] | None = None, result: dict[str, Any] | None = None,
                   error: str | None = None) -> Job:
        """Set what is given; entering `running` stamps `started`, a final state `finished`.
        404 (JobNotFound) for an unknown id."""
        sets: list[str] = []
        args: list[Any] = []
        if state is not None:
            sets.append("state = ?")
            args.append(state)
            if state == "running":
                sets.append("started = COALESCE(started, ?)")
                args.append(_stamp())
            elif state in FINAL_STATES:
                sets.append("finished = ?")
                args.append(_stamp())
        for column, value in (("progress", progress), ("result", result)):
            if value is not None:
                sets.append(f"{column} = ?")
                args.append(json.dumps(value))
        if error is not None:
            sets.append("error = ?")
            args.append(error)
        with self.transaction() as conn:
            if sets:
                conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", (*args, job_id))
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job {job_id}")
        return _job(row)

    def claim_next_job(self, kind: str | None = None) -> Job | None:
        """The oldest queued job (of `kind`), now running; None when one is running already or
        none is queued. One transaction, so two runners never claim the same job."""
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM jobs WHERE state = 'running' LIMIT 1").fetchone():
                return None
            query = "SELECT id FROM jobs WHERE state = 'queued'"
            args: tuple[Any, ...] = ()
            if kind is not None:
                query, args = query + " AND kind = ?", (kind,)
            row = conn.execute(query + " ORDER BY id LIMIT 1", args).fetchone()
            if row is None:
                return None
            conn.execute("UPDATE jobs SET state = 'running', started = ? WHERE id = ?",
                         (_stamp(), row["id"]))
            claimed = conn.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone()
        return _job(claimed)

    def mark_interrupted(self) -> list[Job]:
        """Jobs left `running` (their process is gone): now `interrupted`."""
        with self.transaction() as conn:
            ids = [r["id"] for r in conn.execute("SELECT id FROM jobs WHERE state = 'running'")]
            conn.execute("UPDATE jobs SET state = 'interrupted', finished = ? "
                         "WHERE state = 'running'", (_stamp(),))
            rows = [conn.execute("SELECT * FROM jobs WHERE id = ?", (i,)).fetchone() for i in ids]
        return [_job(r) for r in rows]
