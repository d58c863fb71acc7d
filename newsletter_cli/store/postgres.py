"""The shared back end: the state on a PostgreSQL server, for a team whose laptops and whose
`newsletter serve` must see one journal and one suppression list.

The store's SQL is SQLite's (``?`` placeholders, ``+slug`` planner hints); this connection
translates it. Every transaction that writes first takes one advisory lock for the whole
database, held until it commits: writers take turns exactly as SQLite's ``BEGIN IMMEDIATE``
makes them, so every read-then-write in the store (the next ``seq``, the next batch id, a
suppression's consent record) stays as correct here as it is there, while readers never wait.
A send holds a session advisory lock per issue, which the server drops when the session ends.

The schema is not migrated on opening, as a file is: machines sharing one database may run
different versions, so ``newsletter store migrate`` does it, once, on purpose.

The driver, psycopg 3, is an optional extra: only a store at a ``postgresql://`` URL needs it.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import re
import socket
import weakref
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from newsletter_cli.store.connection import Connection, Rows, StoreError, Transaction
from newsletter_cli.store.schema import POSTGRESQL

SCHEMES = ("postgresql", "postgres")
NAMESPACE = 0x4E4C5354  # "NLST": the first key of every advisory lock this store takes
WRITING, SENDING = 0, 1  # the write lock's second key; a send lock's class
LOCK_WAIT = "10s"  # as long as SQLite's busy timeout


def is_url(where: object) -> bool:
    return isinstance(where, str) and urlsplit(where).scheme in SCHEMES


def display(url: str) -> str:
    """The URL without its password or options: safe for an error, a log or a status line."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = parts.hostname or (query.get("host") or ["localhost"])[0]
    port = f":{parts.port}" if parts.port else (f":{query['port'][0]}" if "port" in query else "")
    user = f"{parts.username}@" if parts.username else ""
    return f"postgresql://{user}{host}{port}{parts.path or '/'}"


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """SQLite's SQL in PostgreSQL's words: placeholders, and its unary-plus hint (walk the
    ``seq`` range, not the address index) as an expression no index covers: PostgreSQL's
    planner otherwise walks the address index for every batch too (benchmarks/send_store.py)."""
    sql = sql.replace("%", "%%").replace("?", "%s")
    return re.sub(r"\+((?:\w+\.)?slug)\b", r"(\1 || '')", sql)


class PostgresConnection(Connection):
    dialect = "postgresql"
    claim = " FOR UPDATE OF r SKIP LOCKED"

    def __init__(self, db: Any, url: str):
        self._db = db
        self.name = display(url)
        self._offset: dt.timedelta | None = None  # the server's clock less this machine's
        _OPEN.add(self)

    def let_go(self) -> None:
        """In a forked child: drop this process's hold on the parent's session without ending
        it. Else the server would not see the session end when the parent dies (kill -9), and
        a send lock would outlive its send for as long as a worker lingers. The socket's number
        is taken by /dev/null, so no later socket can receive what a stray close writes."""
        try:
            fd = self._db.fileno()
        except Exception:  # closed already
            return
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, fd)
        os.close(null)

    def execute(self, sql: str, parameters: Any = ()) -> Rows:
        try:
            return self._db.execute(translate(sql), parameters or None)
        except _driver().Error as exc:
            raise failure(exc, self.name) from None

    def executemany(self, sql: str, parameters: Iterable[Any]) -> Rows:
        try:
            cursor = self._db.cursor()
            cursor.executemany(translate(sql), list(parameters))
            return cursor
        except _driver().Error as exc:
            raise failure(exc, self.name) from None

    def executescript(self, sql: str) -> None:
        try:
            self._db.execute(sql)
        except _driver().Error as exc:
            raise failure(exc, self.name) from None

    def copy_rows(self, table: str, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
        """Write many rows at once with COPY (``store copy``)."""
        try:
            with self._db.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        except _driver().Error as exc:
            raise failure(exc, self.name) from None

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self._db.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR)

    def begin_snapshot(self) -> None:
        self.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def begin_write(self) -> None:
        # one round trip, not two: a send writes twice per batch, perhaps across a city
        self.executescript(f"BEGIN; SELECT pg_advisory_xact_lock({NAMESPACE}, {WRITING})")

    def clock(self) -> dt.datetime:
        """The server's clock, as this machine's plus the offset measured when connecting (to
        within half a round trip), so that a lease costs no round trip of its own."""
        if self._offset is None:
            before = dt.datetime.now(dt.UTC)
            server: dt.datetime = self.execute("SELECT clock_timestamp()").fetchone()[0]
            after = dt.datetime.now(dt.UTC)
            self._offset = server.astimezone(dt.UTC) - (before + (after - before) / 2)
        return dt.datetime.now(dt.UTC) + self._offset

    def written(self, table: str) -> None:
        """Fresh statistics: without them the planner took a batch's rows by sorting the whole
        remaining range (benchmarks/send_store.py)."""
        self.execute(f"ANALYZE {table}")

    def close(self) -> None:
        self._db.close()

    # --- the send lock -------------------------------------------------------------------------

    def try_send_lock(self, slug: str) -> bool:
        return bool(self.execute("SELECT pg_try_advisory_lock(?, ?)", (NAMESPACE + SENDING, _key(slug))).fetchone()[0])

    def send_unlock(self, slug: str) -> None:
        self.execute("SELECT pg_advisory_unlock(?, ?)", (NAMESPACE + SENDING, _key(slug)))

    def send_lock_holder(self, slug: str) -> str:
        """Which session holds an issue's send lock, as its application name says ("" if unknown)."""
        row = self.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = ? AND l.objid = ? AND l.objsubid = 2",
            (NAMESPACE + SENDING, _key(slug)),
        ).fetchone()
        return str(row[0]) if row and row[0] else ""


_OPEN: weakref.WeakSet[PostgresConnection] = weakref.WeakSet()


def _let_go_in_child() -> None:
    for connection in list(_OPEN):
        connection.let_go()
    _OPEN.clear()


if hasattr(os, "register_at_fork"):  # POSIX; elsewhere processes are spawned and inherit no socket
    os.register_at_fork(after_in_child=_let_go_in_child)


def _key(slug: str) -> int:
    return int.from_bytes(hashlib.sha256(slug.encode()).digest()[:4], "big") & 0x7FFFFFFF


def _driver() -> Any:
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            "the store is a PostgreSQL database ([store] url or NEWSLETTER_DATABASE_URL), which needs "
            "the driver: pip install 'newsletter-cli[postgres]'"
        ) from None
    return psycopg


def connect(url: str, readonly: bool = False) -> PostgresConnection:
    """A connection that names this machine and process to the server (the send lock's
    message shows it), notices a vanished peer within a minute, and waits at most 10 s for a lock."""
    psycopg = _driver()
    name = display(url)
    options: dict[str, Any] = {"application_name": f"newsletter on {socket.gethostname()} (pid {os.getpid()})"}
    if "connect_timeout" not in url:
        options["connect_timeout"] = 10
    try:
        raw = psycopg.connect(url, autocommit=True, **options)
    except psycopg.Error as exc:
        raise failure(exc, name) from None
    db = PostgresConnection(raw, url)
    settings = [f"lock_timeout = '{LOCK_WAIT}'", "tcp_keepalives_idle = 20", "tcp_keepalives_interval = 5"]
    settings += ["tcp_keepalives_count = 4"] + (["default_transaction_read_only = on"] if readonly else [])
    db.executescript("; ".join(f"SET {setting}" for setting in settings))  # one round trip for all
    return db


def version(db: PostgresConnection) -> int:
    if db.execute("SELECT to_regclass('newsletter_schema')").fetchone()[0] is None:
        return 0
    row = db.execute("SELECT version FROM newsletter_schema").fetchone()
    return int(row[0]) if row else 0


def check_version(db: PostgresConnection) -> None:
    """Refuse a database whose schema is not this newsletter's, saying what to do."""
    found = version(db)
    if found > len(POSTGRESQL):
        raise StoreError(
            f"is schema version {found}, newer than this newsletter understands ({len(POSTGRESQL)}): "
            "upgrade newsletter on this machine",
            db.name,
            code="store-schema",
        )
    if found < len(POSTGRESQL):
        what = "has no newsletter tables yet" if found == 0 else f"is schema version {found}"
        raise StoreError(
            f"{what}; this newsletter needs version {len(POSTGRESQL)}: run 'newsletter store migrate' "
            "(once, after every machine that shares it runs this version of newsletter)",
            db.name,
            code="store-schema",
        )


def migrate(db: PostgresConnection) -> tuple[int, int]:
    """Bring the database to the current schema in one transaction (two machines migrating at
    once take turns); returns (version before, version after)."""
    with Transaction(db):
        db.execute("CREATE TABLE IF NOT EXISTS newsletter_schema (version INTEGER NOT NULL)")
        found = version(db)
        if found > len(POSTGRESQL):
            raise StoreError(
                f"is schema version {found}, newer than this newsletter understands ({len(POSTGRESQL)})", db.name
            )
        for sql in POSTGRESQL[found:]:
            db.executescript(sql)
        db.execute("DELETE FROM newsletter_schema")
        db.execute("INSERT INTO newsletter_schema (version) VALUES (?)", (len(POSTGRESQL),))
    return found, len(POSTGRESQL)


def failure(exc: Exception, name: str) -> StoreError:
    """One line for what PostgreSQL or the driver reported, saying what to do about it; never
    the URL's password (``name`` is ``display(url)``)."""
    errors = _driver().errors
    lines = str(exc).strip().splitlines()
    first = re.sub(r"^connection failed: ", "", lines[0]) if lines else type(exc).__name__
    if isinstance(exc, errors.LockNotAvailable):
        return StoreError("is locked by another newsletter process for over 10 s: try again in a moment", name)
    if isinstance(exc, errors.DiskFull):
        return StoreError(
            "the database server's disk is full, so nothing more could be recorded: once it has space, run "
            "the same command again (what was recorded before stands)",
            name,
        )
    if isinstance(exc, errors.InsufficientPrivilege):
        return StoreError(f"the database user may not do this ({first}): ask whoever runs the database", name)
    refused = re.search(r"FATAL:\s*(.*)", first) if isinstance(exc, _driver().OperationalError) else None
    if refused:  # the server answered, and said no: a wrong name, user or password, not a network
        return StoreError(
            f"refused the connection ({refused.group(1)}): check the address in [store] url or "
            f"NEWSLETTER_DATABASE_URL, and the password (PGPASSWORD or ~/.pgpass)",
            name,
        )
    if isinstance(exc, _driver().OperationalError):
        return StoreError(
            f"cannot reach the database ({first}): nothing of the unfinished step was recorded; what was "
            "recorded before stands. Run the same command again once the database answers",
            name,
        )
    if isinstance(exc, _driver().IntegrityError):
        return StoreError(f"the state database refused a change: {first}", name)
    return StoreError(f"the state database failed: {first}", name)
