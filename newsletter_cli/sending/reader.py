"""Reading and validating the list in a process of its own while the parent writes the journal,
so planning a large send uses two cores. Memory stays flat: the queue between them is bounded."""

from __future__ import annotations

import os
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from newsletter_cli import merge, subscribers
from newsletter_cli.errors import NewsletterError, SubscriberError
from newsletter_cli.sending.processes import context, prelude
from newsletter_cli.store.journal import record as journal_record

CHUNK = 1000  # rows handed over at a time
SHOWN_REFUSALS = 10  # invalid rows named in a send's summary; `subscribers check` lists them all


class ListReader:
    """Yields chunks of (key, journal record); afterwards ``valid``, ``invalid`` and the first
    ``refused`` rows (with their line and why) are set."""

    def __init__(self, path: Path, kept: list[str], budget: merge.Budget | None = None):
        self.path = path
        self.kept = kept
        self.budget = budget
        self.valid = 0
        self.invalid = 0
        self.unsubscribed = 0  # rows the list's own status columns mark as not subscribed
        self.refused: list[subscribers.Refused] = []

    def __iter__(self) -> Iterator[list[tuple[str, str]]]:
        ctx = context()
        chunks: Any = ctx.Queue(maxsize=8)  # bounded: memory stays flat however long the list
        args = (self.path, self.kept, chunks, os.getpid(), self.budget)
        process = ctx.Process(target=read_list, args=args, daemon=True)
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
                    self.valid, self.invalid, self.unsubscribed, self.refused = payload
                    finished = True
                    return
        finally:
            if not finished:  # stopped early (an error here or in the render): nobody reads the rest
                process.kill()
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


def read_list(path: Path, kept: list[str], out: Any, parent: int, budget: merge.Budget | None) -> None:
    """The reader process."""
    prelude()

    def hand_over(item: tuple[str, Any]) -> None:
        while True:
            try:
                out.put(item, timeout=1)
                return
            except queue.Full:
                if os.getppid() != parent:  # the parent was killed: nobody will read
                    os._exit(0)

    valid = invalid = unsubscribed = 0
    refused: list[subscribers.Refused] = []
    records: list[tuple[str, str]] = []
    try:
        for found in subscribers.addresses(path, kept, budget):
            if isinstance(found, subscribers.Refused):
                if found.status == subscribers.UNSUBSCRIBED:
                    unsubscribed += 1
                else:
                    invalid += 1
                if len(refused) < SHOWN_REFUSALS:
                    refused.append(found)
                continue
            valid += 1
            email, name, values = found
            records.append((email.lower(), journal_record(email, name, values)))
            if len(records) == CHUNK:
                hand_over(("rows", records))
                records = []
    except NewsletterError as exc:
        hand_over(("error", exc.message))
        return
    if records:
        hand_over(("rows", records))
    hand_over(("done", (valid, invalid, unsubscribed, refused)))
