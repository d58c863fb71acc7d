"""`newsletter send --dry-run`: everything but the requests and the journal. Each batch's exact
JSON body and a sample .eml that any mail client opens go to ``build/<slug>-dry-run/``."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from newsletter_cli import merge, subscribers, unsubscribe
from newsletter_cli.consent.audience import Joining
from newsletter_cli.sending.reader import SHOWN_REFUSALS
from newsletter_cli.sending.sender import Plan, Sender
from newsletter_cli.store import Store
from newsletter_cli.store.journal import Recipient, decode
from newsletter_cli.store.journal import record as journal_record


def dry_run(sender: Sender, out_dir: Path) -> tuple[Plan, int]:
    """The plan, and how many batch files were written to ``out_dir`` (replaced whole)."""
    sender.accept(*sender.render())
    assert sender.personalizer is not None
    counts = subscribers.Counts()
    envelope = sender.envelope()
    limit, size = sender.options.limit, sender.options.batch_size
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        batch: list[str] = []
        files = 0
        to_send = 0
        gate = sender.consent_gate()
        joining = Joining(sender.store)
        listed = _valid_chunks(sender.list_path, sender.store, counts, sender.budget, sender.refused)

        def chunks() -> Iterator[list[subscribers.Row]]:
            for chunk in listed:
                for row in chunk:
                    joining.seen(row.key)
                yield chunk
            joined, suppressed = joining.rest()
            counts.suppressed += suppressed
            yield [subscribers.Row(0, s.address, {"email": s.address, "first_name": s.first_name}) for s in joined]

        for chunk in chunks():
            done = sender.journal.sent_among([row.key for row in chunk])
            if gate is not None:
                done |= gate.refused([row.key for row in chunk])
            for row in chunk:
                if row.key in done or (limit is not None and to_send >= limit):
                    continue
                to_send += 1
                batch.append(journal_record(row.email, row.name, {k: row.fields.get(k, "") for k in sender.kept}))
                if to_send == 1:
                    _write_sample(sender, staging / "sample.eml", decode(batch[0]))
                if len(batch) == size:
                    files += 1
                    _write_json(staging / f"batch-{files:04d}.json", sender.personalizer.payload(envelope, batch))
                    batch = []
        if batch:
            files += 1
            _write_json(staging / f"batch-{files:04d}.json", sender.personalizer.payload(envelope, batch))
        staging.chmod(0o755)  # mkdtemp makes it private; its files are for any mail client to open
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    plan = sender.plan_for(sender.journal.counts(), counts, 0, None, 0)
    plan.to_send, plan.batches = to_send, files
    if gate is not None:
        plan.no_consent, plan.consent_lapsed = gate.no_consent, gate.lapsed
    return plan, files


def _write_sample(sender: Sender, path: Path, recipient: Recipient) -> None:
    from newsletter_cli.mime import build_message, to_bytes

    assert sender.rendered is not None
    config = sender.config
    link = unsubscribe.link(config, sender.secret, recipient.email)
    message = sender.rendered.personalize({**recipient.fields, "email": recipient.email, "unsubscribe_url": link})
    headers = unsubscribe.headers(config, link) if config.unsubscribe_url is not None else {}
    mail = build_message(config, message, recipient.email, recipient.name, headers)
    path.write_bytes(to_bytes(mail))


def _valid_chunks(
    path: Path, store: Store, counts: subscribers.Counts, budget: merge.Budget, refused: list[subscribers.Refused]
) -> Iterator[list[subscribers.Row]]:
    chunk: list[subscribers.Row] = []
    for row in subscribers.scan(path, store.suppressed_among, budget):
        counts.add(row)
        if row.status in (subscribers.INVALID, subscribers.UNSUBSCRIBED) and len(refused) < SHOWN_REFUSALS:
            refused.append(subscribers.Refused(row.line, row.reason, row.status))
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
