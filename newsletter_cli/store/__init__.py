"""The folder's state: suppressions, the send journal, events, consents and signups, and the
lock that keeps one send of an issue at a time. All SQL lives in this package.

- ``database``: the Store, on either back end; suppressions, and the unsubscribes SendGrid has
  yet to learn.
- ``sqlite`` / ``postgres``: the two back ends (an embedded file; a server a team shares), each
  turning its every failure into one line; ``connection`` what they share; ``schema`` their
  numbered migrations; ``copy`` moves a state from one to the other.
- ``journal``: who has been sent an issue, who waits, and every batch's fate.
- ``events``: SendGrid's webhook events, each recorded once, the suppressions they call for, the
  uncertain batches they settle, and each issue's figures.
- ``consents`` and ``signups``: the consent ledger and the signup form's requests.
- ``lock``: the send lock, held by the database itself, so it dies with the process (or the
  session) that held it.
"""

from newsletter_cli.store.connection import StoreError
from newsletter_cli.store.database import (
    DB_NAME,
    MIGRATIONS,
    REASONS,
    Store,
    Suppression,
    chunks,
    exists,
    location,
    migrate,
    now,
)
from newsletter_cli.store.lock import LockHeld, SendLock
from newsletter_cli.store.sqlite import failure

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
    "exists",
    "failure",
    "location",
    "migrate",
    "now",
]
