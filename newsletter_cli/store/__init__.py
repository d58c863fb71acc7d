"""The folder's state: suppressions, the send journal, and the lock that keeps one send of an
issue at a time. All SQL lives in this package.

- ``database``: the SQLite file (WAL, versioned schema and migrations), suppressions, and the
  unsubscribes SendGrid has yet to learn; every SQLite failure as one line.
- ``journal``: who has been sent an issue, who waits, and every batch's fate.
- ``events``: SendGrid's webhook events, each recorded once, the suppressions they call for, the
  uncertain batches they settle, and each issue's figures.
- ``lock``: the send lock, held by SQLite itself, so it works wherever Python does and dies
  with the process that held it.
"""

from newsletter_cli.store.database import (
    DB_NAME,
    MIGRATIONS,
    REASONS,
    Store,
    StoreError,
    Suppression,
    chunks,
    failure,
    now,
)
from newsletter_cli.store.lock import LockHeld, SendLock, lock_held

__all__ = [
    "DB_NAME",
    "MIGRATIONS",
    "REASONS",
    "LockHeld",
    "SendLock",
    "Store",
    "StoreError",
    "Suppression",
    "chunks",
    "failure",
    "lock_held",
    "now",
]
