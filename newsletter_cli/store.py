"""The SQLite state in .newsletter/: suppressions (and, later, the send journal).

One file, WAL mode so the unsubscribe endpoint can write while a send reads, and a schema
version in ``PRAGMA user_version`` with forward migrations. It never holds secrets.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from newsletter_cli.errors import NewsletterError

T = TypeVar("T")
DB_NAME = "newsletter.db"
REASONS = ("unsubscribed", "bounced", "spam_report", "invalid", "manual")
CHUNK = 500  # stays under SQLite's limit on host parameters in one statement

MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE suppressions (
        email TEXT PRIMARY KEY,          -- lower-cased address
        reason TEXT NOT NULL CHECK (reason IN ({", ".join(repr(r) for r in REASONS)})),
        source TEXT NOT NULL,            -- who recorded it: cli, import:FILE, endpoint, sendgrid:LIST
        created_at TEXT NOT NULL         -- ISO 8601, UTC
    ) WITHOUT ROWID;
    """,
    """
    CREATE TABLE sends (
        slug TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        created_at TEXT NOT NULL,
        invalid INTEGER NOT NULL DEFAULT 0,      -- rows skipped by the latest run, by reason
        duplicate INTEGER NOT NULL DEFAULT 0,
        suppressed INTEGER NOT NULL DEFAULT 0,
        last_batch_at TEXT
    );
    CREATE TABLE recipients (
        seq INTEGER PRIMARY KEY,                 -- order of sending; a batch's rows sit together
        slug TEXT NOT NULL,
        email TEXT NOT NULL,                     -- lower-cased: one row per address and issue
        batch INTEGER,                           -- NULL while pending; then its batch holds its state
        run INTEGER NOT NULL,                    -- the run that last found it in the list
        data TEXT NOT NULL                       -- JSON: address, name, merge field values
    );
    CREATE UNIQUE INDEX recipients_by_email ON recipients (slug, email);
    CREATE INDEX recipients_pending ON recipients (slug, seq) WHERE batch IS NULL;
    CREATE TABLE batches (
        slug TEXT NOT NULL,
        id INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('in_flight', 'sent', 'failed', 'uncertain', 'requeued')),
        size INTEGER NOT NULL,
        first_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        message_id TEXT,
        error TEXT,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        PRIMARY KEY (slug, id)
    );
    """,
    # Pending rows are found by walking seq from a cursor (journal.py): keeping this index cost
    # a quarter of the time of writing a list into the journal.
    "DROP INDEX recipients_pending;",
)


class StoreError(NewsletterError):
    """The state database cannot be opened or is newer than this version of newsletter."""


@dataclass(frozen=True)
class Suppression:
    email: str
    reason: str
    source: str
    created_at: str = ""


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Store:
    """A connection to the newsletter folder's state database; use as a context manager."""

    def __init__(self, path: Path, readonly: bool = False):
        """``readonly``: a reader of a database another connection keeps open (a send's workers)."""
        self.path = path
        try:
            if readonly:
                self.db = sqlite3.connect(
                    f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10, isolation_level=None
                )
                self.db.execute("PRAGMA busy_timeout=10000")
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=10000")
            self.db.execute("PRAGMA cache_size=-4096")  # 4 MiB: a send touches few pages at a time
            self._migrate()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the state database: {exc}", path) from None

    @classmethod
    def for_folder(cls, state_dir: Path) -> Store:
        return cls(state_dir / DB_NAME)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"the state database is schema version {version}, newer than this newsletter "
                f"understands ({len(MIGRATIONS)}); upgrade newsletter",
                self.path,
            )
        for number, sql in enumerate(MIGRATIONS[version:], start=version + 1):
            try:
                self.db.executescript(f"BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {number}; COMMIT;")
            except sqlite3.Error:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise

    def transaction(self) -> sqlite3.Connection:
        """``with store.transaction():`` commits on success, rolls back on error."""
        return _Transaction(self.db)  # type: ignore[return-value]

    # --- suppressions ------------------------------------------------------------------------

    def suppress(self, entries: Iterable[Suppression]) -> int:
        """Record suppressions; the first record of an address is kept. Returns how many were new."""
        added = 0
        with self.transaction():
            for chunk in chunks(entries, CHUNK):
                before = self.db.total_changes
                for entry in chunk:
                    if entry.reason not in REASONS:
                        raise StoreError(
                            f"unknown suppression reason {entry.reason!r} (expected one of {', '.join(REASONS)})"
                        )
                self.db.executemany(
                    "INSERT INTO suppressions (email, reason, source, created_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (email) DO NOTHING",
                    [(e.email.strip().lower(), e.reason, e.source, e.created_at or now()) for e in chunk],
                )
                added += self.db.total_changes - before
        return added

    def suppressions(self) -> Iterator[Suppression]:
        rows = self.db.execute("SELECT email, reason, source, created_at FROM suppressions ORDER BY created_at, email")
        for row in rows:
            yield Suppression(*row)

    def suppressed_among(self, emails: Sequence[str]) -> set[str]:
        """Which of these (lower-cased) addresses are suppressed: one query per 500 addresses."""
        found: set[str] = set()
        for chunk in chunks(emails, CHUNK):
            marks = ",".join("?" * len(chunk))
            found.update(
                row[0] for row in self.db.execute(f"SELECT email FROM suppressions WHERE email IN ({marks})", chunk)
            )
        return found

    def count_suppressions(self) -> int:
        return self.db.execute("SELECT count(*) FROM suppressions").fetchone()[0]


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: object, *exc: object) -> None:
        self.db.execute("ROLLBACK" if kind else "COMMIT")


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of ``size`` items (the last one shorter), for batched SQL."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
