"""`newsletter check --spam`: the email, as a real MIME message with the send's headers,
scored by a local SpamAssassin with its offline rules (Debian's ``spamassassin``)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from newsletter_cli import mime, unsubscribe
from newsletter_cli.check.finding import ERROR, WARNING, Finding
from newsletter_cli.config import Config, UnsubscribeMode
from newsletter_cli.issue import load_issue
from newsletter_cli.render import SAMPLE_EMAIL, render

SPAM_ERROR, SPAM_WARNING = 5.0, 1.0
SPAM_SCORE = re.compile(r"Content analysis details:\s*\((-?[\d.]+) points")
SPAM_RULE = re.compile(r"^\s*(-?\d+\.\d+)\s+([A-Z0-9_]+)\s", re.M)


def spam(issue_path: Path, config: Config) -> tuple[list[Finding], list[str]]:
    """Score the email, as a real MIME message with the send's headers, with a local
    SpamAssassin using its offline rules (``spamassassin -L -t``)."""
    rendered = render(load_issue(issue_path), config, None)
    link = unsubscribe.sample_link(config)
    message = rendered.personalize({"email": SAMPLE_EMAIL, "unsubscribe_url": link})
    headers = unsubscribe.headers(config, link) if config.unsubscribe_mode is UnsubscribeMode.ENDPOINT else {}
    raw = mime.to_bytes(mime.build_message(config, message, SAMPLE_EMAIL, "", headers))
    try:
        done = subprocess.run(["spamassassin", "-L", "-t"], input=raw, capture_output=True, timeout=300, check=False)
    except FileNotFoundError:
        return [], ["SpamAssassin is not installed, so --spam could not score the email: apt-get install spamassassin"]
    report = done.stdout.decode("utf-8", "replace")
    found = SPAM_SCORE.search(report)
    if found is None:
        return [], [
            f"SpamAssassin gave no score (exit {done.returncode}): {done.stderr.decode(errors='replace')[:200]}"
        ]
    score = float(found.group(1))
    details = report[found.end() :]
    blocks = details.replace("\r\n", "\n").split("\n\n")
    table = blocks[1] if len(blocks) > 1 else blocks[0]  # the report's first table, not its copy
    rules = dict.fromkeys(
        f"{name} ({float(points):+.1f})" for points, name in SPAM_RULE.findall(table) if float(points)
    )
    fired = ", ".join(rules) or "no rule with points"
    file = str(issue_path)
    if score > SPAM_ERROR:
        return [
            Finding(file, 1, ERROR, "spam-score", f"SpamAssassin scores {score:.1f} (over {SPAM_ERROR}): {fired}")
        ], []
    if score > SPAM_WARNING:
        return [
            Finding(file, 1, WARNING, "spam-score", f"SpamAssassin scores {score:.1f} (over {SPAM_WARNING}): {fired}")
        ], []
    return [], [f"SpamAssassin scores {score:.1f}: {fired}"]
