"""SendGrid's events in the store: recorded once each, turned into suppressions, settling
uncertain batches, and counted per issue.

Everything an event changes is written in one transaction with the event itself: the endpoint
answers SendGrid only once it is committed, so an event is either wholly recorded or retried.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from newsletter_cli.events.rules import Event, accepted, suppression
from newsletter_cli.store.database import CHUNK, Store, Suppression, chunks, now, withdraw
from newsletter_cli.store.journal import EFFECTIVE, SENT, UNCERTAIN, clock


@dataclass(frozen=True)
class Recorded:
    new: int  # events stored for the first time
    duplicates: int  # events already stored (SendGrid retried, or a replay)
    suppressed: int  # addresses newly suppressed
    settled: int  # uncertain batches now known to be accepted


def record(store: Store, events: Iterable[Event], group_id: int | None) -> Recorded:
    events = list(events)
    new = suppressed = settled = 0
    stamp = now()
    leases_at = clock(store)  # a batch whose lease ended by now counts as uncertain
    with store.transaction() as db:
        fresh: list[Event] = []
        for chunk in chunks(events, CHUNK):
            marks = ",".join("?" * len(chunk))
            known = {i for (i,) in db.execute(f"SELECT id FROM events WHERE id IN ({marks})", [e.id for e in chunk])}
            for event in chunk:
                if event.id not in known:
                    known.add(event.id)  # the same event twice in one POST
                    fresh.append(event)
        db.executemany(
            "INSERT INTO events (id, slug, email, event, kind, classification, machine, grp, at, message_id,"
            " client, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [_row(e, stamp) for e in fresh],
        )
        new = len(fresh)
        for event in fresh:
            reason = suppression(event, group_id)
            if reason is not None:
                when = dt.datetime.fromtimestamp(event.at, dt.UTC).isoformat(timespec="seconds")
                entry = Suppression(event.email, reason, f"sendgrid:event:{event.event}", when)
                added = db.execute(
                    "INSERT INTO suppressions (email, reason, source, created_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (email) DO NOTHING",
                    (entry.email, entry.reason, entry.source, entry.created_at),
                ).rowcount
                if added:
                    withdraw(db, [entry])
                suppressed += added
            if accepted(event):
                key = (event.issue, event.email)
                settled += db.execute(  # an uncertain batch, or one whose lease has ended (EFFECTIVE)
                    "UPDATE batches AS b SET status = ?, settled = ?, finished_at = coalesce(finished_at, ?)"
                    f" WHERE b.slug = ? AND {EFFECTIVE} = ?"
                    " AND b.id = (SELECT batch FROM recipients WHERE slug = ? AND email = ?)",
                    (SENT, f"a {event.event} event for {event.email}", stamp, event.issue, leases_at, UNCERTAIN, *key),
                ).rowcount
    return Recorded(new, len(events) - new, suppressed, settled)


def _row(e: Event, stamp: str) -> tuple[object, ...]:
    return (
        e.id,
        e.issue,
        e.email,
        e.event,
        e.kind,
        e.classification,
        int(e.machine),
        e.group,
        e.at,
        e.message_id,
        e.client,
        stamp,
    )


FIGURES = (
    "processed",
    "delivered",
    "deferred",
    "bounced",
    "blocked",
    "dropped",
    "spam_reports",
    "unsubscribes",
    "opens",
    "machine_opens",
    "clicks",
)
# each figure: recipients with at least one such event (opens: by a person, not a machine)
_WHERE = {
    "processed": "event = 'processed'",
    "delivered": "event = 'delivered'",
    "deferred": "event = 'deferred'",
    "bounced": "event = 'bounce' AND coalesce(kind, 'bounce') != 'blocked'",
    "blocked": "event = 'bounce' AND kind = 'blocked'",
    "dropped": "event = 'dropped'",
    "spam_reports": "event = 'spamreport'",
    "unsubscribes": "event IN ('unsubscribe', 'group_unsubscribe')",
    "opens": "event = 'open' AND machine = 0",
    "machine_opens": "event = 'open' AND machine = 1",
    "clicks": "event = 'click'",
}


def counts(store: Store, slug: str) -> dict[str, int]:
    """Recipients of the issue with each kind of event (unique per recipient)."""
    found = {}
    for name in FIGURES:
        found[name] = store.db.execute(
            f"SELECT count(DISTINCT email) FROM events WHERE slug = ? AND {_WHERE[name]}", (slug,)
        ).fetchone()[0]
    return found


def timeline(store: Store, slug: str, names: Iterable[str]) -> dict[str, list[int]]:
    """For each figure, the unix time of each recipient's first such event, in order."""
    return {
        name: [
            at
            for (at,) in store.db.execute(
                f"SELECT min(at) FROM events WHERE slug = ? AND {_WHERE[name]} GROUP BY email ORDER BY 1", (slug,)
            )
        ]
        for name in names
    }


def last_event_at(store: Store, slug: str) -> int | None:
    return store.db.execute("SELECT max(at) FROM events WHERE slug = ?", (slug,)).fetchone()[0]


def has_events(store: Store, slug: str) -> bool:
    return store.db.execute("SELECT 1 FROM events WHERE slug = ? LIMIT 1", (slug,)).fetchone() is not None


@dataclass(frozen=True)
class Settled:
    batch: int
    size: int
    how: str


def settled_batches(store: Store, slug: str) -> list[Settled]:
    """Batches once uncertain that an event showed SendGrid accepted, and which event."""
    return [
        Settled(*row)
        for row in store.db.execute(
            "SELECT id, size, settled FROM batches WHERE slug = ? AND settled IS NOT NULL ORDER BY id", (slug,)
        )
    ]


def batch_started(store: Store, slug: str, batch: int) -> str:
    """When a batch's request was made (ISO 8601, UTC)."""
    return store.db.execute("SELECT started_at FROM batches WHERE slug = ? AND id = ?", (slug, batch)).fetchone()[0]
