"""One [TEST] copy of an issue to any address, as `newsletter preview` sends it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from newsletter_cli import merge, subscribers, unsubscribe
from newsletter_cli.config import Config
from newsletter_cli.issue import load_issue
from newsletter_cli.merge import HTML_CONTEXT, TEXT_CONTEXT
from newsletter_cli.render import render
from newsletter_cli.sendgrid_api import KEY_ENV, SendGrid, Timing
from newsletter_cli.sending.payload import envelope
from newsletter_cli.sending.sender import SendError


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
    own_endpoint = config.unsubscribe_url is not None
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
