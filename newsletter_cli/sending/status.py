"""`newsletter status`: where the send of an issue stands, in counts that add up."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from newsletter_cli.config import Config
from newsletter_cli.sending.sender import SendError, lock_path
from newsletter_cli.store import DB_NAME, Store, lock_held
from newsletter_cli.store.journal import FAILED, IN_FLIGHT, PENDING, SENT, UNCERTAIN, Journal


def status(config: Config, slug: str) -> dict[str, Any]:
    """The seven counts (integers), then the time of the last batch and the failed batches.

    sent + pending + failed + uncertain + suppressed + invalid + duplicate + unsubscribed = rows +
    not_on_list:
    ``rows`` are those of the list the latest run read, ``not_on_list`` the journal's recipients
    (sent to, say) whom that list no longer has."""
    if not (config.state_dir / DB_NAME).exists():
        raise SendError(f"{slug} has never been sent from this folder: there is no journal yet")
    with Store.for_folder(config.state_dir) as store:
        journal = Journal(store, slug)
        if not journal.exists():
            raise SendError(f"{slug} has never been sent from this folder: its journal is empty")
        counts = journal.counts()
        summary = journal.summary()
        running = _send_running(config, slug)
        in_flight = counts.pop(IN_FLIGHT)
        result: dict[str, Any] = {
            "sent": counts[SENT],
            "pending": counts[PENDING],
            "failed": counts[FAILED],
            "uncertain": counts[UNCERTAIN] + (0 if running else in_flight),
            "suppressed": summary["suppressed"],
            "invalid": summary["invalid"],
            "duplicate": summary["duplicate"],
            "unsubscribed": summary["unsubscribed"],
            "rows": summary["rows"],
            "not_on_list": summary["not_on_list"],
            "in_flight": in_flight if running else 0,
            "running": running,
            "last_batch_at": summary["last_batch_at"],
            "failed_batches": [
                {"batch": b.id, "recipients": b.size, "error": b.error} for b in journal.batches_with(FAILED)
            ],
            "uncertain_batches": [
                {"batch": b.id, "recipients": b.size, "error": b.error or "in flight when a send stopped"}
                for b in journal.batches_with(UNCERTAIN) + ([] if running else journal.batches_with(IN_FLIGHT))
            ],
        }
    return result


def addresses(config: Config, slug: str, state: str) -> Iterator[str]:
    """Who is in one state of an issue's send (``uncertain``: perhaps delivered, perhaps not)."""
    if state not in (SENT, PENDING, FAILED, UNCERTAIN):
        raise SendError(f"unknown state {state!r}: expected sent, pending, failed or uncertain")
    status(config, slug)  # says so when the issue was never sent
    with Store.for_folder(config.state_dir) as store:
        yield from Journal(store, slug).addresses_with(state)


def _send_running(config: Config, slug: str) -> bool:
    return lock_held(lock_path(config, slug))
