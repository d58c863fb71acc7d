"""`newsletter store copy`: move a folder's state into another store (its SQLite file into the
team's PostgreSQL, typically), whole or not at all, and verified.

The target is brought to the current schema and must be empty: a copy never merges two
journals (which could not say who was sent what). Every row goes in one transaction, which
commits only once each table, and each issue's journal counts, are the same on both sides.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsletter_cli.store import postgres
from newsletter_cli.store.connection import StoreError
from newsletter_cli.store.consents import legacy_wordings
from newsletter_cli.store.database import CHUNK, Store, chunks, migrate
from newsletter_cli.store.journal import Journal

# every table of the schema, parents first (tests/test_store.py checks that none is missing)
TABLES = (
    "suppressions",
    "pushes",
    "sends",
    "runs",
    "recipients",
    "batches",
    "events",
    "consents",
    "wordings",
    "signups",
    "confirmation_mails",
)
IDENTITY = {"consents": "id", "confirmation_mails": "rowid"}  # PostgreSQL's counters to move past the copied rows


@dataclass(frozen=True)
class Copied:
    tables: dict[str, int]  # rows copied, by table
    issues: int  # journals whose counts were compared


def copy(source: Store, target_where: Path | str) -> Copied:
    """Copy everything in ``source`` into the (empty) store at ``target_where``."""
    if source.where == target_where:
        raise StoreError("is the store this folder already uses: name another one to copy to", source.name)
    migrate(target_where)
    source.db.begin_snapshot()  # an unsubscribe arriving meanwhile is in the copy whole, or not at all
    try:
        return _copy(source, target_where)
    finally:
        source.db.execute("ROLLBACK")


def _copy(source: Store, target_where: Path | str) -> Copied:
    slugs = [slug for (slug,) in source.db.execute("SELECT slug FROM sends ORDER BY slug")]
    running = [slug for slug in slugs if source.send_lock_held(slug)]
    if running:
        raise StoreError(f"a send of {running[0]} is running: let it finish (or stop it) before copying", source.name)
    counts = {table: _count(source, table) for table in TABLES}
    with Store(target_where) as target:
        full = [table for table in TABLES if _count(target, table)]
        if full:
            raise StoreError(
                f"is not empty (its {full[0]} table has rows): a copy goes only into a store nothing uses yet",
                target.name,
            )
        with target.transaction() as db:
            for table in TABLES:
                columns, rows = _rows(source, table)
                _write(target, table, columns, rows)
            kept = {digest for (digest,) in source.db.execute("SELECT hash FROM wordings")}
            older = {digest: text for digest, text in legacy_wordings(source).items() if digest not in kept}
            db.executemany("INSERT INTO wordings (hash, text) VALUES (?, ?)", older.items())
            counts["wordings"] += len(older)
            if isinstance(db, postgres.PostgresConnection):
                for table, column in IDENTITY.items():
                    db.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                        f" coalesce((SELECT max({column}) FROM {table}), 0) + 1, false)"
                    )
            _verify(source, target, counts, slugs)
    return Copied(counts, len(slugs))


def _count(store: Store, table: str) -> int:
    return int(store.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _rows(store: Store, table: str) -> tuple[tuple[str, ...], Iterator[tuple[Any, ...]]]:
    cursor: Any = store.db.execute(f"SELECT * FROM {table}")
    columns = tuple(d[0] for d in cursor.description)
    return columns, (tuple(row) for row in cursor)


def _write(target: Store, table: str, columns: tuple[str, ...], rows: Iterator[tuple[Any, ...]]) -> None:
    if isinstance(target.db, postgres.PostgresConnection):
        target.db.copy_rows(table, columns, rows)
        return
    marks = ", ".join("?" * len(columns))
    for chunk in chunks(rows, CHUNK):
        target.db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", chunk)


def _verify(source: Store, target: Store, counts: dict[str, int], slugs: list[str]) -> None:
    """Inside the copy's transaction: a difference rolls everything back."""
    for table, expected in counts.items():
        found = _count(target, table)
        if found != expected:
            message = f"the copy of {table} has {found:,} rows, not {expected:,}: nothing was copied"
            raise StoreError(message, target.name)
    for slug in slugs:
        if Journal(source, slug).counts() != Journal(target, slug).counts():
            raise StoreError(f"the copy of {slug}'s journal does not add up to the original: nothing was copied")
