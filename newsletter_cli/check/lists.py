"""Rules that read the subscriber list: merge fields it has no column for, fields empty for
some subscribers, and rows whose merge values SendGrid would refuse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from newsletter_cli import merge, subscribers, unsubscribe
from newsletter_cli.check.finding import ERROR, WARNING, Finding
from newsletter_cli.config import Config
from newsletter_cli.render import Rendered


def merge_fields(
    rendered: Rendered, config: Config, path: Path, columns: frozenset[str], file: str, read_list: bool
) -> Iterator[Finding]:
    fields = rendered.issue_fields
    for field in fields:
        if field.default is None and field.name not in columns:
            yield Finding(
                file,
                field.line,
                ERROR,
                "merge-field-unknown",
                f"subscriber.{field.name} is not a column of {path.name} and has no | default(...)",
            )
    if not read_list:
        return
    watched = [f for f in fields if f.default is None and f.name in columns]
    empty = dict.fromkeys(watched, 0)
    total = 0
    budget = merge.Budget(rendered.fields, unsubscribe.measuring_linker(config))
    for row in subscribers.scan(path):
        if row.status != subscribers.VALID:
            continue
        total += 1
        for field in watched:
            if not row.fields.get(field.name):
                empty[field] += 1
        size = budget.over(row.email, row.fields)
        if size is not None:
            yield Finding(
                str(path), row.line, ERROR, "merge-value-too-long", budget.reason(size, row.fields) + ": not sent"
            )
    for field, count in empty.items():
        if count:
            yield Finding(
                file,
                field.line,
                WARNING,
                "merge-field-empty",
                f"subscriber.{field.name} renders empty for {count} of {total} subscribers; add | default(...)",
            )


CONSENT_WARN_SHARE = 0.1  # a tenth of the list skipped is worth a word before the send


def consent(config: Config, path: Path, file: str) -> Iterator[Finding]:
    """With [consent] require, how many of the list a send would skip for want of consent."""
    import datetime as dt

    from newsletter_cli.consent.gate import Gate
    from newsletter_cli.store import DB_NAME, Store

    if not config.consent_require:
        return
    keys = [row.key for row in subscribers.scan(path) if row.status == subscribers.VALID]
    if not keys:
        return
    if (config.state_dir / DB_NAME).exists():
        with Store.for_folder(config.state_dir) as store:
            suppressed = store.suppressed_among(keys)  # skipped anyway, and counted as such
            keys = [key for key in keys if key not in suppressed]
            gate = Gate(store, dt.datetime.now(dt.UTC))
            gate.refused(keys)
            no_consent, lapsed = gate.no_consent, gate.lapsed
    else:
        no_consent, lapsed = len(keys), 0
    skipped = no_consent + lapsed
    if keys and skipped / len(keys) >= CONSENT_WARN_SHARE:
        yield Finding(
            file,
            1,
            WARNING,
            "consent-missing",
            f"{skipped:,} of the list's {len(keys):,} addresses ({skipped / len(keys):.0%}) have no live consent, "
            f"so a send skips them ([consent] require): no consent: {no_consent:,}, implied expired: {lapsed:,}",
        )
