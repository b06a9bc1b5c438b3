"""The diagnosis history: one SQLite database and content-addressed photo files in the data folder.

Layout of ``--data-dir``::

    diagnoses.sqlite3          WAL mode; PRAGMA user_version = schema version
    photos/ab/abcdef....jpg    the stored photo, named by the sha256 of its bytes
    thumbs/ab/abcdef....jpg    its thumbnail

A photo file is written (temp file, then rename) before its row; the row is committed, with
``synchronous=FULL``, before :meth:`Store.add` returns, so a diagnosis the server acknowledged
survives a kill -9 or a power cut. A crash between the two leaves at most an unreferenced photo.
Identical photos share one file. Names shown to users (the client's filename) are stored as text
and never used as paths.
"""

from __future__ import annotations

import errno
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import UserError
from ..fileio import write_bytes_durably

DATABASE_NAME = "diagnoses.sqlite3"
STATUSES = ("ok", "unsure", "out_of_distribution")

# MIGRATIONS[v] takes a database from schema version v to v + 1; the version is PRAGMA user_version.
MIGRATIONS = [
    """
    CREATE TABLE diagnoses (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at TEXT NOT NULL,            -- UTC, ISO 8601
        photo_sha256 TEXT NOT NULL,
        original_name TEXT NOT NULL,         -- the client's filename: shown (escaped), never a path
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        predicted TEXT NOT NULL,
        confidence REAL NOT NULL,            -- calibrated probability of ``predicted``
        status TEXT NOT NULL,                -- ok | unsure | out_of_distribution
        ood_score REAL,
        top_k TEXT NOT NULL,                 -- JSON [[label, probability], ...]
        model_sha256 TEXT NOT NULL,
        gps_latitude REAL,
        gps_longitude REAL,
        gps_altitude REAL
    );
    CREATE INDEX diagnoses_predicted ON diagnoses (predicted);
    CREATE INDEX diagnoses_status ON diagnoses (status);
    """,
    """
    CREATE TABLE models (
        sha256 TEXT PRIMARY KEY,
        file_name TEXT NOT NULL,
        classes TEXT NOT NULL,               -- JSON list, in class-id order
        first_served_at TEXT NOT NULL
    );
    CREATE TABLE reviews (                   -- every review, kept: the audit trail of the labels
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        diagnosis_id INTEGER NOT NULL REFERENCES diagnoses (id),
        label TEXT NOT NULL,
        reviewed_at TEXT NOT NULL
    );
    ALTER TABLE diagnoses ADD COLUMN reviewed_label TEXT;   -- the latest review
    ALTER TABLE diagnoses ADD COLUMN reviewed_at TEXT;
    CREATE INDEX diagnoses_reviewed ON diagnoses (reviewed_label);
    """,
    """
    ALTER TABLE diagnoses ADD COLUMN device_id TEXT;            -- a diagnosis made on a phone, then synced
    ALTER TABLE diagnoses ADD COLUMN upload_sha256 TEXT;        -- of the bytes sent: with device_id, the sync key
    ALTER TABLE diagnoses ADD COLUMN device_status TEXT;        -- the phone's verdict (status is the re-check)
    ALTER TABLE diagnoses ADD COLUMN device_top_k TEXT;         -- JSON [[label, probability], ...] on the phone
    ALTER TABLE diagnoses ADD COLUMN device_model_sha256 TEXT;
    ALTER TABLE diagnoses ADD COLUMN device_diagnosed_at TEXT;  -- the phone's clock, ISO 8601
    CREATE UNIQUE INDEX diagnoses_device_upload ON diagnoses (device_id, upload_sha256) WHERE device_id IS NOT NULL;
    """,
    """
    CREATE TABLE visits (                    -- photos of several leaves of one field, one combined answer
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at TEXT NOT NULL,
        model_sha256 TEXT NOT NULL           -- a visit's photos are diagnosed by one model
    );
    ALTER TABLE diagnoses ADD COLUMN visit_id INTEGER REFERENCES visits (id);
    ALTER TABLE diagnoses ADD COLUMN probabilities TEXT;    -- JSON, every class's calibrated probability
    CREATE INDEX diagnoses_visit ON diagnoses (visit_id);
    """,
    """
    ALTER TABLE visits ADD COLUMN device_id TEXT;       -- a visit a phone started offline, then synced:
    ALTER TABLE visits ADD COLUMN device_visit TEXT;    -- the phone's own id for it
    CREATE UNIQUE INDEX visits_device ON visits (device_id, device_visit) WHERE device_id IS NOT NULL;
    """,
    """
    CREATE TABLE photo_fingerprints (       -- the review queue's copy finding (serve/review_queue.py), per photo
        photo_sha256 TEXT PRIMARY KEY,      -- content-addressed: a photo's fingerprint never changes
        pixel_sha1 TEXT NOT NULL,           -- of the decoded pixels, empty when the photo was unreadable
        hashes BLOB                         -- 17 little-endian uint64: 8 whole-image and 9 crop perceptual hashes
    );
    """,
    """
    ALTER TABLE diagnoses ADD COLUMN model_version TEXT;    -- the registry version that answered ('rice/v3')
    ALTER TABLE models ADD COLUMN version TEXT;
    CREATE INDEX diagnoses_model_version ON diagnoses (model_version);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

DEVICE_COLUMNS = ("device_id", "upload_sha256", "device_status", "device_top_k", "device_model_sha256",
                  "device_diagnosed_at")  # fmt: skip
COLUMNS = (
    "id, created_at, photo_sha256, original_name, width, height, predicted, confidence, status, ood_score, "
    "top_k, model_sha256, gps_latitude, gps_longitude, gps_altitude, reviewed_label, reviewed_at, visit_id, "
    "probabilities, model_version, " + ", ".join(DEVICE_COLUMNS)
)


# SQLite's INTEGER (and so a rowid) is a signed 64-bit number; sqlite3 raises OverflowError beyond it.
MAX_ROW_ID = 2**63 - 1


def is_row_id(value: int) -> bool:
    return 1 <= value <= MAX_ROW_ID


class DiskFullError(Exception):
    """The disk (or quota) under the history is full: the photo or its row could not be written."""


def disk_full(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def disk_full_as_error() -> Iterator[None]:
    try:
        yield
    except (OSError, sqlite3.OperationalError) as exc:
        if disk_full(exc):
            raise DiskFullError(str(exc)) from exc
        raise


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class NewDiagnosis:
    photo_sha256: str
    original_name: str
    width: int
    height: int
    top_k: list[tuple[str, float]]  # best first
    status: str
    ood_score: float | None
    model_sha256: str
    gps: tuple[float | None, float | None, float | None] = (None, None, None)
    device: DeviceReport | None = None  # set when a phone diagnosed the photo offline and synced it
    probabilities: list[float] | None = None  # every class's calibrated probability, in class order
    visit_id: int | None = None
    model_version: str | None = None  # the registry version of the model, when served from a registry


@dataclass(frozen=True)
class DeviceReport:
    """What a phone said of a photo it diagnosed offline; ``(device_id, upload_sha256)`` makes a sync idempotent."""

    device_id: str
    upload_sha256: str
    status: str
    top_k: list[tuple[str, float]]
    model_sha256: str | None = None
    diagnosed_at: str | None = None


class AlreadySyncedError(Exception):
    """A sync whose ``(device_id, upload_sha256)`` is stored already (a replay that raced the first)."""


@dataclass
class Filters:
    predicted: str | None = None
    status: str | None = None
    reviewed: bool | None = None
    model_version: str | None = None

    def where(self) -> tuple[str, list]:
        clauses, values = [], []
        if self.model_version:
            clauses.append("model_version = ?")
            values.append(self.model_version)
        if self.predicted:
            clauses.append("predicted = ?")
            values.append(self.predicted)
        if self.status:
            clauses.append("status = ?")
            values.append(self.status)
        if self.reviewed is not None:
            clauses.append("reviewed_label IS NOT NULL" if self.reviewed else "reviewed_label IS NULL")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", values


def _top_k(raw: str) -> list[dict]:
    return [{"label": label, "probability": p} for label, p in json.loads(raw)]


def row_to_record(row: sqlite3.Row) -> dict:
    """A row as the API shows it; the device columns become ``"device"`` (None for a server upload)."""
    record = dict(row)
    record["top_k"] = _top_k(record["top_k"])
    record["probabilities"] = json.loads(record["probabilities"]) if record["probabilities"] else None
    device = {name.removeprefix("device_"): record.pop(name) for name in DEVICE_COLUMNS}
    device["top_k"] = _top_k(device["top_k"]) if device["top_k"] else None
    record["device"] = device if device["id"] is not None else None
    return record


def migrate(connection: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the database to schema version ``target``, one migration per transaction; returns the old version."""
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise UserError(
            f"The database has schema version {version}, newer than this paddyclf knows ({SCHEMA_VERSION}): "
            "upgrade paddyclf, or point --data-dir at another folder."
        )
    for step in range(version, target):
        # executescript would commit on its own; run the statements inside one explicit transaction
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[step].split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {step + 1}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    return version


def connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")  # a committed row is on disk before the reply
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute("PRAGMA busy_timeout = 30000")  # other server processes write too
    return connection


class Store:
    """The history in ``data_dir`` (created, and migrated to the current schema, on open). Thread-safe."""

    def __init__(self, data_dir: str | Path, create: bool = True) -> None:
        self.root = Path(data_dir)
        if not create and not (self.root / DATABASE_NAME).is_file():
            raise UserError(f"{self.root} holds no paddyclf history ({DATABASE_NAME} not found); check --data-dir.")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.connection = connect(self.root / DATABASE_NAME)
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"Cannot open the history in {self.root}: {exc}.") from None
        self.lock = threading.Lock()
        with self.lock:
            migrate(self.connection)

    def close(self) -> None:
        self.connection.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock, disk_full_as_error():
            self.connection.execute("BEGIN IMMEDIATE")
            try:
                yield self.connection
                self.connection.execute("COMMIT")
            except BaseException:
                if self.connection.in_transaction:  # also when COMMIT itself failed (a full disk)
                    self.connection.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ photos

    def photo_path(self, sha256: str, kind: str = "photos") -> Path:
        return self.root / kind / sha256[:2] / f"{sha256}.jpg"

    def save_photo(self, sha256: str, jpeg: bytes, thumbnail: bytes) -> None:
        """Write a photo and its thumbnail (unless stored already), on disk before the row that names them."""
        for kind, data in (("photos", jpeg), ("thumbs", thumbnail)):
            path = self.photo_path(sha256, kind)
            if not path.is_file():
                with disk_full_as_error():
                    write_bytes_durably(path, data)

    # ------------------------------------------------------------------ rows

    def register_model(self, sha256: str, file_name: str, classes: list[str], version: str | None = None) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO models (sha256, file_name, classes, first_served_at, version) "
                "VALUES (?, ?, ?, ?, ?)",
                (sha256, file_name, json.dumps(classes), utc_now(), version),
            )

    def model_versions(self) -> list[str]:
        """The registry versions that have answered, for the history's filter."""
        with self.lock:
            rows = self.connection.execute(
                "SELECT DISTINCT model_version FROM diagnoses WHERE model_version IS NOT NULL"
            ).fetchall()
        return sorted((r[0] for r in rows), key=lambda v: (len(v), v))

    def add(self, new: NewDiagnosis) -> dict:
        """Insert and commit one diagnosis; returns the stored record (with its ``id``).

        A device's sync whose ``(device_id, upload_sha256)`` is stored already raises :class:`AlreadySyncedError`
        (the unique index decides, inside the transaction, so two racing replays make one row).
        """
        (predicted, confidence), top_k = new.top_k[0], json.dumps([[label, p] for label, p in new.top_k])
        d = new.device
        device = (
            (d.device_id, d.upload_sha256, d.status, json.dumps([[label, p] for label, p in d.top_k]),
             d.model_sha256, d.diagnosed_at) if d else (None,) * len(DEVICE_COLUMNS)
        )  # fmt: skip
        try:
            with self.transaction() as db:
                cursor = db.execute(
                    "INSERT INTO diagnoses (created_at, photo_sha256, original_name, width, height, predicted, "
                    "confidence, status, ood_score, top_k, model_sha256, gps_latitude, gps_longitude, gps_altitude, "
                    f"visit_id, probabilities, model_version, {', '.join(DEVICE_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * (17 + len(DEVICE_COLUMNS)))})",
                    (utc_now(), new.photo_sha256, new.original_name, new.width, new.height, predicted, confidence,
                     new.status, new.ood_score, top_k, new.model_sha256, *new.gps, new.visit_id,
                     json.dumps(new.probabilities) if new.probabilities is not None else None, new.model_version,
                     *device),
                )  # fmt: skip
                row = db.execute(f"SELECT {COLUMNS} FROM diagnoses WHERE id = ?", (cursor.lastrowid,)).fetchone()
        except sqlite3.IntegrityError:
            if d is None:
                raise
            raise AlreadySyncedError(d.device_id, d.upload_sha256) from None
        return row_to_record(row)

    def new_visit(self, model_sha256: str) -> int:
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO visits (created_at, model_sha256) VALUES (?, ?)", (utc_now(), model_sha256)
            )
        return cursor.lastrowid

    def device_visit(self, device_id: str, device_visit: str, model_sha256: str) -> tuple[int, str]:
        """(id, model sha256) of the visit a phone calls ``device_visit``, created the first time one of
        its photos is synced (with ``model_sha256``)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO visits (created_at, model_sha256, device_id, device_visit) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (device_id, device_visit) WHERE device_id IS NOT NULL DO NOTHING",
                (utc_now(), model_sha256, device_id, device_visit),
            )
            row = db.execute(
                "SELECT id, model_sha256 FROM visits WHERE device_id = ? AND device_visit = ?",
                (device_id, device_visit),
            ).fetchone()
        return row["id"], row["model_sha256"]

    def visit(self, visit_id: int) -> dict | None:
        """A visit's row and its photos' records (oldest first), or None."""
        if not is_row_id(visit_id):
            return None
        with self.lock:
            row = self.connection.execute(
                "SELECT id, created_at, model_sha256 FROM visits WHERE id = ?", (visit_id,)
            ).fetchone()
            rows = self.connection.execute(
                f"SELECT {COLUMNS} FROM diagnoses WHERE visit_id = ? ORDER BY id", (visit_id,)
            ).fetchall()
        return dict(row) | {"records": [row_to_record(r) for r in rows]} if row else None

    def find_synced(self, device_id: str, upload_sha256: str) -> dict | None:
        """The diagnosis a device's earlier sync of these bytes stored, if any."""
        with self.lock:
            row = self.connection.execute(
                f"SELECT {COLUMNS} FROM diagnoses WHERE device_id = ? AND upload_sha256 = ?", (device_id, upload_sha256)
            ).fetchone()
        return row_to_record(row) if row else None

    def get(self, diagnosis_id: int) -> dict | None:
        if not is_row_id(diagnosis_id):
            return None
        with self.lock:
            row = self.connection.execute(f"SELECT {COLUMNS} FROM diagnoses WHERE id = ?", (diagnosis_id,)).fetchone()
        return row_to_record(row) if row else None

    def page(self, page: int, per_page: int, filters: Filters | None = None) -> tuple[list[dict], int]:
        """Records of page ``page`` (1-based), newest first, and the number of records the filters match."""
        where, values = (filters or Filters()).where()
        with self.lock:
            total = self.connection.execute(f"SELECT COUNT(*) FROM diagnoses{where}", values).fetchone()[0]
            if (page - 1) * per_page >= total:  # past the end; also keeps huge pages out of SQLite's int64
                return [], total
            rows = self.connection.execute(
                f"SELECT {COLUMNS} FROM diagnoses{where} ORDER BY id DESC LIMIT ? OFFSET ?",
                [*values, per_page, (page - 1) * per_page],
            ).fetchall()
        return [row_to_record(r) for r in rows], total

    def review(self, diagnosis_id: int, label: str) -> dict | None:
        """Record an expert's label (confirming or correcting); None when there is no such diagnosis."""
        if not is_row_id(diagnosis_id):
            return None
        now = utc_now()
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM diagnoses WHERE id = ?", (diagnosis_id,)).fetchone() is None:
                return None
            db.execute(
                "INSERT INTO reviews (diagnosis_id, label, reviewed_at) VALUES (?, ?, ?)",
                (diagnosis_id, label, now),
            )
            db.execute(
                "UPDATE diagnoses SET reviewed_label = ?, reviewed_at = ? WHERE id = ?",
                (label, now, diagnosis_id),
            )
        return self.get(diagnosis_id)

    def reviewed(self) -> list[dict]:
        """Every reviewed diagnosis, oldest first."""
        with self.lock:
            rows = self.connection.execute(
                f"SELECT {COLUMNS} FROM diagnoses WHERE reviewed_label IS NOT NULL ORDER BY id"
            ).fetchall()
        return [row_to_record(r) for r in rows]

    def all_records(self) -> list[dict]:
        """Every diagnosis, oldest first: the review queue orders the unreviewed ones and drops the
        copies of reviewed ones."""
        with self.lock:
            rows = self.connection.execute(f"SELECT {COLUMNS} FROM diagnoses ORDER BY id").fetchall()
        return [row_to_record(r) for r in rows]

    def fingerprints(self) -> dict[str, tuple[str, bytes | None]]:
        """photo sha256 -> (pixel sha1, 136 bytes of perceptual hashes or None), of every photo fingerprinted."""
        with self.lock:
            rows = self.connection.execute("SELECT photo_sha256, pixel_sha1, hashes FROM photo_fingerprints").fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def save_fingerprints(self, items: list[tuple[str, str, bytes | None]]) -> None:
        """Keep (photo sha256, pixel sha1, hashes) rows; a photo fingerprinted already is left as it is."""
        if items:
            with self.transaction() as db:
                db.executemany(
                    "INSERT OR IGNORE INTO photo_fingerprints (photo_sha256, pixel_sha1, hashes) VALUES (?, ?, ?)",
                    items,
                )

    def model_classes(self) -> list[list[str]]:
        """The class lists of every model served into this history, newest first."""
        with self.lock:
            rows = self.connection.execute("SELECT classes FROM models ORDER BY first_served_at DESC").fetchall()
        return [json.loads(r[0]) for r in rows]

    def integrity(self) -> str:
        with self.lock:
            return self.connection.execute("PRAGMA integrity_check").fetchone()[0]
