"""The embedded back end: one SQLite file in .newsletter/, needing no setup.

WAL mode, so the unsubscribe endpoint can write while a send reads; the schema version in
``PRAGMA user_version``, migrated forward on opening (one machine uses the file).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from newsletter_cli.store.connection import Connection, Rows, StoreError
from newsletter_cli.store.schema import SQLITE


class SQLiteConnection(Connection):
    """A connection whose every statement turns a SQLite failure into ``failure(...)``."""

    dialect = "sqlite"
    lock_proves_exit = True

    def __init__(self, db: sqlite3.Connection, path: Path):
        self._db = db
        self._path = path

    def execute(self, sql: str, parameters: Any = ()) -> Rows:
        try:
            return self._db.execute(sql, parameters)
        except sqlite3.Error as exc:
            raise failure(exc, self._path) from None

    def executemany(self, sql: str, parameters: Iterable[Any]) -> Rows:
        try:
            return self._db.executemany(sql, parameters)
        except sqlite3.Error as exc:
            raise failure(exc, self._path) from None

    def executescript(self, sql: str) -> None:
        try:
            self._db.executescript(sql)
        except sqlite3.Error as exc:
            raise failure(exc, self._path) from None

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    def begin_snapshot(self) -> None:
        self.execute("BEGIN")
        self.execute("SELECT count(*) FROM sqlite_master")  # WAL: the snapshot starts at the first read

    def begin_write(self) -> None:
        self.execute("BEGIN IMMEDIATE")

    def data_version(self) -> int | None:
        return int(self.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def open_file(path: Path, readonly: bool = False) -> SQLiteConnection:
    """The store's file, made (whole) and migrated on first use; ``readonly``: a reader of a
    file another connection keeps open (a send's workers)."""
    try:
        _refuse_empty(path)
        if readonly:
            raw = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10, isolation_level=None)
            db = SQLiteConnection(raw, path)
            db.execute("PRAGMA busy_timeout=10000")
            return db
        if not path.exists():
            _create(path)
        db = SQLiteConnection(_connect(path), path)
        migrate(db, path)
        return db
    except sqlite3.Error as exc:
        raise failure(exc, path) from None
    except OSError as exc:
        raise StoreError(f"cannot create the state database: {exc.strerror or exc}", path) from None


def migrate_file(path: Path) -> tuple[int, int]:
    """Make or migrate the file (as opening it does), saying from which version."""
    before = 0
    if path.exists():
        reader = open_file(path, readonly=True)
        try:
            before = version(reader)
        finally:
            reader.close()
    open_file(path).close()
    return before, len(SQLITE)


def version(db: SQLiteConnection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=10000")
    db.execute("PRAGMA cache_size=-4096")  # 4 MiB: a send touches few pages at a time
    return db


def migrate(db: SQLiteConnection, path: Path) -> tuple[int, int]:
    """Bring the file to the current schema; returns (version before, version after)."""
    found = version(db)
    if found > len(SQLITE):
        raise StoreError(
            f"the state database is schema version {found}, newer than this newsletter "
            f"understands ({len(SQLITE)}); upgrade newsletter",
            path,
        )
    for number, sql in enumerate(SQLITE[found:], start=found + 1):
        try:
            db.executescript(f"BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {number}; COMMIT;")
        except StoreError:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    return found, len(SQLITE)


def _create(path: Path) -> None:
    """A new, empty store, made beside its place and linked in whole: another process never
    sees a half-made (0-byte) file, which would be refused as damaged."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.new")
    try:
        db = SQLiteConnection(_connect(draft), path)
        migrate(db, path)
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
