"""The store: the folder's state (suppressions, the send journal, events, consents, signups)
in one database, an embedded SQLite file by default or a PostgreSQL server a team shares
(``[store] url``, or NEWSLETTER_DATABASE_URL, which wins). It never holds secrets.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from newsletter_cli.store import postgres, sqlite
from newsletter_cli.store.connection import Connection, StoreError, Transaction
from newsletter_cli.store.lock import FileSendLock, LockHeld, SendLock, ServerSendLock
from newsletter_cli.store.schema import REASONS, SQLITE

if TYPE_CHECKING:
    from newsletter_cli.config import Config

T = TypeVar("T")
DB_NAME = "newsletter.db"
CHUNK = 500  # stays under SQLite's limit on host parameters in one statement
MIGRATIONS = SQLITE


@dataclass(frozen=True)
class Suppression:
    email: str
    reason: str
    source: str
    created_at: str = ""


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Store:
    """A connection to the state database; use as a context manager.

    ``where``: the SQLite file's path, or a ``postgresql://`` URL. Every failure (a full disk,
    a damaged file, a lock held too long, a server gone) comes out as one StoreError line naming
    the file or the server (never a password) and what to do; what was committed before it stands."""

    def __init__(self, where: Path | str, readonly: bool = False):
        """``readonly``: a reader beside a connection that writes (a send's workers)."""
        self.where = where
        self.db: Connection
        if postgres.is_url(where):
            assert isinstance(where, str)
            self.path: Path | None = None
            self.name = postgres.display(where)
            server = postgres.connect(where, readonly)
            try:
                postgres.check_version(server)
            except StoreError:
                server.close()
                raise
            self.db = server
        else:
            self.path = Path(where)
            self.name = str(self.path)
            self.db = sqlite.open_file(self.path, readonly)

    @classmethod
    def for_folder(cls, state_dir: Path) -> Store:
        return cls(state_dir / DB_NAME)

    @classmethod
    def for_config(cls, config: Config, readonly: bool = False) -> Store:
        return cls(location(config), readonly)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def transaction(self) -> Transaction:
        """``with store.transaction():`` commits on success, rolls back on error."""
        return Transaction(self.db)

    # --- an issue's send lock ------------------------------------------------------------------

    def send_lock(self, slug: str) -> SendLock:
        """Held until closed: one `newsletter send` (or cancel) of an issue at a time, on every
        machine that shares this store. Raises LockHeld, naming the holder where known."""
        if isinstance(self.db, postgres.PostgresConnection):
            return ServerSendLock(self.db, slug)
        assert self.path is not None
        return FileSendLock(self.path.parent / f"send-{slug}.lock")

    def send_lock_held(self, slug: str) -> bool:
        """Whether a send of the issue holds its lock now (without waiting)."""
        if self.path is not None and not (self.path.parent / f"send-{slug}.lock").exists():
            return False
        try:
            self.send_lock(slug).close()
        except LockHeld:
            return True
        return False

    # --- suppressions ------------------------------------------------------------------------

    def suppress(self, entries: Iterable[Suppression], push: bool = False) -> int:
        """Record suppressions; the first record of an address is kept. Returns how many were new.

        ``push``: SendGrid is still to be told of them (``pushes``), in the same transaction, so
        an unsubscribe is never recorded here and forgotten there."""
        added = 0
        with self.transaction():
            for chunk in chunks(entries, CHUNK):
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
                added += self.db.executemany(
                    "INSERT INTO suppressions (email, reason, source, created_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (email) DO NOTHING",
                    [(e.email.strip().lower(), e.reason, e.source, e.created_at or now()) for e in chunk],
                ).rowcount
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


def withdraw(db: Connection, entries: Iterable[Suppression]) -> None:
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


def location(config: Config) -> Path | str:
    """Where the folder's state lives: the configured server, else the folder's own file."""
    return config.store_url or config.state_dir / DB_NAME


def exists(config: Config) -> bool:
    """Whether there is a store to read (a server always is; a file once made)."""
    where = location(config)
    return not isinstance(where, Path) or where.exists()


def migrate(where: Path | str) -> tuple[int, int]:
    """Bring a store to this newsletter's schema; returns (version before, version after)."""
    if postgres.is_url(where):
        assert isinstance(where, str)
        server = postgres.connect(where)
        try:
            return postgres.migrate(server)
        finally:
            server.close()
    return sqlite.migrate_file(Path(where))


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
