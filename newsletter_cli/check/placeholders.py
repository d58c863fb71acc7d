"""Placeholders that must never reach a recipient: the scaffold's own text and addresses, a
REPLACE marker (a real send once delivered "REPLACE: your postal address", and CASL requires a
real one), and, as warnings, reserved example domains, which can neither receive replies nor
authenticate mail."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

from newsletter_cli.check.finding import ERROR, WARNING, Finding
from newsletter_cli.config import Config, key_line
from newsletter_cli.errors import display_path
from newsletter_cli.issue import Issue

REPLACE = "REPLACE"
SCAFFOLD_DOMAIN = "yourdomain"
# what `newsletter new` and `newsletter init` write for the user to replace
SCAFFOLD_TEXT = ("Write your newsletter here in Markdown.", "One line that shows after the subject in the inbox")
RESERVED_DOMAIN = re.compile(r"(^|\.)(example|test|invalid|localhost|example\.(com|org|net))$", re.I)


def is_scaffold(text: str) -> bool:
    return REPLACE in text or SCAFFOLD_DOMAIN in text.lower() or any(s in text for s in SCAFFOLD_TEXT)


def config(settings: Config) -> Iterator[Finding]:
    """The values of newsletter.toml that reach every email (or its headers)."""
    file = display_path(settings.path)
    try:
        text = settings.path.read_text(encoding="utf-8")
    except OSError:
        text = ""
    values = (
        ("newsletter", "postal_address", settings.postal_address),
        ("newsletter", "from_email", settings.from_email),
        ("newsletter", "reply_to", settings.reply_to),
        ("newsletter", "website", settings.website),
        ("unsubscribe", "url", settings.unsubscribe_url),
        ("unsubscribe", "mailto", settings.unsubscribe_mailto),
    )
    for section, name, value in values:
        if not value:
            continue
        key = name if section == "newsletter" else f"[{section}] {name}"
        line = key_line(text, section, name) or 1
        if is_scaffold(value):
            yield Finding(
                file, line, ERROR, "placeholder", f"{key} is still the scaffold's placeholder ({value!r}): put yours"
            )
            continue
        host = _host(value)
        if host and RESERVED_DOMAIN.search(host):
            yield Finding(
                file,
                line,
                WARNING,
                "placeholder-domain",
                f"{key} uses {host}, a reserved example domain: it can neither receive replies nor "
                "authenticate mail; put your own before sending",
            )


def issue(source: Issue, file: str) -> Iterator[Finding]:
    """The scaffold's sample text, a REPLACE marker or a yourdomain address left in the issue."""
    if source.preheader and is_scaffold(source.preheader):
        yield Finding(
            file, source.key_lines.get("preheader", 2), ERROR, "placeholder", "the preheader is the scaffold's sample"
        )
    if is_scaffold(source.subject):
        yield Finding(
            file, source.key_lines.get("subject", 2), ERROR, "placeholder", "the subject is the scaffold's sample"
        )
    for number, text in enumerate(source.body.splitlines(), start=source.body_line):
        if is_scaffold(text):
            yield Finding(
                file, number, ERROR, "placeholder", f"the scaffold's placeholder is left in: {text.strip()[:60]!r}"
            )


def _host(value: str) -> str:
    if "@" in value and "://" not in value:
        return value.rsplit("@", 1)[1].split("?")[0].lower()
    return (urlsplit(value).hostname or "").lower()
