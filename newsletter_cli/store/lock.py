"""One `newsletter send` of an issue at a time: a second one, on this machine or another
sharing the store, is refused rather than left to race the first.

With the SQLite file, the lock is an exclusive transaction on a small SQLite file of its own,
held for as long as the send runs. SQLite takes it with the operating system's own file locks
(POSIX record locks, Windows' LockFileEx), so it needs no POSIX-only Python module, is released
the moment the process that holds it dies (kill -9 included), and is not held by the processes
a send starts: POSIX record locks belong to one process and are not inherited across fork.

With PostgreSQL, it is a session advisory lock on the send's own connection: the server drops
it when that session ends, and the connection that records the send's answers is the one that
holds it, so a sender cut off from the server loses the lock and its ability to write together.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter_cli.errors import NewsletterError
from newsletter_cli.store.connection import StoreError

if TYPE_CHECKING:
    from newsletter_cli.store.postgres import PostgresConnection


class LockHeld(NewsletterError):
    """Another process holds the lock; ``holder`` says which, where known."""

    def __init__(self, message: str, holder: str = ""):
        super().__init__(message)
        self.holder = holder

    @property
    def where(self) -> str:
        """`` (the holder)`` for a message, or nothing where the holder is not known."""
        return f" ({self.holder})" if self.holder else ""


class SendLock:
    """Held from creation until ``close()``; raises LockHeld when another process holds it."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> SendLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FileSendLock(SendLock):
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db: sqlite3.Connection | None = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            self._db.execute("BEGIN EXCLUSIVE")
        except sqlite3.OperationalError:
            self._db.close()
            self._db = None
            raise LockHeld(f"{path.name} is held by another process") from None

    def close(self) -> None:
        if self._db is not None:
            self._db.execute("ROLLBACK")
            self._db.close()
            self._db = None


class ServerSendLock(SendLock):
    def __init__(self, db: PostgresConnection, slug: str):
        self._db: PostgresConnection | None = db
        self.slug = slug
        if not db.try_send_lock(slug):
            self._db = None
            holder = db.send_lock_holder(slug)
            raise LockHeld(f"the send lock of {slug} is held by another session", holder)

    def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            with contextlib.suppress(StoreError):  # the session is gone, and its lock with it
                db.send_unlock(self.slug)
