"""The SQLite state in .newsletter/: suppressions (and, later, the send journal).

One file, WAL mode so the unsubscribe endpoint can write while a send reads, and a schema
version in ``PRAGMA user_version`` with forward migrations. It never holds secrets.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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
    # Pending rows are found by walking seq from a cursor (journal.py): keeping this index slowed
    # every row written into the journal.
    "DROP INDEX recipients_pending;",
    # Which list each run read (a resume from another list must not drop anyone silently), what
    # a declined run must restore, the list's row count for status, and the unsubscribes the
    # endpoint still has to tell SendGrid about.
    """
    CREATE TABLE runs (
        slug TEXT NOT NULL,
        run INTEGER NOT NULL,
        list TEXT NOT NULL,                      -- the list's absolute path
        first_seq INTEGER NOT NULL,              -- rows this run created have a larger seq
        started_at TEXT NOT NULL,
        PRIMARY KEY (slug, run)
    );
    ALTER TABLE recipients ADD COLUMN prev_run INTEGER;   -- run before this run listed it again
    ALTER TABLE sends ADD COLUMN run INTEGER;             -- the latest run whose plan was made
    ALTER TABLE sends ADD COLUMN listed_rows INTEGER;     -- rows of that run's list
    CREATE TABLE pushes (
        email TEXT PRIMARY KEY,                  -- an unsubscribe SendGrid has not yet been told of
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    ) WITHOUT ROWID;
    """,
    # rows a platform's export marks as not subscribed, skipped by the latest run
    "ALTER TABLE sends ADD COLUMN unsubscribed INTEGER NOT NULL DEFAULT 0;",
    # SendGrid's Event Webhook (store/events.py), how an uncertain batch was settled by it, and
    # the batch id of a scheduled send (to cancel it)
    """
    CREATE TABLE events (
        id TEXT PRIMARY KEY,                     -- sg_event_id: a replayed event is stored once
        slug TEXT,                               -- the newsletter_issue custom arg; NULL: not ours
        email TEXT NOT NULL,                     -- lower-cased
        event TEXT NOT NULL,
        kind TEXT,                               -- bounce: type; dropped: reason; click: url
        classification TEXT,                     -- bounce: bounce_classification
        machine INTEGER NOT NULL DEFAULT 0,      -- sg_machine_open: an open by a machine
        grp INTEGER,                             -- asm_group_id of a group (un)subscribe
        at INTEGER NOT NULL,                     -- SendGrid's unix time
        message_id TEXT,
        client TEXT,                             -- IP and user agent, only with [events] keep_client
        received_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX events_by_issue ON events (slug, event, email);
    ALTER TABLE batches ADD COLUMN settled TEXT; -- the event that showed an uncertain batch accepted
    ALTER TABLE sends ADD COLUMN schedule_batch TEXT; -- SendGrid's batch id of a scheduled send
    ALTER TABLE sends ADD COLUMN send_at TEXT;
    ALTER TABLE sends ADD COLUMN cancelled_at TEXT;
    """,
    # the consent ledger (store/consents.py): append-only, so the history a regulator may ask
    # for can be trusted
    """
    CREATE TABLE consents (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL,                     -- lower-cased
        kind TEXT NOT NULL CHECK (kind IN ('express', 'implied', 'withdrawn')),
        basis TEXT,                              -- implied: purchase, inquiry, published, ...
        method TEXT NOT NULL,                    -- web double opt-in, paper form, ...; how withdrawn
        source TEXT NOT NULL,                    -- a form, a file, a suppression's source
        wording TEXT,                            -- SHA-256 of the words consented to (wordings/)
        occurred_at TEXT NOT NULL,               -- when given or withdrawn (ISO 8601, UTC)
        confirmed_at TEXT,
        expires_at TEXT,                         -- implied consent's lapse
        recorded_by TEXT NOT NULL,
        evidence TEXT,                           -- a file path or URI
        ip TEXT,                                 -- only when configured
        recorded_at TEXT NOT NULL
    );
    CREATE INDEX consents_by_email ON consents (email, id);
    CREATE TRIGGER consents_never_change BEFORE UPDATE ON consents
        BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only'); END;
    CREATE TRIGGER consents_never_go BEFORE DELETE ON consents
        BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only'); END;
    """,
    # rows the latest run skipped for want of live consent ([consent] require)
    """
    ALTER TABLE sends ADD COLUMN no_consent INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sends ADD COLUMN consent_lapsed INTEGER NOT NULL DEFAULT 0;
    """,
    # signups through the form (store/signups.py): pending until confirmed, never mailed before
    """
    CREATE TABLE signups (
        email TEXT PRIMARY KEY,                  -- lower-cased
        address TEXT NOT NULL,                   -- as typed, cleaned
        first_name TEXT NOT NULL DEFAULT '',
        form TEXT NOT NULL,
        wording TEXT NOT NULL,                   -- SHA-256 of the checkbox's words
        status TEXT NOT NULL CHECK (status IN ('pending', 'confirmed')),
        requested_at TEXT NOT NULL,
        confirmed_at TEXT,
        ip TEXT
    ) WITHOUT ROWID;
    CREATE TABLE confirmation_mails (
        email TEXT NOT NULL,
        sent_at TEXT NOT NULL
    );
    CREATE INDEX confirmation_mails_by_email ON confirmation_mails (email, sent_at);
    """,
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
    """A connection to the newsletter folder's state database; use as a context manager.

    Every SQLite failure (a full disk, a damaged file, a lock held too long) comes out as one
    StoreError line naming the file and what to do; what was committed before it stands."""

    def __init__(self, path: Path, readonly: bool = False):
        """``readonly``: a reader of a database another connection keeps open (a send's workers)."""
        self.path = path
        try:
            _refuse_empty(path)
            if readonly:
                raw = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10, isolation_level=None)
                self.db = _Guarded(raw, path)
                self.db.execute("PRAGMA busy_timeout=10000")
                return
            if not path.exists():
                _create(path)
            self.db = _Guarded(_connect(path), path)
            self._migrate()
        except sqlite3.Error as exc:
            raise failure(exc, path) from None
        except OSError as exc:
            raise StoreError(f"cannot create the state database: {exc.strerror or exc}", path) from None

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
        _migrate(self.db, self.path)

    def transaction(self) -> _Transaction:
        """``with store.transaction():`` commits on success, rolls back on error."""
        return _Transaction(self.db)

    # --- suppressions ------------------------------------------------------------------------

    def suppress(self, entries: Iterable[Suppression], push: bool = False) -> int:
        """Record suppressions; the first record of an address is kept. Returns how many were new.

        ``push``: SendGrid is still to be told of them (``pushes``), in the same transaction, so
        an unsubscribe is never recorded here and forgotten there."""
        added = 0
        with self.transaction():
            for chunk in chunks(entries, CHUNK):
                before = self.db.total_changes
                for entry in chunk:
                    if entry.reason not in REASONS:
                        raise StoreError(
                            f"unknown suppression reason {entry.reason!r} (expected one of {', '.join(REASONS)})"
                        )
                marks = ",".join("?" * len(chunk))
                known = {
                    email
                    for (email,) in self.db.execute(
                        f"SELECT email FROM suppressions WHERE email IN ({marks})",
                        [e.email.strip().lower() for e in chunk],
                    )
                }
                self.db.executemany(
                    "INSERT INTO suppressions (email, reason, source, created_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (email) DO NOTHING",
                    [(e.email.strip().lower(), e.reason, e.source, e.created_at or now()) for e in chunk],
                )
                added += self.db.total_changes - before
                fresh: dict[str, Suppression] = {}
                for entry in chunk:
                    fresh.setdefault(entry.email.strip().lower(), entry)
                withdraw(self.db, [e for key, e in fresh.items() if key not in known])
                if push:
                    self.db.executemany(
                        "INSERT INTO pushes (email, created_at) VALUES (?, ?) ON CONFLICT (email) DO NOTHING",
                        [(e.email.strip().lower(), now()) for e in chunk],
                    )
        return added

    # --- unsubscribes SendGrid has yet to learn ----------------------------------------------

    def pushes(self, limit: int = 1000) -> list[str]:
        rows = self.db.execute("SELECT email FROM pushes ORDER BY created_at, email LIMIT ?", (limit,))
        return [email for (email,) in rows]

    def pushed(self, emails: Sequence[str]) -> None:
        with self.transaction():
            for chunk in chunks(emails, CHUNK):
                self.db.execute(f"DELETE FROM pushes WHERE email IN ({','.join('?' * len(chunk))})", chunk)

    def push_failed(self, emails: Sequence[str], error: str) -> None:
        with self.transaction():
            for chunk in chunks(emails, CHUNK):
                self.db.execute(
                    "UPDATE pushes SET attempts = attempts + 1, last_error = ?"
                    f" WHERE email IN ({','.join('?' * len(chunk))})",
                    (error, *chunk),
                )

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


WITHDRAWING = ("unsubscribed", "spam_report", "manual")  # a bounce or a bad address withdraws nothing


def withdraw(db: _Guarded, entries: Iterable[Suppression]) -> None:
    """A ``withdrawn`` record in the consent ledger for each new unsubscribe or complaint,
    whatever its route, in the caller's transaction: CASL asks for a record of each."""
    from newsletter_cli.consent.ledger import WITHDRAWN_BY

    stamp = now()
    rows = []
    for entry in entries:
        if entry.reason not in WITHDRAWING:
            continue
        route = next((m for key, m in WITHDRAWN_BY.items() if entry.source.startswith(key)), entry.source)
        method = "spam report" if entry.reason == "spam_report" else route
        at = entry.created_at or stamp
        rows.append((entry.email.strip().lower(), method, entry.source, at, "newsletter", stamp))
    db.executemany(
        "INSERT INTO consents (email, kind, method, source, occurred_at, recorded_by, recorded_at)"
        " VALUES (?, 'withdrawn', ?, ?, ?, ?, ?)",
        rows,
    )


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=10000")
    db.execute("PRAGMA cache_size=-4096")  # 4 MiB: a send touches few pages at a time
    return db


def _migrate(db: _Guarded, path: Path) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise StoreError(
            f"the state database is schema version {version}, newer than this newsletter "
            f"understands ({len(MIGRATIONS)}); upgrade newsletter",
            path,
        )
    for number, sql in enumerate(MIGRATIONS[version:], start=version + 1):
        try:
            db.executescript(f"BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {number}; COMMIT;")
        except StoreError:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise


def _create(path: Path) -> None:
    """A new, empty store, made beside its place and linked in whole: another process never
    sees a half-made (0-byte) file, which would be refused as damaged."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.new")
    try:
        db = _Guarded(_connect(draft), path)
        _migrate(db, path)
        db.close()
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            os.link(draft, path)
    finally:
        for leftover in (draft, draft.with_name(draft.name + "-wal"), draft.with_name(draft.name + "-shm")):
            leftover.unlink(missing_ok=True)


def _refuse_empty(path: Path) -> None:
    try:
        empty = path.stat().st_size == 0
    except OSError:
        return
    if empty:
        raise StoreError(
            "is empty (0 bytes): it should hold this folder's send journal and suppressions. Restore "
            ".newsletter/ from a backup; only if there is none, delete the file to start a new store "
            "(issues sent from it would then be sent again to everyone, and its unsubscribes are lost)",
            path,
        )


def failure(exc: sqlite3.Error, path: Path) -> StoreError:
    """One line for what SQLite reported, saying what to do about it."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith("SQLITE_FULL") or "disk is full" in str(exc):
        return StoreError(
            "the disk is full, so nothing more could be recorded: free some space and run the same "
            "command again (what was recorded before stands)",
            path,
        )
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or "not a database" in str(exc) or "malformed" in str(exc):
        return StoreError(
            f"is damaged ({exc}): restore .newsletter/ from a backup; do not delete it while any issue "
            "is being sent (its journal is what keeps people from being mailed twice)",
            path,
        )
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return StoreError("is locked by another newsletter process for over 10 s: try again in a moment", path)
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_IOERR")):
        return StoreError(f"cannot be read or written ({exc}): check the folder's permissions and disk", path)
    return StoreError(f"the state database failed: {exc}", path)


class _Guarded:
    """A connection whose every statement turns a SQLite failure into ``failure(...)``."""

    def __init__(self, db: sqlite3.Connection, path: Path):
        self._db = db
        self._path = path

    def execute(self, sql: str, parameters: Any = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, parameters)
        except sqlite3.Error as exc:
            raise failure(exc, self._path) from None

    def executemany(self, sql: str, parameters: Iterable[Any]) -> sqlite3.Cursor:
        try:
            return self._db.executemany(sql, parameters)
        except sqlite3.Error as exc:
            raise failure(exc, self._path) from None

    def executescript(self, sql: str) -> sqlite3.Cursor:
        try:
            return self._db.executescript(sql)
        except sqlite3.Error as exc:
            raise failure(exc, self._path) from None

    @property
    def total_changes(self) -> int:
        return self._db.total_changes

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    def close(self) -> None:
        self._db.close()


class _Transaction:
    def __init__(self, db: _Guarded):
        self.db = db

    def __enter__(self) -> _Guarded:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: object, *exc: object) -> None:
        if kind is None:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:  # a failed COMMIT (a full disk) has rolled back already
            self.db.execute("ROLLBACK")


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
