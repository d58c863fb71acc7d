"""The processes that build and post a send's batches, each with a few threads, so a send uses
every core and keeps up to ``concurrency`` requests in flight. They only read the journal; the
parent alone records answers, so its record stays exact."""

from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsletter_cli.sendgrid_api import RETRY_STATUSES, SendGrid, SendGridError, Stopped, Timing, Uncertain
from newsletter_cli.sending.payload import Personalizer
from newsletter_cli.sending.processes import context, prelude
from newsletter_cli.store.database import Store
from newsletter_cli.store.journal import FAILED, SENT, UNCERTAIN, Batch, Journal

MAX_WORKERS = 2  # processes building requests; each runs several request threads
BATCH_ERRORS = (400, 413)  # SendGrid refused this batch's content: the other batches may go on
REFUSED, STOPPED, CRASHED = "refused", "stopped", "crashed"


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, sent to it once through a pipe (never written anywhere): the
    API key and the secret inside ``personalizer`` included."""

    store: Path | str  # the file, or the server's URL (its password, if any, only in this pipe)
    slug: str
    api_key: str
    host: str
    timing: Timing
    envelope: dict[str, Any]
    personalizer: Personalizer
    threads: int
    parent: int


@dataclass(frozen=True)
class Answer:
    """What a worker reports for a batch: sent (message = SendGrid's message id); failed
    (SendGrid refused this batch); uncertain (the answer was lost: perhaps accepted); refused
    (never accepted, and the send must stop: a bad key, no SendGrid at the host); stopped (never
    accepted: the send is stopping); or crashed (a bug, raised again in the parent)."""

    batch: int
    outcome: str
    status: int | None = None
    message: str = ""


class Workers:
    def __init__(self, spec: WorkerSpec, concurrency: int):
        ctx = context()
        count = max(1, min(concurrency, os.cpu_count() or 1, MAX_WORKERS))
        spec = WorkerSpec(**{**spec.__dict__, "threads": -(-concurrency // count)})
        self.tasks: Any = ctx.Queue()
        self.results: Any = ctx.Queue()
        self.stop = ctx.Event()
        self.processes = [
            ctx.Process(
                target=work, args=(spec, self.tasks, self.results, self.stop), daemon=True, name=f"newsletter-send-{n}"
            )
            for n in range(count)
        ]

    def __enter__(self) -> Workers:
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


def work(spec: WorkerSpec, tasks: Any, results: Any, stop: Any) -> None:
    """A worker process: take batches, build each request, post it, report the answer."""
    prelude()
    api = SendGrid(spec.api_key, spec.host, timing=spec.timing, stop=stop)
    local = threading.local()
    idle = threading.Semaphore(spec.threads)  # take a batch only when a thread is free to post it at once

    def post(batch: Batch) -> None:
        try:
            if os.getppid() != spec.parent:  # the parent was killed: its journal already calls this batch uncertain
                return
            results.put(_post(batch))
        finally:
            idle.release()

    def _post(batch: Batch) -> Answer:
        try:
            if not hasattr(local, "journal"):
                local.journal = Journal(Store(spec.store, readonly=True), spec.slug)
            payload = spec.personalizer.payload(spec.envelope, local.journal.records(batch))
            return Answer(batch.id, SENT, message=api.send_mail(payload))
        except Stopped:
            return Answer(batch.id, STOPPED)
        except Uncertain as exc:
            return Answer(batch.id, UNCERTAIN, exc.status, exc.message)
        except SendGridError as exc:  # an answer that says SendGrid did not take the batch
            failed = exc.status in BATCH_ERRORS or exc.status in RETRY_STATUSES
            return Answer(batch.id, FAILED if failed else REFUSED, exc.status, exc.message)
        except Exception as exc:  # not hidden: the parent raises it again
            return Answer(batch.id, CRASHED, message=repr(exc))

    with ThreadPoolExecutor(spec.threads, thread_name_prefix="sendgrid") as pool:
        while True:
            batch = _take(tasks, idle)
            if batch is None:
                break
            if batch is _NOTHING:
                if os.getppid() != spec.parent:  # the parent was killed: finish what is in flight, then go
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
