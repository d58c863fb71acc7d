"""`newsletter cancel`: call off a scheduled send before SendGrid sends it.

Within 10 minutes of the send time SendGrid does not promise to honour a cancel, so that is
refused unless forced. It counts as cancelled only once SendGrid says it holds the batch as
cancelled; then everyone it had taken is pending again.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass

from newsletter_cli import store as state
from newsletter_cli.config import Config
from newsletter_cli.sendgrid_api import KEY_ENV, SendGrid, Timing
from newsletter_cli.sending.sender import SendError
from newsletter_cli.store import LockHeld, SendLock, Store
from newsletter_cli.store.journal import Journal

MARGIN = dt.timedelta(minutes=10)  # SendGrid: a cancel closer to the send time may not take effect


@dataclass(frozen=True)
class Cancelled:
    send_at: dt.datetime
    pending: int  # recipients pending again


def deadline(send_at: dt.datetime) -> dt.datetime:
    """Until when a cancel is sure to be honoured."""
    return send_at - MARGIN


def cancel(
    config: Config,
    slug: str,
    force: bool = False,
    environ: Mapping[str, str] | None = None,
    now: dt.datetime | None = None,
) -> Cancelled:
    environ = os.environ if environ is None else environ
    now = now or dt.datetime.now(dt.UTC)
    if not state.exists(config):
        raise SendError(f"{slug} has never been sent from this folder: nothing is scheduled")
    with Store.for_config(config) as store, _locked(store, slug):
        journal = Journal(store, slug)
        schedule = journal.schedule()
        if schedule is None or schedule.cancelled_at:
            raise SendError(f"{slug} has no scheduled send to cancel")
        when = dt.datetime.fromisoformat(schedule.send_at)
        shown = when.astimezone().isoformat(timespec="minutes")
        if when <= now:
            raise SendError(f"{slug} was scheduled for {shown}, which has passed: SendGrid has sent it")
        if now > deadline(when) and not force:
            raise SendError(
                f"{slug} goes out at {shown}: within 10 minutes of its time SendGrid does not promise to cancel "
                "(pass --force to try anyway)"
            )
        key = environ.get(KEY_ENV, "")
        if not key:
            raise SendError(f"{KEY_ENV} is not set: cancelling needs the SendGrid API key")
        api = SendGrid(key, config.sendgrid_host, timing=Timing.from_environ(environ))
        held = api.cancel_scheduled(schedule.batch_id)
        if held != "cancel":
            raise SendError(
                f"SendGrid did not confirm the cancel (it holds {held or 'no status'} for batch "
                f"{schedule.batch_id}): the send may still go out at {shown}; run the same command again"
            )
        return Cancelled(when, journal.cancel_schedule())


def _locked(store: Store, slug: str) -> SendLock:
    try:
        return store.send_lock(slug)
    except LockHeld as held:
        raise SendError(f"a 'newsletter send' of {slug} is running{held.where}: stop it first (Ctrl-C)") from None
