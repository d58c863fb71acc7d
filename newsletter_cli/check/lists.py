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
    from newsletter_cli.consent.gate import survey

    if not config.consent_require:
        return
    found = survey(config, path)
    if found.considered and found.skipped / found.considered >= CONSENT_WARN_SHARE:
        yield Finding(
            file,
            1,
            WARNING,
            "consent-missing",
            f"{found.skipped:,} of the list's {found.considered:,} addresses ({found.skipped / found.considered:.0%}) "
            f"have no live consent, so a send skips them ([consent] require): no consent: {found.no_consent:,}, "
            f"implied expired: {found.lapsed:,}",
        )
