"""What the store's modules write their SQL against, whichever database holds the state.

SQL is written once, in SQLite's words with ``?`` placeholders; the PostgreSQL connection
translates the few differences. Every failure of either comes out as one StoreError line.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from newsletter_cli.errors import NewsletterError


class StoreError(NewsletterError):
    """The state database cannot be opened or reached, refused a change, or is newer than this
    version of newsletter."""


class Rows(Protocol):
    """A cursor, as both drivers return it."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection:
    """One connection to the state database. Subclasses run the SQL; this holds what they share."""

    dialect = ""
    #: added to the query that picks a batch's rows, so two senders never pick the same ones
    claim = ""
    #: whether holding an issue's send lock proves that no other process is mid-batch (SQLite's
    #: file lock dies with its process; a server's lock dies with a session, which a machine cut
    #: off from the network may outlive while it still posts its batch)
    lock_proves_exit = False

    def execute(self, sql: str, parameters: Any = ()) -> Rows:
        raise NotImplementedError

    def executemany(self, sql: str, parameters: Iterable[Any]) -> Rows:
        raise NotImplementedError

    def executescript(self, sql: str) -> None:
        raise NotImplementedError

    @property
    def in_transaction(self) -> bool:
        raise NotImplementedError

    def begin_snapshot(self) -> None:
        """Begin a transaction that only reads, and sees the database as it was at its start."""
        raise NotImplementedError

    def begin_write(self) -> None:
        """Begin a transaction that writes, waiting (up to 10 s) for any other writer to finish."""
        raise NotImplementedError

    def written(self, table: str) -> None:
        """Many rows of ``table`` were just written: let the planner know, where it needs telling."""

    def clock(self) -> dt.datetime:
        """Now, as the database's machine has it (a server's clock is the one every client shares)."""
        return dt.datetime.now(dt.UTC)

    def data_version(self) -> int | None:
        """A number that changes whenever another connection commits; None: not known here."""
        return None

    def close(self) -> None:
        raise NotImplementedError


class Transaction:
    def __init__(self, db: Connection):
        self.db = db

    def __enter__(self) -> Connection:
        self.db.begin_write()
        return self.db

    def __exit__(self, kind: object, *exc: object) -> None:
        if kind is None:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:  # a failed COMMIT (a full disk) has rolled back already
            with contextlib.suppress(StoreError):  # a lost connection: the server rolls back; the first error counts
                self.db.execute("ROLLBACK")
