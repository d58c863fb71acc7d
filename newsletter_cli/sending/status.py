"""`newsletter status`: where the send of an issue stands, in counts that add up."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import Any

from newsletter_cli import store as state
from newsletter_cli.config import Config
from newsletter_cli.sending.cancel import deadline
from newsletter_cli.sending.sender import SendError
from newsletter_cli.store import Store, events
from newsletter_cli.store.journal import FAILED, IN_FLIGHT, PENDING, SENT, UNCERTAIN, Journal

QUIET = dt.timedelta(hours=24)  # SendGrid's events for an accepted batch come well within this


@contextlib.contextmanager
def sent_journal(config: Config, slug: str) -> Iterator[tuple[Store, Journal]]:
    """The store and the journal of an issue sent from this folder; SendError if it never was."""
    if not state.exists(config):
        raise SendError(f"{slug} has never been sent from this folder: there is no journal yet")
    with Store.for_config(config) as store:
        journal = Journal(store, slug)
        if not journal.exists():
            raise SendError(f"{slug} has never been sent from this folder: its journal is empty")
        yield store, journal


def status(config: Config, slug: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """The counts (integers), then the schedule, the time of the last batch and the failed batches.

    sent + scheduled + pending + failed + uncertain + suppressed + invalid + duplicate +
    unsubscribed + no_consent + consent_lapsed = rows + not_on_list (``scheduled``: taken by
    SendGrid for a time still to come):
    ``rows`` are those of the list the latest run read, ``not_on_list`` the journal's recipients
    (sent to, say) whom that list no longer has."""
    with sent_journal(config, slug) as (store, journal):
        counts = journal.counts()
        summary = journal.summary()
        running = store.send_lock_held(slug)
        # in flight without a send to hold it: uncertain, where the lock proves its send dead;
        # on a server, until the send's lease ends (it may be posting from a machine cut off)
        held = running or not store.db.lock_proves_exit
        in_flight = counts.pop(IN_FLIGHT)
        ends, holders = journal.live_leases() if held else (None, [])
        schedule = journal.schedule()
        when = dt.datetime.fromisoformat(schedule.send_at) if schedule and not schedule.cancelled_at else None
        ahead = when is not None and when > (now or dt.datetime.now(dt.UTC))
        result: dict[str, Any] = {
            "sent": 0 if ahead else counts[SENT],
            "scheduled": counts[SENT] if ahead else 0,
            "pending": counts[PENDING],
            "failed": counts[FAILED],
            "uncertain": counts[UNCERTAIN] + (0 if held else in_flight),
            "suppressed": summary["suppressed"],
            "invalid": summary["invalid"],
            "duplicate": summary["duplicate"],
            "unsubscribed": summary["unsubscribed"],
            "no_consent": summary["no_consent"],
            "consent_lapsed": summary["consent_lapsed"],
            "rows": summary["rows"],
            "not_on_list": summary["not_on_list"],
            "in_flight": in_flight if held else 0,
            "running": running,
            "lease_ends": _local(dt.datetime.fromisoformat(ends)) if ends else None,
            "in_flight_holders": holders,
            "scheduled_at": _local(when) if ahead and when else None,
            "cancel_until": _local(deadline(when)) if ahead and when else None,
            "cancelled_at": schedule.cancelled_at if schedule else None,
            "last_batch_at": summary["last_batch_at"],
            "failed_batches": [
                {"batch": b.id, "recipients": b.size, "error": b.error} for b in journal.batches_with(FAILED)
            ],
            "uncertain_batches": [
                {
                    "batch": b.id,
                    "recipients": b.size,
                    "error": b.error or "in flight when a send stopped",
                    "advice": _advice(store, slug, b.id, now),
                }
                for b in journal.batches_with(UNCERTAIN) + ([] if held else journal.batches_with(IN_FLIGHT))
            ],
            "settled_batches": [
                {"batch": b.batch, "recipients": b.size, "settled_by": b.how}
                for b in events.settled_batches(store, slug)
            ],
        }
    return result


def _local(when: dt.datetime) -> str:
    return when.astimezone().isoformat(timespec="minutes")


def _advice(store: Store, slug: str, batch: int, now: dt.datetime | None) -> str:
    """What SendGrid's events say of an uncertain batch: it settles as sent at its first event;
    their absence means something only when events arrive for the issue's other batches."""
    if not events.has_events(store, slug):
        return (
            "no SendGrid events have arrived for this issue, so there is no telling: with the Event "
            "Webhook pointed at 'newsletter serve', an event settles it"
        )
    started = dt.datetime.fromisoformat(events.batch_started(store, slug, batch))
    if (now or dt.datetime.now(dt.UTC)) - started >= QUIET:
        return (
            "no event for any of its recipients in 24 hours, while events for the other batches "
            "arrived: SendGrid probably never took it, and --resend-uncertain is probably safe"
        )
    return (
        f"no event for its recipients yet; if none comes by {(started + QUIET).isoformat(timespec='minutes')}, "
        "--resend-uncertain is probably safe"
    )


def addresses(config: Config, slug: str, state: str) -> Iterator[str]:
    """Who is in one state of an issue's send (``uncertain``: perhaps delivered, perhaps not)."""
    if state not in (SENT, PENDING, FAILED, UNCERTAIN):
        raise SendError(f"unknown state {state!r}: expected sent, pending, failed or uncertain")
    status(config, slug)  # says so when the issue was never sent
    with Store.for_config(config) as store:
        yield from Journal(store, slug).addresses_with(state)
