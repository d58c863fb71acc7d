"""The send journal: who has been sent an issue, who is waiting, and every batch's fate.

Every recipient of a send is written as pending (no batch) before the first request. Taking a
batch assigns its recipients to a new batch row, ``in_flight``, committed before the request;
SendGrid's answer turns that one row ``sent`` or ``failed``, committed right after. A recipient's
state is its batch's state, so recording an answer writes one row, not a thousand.

An in-flight batch carries a lease that the send holding it renews. A batch whose lease has
ended was perhaps accepted before its send died: it counts as ``uncertain``, and a new run
records it so; it is not sent again unless asked, and neither is one whose answer was lost.
Where holding the send lock proves its last holder dead (SQLite's file lock), a new run takes
every batch left in flight as uncertain at once; a server's lock proves less (a machine cut off
from it may still be posting), so there only the lease decides.

Each run remembers the list it read (``runs``). Rows an earlier run wrote that this run's list
lacks are *stale*: ``settle`` drops them only when the same list was read (its rows were removed
from it) or when told to; a run declined or refused puts back what it changed.

Pending rows have no index of their own (it slowed writing a list): batches are
taken by walking ``seq`` from a cursor, and the pending count is the issue's rows less those
its batches hold. Queries over a range of ``seq`` say ``+slug`` so that SQLite walks the range
instead of the address index, which it otherwise picks (and which covers every row of the issue).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from newsletter_cli.store.database import Store, now

PENDING, IN_FLIGHT, SENT, FAILED, UNCERTAIN = "pending", "in_flight", "sent", "failed", "uncertain"
REQUEUED = "requeued"  # a failed or uncertain batch whose recipients are pending again
STATUSES = (SENT, PENDING, FAILED, UNCERTAIN, IN_FLIGHT)
# A recipient's record: address US name US field RS value US field RS value ... (ASCII unit and
# record separators, which a cell never needs: they are turned into spaces). Four times
# cheaper than JSON to write and read, a million times per send.
UNIT, PAIR = "\x1f", "\x1e"
_SEPARATORS = str.maketrans({UNIT: " ", PAIR: " ", "\x00": " "})  # PostgreSQL's text holds no NUL
LEASE = 60.0  # seconds an in-flight batch stays its send's without a renewal
# a batch's state as readers see it: one in flight whose lease has ended is uncertain
EFFECTIVE = "CASE WHEN b.status = 'in_flight' AND b.lease_until < ? THEN 'uncertain' ELSE b.status END"


@dataclass(frozen=True)
class Recipient:
    email: str
    name: str
    fields: dict[str, str]


@dataclass(frozen=True)
class Batch:
    """A batch as taken from the journal: which rows it holds, not the rows themselves; the
    process that builds the request reads them (``Journal.records``)."""

    id: int
    first_seq: int
    last_seq: int
    size: int


def record(email: str, name: str, fields: dict[str, str]) -> str:
    """What the journal keeps of a recipient: the address, the name and the issue's merge fields."""
    text = email + UNIT + name
    for key, value in fields.items():
        text += UNIT + key + PAIR + value
    if text.count(PAIR) != len(fields) or text.count(UNIT) != len(fields) + 1 or "\x00" in text:
        clean = [part.translate(_SEPARATORS) for part in (email, name)]
        pairs = [f"{key.translate(_SEPARATORS)}{PAIR}{value.translate(_SEPARATORS)}" for key, value in fields.items()]
        text = UNIT.join([*clean, *pairs])
    return text


def decode(record: str) -> Recipient:
    email, name, *pairs = record.split(UNIT)
    return Recipient(email, name, dict(pair.split(PAIR, 1) for pair in pairs))


@dataclass(frozen=True)
class Schedule:
    """A scheduled send: SendGrid's batch id, shared by all its requests, and the time."""

    batch_id: str
    send_at: str  # ISO 8601
    cancelled_at: str | None


@dataclass(frozen=True)
class BatchInfo:
    id: int
    size: int
    error: str


def clock(store: Store, after: float = 0.0) -> str:
    """The database's now (plus ``after`` seconds), to the millisecond: leases are compared as
    these strings, on one clock for every machine that shares the store."""
    return (store.db.clock() + dt.timedelta(seconds=after)).isoformat(timespec="milliseconds")


def sent_issues(store: Store) -> set[str]:
    """The issues SendGrid has taken a batch of (the archive publishes them)."""
    return {slug for (slug,) in store.db.execute("SELECT DISTINCT slug FROM batches WHERE status = ?", (SENT,))}


class Journal:
    """One issue's journal inside the store's database."""

    def __init__(self, store: Store, slug: str, lease: float = LEASE):
        self.db = store.db
        self.store = store
        self.slug = slug
        self.lease = lease
        # who takes and renews this journal's batches: shown without the token, which tells
        # apart two journals of one process
        self.holder = f"{socket.gethostname()} (pid {os.getpid()}) {secrets.token_hex(3)}"
        self._seen_version: int | None = None  # the store's data_version when suppressions were last applied
        self._cursor = 0  # no pending row of this issue has a smaller seq

    # --- a run -------------------------------------------------------------------------------

    def start_run(self, subject: str, list_path: str = "") -> int:
        """Begin a run that reads ``list_path`` (holding the issue's send lock): batches left in
        flight by a send that died become uncertain. Returns the run id."""
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO sends (slug, subject, created_at) VALUES (?, ?, ?) ON CONFLICT (slug) DO NOTHING",
                (self.slug, subject, now()),
            )
            db.execute(
                "UPDATE batches SET status = ? WHERE slug = ? AND status = ?"
                " AND (? OR lease_until IS NULL OR lease_until < ?)",
                (UNCERTAIN, self.slug, IN_FLIGHT, self.db.lock_proves_exit, clock(self.store)),
            )
            listed = db.execute("SELECT coalesce(max(run), 0) FROM recipients WHERE slug = ?", (self.slug,))
            planned = db.execute("SELECT coalesce(max(run), 0) FROM runs WHERE slug = ?", (self.slug,))
            run = max(listed.fetchone()[0], planned.fetchone()[0]) + 1
            first_seq = db.execute("SELECT coalesce(max(seq), 0) FROM recipients").fetchone()[0]
            db.execute(
                "INSERT INTO runs (slug, run, list, first_seq, started_at) VALUES (?, ?, ?, ?, ?)",
                (self.slug, run, list_path, first_seq, now()),
            )
        return int(run)

    def add(self, chunks_of_records: Iterable[list[tuple[str, str]]], run: int) -> tuple[int, int]:
        """Write the list's valid rows, as (key, ``record(row)``) pairs, as pending.

        The journal de-duplicates: an address already written by this run is a duplicate in the
        list (the first row wins); one written by an earlier run is marked as still listed and,
        if still pending, takes its current data. Returns (new addresses, addresses listed).
        Each chunk is committed by itself (the write-ahead log stays small, and nobody waits
        behind the list reader for the write lock); rows
        of a run cut short are pending and unbatched, so the next run's ``settle`` (or
        ``discard``) removes those the list no longer has.
        """
        start = self._first_seq(run)
        for records in chunks_of_records:  # read outside any transaction: the reader may be slow
            self._write(records, run)
        self.db.written("recipients")
        new = self.db.execute("SELECT count(*) FROM recipients WHERE seq > ? AND +slug = ?", (start, self.slug))
        listed = self.db.execute("SELECT count(*) FROM recipients WHERE slug = ? AND run = ?", (self.slug, run))
        return new.fetchone()[0], listed.fetchone()[0]

    def _write(self, records: list[tuple[str, str]], run: int) -> None:
        """One short transaction: nobody else waits behind the list reader."""
        with self.store.transaction() as db:
            seq = db.execute("SELECT coalesce(max(seq), 0) FROM recipients").fetchone()[0]
            db.executemany(
                "INSERT INTO recipients (seq, slug, email, run, data) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (slug, email) DO UPDATE SET prev_run = recipients.run, run = excluded.run,"
                " data = CASE WHEN recipients.batch IS NULL THEN excluded.data ELSE recipients.data END"
                " WHERE recipients.run < excluded.run",
                [(seq + n, self.slug, key, run, data) for n, (key, data) in enumerate(records, start=1)],
            )

    def _first_seq(self, run: int) -> int:
        row = self.db.execute("SELECT first_seq FROM runs WHERE slug = ? AND run = ?", (self.slug, run)).fetchone()
        return int(row[0]) if row else 0

    def stale(self, run: int) -> dict[str, int]:
        """Pending rows of earlier runs that this run's list lacks, by the list they came from
        ("" where an older version did not record it)."""
        rows = self.db.execute(
            "SELECT coalesce(runs.list, ''), count(*) FROM recipients r"
            " LEFT JOIN runs ON runs.slug = r.slug AND runs.run = r.run"
            " WHERE r.slug = ? AND r.batch IS NULL AND r.run < ? GROUP BY 1",
            (self.slug, run),
        )
        return dict(rows.fetchall())

    def settle(self, run: int) -> tuple[int, int]:
        """Drop the list's pending rows that are suppressed, and the stale rows (call ``stale``
        first: the caller decides whether they may go). Returns (suppressed, stale) dropped."""
        with self.store.transaction() as db:
            self._seen_version = self._data_version()
            suppressed = db.execute(
                "DELETE FROM recipients WHERE slug = ? AND batch IS NULL AND run = ?"
                " AND email IN (SELECT email FROM suppressions)",
                (self.slug, run),
            ).rowcount
            stale = db.execute(
                "DELETE FROM recipients WHERE slug = ? AND batch IS NULL AND run < ?", (self.slug, run)
            ).rowcount
        return suppressed, stale

    def record_skips(
        self,
        run: int,
        rows: int,
        invalid: int,
        duplicate: int,
        suppressed: int,
        unsubscribed: int = 0,
        no_consent: int = 0,
        consent_lapsed: int = 0,
    ) -> None:
        """What this run's list held, for ``status``: its rows and those it skipped, by reason."""
        with self.store.transaction() as db:
            db.execute(
                "UPDATE sends SET run = ?, listed_rows = ?, invalid = ?, duplicate = ?, suppressed = ?,"
                " unsubscribed = ?, no_consent = ?, consent_lapsed = ? WHERE slug = ?",
                (run, rows, invalid, duplicate, suppressed, unsubscribed, no_consent, consent_lapsed, self.slug),
            )

    def discard(self, run: int) -> None:
        """The run was declined or refused: forget the rows it created, and give the rows it
        listed again back to the run they belonged to."""
        first_seq = self._first_seq(run)
        with self.store.transaction() as db:
            db.execute(
                "DELETE FROM recipients WHERE slug = ? AND run = ? AND seq > ? AND batch IS NULL",
                (self.slug, run, first_seq),
            )
            db.execute(
                "UPDATE recipients SET run = prev_run WHERE slug = ? AND run = ? AND prev_run IS NOT NULL",
                (self.slug, run),
            )
            db.execute("DELETE FROM runs WHERE slug = ? AND run = ?", (self.slug, run))

    def list_of(self, run: int) -> str:
        row = self.db.execute("SELECT list FROM runs WHERE slug = ? AND run = ?", (self.slug, run)).fetchone()
        return str(row[0]) if row else ""

    def requeue(self, status: str) -> int:
        """Make the recipients of failed (or uncertain) batches pending again; returns how many."""
        count = 0
        with self.store.transaction() as db:
            for batch_id, first, last in db.execute(
                "SELECT id, first_seq, last_seq FROM batches WHERE slug = ? AND status = ?", (self.slug, status)
            ).fetchall():
                count += self._unbatch(batch_id, first, last)
                db.execute("UPDATE batches SET status = ? WHERE slug = ? AND id = ?", (REQUEUED, self.slug, batch_id))
        return count

    # --- batches -----------------------------------------------------------------------------

    def next_batch(self, size: int) -> Batch | None:
        """Take up to ``size`` pending recipients in list order into a new in-flight batch (committed)."""
        with self.store.transaction() as db:
            seqs = self._next_pending(size)
            if not seqs:
                return None
            batch_id = db.execute(
                "SELECT coalesce(max(id), 0) + 1 FROM batches WHERE slug = ?", (self.slug,)
            ).fetchone()[0]
            first, last = seqs[0], seqs[-1]
            db.execute(
                "UPDATE recipients SET batch = ? WHERE seq BETWEEN ? AND ? AND +slug = ? AND batch IS NULL",
                (batch_id, first, last, self.slug),
            )
            self._cursor = last + 1
            db.execute(
                "INSERT INTO batches (slug, id, status, size, first_seq, last_seq, started_at, lease_until, holder)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.slug,
                    batch_id,
                    IN_FLIGHT,
                    len(seqs),
                    first,
                    last,
                    now(),
                    clock(self.store, self.lease),
                    self.holder,
                ),
            )
        return Batch(batch_id, first, last, len(seqs))

    def renew(self) -> None:
        """Extend the lease of every batch this journal holds in flight (the send does, while it waits)."""
        with self.store.transaction() as db:
            db.execute(
                "UPDATE batches SET lease_until = ? WHERE slug = ? AND status = ? AND holder = ?",
                (clock(self.store, self.lease), self.slug, IN_FLIGHT, self.holder),
            )

    def records(self, batch: Batch) -> list[str]:
        """A batch's recipients as ``record`` wrote them, in list order."""
        rows = self.db.execute(
            "SELECT data FROM recipients WHERE seq BETWEEN ? AND ? AND +slug = ? AND batch = ? ORDER BY seq",
            (batch.first_seq, batch.last_seq, self.slug, batch.id),
        )
        return [data for (data,) in rows]

    def _data_version(self) -> int | None:
        """Changes whenever another connection commits: nothing new can be suppressed until one
        does. None where the database cannot tell (a server): then every batch is checked."""
        return self.db.data_version()

    def _next_pending(self, size: int) -> list[int]:
        """The seqs of the next ``size`` pending rows (inside a transaction). Suppressed ones are
        deleted on the way once another connection has written since settle (an unsubscribe,
        perhaps): from then on every batch is checked."""
        if self._seen_version is not None and self._data_version() == self._seen_version:
            rows = self.db.execute(
                "SELECT r.seq, 0 FROM recipients r WHERE r.seq >= ? AND +r.slug = ? AND r.batch IS NULL"
                " ORDER BY r.seq LIMIT ?" + self.db.claim,
                (self._cursor, self.slug, size),
            ).fetchall()
        else:
            self._seen_version = None
            while True:
                rows = self.db.execute(
                    "SELECT r.seq, s.email IS NOT NULL FROM recipients r LEFT JOIN suppressions s ON s.email = r.email"
                    " WHERE r.seq >= ? AND +r.slug = ? AND r.batch IS NULL ORDER BY r.seq LIMIT ?" + self.db.claim,
                    (self._cursor, self.slug, size),
                ).fetchall()
                blocked = [(seq,) for seq, suppressed in rows if suppressed]
                if not blocked:
                    break
                self.db.executemany("DELETE FROM recipients WHERE seq = ?", blocked)
                self.db.execute(  # still a row of the list: counted as suppressed, not lost
                    "UPDATE sends SET suppressed = suppressed + ? WHERE slug = ?", (len(blocked), self.slug)
                )
        return [seq for seq, _ in rows]

    def finish(self, batch_id: int, status: str, message_id: str | None = None, error: str | None = None) -> None:
        """Record SendGrid's answer for a batch, sent or failed: one row, committed at once. A
        batch another run took for uncertain once its lease ended takes the answer too; one whose
        recipients were queued again since keeps its record (they belong to a newer batch)."""
        stamp = now()
        with self.store.transaction() as db:
            db.execute(
                "UPDATE batches SET status = ?, message_id = ?, error = ?, finished_at = ? WHERE slug = ? AND id = ?"
                " AND status IN (?, ?)",
                (status, message_id, error, stamp, self.slug, batch_id, IN_FLIGHT, UNCERTAIN),
            )
            db.execute("UPDATE sends SET last_batch_at = ? WHERE slug = ?", (stamp, self.slug))

    def release(self, batch_id: int) -> None:
        """A batch stopped before SendGrid accepted it: its recipients are pending again."""
        with self.store.transaction() as db:
            first, last = db.execute(
                "SELECT first_seq, last_seq FROM batches WHERE slug = ? AND id = ?", (self.slug, batch_id)
            ).fetchone()
            self._unbatch(batch_id, first, last)
            db.execute("DELETE FROM batches WHERE slug = ? AND id = ?", (self.slug, batch_id))

    def _unbatch(self, batch_id: int, first: int, last: int) -> int:
        """Make a batch's recipients pending again (inside a transaction); returns how many."""
        self._cursor = min(self._cursor, first)
        return self.db.execute(
            "UPDATE recipients SET batch = NULL WHERE seq BETWEEN ? AND ? AND +slug = ? AND batch = ?",
            (first, last, self.slug, batch_id),
        ).rowcount

    # --- a scheduled send ---------------------------------------------------------------------

    def schedule(self) -> Schedule | None:
        row = self.db.execute(
            "SELECT schedule_batch, send_at, cancelled_at FROM sends WHERE slug = ? AND schedule_batch IS NOT NULL",
            (self.slug,),
        ).fetchone()
        return Schedule(*row) if row else None

    def set_schedule(self, batch_id: str, send_at: str) -> None:
        """Recorded before the first request carries the batch id, so a resume reuses it."""
        with self.store.transaction() as db:
            db.execute(
                "UPDATE sends SET schedule_batch = ?, send_at = ?, cancelled_at = NULL WHERE slug = ?",
                (batch_id, send_at, self.slug),
            )

    def cancel_schedule(self) -> int:
        """SendGrid cancelled the scheduled send: everyone it had taken is pending again.
        Returns how many."""
        with self.store.transaction() as db:
            pending = 0
            for batch_id, first, last in db.execute(
                "SELECT id, first_seq, last_seq FROM batches WHERE slug = ? AND status IN (?, ?, ?)",
                (self.slug, SENT, UNCERTAIN, IN_FLIGHT),
            ).fetchall():
                pending += self._unbatch(batch_id, first, last)
                db.execute("UPDATE batches SET status = ? WHERE slug = ? AND id = ?", (REQUEUED, self.slug, batch_id))
            db.execute("UPDATE sends SET cancelled_at = ? WHERE slug = ?", (now(), self.slug))
        return pending

    # --- reading -----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        found = dict.fromkeys(STATUSES, 0)
        for status, count in self.db.execute(
            f"SELECT {EFFECTIVE}, sum(b.size) FROM batches b WHERE b.slug = ? AND b.status != ? GROUP BY 1",
            (clock(self.store), self.slug, REQUEUED),
        ):
            found[status] = int(count)
        rows = self.db.execute("SELECT count(*) FROM recipients WHERE slug = ?", (self.slug,)).fetchone()[0]
        found[PENDING] = rows - sum(found.values())  # a row is pending unless a batch (not requeued) holds it
        return found

    def exists(self) -> bool:
        """Whether a run of this issue was ever confirmed (a declined or refused one leaves no trace)."""
        row = self.db.execute(
            "SELECT 1 FROM sends WHERE slug = ? AND (run IS NOT NULL OR last_batch_at IS NOT NULL)", (self.slug,)
        )
        return row.fetchone() is not None

    def summary(self) -> dict[str, Any]:
        """The latest planned run's list: its rows, those skipped by reason, and the journal's rows
        that are not on it (sent to from an earlier list); the last batch's time."""
        row = self.db.execute(
            "SELECT invalid, duplicate, suppressed, last_batch_at, run, listed_rows, unsubscribed, no_consent,"
            " consent_lapsed FROM sends WHERE slug = ?",
            (self.slug,),
        ).fetchone()
        invalid, duplicate, suppressed, last, run, rows, unsubscribed, no_consent, lapsed = row or (
            (0, 0, 0, None, None, None, 0, 0, 0)
        )
        not_listed = (
            self.db.execute("SELECT count(*) FROM recipients WHERE slug = ? AND run != ?", (self.slug, run)).fetchone()[
                0
            ]
            if run is not None
            else 0
        )
        return {
            "rows": rows,
            "invalid": invalid,
            "duplicate": duplicate,
            "suppressed": suppressed,
            "unsubscribed": unsubscribed,
            "no_consent": no_consent,
            "consent_lapsed": lapsed,
            "not_on_list": not_listed,
            "last_batch_at": last,
        }

    def batches_with(self, status: str) -> list[BatchInfo]:
        return [
            BatchInfo(*row)
            for row in self.db.execute(
                f"SELECT b.id, b.size, coalesce(b.error, '') FROM batches b WHERE b.slug = ? AND {EFFECTIVE} = ?"
                " ORDER BY b.id",
                (self.slug, clock(self.store), status),
            )
        ]

    def live_leases(self) -> tuple[str | None, list[str]]:
        """When the last live lease of a batch in flight ends (ISO 8601; None: none is live),
        and which sends hold them, as "host (pid N)"."""
        rows = self.db.execute(
            "SELECT holder, max(lease_until) FROM batches WHERE slug = ? AND status = ? AND lease_until >= ?"
            " GROUP BY holder ORDER BY holder",
            (self.slug, IN_FLIGHT, clock(self.store)),
        ).fetchall()
        ends = max((until for _, until in rows), default=None)
        return ends, [holder.rsplit(" ", 1)[0] for holder, _ in rows if holder]

    def sent_elsewhere(self, run: int) -> int:
        """How many of the sent recipients are not on this run's list (an earlier list had them)."""
        return self.db.execute(
            "SELECT count(*) FROM recipients r JOIN batches b ON b.slug = r.slug AND b.id = r.batch"
            " WHERE r.slug = ? AND r.run != ? AND b.status = ?",
            (self.slug, run, SENT),
        ).fetchone()[0]

    def addresses_with(self, status: str) -> Iterator[str]:
        """The addresses whose batch has this status (pending: no batch), in list order."""
        if status == PENDING:
            rows = self.db.execute(
                "SELECT email FROM recipients WHERE slug = ? AND batch IS NULL ORDER BY seq", (self.slug,)
            )
        else:
            rows = self.db.execute(
                "SELECT r.email FROM recipients r JOIN batches b ON b.slug = r.slug AND b.id = r.batch"
                f" WHERE r.slug = ? AND {EFFECTIVE} = ? ORDER BY r.seq",
                (self.slug, clock(self.store), status),
            )
        for (email,) in rows:
            yield email

    def sent_among(self, keys: list[str]) -> set[str]:
        """Which of these addresses a batch has taken (sent, failed, uncertain or in flight)."""
        marks = ",".join("?" * len(keys))
        return {
            email
            for (email,) in self.db.execute(
                f"SELECT email FROM recipients WHERE slug = ? AND batch IS NOT NULL AND email IN ({marks})",
                (self.slug, *keys),
            )
        }
