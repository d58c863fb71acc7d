"""`newsletter check --sendgrid`: SendGrid itself validates the first real batch, in its sandbox
mode (``mail_settings.sandbox_mode``), where it answers 200 and delivers nothing.

The batch is the one a send would post first (built as the dry run builds it). Nothing is
journaled; only a 200 counts as validated, and a 202 (which sandbox mode never gives) is
reported as a batch SendGrid may have taken for real.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from newsletter_cli.check.finding import ERROR, WARNING, Finding
from newsletter_cli.config import Config
from newsletter_cli.errors import NewsletterError
from newsletter_cli.sendgrid_api import KEY_ENV, SendGrid, SendGridError, Timing


def sandbox(
    issue_path: Path, config: Config, list_path: Path | None = None, environ: Mapping[str, str] | None = None
) -> tuple[list[Finding], list[str]]:
    from newsletter_cli.sending import Sender, SendOptions
    from newsletter_cli.sending.dry_run import dry_run

    environ = os.environ if environ is None else environ
    key = environ.get(KEY_ENV, "")
    if not key:
        raise NewsletterError(f"{KEY_ENV} is not set: --sendgrid asks SendGrid itself")
    with tempfile.TemporaryDirectory() as tmp, Sender(config, issue_path, SendOptions(list_path, dry_run=True)) as s:
        _, files = dry_run(s, Path(tmp) / "batches")
        if not files:
            return [], ["--sendgrid: the list has nobody to send to, so SendGrid was given nothing to validate"]
        body = json.loads((Path(tmp) / "batches" / "batch-0001.json").read_text())
    body["mail_settings"] = {"sandbox_mode": {"enable": True}}
    api = SendGrid(key, config.sendgrid_host, timing=Timing.from_environ(environ))
    file = str(issue_path)
    try:
        answer = api.request("POST", "mail/send", body=body)  # delivers nothing: safe to ask again
    except SendGridError as exc:
        return [Finding(file, 1, ERROR, "sendgrid-refused", f"SendGrid refused the first batch: {exc.message}")], []
    size = len(body["personalizations"])
    if answer.status == 200:
        return [], [
            f"--sendgrid: SendGrid validated the first batch ({size} recipients) in sandbox mode; none was mailed"
        ]
    return [
        Finding(
            file,
            1,
            WARNING,
            "sendgrid-sandbox",
            f"SendGrid answered {answer.status}, not sandbox mode's 200: it may have taken the batch for real "
            f"({size} recipients); this is not recorded as a send",
        )
    ], []
