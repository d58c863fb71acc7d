"""The send journal: who has been sent an issue, who is waiting, and every batch's fate.

Every recipient of a send is written as ``pending`` before the first request; a batch becomes
``in_flight`` (committed) before its request and ``sent`` or ``failed`` (committed) right after
the answer. A batch still ``in_flight`` when a new run starts was perhaps accepted by SendGrid
before a crash: it becomes ``uncertain`` and is not sent again unless asked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from newsletter_cli.store import Store, chunks, now
from newsletter_cli.subscribers import Row

PENDING, IN_FLIGHT, SENT, FAILED, UNCERTAIN = "pending", "in_flight", "sent", "failed", "uncertain"
# a batch's recipients, found through the (slug, status, seq) index rather than a scan
IN_BATCH = "slug = ? AND status = ? AND seq BETWEEN ? AND ? AND batch = ?"
STATUSES = (SENT, PENDING, FAILED, UNCERTAIN, IN_FLIGHT)


@dataclass(frozen=True)
class Recipient:
    seq: int
    email: str
    name: str
    fields: dict[str, str]


@dataclass(frozen=True)
class Batch:
    id: int
    recipients: list[Recipient]


@dataclass(frozen=True)
class FailedBatch:
    id: int
    size: int
    error: str


class Journal:
    """One issue's journal inside the store's database."""

    def __init__(self, store: Store, slug: str):
        self.db = store.db
        self.store = store
        self.slug = slug

    # --- a run -------------------------------------------------------------------------------

    def start_run(self, subject: str) -> int:
        """Begin a run: batches left in flight by a crash become uncertain. Returns the run id."""
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO sends (slug, subject, created_at) VALUES (?, ?, ?) ON CONFLICT (slug) DO NOTHING",
                (self.slug, subject, now()),
            )
            db.execute(
                "UPDATE recipients SET status = ? WHERE slug = ? AND status = ?", (UNCERTAIN, self.slug, IN_FLIGHT)
            )
            db.execute("UPDATE batches SET status = ? WHERE slug = ? AND status = ?", (UNCERTAIN, self.slug, IN_FLIGHT))
            row = db.execute("SELECT coalesce(max(run), 0) + 1 FROM recipients WHERE slug = ?", (self.slug,)).fetchone()
        return int(row[0])

    def add(self, rows: Iterable[Row], run: int, keep: Iterable[str] = ()) -> tuple[int, int]:
        """Write the list's valid rows as pending, keeping what the journal already knows.

        Returns (new rows, rows already in the journal). Pending rows of earlier runs that the
        list no longer has, or that are suppressed now, are dropped afterwards by ``settle``.
        """
        kept = set(keep)
        added = existing = 0
        seq = self.db.execute("SELECT coalesce(max(seq), 0) FROM recipients WHERE slug = ?", (self.slug,)).fetchone()[0]
        with self.store.transaction() as db:
            for chunk in chunks(rows, 500):
                keys = [row.key for row in chunk]
                marks = ",".join("?" * len(keys))
                known = {
                    email
                    for (email,) in db.execute(
                        f"SELECT email FROM recipients WHERE slug = ? AND email IN ({marks})", (self.slug, *keys)
                    )
                }
                db.execute(
                    f"UPDATE recipients SET run = ? WHERE slug = ? AND status = ? AND email IN ({marks})",
                    (run, self.slug, PENDING, *keys),
                )
                fresh = []
                for row in chunk:
                    if row.key in known:
                        continue
                    seq += 1
                    data = {"email": row.email, "name": row.name, "fields": {k: row.fields.get(k, "") for k in kept}}
                    fresh.append((self.slug, row.key, seq, PENDING, run, json.dumps(data, separators=(",", ":"))))
                db.executemany(
                    "INSERT INTO recipients (slug, email, seq, status, run, data) VALUES (?, ?, ?, ?, ?, ?)", fresh
                )
                added += len(fresh)
                existing += len(chunk) - len(fresh)
        return added, existing

    def settle(self, run: int) -> int:
        """Drop pending rows the current list no longer has or that are suppressed; returns how many."""
        with self.store.transaction() as db:
            gone = db.execute(
                "DELETE FROM recipients WHERE slug = ? AND status = ?"
                " AND (run < ? OR email IN (SELECT email FROM suppressions))",
                (self.slug, PENDING, run),
            ).rowcount
        return gone

    def record_skips(self, invalid: int, duplicate: int, suppressed: int) -> None:
        with self.store.transaction() as db:
            db.execute(
                "UPDATE sends SET invalid = ?, duplicate = ?, suppressed = ? WHERE slug = ?",
                (invalid, duplicate, suppressed, self.slug),
            )

    def discard(self, run: int) -> None:
        """The user declined: forget the rows this run added that were never sent."""
        with self.store.transaction() as db:
            db.execute(
                "DELETE FROM recipients WHERE slug = ? AND run = ? AND status = ? AND batch IS NULL",
                (self.slug, run, PENDING),
            )

    def requeue(self, status: str) -> int:
        """Make failed (or uncertain) recipients pending again; returns how many."""
        with self.store.transaction() as db:
            return db.execute(
                "UPDATE recipients SET status = ?, batch = NULL WHERE slug = ? AND status = ?",
                (PENDING, self.slug, status),
            ).rowcount

    # --- batches -----------------------------------------------------------------------------

    def next_batch(self, size: int) -> Batch | None:
        """Take up to ``size`` pending recipients in list order and mark them in flight (committed)."""
        with self.store.transaction() as db:
            db.execute(
                "DELETE FROM recipients WHERE slug = ? AND status = ? AND email IN (SELECT email FROM suppressions)",
                (self.slug, PENDING),
            )
            rows = db.execute(
                "SELECT seq, data FROM recipients WHERE slug = ? AND status = ? ORDER BY seq LIMIT ?",
                (self.slug, PENDING, size),
            ).fetchall()
            if not rows:
                return None
            batch_id = db.execute(
                "SELECT coalesce(max(id), 0) + 1 FROM batches WHERE slug = ?", (self.slug,)
            ).fetchone()[0]
            first, last = rows[0][0], rows[-1][0]
            db.execute(
                "UPDATE recipients SET status = ?, batch = ? WHERE slug = ? AND status = ? AND seq BETWEEN ? AND ?",
                (IN_FLIGHT, batch_id, self.slug, PENDING, first, last),
            )
            db.execute(
                "INSERT INTO batches (slug, id, status, size, first_seq, last_seq, started_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self.slug, batch_id, IN_FLIGHT, len(rows), first, last, now()),
            )
        recipients = []
        for seq, data in rows:
            item = json.loads(data)
            recipients.append(Recipient(seq, item["email"], item["name"], item["fields"]))
        return Batch(batch_id, recipients)

    def finish(self, batch_id: int, status: str, message_id: str | None = None, error: str | None = None) -> None:
        """Record SendGrid's answer for a batch: sent or failed (committed at once)."""
        stamp = now()
        with self.store.transaction() as db:
            db.execute(
                f"UPDATE recipients SET status = ? WHERE {IN_BATCH}",
                (status, *self._batch_range(batch_id)),
            )
            db.execute(
                "UPDATE batches SET status = ?, message_id = ?, error = ?, finished_at = ? WHERE slug = ? AND id = ?",
                (status, message_id, error, stamp, self.slug, batch_id),
            )
            db.execute("UPDATE sends SET last_batch_at = ? WHERE slug = ?", (stamp, self.slug))

    def release(self, batch_id: int) -> None:
        """A batch stopped before SendGrid accepted it: its recipients are pending again."""
        with self.store.transaction() as db:
            db.execute(
                f"UPDATE recipients SET status = ?, batch = NULL WHERE {IN_BATCH}",
                (PENDING, *self._batch_range(batch_id)),
            )
            db.execute("DELETE FROM batches WHERE slug = ? AND id = ?", (self.slug, batch_id))

    def _batch_range(self, batch_id: int) -> tuple[Any, ...]:
        first, last = self.db.execute(
            "SELECT first_seq, last_seq FROM batches WHERE slug = ? AND id = ?", (self.slug, batch_id)
        ).fetchone()
        return (self.slug, IN_FLIGHT, first, last, batch_id)

    # --- reading -----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        found = dict.fromkeys(STATUSES, 0)
        for status, count in self.db.execute(
            "SELECT status, count(*) FROM recipients WHERE slug = ? GROUP BY status", (self.slug,)
        ):
            found[status] = count
        return found

    def summary(self) -> dict[str, Any]:
        row = self.db.execute(
            "SELECT invalid, duplicate, suppressed, last_batch_at FROM sends WHERE slug = ?", (self.slug,)
        ).fetchone()
        invalid, duplicate, suppressed, last = row or (0, 0, 0, None)
        return {"invalid": invalid, "duplicate": duplicate, "suppressed": suppressed, "last_batch_at": last}

    def batches_with(self, status: str) -> list[FailedBatch]:
        """Batches in this state that still have recipients in it (not requeued since)."""
        return [
            FailedBatch(*row)
            for row in self.db.execute(
                "SELECT id, size, coalesce(error, '') FROM batches b WHERE slug = ? AND status = ? AND EXISTS"
                " (SELECT 1 FROM recipients r WHERE r.slug = b.slug AND r.status = b.status"
                "  AND r.seq BETWEEN b.first_seq AND b.last_seq AND r.batch = b.id) ORDER BY id",
                (self.slug, status),
            )
        ]

    def sent_among(self, keys: list[str]) -> set[str]:
        marks = ",".join("?" * len(keys))
        return {
            email
            for (email,) in self.db.execute(
                f"SELECT email FROM recipients WHERE slug = ? AND status != ? AND email IN ({marks})",
                (self.slug, PENDING, *keys),
            )
        }
