"""One `newsletter send` of an issue at a time.

The lock is an exclusive transaction on a small SQLite file of its own, held for as long as the
send runs. SQLite takes it with the operating system's own file locks (POSIX record locks,
Windows' LockFileEx), so it needs no POSIX-only Python module, is released the moment the
process that holds it dies (kill -9 included), and is not held by the processes a send starts:
POSIX record locks belong to one process and are not inherited across fork.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from newsletter_cli.errors import NewsletterError


class LockHeld(NewsletterError):
    """Another process holds the lock."""


class SendLock:
    """Held from creation until ``close()``; raises LockHeld when another process holds it."""

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

    def __enter__(self) -> SendLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def lock_held(path: Path) -> bool:
    """Whether some process holds the lock at ``path`` now (without waiting)."""
    if not path.exists():
        return False
    try:
        SendLock(path).close()
    except LockHeld:
        return True
    return False
