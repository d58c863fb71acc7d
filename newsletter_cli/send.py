"""`newsletter send`: list -> suppressions -> journal -> batches -> SendGrid, exactly once.

The issue is rendered once; each recipient gets only substitutions (their merge values, escaped
for the html part, and their unsubscribe link) and, in own-endpoint mode, their one-click
headers. The journal (see journal.py) makes a crashed or stopped send resumable without mailing
anyone twice. Requests run ``concurrency`` at a time in threads; only this thread writes the
journal, so its record stays exact.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import html
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from newsletter_cli import build, merge, subscribers, suppressions, unsubscribe
from newsletter_cli.config import Config
from newsletter_cli.errors import NewsletterError
from newsletter_cli.issue import load_issue
from newsletter_cli.journal import FAILED, IN_FLIGHT, PENDING, SENT, UNCERTAIN, Batch, Journal, Recipient
from newsletter_cli.merge import HTML_CONTEXT, TEXT_CONTEXT
from newsletter_cli.mime import build_message
from newsletter_cli.render import Rendered, render
from newsletter_cli.sendgrid_api import KEY_ENV, SendGrid, SendGridError, Stopped
from newsletter_cli.store import Store

MAX_BATCH = 1000  # SendGrid: personalizations (and recipients) per request
MAX_CONTENT_BYTES = 10 * 1024 * 1024  # html + text, leaving room under the 30 MB request limit
MAX_SCHEDULE = dt.timedelta(hours=72)
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
    requeued: dict[str, int] = field(default_factory=dict)
    run: int = 0


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


@dataclass
class Outcome:
    sent: int = 0
    failed: int = 0
    released: int = 0
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
        self.list_path = options.list_path or config.root / "subscribers.csv"
        columns = subscribers.columns(self.list_path)
        self.rendered: Rendered = render(load_issue(issue_path), config, columns)
        if len(self.rendered.html.encode()) + len(self.rendered.text.encode()) > MAX_CONTENT_BYTES:
            raise SendError("the email is over 10 MB; SendGrid takes at most 30 MB for a batch of recipients")
        self.secret = unsubscribe.load_secret(self.environ) if config.unsubscribe_mode == "endpoint" else b""
        self.slug = self.rendered.slug
        self._tokens = [
            (f, "" if f.safe else f.token(HTML_CONTEXT), f.token(TEXT_CONTEXT)) for f in self.rendered.fields
        ]
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
        return SendGrid(key, self.config.sendgrid_host, stop=self.stop)

    def _take_lock(self) -> None:
        path = self.config.state_dir / f"send-{self.slug}.lock"
        handle = path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise SendError(f"another 'newsletter send' of {self.slug} is running") from None
        self._lock = handle

    # --- planning ----------------------------------------------------------------------------

    def prepare(self) -> Plan:
        """Sync, read the list, and write every recipient still to be sent as pending."""
        self.api = self._connect()
        self._take_lock()
        learned = None
        if self.options.sync:
            learned = suppressions.sync(self.store, self.api, self.config.unsubscribe_group_id)
        run = self.journal.start_run(self.rendered.subject)
        requeued = {}
        if self.options.retry_failed:
            requeued[FAILED] = self.journal.requeue(FAILED)
        if self.options.resend_uncertain:
            requeued[UNCERTAIN] = self.journal.requeue(UNCERTAIN)
        counts = subscribers.Counts()

        def valid_rows() -> Iterator[subscribers.Row]:
            for row in subscribers.validated(self.list_path):
                if row.status == subscribers.VALID:
                    yield row
                else:
                    counts.add(row)

        valid = _Counted(valid_rows())
        new, listed = self.journal.add(valid, run, keep=self._columns())
        counts.duplicates = valid.count - listed
        counts.suppressed = self.journal.settle(run)
        counts.valid = listed - counts.suppressed
        counts.rows = counts.invalid + counts.duplicates + listed
        self.journal.record_skips(counts.invalid, counts.duplicates, counts.suppressed)
        state = self.journal.counts()
        return self._plan(state, counts, new, learned, requeued, run)

    def _plan(
        self,
        state: dict[str, int],
        counts: subscribers.Counts,
        new: int,
        learned: dict[str, int] | None,
        requeued: dict[str, int],
        run: int,
    ) -> Plan:
        pending = state[PENDING]
        to_send = min(pending, self.options.limit) if self.options.limit is not None else pending
        size = self.options.batch_size
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
            requeued=requeued,
            run=run,
        )

    def decline(self, plan: Plan) -> None:
        self.journal.discard(plan.run)

    def _columns(self) -> list[str]:
        return sorted({f.name for f in self.rendered.issue_fields})

    # --- sending -----------------------------------------------------------------------------

    def run(self, plan: Plan, on_batch: Callable[[Progress], None] | None = None) -> Outcome:
        """Send the pending recipients; stop early (cleanly) when ``self.stop`` is set."""
        assert self.api is not None, "prepare() first"
        outcome = Outcome()
        envelope = self.envelope()
        budget = plan.to_send
        inflight: dict[Future[str], Batch] = {}
        with ThreadPoolExecutor(self.options.concurrency, thread_name_prefix="sendgrid") as pool:
            while True:
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
                    budget -= len(batch.recipients)
                    inflight[pool.submit(self.api.send_mail, self.payload(envelope, batch))] = batch
                if not inflight:
                    break
                done, _ = wait(inflight, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    self._record(future, inflight.pop(future), outcome, plan.to_send, on_batch)
        outcome.stopped = self.stop.is_set()
        outcome.counts = self.journal.counts()
        return outcome

    def _record(
        self,
        future: Future[str],
        batch: Batch,
        outcome: Outcome,
        total: int,
        on_batch: Callable[[Progress], None] | None,
    ) -> None:
        size = len(batch.recipients)
        error = ""
        try:
            message_id = future.result()
        except Stopped:
            self.journal.release(batch.id)
            outcome.released += size
            return
        except SendGridError as exc:
            if exc.status in (401, 403):
                self.journal.release(batch.id)
                outcome.released += size
                outcome.error = outcome.error or exc
                self.stop.set()
                return
            error = exc.message
            self.journal.finish(batch.id, FAILED, error=error)
            outcome.failed += size
        else:
            self.journal.finish(batch.id, SENT, message_id=message_id)
            outcome.sent += size
        if on_batch:
            on_batch(Progress(batch.id, size, FAILED if error else SENT, error, outcome.sent, outcome.failed, total))

    # --- payloads ----------------------------------------------------------------------------

    def envelope(self) -> dict[str, Any]:
        return envelope(self.config, self.rendered, self.options.send_at)

    def payload(self, envelope: dict[str, Any], batch: Batch) -> dict[str, Any]:
        return {**envelope, "personalizations": [self.personalization(r) for r in batch.recipients]}

    def personalization(self, recipient: Recipient) -> dict[str, Any]:
        """One recipient's part of a request: the hot loop of a send, so tokens are precomputed."""
        link = unsubscribe.link(self.config, self.secret, recipient.email)
        row = {**recipient.fields, "email": recipient.email, "unsubscribe_url": link}
        substitutions = {}
        for merge_field, html_token, text_token in self._tokens:
            value = merge_field.value(row)
            if html_token:
                substitutions[html_token] = html.escape(value) if NEEDS_ESCAPE.search(value) else value
            substitutions[text_token] = value
        to = {"email": recipient.email, "name": recipient.name} if recipient.name else {"email": recipient.email}
        entry: dict[str, Any] = {"to": [to], "substitutions": substitutions}
        if self.config.unsubscribe_mode == "endpoint":
            entry["headers"] = unsubscribe.headers(self.config, link)
        return entry

    # --- dry run -----------------------------------------------------------------------------

    def dry_run(self, out_dir: Path) -> tuple[Plan, int]:
        """Everything but the requests: payloads and a sample .eml in ``out_dir``; no journal."""
        counts = subscribers.Counts()
        columns = self._columns()
        envelope = self.envelope()
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
        try:
            batch: list[Recipient] = []
            files = 0
            to_send = 0
            for chunk in _valid_chunks(self.list_path, self.store, counts):
                done = self.journal.sent_among([row.key for row in chunk])
                for row in chunk:
                    if row.key in done or (self.options.limit is not None and to_send >= self.options.limit):
                        continue
                    to_send += 1
                    batch.append(Recipient(to_send, row.email, row.name, {k: row.fields.get(k, "") for k in columns}))
                    if to_send == 1:
                        self._write_sample(staging / "sample.eml", batch[0])
                    if len(batch) == self.options.batch_size:
                        files += 1
                        _write_json(staging / f"batch-{files:04d}.json", self.payload(envelope, Batch(files, batch)))
                        batch = []
            if batch:
                files += 1
                _write_json(staging / f"batch-{files:04d}.json", self.payload(envelope, Batch(files, batch)))
            if out_dir.exists():
                shutil.rmtree(out_dir)
            staging.rename(out_dir)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        state = self.journal.counts()
        plan = self._plan(state, counts, 0, None, {}, 0)
        plan.to_send, plan.batches = to_send, files
        return plan, files

    def _write_sample(self, path: Path, recipient: Recipient) -> None:
        link = unsubscribe.link(self.config, self.secret, recipient.email)
        message = self.rendered.personalize({**recipient.fields, "email": recipient.email, "unsubscribe_url": link})
        headers = unsubscribe.headers(self.config, link) if self.config.unsubscribe_mode == "endpoint" else {}
        mail = build_message(self.config, message, recipient.email, recipient.name, headers)
        path.write_bytes(mail.as_bytes())


class _Counted:
    """An iterator that counts what passes through it."""

    def __init__(self, items: Iterator[subscribers.Row]):
        self.items = items
        self.count = 0

    def __iter__(self) -> Iterator[subscribers.Row]:
        for item in self.items:
            self.count += 1
            yield item


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

    Its unsubscribe link carries the placeholder token, so no secret is needed.
    """
    environ = os.environ if environ is None else environ
    key = environ.get(KEY_ENV, "")
    if not key:
        raise SendError(f"{KEY_ENV} is not set: a test send goes through SendGrid and needs an API key")
    try:
        address = subscribers.normalize_address(to)
    except ValueError as exc:
        raise SendError(f"invalid test address {to!r}: {exc}") from None
    rows = build.sample_rows(config, list_path, as_email)
    row = {**rows[min(max(sample, 0), len(rows) - 1)], "unsubscribe_url": unsubscribe.sample_link(config)}
    list_file = list_path or config.root / "subscribers.csv"
    rendered = render(load_issue(issue_path), config, subscribers.columns(list_file) if list_file.exists() else None)
    values = {
        **merge.substitutions(TEXT_CONTEXT, rendered.fields, row),
        **merge.substitutions(HTML_CONTEXT, rendered.fields, row),
    }
    payload = {
        **envelope(config, rendered),
        "subject": "[TEST] " + rendered.subject,
        "personalizations": [{"to": [{"email": address}], "substitutions": values}],
    }
    SendGrid(key, config.sendgrid_host).send_mail(payload)
    return address


def _valid_chunks(path: Path, store: Store, counts: subscribers.Counts) -> Iterator[list[subscribers.Row]]:
    chunk: list[subscribers.Row] = []
    for row in subscribers.scan(path, store.suppressed_among):
        counts.add(row)
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
    """The seven counts (integers), then the time of the last batch and the failed batches."""
    with Store.for_folder(config.state_dir) as store:
        journal = Journal(store, slug)
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
            "in_flight": in_flight if running else 0,
            "running": running,
            "last_batch_at": summary["last_batch_at"],
            "failed_batches": [
                {"batch": b.id, "recipients": b.size, "error": b.error} for b in journal.batches_with(FAILED)
            ],
            "uncertain_batches": [
                {"batch": b.id, "recipients": b.size}
                for b in journal.batches_with(UNCERTAIN) + ([] if running else journal.batches_with(IN_FLIGHT))
            ],
        }
    return result


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
