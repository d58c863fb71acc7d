"""`newsletter send`: list -> suppressions -> journal -> batches -> SendGrid, exactly once.

The issue is rendered once; each recipient gets only substitutions (their merge values, escaped
for the html part, and their unsubscribe link) and, in own-endpoint mode, their one-click
headers. The journal (see journal.py) makes a crashed or stopped send resumable without mailing
anyone twice. Requests run ``concurrency`` at a time, in the threads of worker processes that
only read the journal; the parent process alone writes it, so its record stays exact.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import gc
import html
import json
import multiprocessing
import os
import queue
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from newsletter_cli import merge, subscribers, suppressions, unsubscribe
from newsletter_cli.config import Config
from newsletter_cli.errors import NewsletterError, SubscriberError, display_path
from newsletter_cli.issue import load_issue
from newsletter_cli.journal import (
    FAILED,
    IN_FLIGHT,
    PAIR,
    PENDING,
    SENT,
    UNCERTAIN,
    UNIT,
    Batch,
    Journal,
    Recipient,
    decode,
)
from newsletter_cli.journal import record as journal_record
from newsletter_cli.merge import HTML_CONTEXT, TEXT_CONTEXT
from newsletter_cli.render import Rendered, issue_fields, render
from newsletter_cli.sendgrid_api import KEY_ENV, RETRY_STATUSES, SendGrid, SendGridError, Stopped, Timing, Uncertain
from newsletter_cli.store import DB_NAME, Store

MAX_BATCH = 1000  # SendGrid: personalizations (and recipients) per request
UNSUBSCRIBE = merge.UNSUBSCRIBE_FIELD
MAX_WORKERS = 2  # processes building requests; each runs several request threads
MAX_CONTENT_BYTES = 10 * 1024 * 1024  # html + text, leaving room under the 30 MB request limit
MAX_SCHEDULE = dt.timedelta(hours=72)
SHOWN_REFUSALS = 10  # invalid rows named in a send's summary; `subscribers check` lists them all
BATCH_ERRORS = (400, 413)  # SendGrid refused this batch's content: the other batches may go on
NEEDS_ESCAPE = re.compile(r"[&<>\"']")  # most values need no escaping: skip html.escape for them


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


@dataclass
class Plan:
    """What a send will do, shown to the user before anything leaves."""

    slug: str
    subject: str
    sender: str
    mode: str
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
    dropped: int = 0  # pending recipients of an earlier run that are no longer on the list
    sent_elsewhere: int = 0  # recipients sent by an earlier run whom this run's list lacks


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


def category(slug: str) -> str:
    """SendGrid categories must be ASCII."""
    return re.sub(r"[^\x20-\x7e]", "-", slug)[:255] or "newsletter"


class Sender:
    """One send of one issue. Use as a context manager: it holds the issue's send lock."""

    def __init__(
        self, config: Config, issue_path: Path, options: SendOptions, environ: Mapping[str, str] | None = None
    ):
        self.config = config
        self.options = options
        self.environ = os.environ if environ is None else environ
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
        self.secret = unsubscribe.load_secret(self.environ) if config.unsubscribe_mode == "endpoint" else b""
        self.slug = self.issue.slug
        self.rendered: Rendered | None = None  # set by prepare() or dry_run()
        self.check_errors: list[str] = []
        self._tokens: list[tuple[str, str, str, str]] = []
        self._own_endpoint = config.unsubscribe_mode == "endpoint"
        self._link = unsubscribe.linker(config, self.secret)
        self._list_unsubscribe_tail = unsubscribe.list_unsubscribe_tail(config)
        self.stop = threading.Event()
        self.api: SendGrid | None = None
        self._lock: Any = None

    def __enter__(self) -> Sender:
        self.store = Store.for_folder(self.config.state_dir)
        self.journal = Journal(self.store, self.slug)
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
        path = self.config.state_dir / f"send-{self.slug}.lock"
        handle = path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise SendError(f"another 'newsletter send' of {self.slug} is running") from None
        self._lock = handle

    # --- rendering ---------------------------------------------------------------------------

    def _render(self) -> tuple[Rendered, list[str]]:
        """The email, and the errors `newsletter check` finds in it. Runs in a child process
        during prepare(): importing and running mjml and premailer takes about half a second."""
        from newsletter_cli import lint

        rendered = render(self.issue, self.config, self.columns)
        if len(rendered.html.encode()) + len(rendered.text.encode()) > MAX_CONTENT_BYTES:
            raise SendError("the email is over 10 MB; SendGrid takes at most 30 MB for a batch of recipients")
        findings, _ = lint.findings(self.issue, rendered, self.config, self.list_path, read_list=False)
        return rendered, [str(f) for f in findings if f.level == lint.ERROR]

    def _sync(self) -> dict[str, int] | None:
        """SendGrid's suppressions into the store, on a connection of its own (it runs in a thread)."""
        if not self.options.sync:
            return None
        assert self.api is not None
        with Store.for_folder(self.config.state_dir) as store:
            with contextlib.suppress(SendGridError):  # kept for later; it stops no send
                suppressions.push_pending(store, self.api)
            return suppressions.sync(store, self.api, self.config.unsubscribe_group_id)

    def _accept(self, rendered: Rendered, check_errors: list[str]) -> None:
        """Refuse an email with check errors unless --force; else get ready to personalize it."""
        if check_errors and not self.options.force:
            count = len(check_errors)
            raise SendError(
                f"{count} error{'s' * (count != 1)} found by 'newsletter check {self.issue_path}' "
                f"(first: {check_errors[0]}); fix them, or pass --force to send anyway"
            )
        self.rendered, self.check_errors = rendered, check_errors
        self._tokens = [
            (f.name, f.default or "", "" if f.safe else f.token(HTML_CONTEXT), f.token(TEXT_CONTEXT))
            for f in rendered.fields
        ]

    # --- planning ----------------------------------------------------------------------------

    def prepare(self) -> Plan:
        """Render and check the email, sync, read the list, and write every recipient still to be
        sent as pending; the first two run beside the reading, and a failure of either discards
        what this run wrote."""
        self.api = self._connect()
        self._take_lock()
        with _Child(self._render, self._lock) as rendering, ThreadPoolExecutor(1) as background:
            run = self.journal.start_run(self.issue.subject, str(self.list_path.resolve()))
            if self.options.retry_failed:
                self.journal.requeue(FAILED)
            if self.options.resend_uncertain:
                self.journal.requeue(UNCERTAIN)
            reader = _ListReader(self.list_path, self.kept, self._lock, self.budget)
            syncing: Future[dict[str, int] | None] | None = None

            def rendered_then_sync() -> Future[dict[str, int] | None]:
                """Once the email has passed the check, sync with SendGrid while the list is read."""
                nonlocal syncing
                if syncing is None:
                    self._accept(*rendering.result())
                    syncing = background.submit(self._sync)
                return syncing

            def chunks() -> Iterator[list[tuple[str, str]]]:
                for chunk in reader:
                    if rendering.ready():
                        rendered_then_sync()
                    if syncing is not None and syncing.done() and syncing.exception():
                        syncing.result()  # a refused key: stop reading now
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
        counts.duplicates = reader.valid - listed
        counts.suppressed, dropped = self.journal.settle(run)
        counts.valid = listed - counts.suppressed
        counts.rows = counts.invalid + counts.duplicates + listed
        state = self.journal.counts()
        plan = self._plan(state, counts, new, learned, run)
        plan.dropped = dropped
        # rows this run did not list were all sent to, or tried, before; they stay as they are
        if sum(state.values()) > counts.valid:
            plan.sent_elsewhere = self.journal.sent_elsewhere(run)
        plan.already_sent -= plan.sent_elsewhere
        return plan

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
        self.journal.record_skips(plan.run, plan.rows, plan.invalid, plan.duplicate, plan.suppressed)

    def _plan(
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
        outcome = Outcome()
        budget = plan.to_send
        inflight: dict[int, int] = {}  # batch id -> recipients
        with _Workers(self) as workers:
            while True:
                if self.stop.is_set():
                    workers.stop.set()
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

    def _record(
        self, answer: _Answer, size: int, outcome: Outcome, total: int, on_batch: Callable[[Progress], None] | None
    ) -> None:
        if answer.outcome == "crashed":
            raise RuntimeError(f"a send worker failed on batch {answer.batch}: {answer.message}")
        if answer.outcome in ("stopped", "refused"):  # provably not accepted: pending again
            self.journal.release(answer.batch)
            if answer.outcome == "refused":
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

    # --- payloads ----------------------------------------------------------------------------

    def envelope(self) -> dict[str, Any]:
        assert self.rendered is not None
        return envelope(self.config, self.rendered, self.options.send_at)

    def payload(self, envelope: dict[str, Any], records: Iterable[str]) -> dict[str, Any]:
        return {**envelope, "personalizations": [self.personalization(r) for r in records]}

    def personalization(self, record: str) -> dict[str, Any]:
        """One recipient's part of a request, from their journal record: the hot loop of a send,
        kept lean on purpose (``merge.substitutions`` says the same thing more slowly)."""
        email, name, *pairs = record.split(UNIT)
        fields = {}
        for pair in pairs:
            key, value = pair.split(PAIR, 1)
            fields[key] = value
        link = self._link(email)
        substitutions = {}
        for field_name, default, html_token, text_token in self._tokens:
            if field_name == UNSUBSCRIBE:
                value = link
            elif field_name == "email":
                value = email
            else:
                value = fields.get(field_name) or default
            if html_token:
                substitutions[html_token] = html.escape(value) if NEEDS_ESCAPE.search(value) else value
            substitutions[text_token] = value
        entry: dict[str, Any] = {
            "to": [{"email": email, "name": name} if name else {"email": email}],
            "substitutions": substitutions,
        }
        if self._own_endpoint:
            entry["headers"] = {"List-Unsubscribe": f"<{link}>{self._list_unsubscribe_tail}"}
        return entry

    # --- dry run -----------------------------------------------------------------------------

    def dry_run(self, out_dir: Path) -> tuple[Plan, int]:
        """Everything but the requests: payloads and a sample .eml in ``out_dir``; no journal."""
        self._accept(*self._render())
        counts = subscribers.Counts()
        columns = self.kept
        envelope = self.envelope()
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
        try:
            batch: list[str] = []
            files = 0
            to_send = 0
            for chunk in _valid_chunks(self.list_path, self.store, counts, self.budget, self.refused):
                done = self.journal.sent_among([row.key for row in chunk])
                for row in chunk:
                    if row.key in done or (self.options.limit is not None and to_send >= self.options.limit):
                        continue
                    to_send += 1
                    batch.append(journal_record(row.email, row.name, {k: row.fields.get(k, "") for k in columns}))
                    if to_send == 1:
                        self._write_sample(staging / "sample.eml", decode(batch[0]))
                    if len(batch) == self.options.batch_size:
                        files += 1
                        _write_json(staging / f"batch-{files:04d}.json", self.payload(envelope, batch))
                        batch = []
            if batch:
                files += 1
                _write_json(staging / f"batch-{files:04d}.json", self.payload(envelope, batch))
            if out_dir.exists():
                shutil.rmtree(out_dir)
            staging.rename(out_dir)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        state = self.journal.counts()
        plan = self._plan(state, counts, 0, None, 0)
        plan.to_send, plan.batches = to_send, files
        return plan, files

    def _write_sample(self, path: Path, recipient: Recipient) -> None:
        from newsletter_cli.mime import build_message, to_bytes

        assert self.rendered is not None
        link = unsubscribe.link(self.config, self.secret, recipient.email)
        message = self.rendered.personalize({**recipient.fields, "email": recipient.email, "unsubscribe_url": link})
        headers = unsubscribe.headers(self.config, link) if self.config.unsubscribe_mode == "endpoint" else {}
        mail = build_message(self.config, message, recipient.email, recipient.name, headers)
        path.write_bytes(to_bytes(mail))


@dataclass(frozen=True)
class _Answer:
    """What a worker reports for a batch: sent (message = SendGrid's message id); failed
    (SendGrid refused this batch); uncertain (the answer was lost: perhaps accepted); refused
    (never accepted, and the send must stop: a bad key, no SendGrid at the host); stopped (never
    accepted: the send is stopping); or crashed (a bug, raised again in the parent)."""

    batch: int
    outcome: str
    status: int | None = None
    message: str = ""


def _forked(lock: Any) -> None:
    """What each process a send forks does first: leave Ctrl-C to the parent; let go of the send
    lock (else one orphaned by a kill -9 keeps later sends locked out: the lock lasts while any
    process holds it open); freeze what it inherited, which the collector need not walk again."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if lock is not None:
        lock.close()
    gc.freeze()


class _Workers:
    """Processes that build and post batches; forked, so they share the rendered issue and the
    secret without either being written anywhere."""

    def __init__(self, sender: Sender):
        context = multiprocessing.get_context("fork")
        count = max(1, min(sender.options.concurrency, os.cpu_count() or 1, MAX_WORKERS))
        threads = -(-sender.options.concurrency // count)
        self.tasks: Any = context.Queue()
        self.results: Any = context.Queue()
        self.stop = context.Event()
        parent = os.getpid()
        self.processes = [
            context.Process(
                target=_work,
                args=(sender, self.tasks, self.results, self.stop, threads, parent),
                daemon=True,
                name=f"newsletter-send-{n}",
            )
            for n in range(count)
        ]

    def __enter__(self) -> _Workers:
        for process in self.processes:
            process.start()
        return self

    def check(self) -> None:
        dead = [p for p in self.processes if not p.is_alive()]
        if dead:
            raise RuntimeError(f"a send worker exited unexpectedly (exit code {dead[0].exitcode})")

    def __exit__(self, *exc: object) -> None:
        for _ in self.processes:
            self.tasks.put(None)
        for process in self.processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()


def _work(sender: Sender, tasks: Any, results: Any, stop: Any, threads: int, parent: int) -> None:
    """A worker process: take batches, build each request, post it, report the answer."""
    _forked(sender._lock)
    api = SendGrid(sender.environ.get(KEY_ENV, ""), sender.config.sendgrid_host, timing=sender.timing, stop=stop)
    envelope = sender.envelope()
    local = threading.local()
    idle = threading.Semaphore(threads)  # take a batch only when a thread is free to post it at once

    def post(batch: Batch) -> None:
        try:
            if os.getppid() != parent:  # the parent was killed: its journal already calls this batch uncertain
                return
            _post(batch)
        finally:
            idle.release()

    def _post(batch: Batch) -> None:
        try:
            if not hasattr(local, "journal"):
                local.journal = Journal(Store(sender.store.path, readonly=True), sender.slug)
            payload = sender.payload(envelope, local.journal.records(batch))
            results.put(_Answer(batch.id, "sent", message=api.send_mail(payload)))
        except Stopped:
            results.put(_Answer(batch.id, "stopped"))
        except Uncertain as exc:
            results.put(_Answer(batch.id, UNCERTAIN, exc.status, exc.message))
        except SendGridError as exc:  # an answer that says SendGrid did not take the batch
            failed = exc.status in BATCH_ERRORS or exc.status in RETRY_STATUSES
            results.put(_Answer(batch.id, FAILED if failed else "refused", exc.status, exc.message))
        except Exception as exc:  # not hidden: the parent raises it again
            results.put(_Answer(batch.id, "crashed", message=repr(exc)))

    with ThreadPoolExecutor(threads, thread_name_prefix="sendgrid") as pool:
        while True:
            batch = _take(tasks, idle)
            if batch is None:
                break
            if batch is _NOTHING:
                if os.getppid() != parent:  # the parent was killed: finish what is in flight, then go
                    break
                continue
            pool.submit(post, batch)


_NOTHING = object()


def _take(tasks: Any, idle: threading.Semaphore) -> Any:
    """The next batch once a thread is idle (holding it for the batch), or _NOTHING after a wait."""
    if not idle.acquire(timeout=0.5):
        return _NOTHING
    try:
        return tasks.get(timeout=0.5)
    except queue.Empty:
        idle.release()
        return _NOTHING


class _Child:
    """Runs ``target`` in a forked process (with the send lock closed in it) while this one goes
    on; ``result()`` returns its value or raises its NewsletterError here."""

    def __init__(self, target: Callable[[], Any], lock: Any):
        self.target = target
        self.lock = lock
        self._answer: tuple[str, Any] | None = None

    def __enter__(self) -> _Child:
        context = multiprocessing.get_context("fork")
        self._receive, send = context.Pipe(duplex=False)
        self.process = context.Process(target=self._run, args=(send,), daemon=True)
        self.process.start()
        send.close()
        return self

    def _run(self, send: Any) -> None:
        _forked(self.lock)
        try:
            send.send(("ok", self.target()))
        except NewsletterError as exc:
            send.send(("error", exc))
        except Exception as exc:  # a bug: raised again in the parent, not hidden
            send.send(("crashed", repr(exc)))

    def ready(self) -> bool:
        """Whether the child has answered, or died (without waiting)."""
        return self._answer is not None or self._receive.poll()

    def result(self) -> Any:
        if self._answer is None:
            try:
                self._answer = self._receive.recv()
            except EOFError:
                self.process.join(timeout=1)
                code = self.process.exitcode
                raise RuntimeError(f"the render process exited unexpectedly (exit code {code})") from None
        kind, value = self._answer
        if kind == "error":
            raise value
        if kind == "crashed":
            raise RuntimeError(f"rendering failed: {value}")
        return value

    def __exit__(self, *exc: object) -> None:
        self._receive.close()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


class _ListReader:
    """Reads and validates the list in a second process while this one writes the journal, so
    planning a large send uses two cores. Yields chunks of (key, journal record)."""

    def __init__(self, path: Path, kept: list[str], lock: Any = None, budget: merge.Budget | None = None):
        self.path = path
        self.kept = kept
        self.lock = lock
        self.budget = budget
        self.valid = 0
        self.invalid = 0
        self.refused: list[subscribers.Refused] = []

    def __iter__(self) -> Iterator[list[tuple[str, str]]]:
        context = multiprocessing.get_context("fork")
        chunks: Any = context.Queue(maxsize=8)  # bounded: memory stays flat however long the list
        args = (self.path, self.kept, chunks, os.getpid(), self.lock, self.budget)
        process = context.Process(target=_read_list, args=args, daemon=True)
        process.start()
        finished = False
        try:
            while True:
                try:
                    kind, payload = chunks.get(timeout=1)
                except queue.Empty:
                    if not process.is_alive():
                        raise RuntimeError(
                            f"the list reader exited unexpectedly (exit code {process.exitcode})"
                        ) from None
                    continue
                if kind == "rows":
                    yield payload
                elif kind == "error":
                    raise SubscriberError(payload)
                else:
                    self.valid, self.invalid, self.refused = payload
                    finished = True
                    return
        finally:
            if not finished:  # stopped early (an error here or in the render): nobody reads the rest
                process.kill()
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


def _read_list(path: Path, kept: list[str], out: Any, parent: int, lock: Any, budget: merge.Budget | None) -> None:
    _forked(lock)

    def hand_over(item: tuple[str, Any]) -> None:
        while True:
            try:
                out.put(item, timeout=1)
                return
            except queue.Full:
                if os.getppid() != parent:  # the parent was killed: nobody will read
                    os._exit(0)

    valid = invalid = 0
    refused: list[subscribers.Refused] = []
    records: list[tuple[str, str]] = []
    try:
        for found in subscribers.addresses(path, kept, budget):
            if isinstance(found, subscribers.Refused):
                invalid += 1
                if len(refused) < SHOWN_REFUSALS:
                    refused.append(found)
                continue
            valid += 1
            email, name, values = found
            records.append((email.lower(), journal_record(email, name, values)))
            if len(records) == 1000:
                hand_over(("rows", records))
                records = []
    except NewsletterError as exc:
        hand_over(("error", exc.message))
        return
    if records:
        hand_over(("rows", records))
    hand_over(("done", (valid, invalid, refused)))


def envelope(config: Config, rendered: Rendered, send_at: dt.datetime | None = None) -> dict[str, Any]:
    """What every request of a send shares: one html and one text content."""
    body: dict[str, Any] = {
        "from": {"email": config.from_email, "name": config.from_name},
        "subject": rendered.subject,
        "content": [
            {"type": "text/plain", "value": rendered.text},
            {"type": "text/html", "value": rendered.html},
        ],
        "categories": [category(rendered.slug)],
        "custom_args": {"newsletter_issue": rendered.slug},
    }
    if config.reply_to:
        body["reply_to"] = {"email": config.reply_to}
    if config.unsubscribe_group_id is not None:
        body["asm"] = {"group_id": config.unsubscribe_group_id}
    else:  # our own link and headers; SendGrid must not add its own
        body["tracking_settings"] = {"subscription_tracking": {"enable": False}}
        body["headers"] = dict(unsubscribe.ONE_CLICK_HEADER)  # with each recipient's List-Unsubscribe
    if send_at:
        body["send_at"] = int(send_at.timestamp())
    return body


def send_test(
    config: Config,
    issue_path: Path,
    to: str,
    list_path: Path | None = None,
    as_email: str | None = None,
    sample: int = 0,
    environ: Mapping[str, str] | None = None,
) -> str:
    """One copy to any address, "[TEST]" before the subject, filled for a sample subscriber.

    Its unsubscribe link (and List-Unsubscribe header) is signed for the test address and works:
    a tester who tries it unsubscribes the test address, as a recipient would theirs."""
    environ = os.environ if environ is None else environ
    key = environ.get(KEY_ENV, "")
    if not key:
        raise SendError(f"{KEY_ENV} is not set: a test send goes through SendGrid and needs an API key")
    try:
        address = subscribers.normalize_address(to)
    except ValueError as exc:
        raise SendError(f"invalid test address {to!r}: {exc}") from None
    own_endpoint = config.unsubscribe_mode == "endpoint"
    link = unsubscribe.link(config, unsubscribe.load_secret(environ) if own_endpoint else b"", address)
    from newsletter_cli import build

    rows = build.sample_rows(config, list_path, as_email)
    row = {**rows[min(max(sample, 0), len(rows) - 1)], "email": address, "unsubscribe_url": link}
    columns = subscribers.columns_if_listed(list_path or config.subscribers_path)
    rendered = render(load_issue(issue_path), config, columns)
    values = {
        **merge.substitutions(TEXT_CONTEXT, rendered.fields, row),
        **merge.substitutions(HTML_CONTEXT, rendered.fields, row),
    }
    person: dict[str, Any] = {"to": [{"email": address}], "substitutions": values}
    if own_endpoint:
        person["headers"] = {"List-Unsubscribe": unsubscribe.list_unsubscribe(config, link)}
    payload = {**envelope(config, rendered), "subject": "[TEST] " + rendered.subject, "personalizations": [person]}
    SendGrid(key, config.sendgrid_host, timing=Timing.from_environ(environ)).send_mail(payload)
    return address


def _valid_chunks(
    path: Path, store: Store, counts: subscribers.Counts, budget: merge.Budget, refused: list[subscribers.Refused]
) -> Iterator[list[subscribers.Row]]:
    chunk: list[subscribers.Row] = []
    for row in subscribers.scan(path, store.suppressed_among, budget):
        counts.add(row)
        if row.status == subscribers.INVALID and len(refused) < SHOWN_REFUSALS:
            refused.append(subscribers.Refused(row.line, row.reason))
        if row.status == subscribers.VALID:
            chunk.append(row)
            if len(chunk) == 500:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """The bytes the sendgrid client posts (it serialises with plain json.dumps)."""
    path.write_bytes(json.dumps(payload).encode("utf-8"))


# --- status ----------------------------------------------------------------------------------


def status(config: Config, slug: str) -> dict[str, Any]:
    """The seven counts (integers), then the time of the last batch and the failed batches.

    sent + pending + failed + uncertain + suppressed + invalid + duplicate = rows + not_on_list:
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
    path = config.state_dir / f"send-{slug}.lock"
    if not path.exists():
        return False
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False
