"""One send of one issue: list -> suppressions -> journal -> batches -> SendGrid, at most once
to each address.

The issue is rendered once, in a child process while the list is read in another; each
recipient then gets only substitutions (``payload``). The journal (``store.journal``) makes a
crashed or stopped send resumable without mailing anyone twice, and every batch whose answer
was lost is recorded as uncertain, never as sent or failed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from newsletter_cli import merge, subscribers, suppressions, unsubscribe
from newsletter_cli.config import Config, UnsubscribeMode
from newsletter_cli.consent.gate import Gate
from newsletter_cli.errors import NewsletterError, display_path
from newsletter_cli.issue import Issue, load_issue
from newsletter_cli.render import Rendered, issue_fields, render
from newsletter_cli.sendgrid_api import KEY_ENV, SendGrid, SendGridError, Timing
from newsletter_cli.sending.payload import MAX_BATCH, Personalizer, envelope
from newsletter_cli.sending.processes import Child
from newsletter_cli.sending.reader import CHUNK, ListReader
from newsletter_cli.sending.workers import CRASHED, REFUSED, STOPPED, Answer, Workers, WorkerSpec
from newsletter_cli.store import LockHeld, SendLock, Store, signups
from newsletter_cli.store.journal import FAILED, IN_FLIGHT, LEASE, PENDING, SENT, UNCERTAIN, Journal
from newsletter_cli.store.journal import record as journal_record

MAX_CONTENT_BYTES = 10 * 1024 * 1024  # html + text, leaving room under the 30 MB request limit
MAX_SCHEDULE = dt.timedelta(hours=72)
LEASE_ENV = "NEWSLETTER_SEND_LEASE"


class SignupChunk(list[tuple[str, str]]):
    """Journal records of confirmed signups (counted apart from the list's rows)."""


class SendError(NewsletterError):
    """A send cannot start, or SendGrid refused the key."""


@dataclass(frozen=True)
class SendOptions:
    list_path: Path | None = None
    limit: int | None = None
    send_at: dt.datetime | None = None
    sync: bool = True
    batch_size: int = MAX_BATCH
    concurrency: int = 8
    retry_failed: bool = False
    resend_uncertain: bool = False
    force: bool = False  # send despite errors found by `newsletter check`
    drop_pending: bool = False  # drop pending recipients of an earlier run that this list lacks
    dry_run: bool = False  # nothing leaves: a missing NEWSLETTER_SECRET is stood in for


@dataclass
class Plan:
    """What a send will do, shown to the user before anything leaves."""

    slug: str
    subject: str
    sender: str
    mode: UnsubscribeMode
    to_send: int
    new: int
    already_sent: int
    invalid: int
    duplicate: int
    suppressed: int
    failed_left: int
    uncertain_left: int
    batches: int
    send_at: dt.datetime | None
    learned: dict[str, int] | None
    run: int = 0
    rows: int = 0
    unsubscribed: int = 0  # rows the list's own status columns mark as not subscribed
    no_consent: int = 0  # rows without live consent in the ledger ([consent] require)
    consent_lapsed: int = 0  # rows whose only consent was implied, and has lapsed
    dropped: int = 0  # pending recipients of an earlier run that are no longer on the list
    sent_elsewhere: int = 0  # recipients sent by an earlier run whom this run's list lacks
    in_flight_left: int = 0  # held by another send whose lease is live (a server's store only)


@dataclass(frozen=True)
class Progress:
    """One batch's answer, and the running totals of this run."""

    batch: int
    size: int
    status: str
    error: str
    sent: int
    failed: int
    total: int
    uncertain: int = 0


@dataclass
class Outcome:
    sent: int = 0
    failed: int = 0
    uncertain: int = 0
    stopped: bool = False
    error: SendGridError | None = None
    counts: dict[str, int] = field(default_factory=dict)


def parse_send_at(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """ISO 8601, local time unless it has an offset; in the future and at most 72 hours ahead."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise SendError(f"--at {text!r}: expected a time like 2026-12-01T09:00 or 2026-12-01T09:00-05:00") from None
    if when.tzinfo is None:
        when = when.astimezone()  # the machine's local time zone
    if when <= now:
        raise SendError(f"--at {text}: that time has passed")
    if when - now > MAX_SCHEDULE:
        raise SendError(f"--at {text}: SendGrid schedules at most 72 hours ahead")
    return when


class Sender:
    """One send of one issue. Use as a context manager: it holds the issue's send lock."""

    def __init__(
        self, config: Config, issue_path: Path, options: SendOptions, environ: Mapping[str, str] | None = None
    ):
        self.config = config
        self.options = options
        self.environ = os.environ if environ is None else environ
        self.lease = lease_from(self.environ)
        if not 1 <= options.batch_size <= MAX_BATCH:
            raise SendError(f"--batch-size must be between 1 and {MAX_BATCH}")
        if options.concurrency < 1:
            raise SendError("--concurrency must be at least 1")
        self.list_path = options.list_path or config.subscribers_path
        self.issue_path = issue_path
        self.columns = subscribers.columns(self.list_path)
        self.issue = load_issue(issue_path)
        fields = issue_fields(self.issue, self.columns)
        self.kept = sorted({f.name for f in fields})
        # each row's merge values must fit SendGrid's limit: one that does not fails its whole batch
        self.budget = merge.Budget((*fields, *merge.FOOTER_FIELDS), unsubscribe.measuring_linker(config))
        self.refused: list[subscribers.Refused] = []  # the first rows skipped, with why
        own_endpoint = config.unsubscribe_mode is UnsubscribeMode.ENDPOINT
        # a dry run needs no setup: without the secret its links are signed with a throwaway one
        self.stand_in_secret = own_endpoint and options.dry_run and not self.environ.get(unsubscribe.SECRET_ENV)
        if self.stand_in_secret:
            self.secret = secrets.token_bytes(32)
        else:
            self.secret = unsubscribe.load_secret(self.environ) if own_endpoint else b""
        self.slug = self.issue.slug
        self.rendered: Rendered | None = None  # set by prepare() or dry_run()
        self.personalizer: Personalizer | None = None  # likewise
        self.check_errors: list[str] = []
        self.batch_id: str | None = None  # SendGrid's batch id of a scheduled send
        self.stop = threading.Event()
        self.api: SendGrid | None = None
        self._lock: SendLock | None = None

    def __enter__(self) -> Sender:
        self.store = Store.for_config(self.config)
        self.journal = Journal(self.store, self.slug, lease=self.lease)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.close()
        self.store.close()

    def _connect(self) -> SendGrid:
        key = self.environ.get(KEY_ENV, "")
        if not key:
            raise SendError(f"{KEY_ENV} is not set: sending needs a SendGrid API key with the Mail Send scope")
        return SendGrid(key, self.config.sendgrid_host, timing=self.timing, stop=self.stop)

    @property
    def timing(self) -> Timing:
        return Timing.from_environ(self.environ)

    def _take_lock(self) -> None:
        try:
            self._lock = self.store.send_lock(self.slug)
        except LockHeld as held:
            raise SendError(f"another 'newsletter send' of {self.slug} is running{held.where}") from None

    def render(self) -> tuple[Rendered, list[str]]:
        """The email and its check errors, rendered here (the dry run does)."""
        return render_and_check(*self._render_args())

    def _render_args(self) -> tuple[Issue, Config, frozenset[str] | None, Path]:
        return self.issue, self.config, self.columns, self.list_path

    def _sync(self) -> dict[str, int] | None:
        """SendGrid's suppressions into the store, on a connection of its own (it runs in a thread)."""
        if not self.options.sync:
            return None
        assert self.api is not None
        with Store.for_config(self.config) as store:
            with contextlib.suppress(SendGridError):  # kept for later; it stops no send
                suppressions.push_pending(store, self.api)
            return suppressions.sync(store, self.api, self.config.unsubscribe_group_id)

    def accept(self, rendered: Rendered, check_errors: list[str]) -> None:
        """Refuse an email with check errors unless --force (a dry run, which sends nothing,
        reports them instead); else get ready to personalize it."""
        if check_errors and not self.options.force and not self.options.dry_run:
            count = len(check_errors)
            raise SendError(
                f"{count} error{'s' * (count != 1)} found by 'newsletter check {self.issue_path}' "
                f"(first: {check_errors[0]}); fix them, or pass --force to send anyway"
            )
        self.rendered, self.check_errors = rendered, check_errors
        self.personalizer = Personalizer(rendered.fields, unsubscribe.linker(self.config, self.secret), self.config)

    # --- planning ----------------------------------------------------------------------------

    def prepare(self) -> Plan:
        """Render and check the email, sync, read the list, and write every recipient still to be
        sent as pending; the first two run beside the reading, and a failure of either discards
        what this run wrote."""
        self.api = self._connect()
        self._take_lock()
        self._check_schedule()
        with Child(render_and_check, *self._render_args()) as rendering, ThreadPoolExecutor(1) as background:
            run = self.journal.start_run(self.issue.subject, str(self.list_path.resolve()))
            if self.options.retry_failed:
                self.journal.requeue(FAILED)
            if self.options.resend_uncertain:
                self.journal.requeue(UNCERTAIN)
            reader = ListReader(self.list_path, self.kept, self.budget)
            gate = self.consent_gate()
            syncing: Future[dict[str, int] | None] | None = None

            def rendered_then_sync() -> Future[dict[str, int] | None]:
                """Once the email has passed the check, sync with SendGrid while the list is read."""
                nonlocal syncing
                if syncing is None:
                    self.accept(*rendering.result())
                    syncing = background.submit(self._sync)
                return syncing

            signed_up = 0

            def chunks() -> Iterator[list[tuple[str, str]]]:
                nonlocal signed_up
                for chunk in itertools.chain(reader, self._signups()):
                    if rendering.ready():
                        rendered_then_sync()
                    if syncing is not None and syncing.done() and syncing.exception():
                        syncing.result()  # a refused key: stop reading now
                    if isinstance(chunk, SignupChunk):
                        signed_up += len(chunk)
                    if gate is not None:
                        refused = gate.refused([key for key, _ in chunk])
                        chunk = [(key, record) for key, record in chunk if key not in refused]
                    yield chunk

            try:
                new, listed = self.journal.add(chunks(), run)
                learned = rendered_then_sync().result()
            except BaseException:
                self.stop.set()  # cuts short any retry wait of the sync
                self.journal.discard(run)
                raise
        self._refuse_foreign_pending(run)
        self.refused = reader.refused
        counts = subscribers.Counts()
        counts.invalid = reader.invalid
        counts.unsubscribed = reader.unsubscribed
        gated = sum(gate.skipped.values()) if gate is not None else 0
        counts.duplicates = reader.valid + signed_up - listed - gated
        counts.suppressed, dropped = self.journal.settle(run)
        counts.valid = listed - counts.suppressed
        counts.rows = counts.invalid + counts.unsubscribed + counts.duplicates + listed + gated
        state = self.journal.counts()
        plan = self.plan_for(state, counts, new, learned, run)
        plan.dropped = dropped
        plan.in_flight_left = state[IN_FLIGHT]
        if gate is not None:
            plan.no_consent, plan.consent_lapsed = gate.no_consent, gate.lapsed
        # rows this run did not list were all sent to, or tried, before; they stay as they are
        if sum(state.values()) > counts.valid:
            plan.sent_elsewhere = self.journal.sent_elsewhere(run)
        plan.already_sent -= plan.sent_elsewhere
        return plan

    def _signups(self) -> Iterator[SignupChunk]:
        """Confirmed signups, after the list: a row of the list wins for the same address."""
        chunk = SignupChunk()
        for signup in signups.confirmed(self.store):
            fields = {"first_name": signup.first_name} if signup.first_name and "first_name" in self.kept else {}
            chunk.append((signup.email, journal_record(signup.address, signup.first_name, fields)))
            if len(chunk) == CHUNK:
                yield chunk
                chunk = SignupChunk()
        if chunk:
            yield chunk

    def consent_gate(self) -> Gate | None:
        """With [consent] require, who may be mailed is decided at the send time (--at's, or now)."""
        if not self.config.consent_require:
            return None
        return Gate(self.store, self.options.send_at or dt.datetime.now(dt.UTC))

    def _refuse_foreign_pending(self, run: int) -> None:
        """Pending recipients an earlier run read from another list are never dropped unasked."""
        if run == 1:
            return  # the first run of an issue: nothing earlier can be pending
        current = self.journal.list_of(run)
        foreign = {name: count for name, count in self.journal.stale(run).items() if name != current}
        if not foreign or self.options.drop_pending:
            return
        self.journal.discard(run)
        name = max(foreign, key=lambda listed: foreign[listed])
        total = sum(foreign.values())
        where = f"came from {display_path(Path(name))}" if name else "came from a list that was not recorded"
        finish = f"finish that send with 'newsletter send {self.issue_path} --list {display_path(Path(name))}'"
        raise SendError(
            f"{total:,} pending recipient{'s' * (total != 1)} of an earlier send of this issue {where} "
            f"and {'are' if total != 1 else 'is'} not in {display_path(self.list_path)}: "
            f"{finish + ', ' if name else ''}or add --drop-pending to drop them. Nothing was sent."
        )

    def outcome_counts(self, plan: Plan) -> dict[str, int]:
        """The journal's counts, and how many of the sent are not on this run's list."""
        return {**self.journal.counts(), "sent_elsewhere": plan.sent_elsewhere}

    def confirm(self, plan: Plan) -> None:
        """The user said yes: record what this run's list held, for ``status``."""
        self.journal.record_skips(
            plan.run,
            plan.rows,
            plan.invalid,
            plan.duplicate,
            plan.suppressed,
            plan.unsubscribed,
            plan.no_consent,
            plan.consent_lapsed,
        )

    def plan_for(
        self,
        state: dict[str, int],
        counts: subscribers.Counts,
        new: int,
        learned: dict[str, int] | None,
        run: int,
    ) -> Plan:
        pending = state[PENDING]
        to_send = min(pending, self.options.limit) if self.options.limit is not None else pending
        size = self.options.batch_size
        assert self.rendered is not None
        return Plan(
            slug=self.slug,
            subject=self.rendered.subject,
            sender=f"{self.config.from_name} <{self.config.from_email}>",
            mode=self.config.unsubscribe_mode,
            to_send=to_send,
            new=new,
            already_sent=state[SENT],
            invalid=counts.invalid,
            duplicate=counts.duplicates,
            suppressed=counts.suppressed,
            failed_left=state[FAILED],
            uncertain_left=state[UNCERTAIN],
            batches=-(-to_send // size),
            send_at=self.options.send_at,
            learned=learned,
            run=run,
            rows=counts.rows,
            unsubscribed=counts.unsubscribed,
        )

    def decline(self, plan: Plan) -> None:
        self.journal.discard(plan.run)

    # --- sending -----------------------------------------------------------------------------

    def run(self, plan: Plan, on_batch: Callable[[Progress], None] | None = None) -> Outcome:
        """Send the pending recipients; stop early (cleanly) when ``self.stop`` is set.

        Requests are built and posted by worker processes (so a send uses every core), each with
        a few threads (so up to ``concurrency`` requests are in flight); this process alone
        takes batches from the journal and records the answers.
        """
        assert self.api is not None, "prepare() first"
        self.confirm(plan)
        if plan.to_send:
            self._schedule()
        outcome = Outcome()
        budget = plan.to_send
        inflight: dict[int, int] = {}  # batch id -> recipients
        renewed = time.monotonic()
        with Workers(self.worker_spec(), self.options.concurrency) as workers:
            while True:
                if self.stop.is_set():
                    workers.stop.set()
                if inflight and time.monotonic() - renewed > self.lease / 3:
                    self.journal.renew()
                    renewed = time.monotonic()
                while (
                    not self.stop.is_set()
                    and outcome.error is None
                    and budget > 0
                    and len(inflight) < self.options.concurrency
                ):
                    batch = self.journal.next_batch(min(self.options.batch_size, budget))
                    if batch is None:
                        budget = 0
                        break
                    budget -= batch.size
                    inflight[batch.id] = batch.size
                    workers.tasks.put(batch)
                if not inflight:
                    break
                try:
                    answer = workers.results.get(timeout=0.2)
                except queue.Empty:
                    workers.check()
                    continue
                self._record(answer, inflight.pop(answer.batch), outcome, plan.to_send, on_batch)
        outcome.stopped = self.stop.is_set()
        outcome.counts = self.outcome_counts(plan)
        return outcome

    def worker_spec(self) -> WorkerSpec:
        assert self.personalizer is not None
        return WorkerSpec(
            store=self.store.where,
            slug=self.slug,
            api_key=self.environ.get(KEY_ENV, ""),
            host=self.config.sendgrid_host,
            timing=self.timing,
            envelope=self.envelope(),
            personalizer=self.personalizer,
            threads=1,
            parent=os.getpid(),
        )

    def envelope(self) -> dict[str, Any]:
        assert self.rendered is not None
        return envelope(self.config, self.rendered, self.options.send_at, self.batch_id)

    def _check_schedule(self) -> None:
        """A resume of a scheduled send keeps its time: its batch id, which cancels it, covers one time."""
        schedule = self.journal.schedule()
        if schedule is None or schedule.cancelled_at:
            return
        when = dt.datetime.fromisoformat(schedule.send_at)
        if when <= dt.datetime.now(dt.UTC):
            return  # sent by now; what is left goes now, or at a new time
        if self.options.send_at is None or self.options.send_at != when:
            shown = when.astimezone().isoformat(timespec="minutes")
            raise SendError(
                f"this issue is already scheduled for {shown}: resume with --at {shown}, or first "
                f"'newsletter cancel {self.issue_path}'"
            )
        self.batch_id = schedule.batch_id

    def _schedule(self) -> None:
        """A new scheduled send gets SendGrid's batch id before its first request."""
        if self.options.send_at is None or self.batch_id is not None:
            return
        assert self.api is not None
        self.batch_id = self.api.create_batch()
        self.journal.set_schedule(self.batch_id, self.options.send_at.astimezone(dt.UTC).isoformat())

    def _record(
        self, answer: Answer, size: int, outcome: Outcome, total: int, on_batch: Callable[[Progress], None] | None
    ) -> None:
        if answer.outcome == CRASHED:
            raise RuntimeError(f"a send worker failed on batch {answer.batch}: {answer.message}")
        if answer.outcome in (STOPPED, REFUSED):  # provably not accepted: pending again
            self.journal.release(answer.batch)
            if answer.outcome == REFUSED:
                outcome.error = outcome.error or SendGridError(answer.message, answer.status)
                self.stop.set()
            return
        if answer.outcome == FAILED:
            self.journal.finish(answer.batch, FAILED, error=answer.message)
            outcome.failed += size
        elif answer.outcome == UNCERTAIN:
            self.journal.finish(answer.batch, UNCERTAIN, error=answer.message)
            outcome.uncertain += size
        else:
            self.journal.finish(answer.batch, SENT, message_id=answer.message)
            outcome.sent += size
        if on_batch:
            error = "" if answer.outcome == SENT else answer.message
            progress = Progress(answer.batch, size, answer.outcome, error, outcome.sent, outcome.failed, total)
            on_batch(replace(progress, uncertain=outcome.uncertain))


def lease_from(environ: Mapping[str, str]) -> float:
    """How long a batch in flight stays a send's without a renewal (NEWSLETTER_SEND_LEASE
    shortens it in tests)."""
    try:
        return max(0.5, float(environ.get(LEASE_ENV, LEASE)))
    except ValueError:
        raise SendError(f"{LEASE_ENV} must be a number of seconds") from None


def render_and_check(
    issue: Issue, config: Config, columns: frozenset[str] | None, list_path: Path
) -> tuple[Rendered, list[str]]:
    """The email, and the errors `newsletter check` finds in it. A send runs it in a child
    process while the list is read: importing and running mjml and premailer takes about half
    a second."""
    from newsletter_cli import check

    rendered = render(issue, config, columns)
    if len(rendered.html.encode()) + len(rendered.text.encode()) > MAX_CONTENT_BYTES:
        raise SendError("the email is over 10 MB; SendGrid takes at most 30 MB for a batch of recipients")
    findings, _ = check.findings(issue, rendered, config, list_path, read_list=False)
    return rendered, [str(f) for f in findings if f.level == check.ERROR]
