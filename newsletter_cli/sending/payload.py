"""What SendGrid is sent: the envelope every request of a send shares, and each recipient's part
of it, built from their journal record. Pure: no I/O, picklable, tested on its own."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Callable, Iterable
from typing import Any

from newsletter_cli import merge, unsubscribe
from newsletter_cli.config import Config
from newsletter_cli.merge import HTML_CONTEXT, TEXT_CONTEXT, MergeField
from newsletter_cli.render import Rendered
from newsletter_cli.store.journal import PAIR, UNIT

MAX_BATCH = 1000  # SendGrid: personalizations (and recipients) per request
NEEDS_ESCAPE = re.compile(r"[&<>\"']")  # most values need no escaping: skip html.escape for them


def category(slug: str) -> str:
    """SendGrid categories must be ASCII."""
    return re.sub(r"[^\x20-\x7e]", "-", slug)[:255] or "newsletter"


def envelope(
    config: Config, rendered: Rendered, send_at: dt.datetime | None = None, batch_id: str | None = None
) -> dict[str, Any]:
    """What every request of a send shares: one html and one text content; a scheduled send's
    time and SendGrid batch id (which cancels them all at once)."""
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
    own_link = config.unsubscribe_group_id is None  # then SendGrid must not add its own link
    body["tracking_settings"] = tracking_settings(config.track_clicks, config.track_opens, own_link)
    if not own_link:
        body["asm"] = {"group_id": config.unsubscribe_group_id}
    else:
        body["headers"] = dict(unsubscribe.ONE_CLICK_HEADER)  # with each recipient's List-Unsubscribe
    if send_at:
        body["send_at"] = int(send_at.timestamp())
    if batch_id:
        body["batch_id"] = batch_id
    return body


def tracking_settings(clicks: bool, opens: bool, no_subscription_link: bool) -> dict[str, Any]:
    """Said in every request, so that the SendGrid account's defaults never decide what is tracked."""
    settings: dict[str, Any] = {
        "click_tracking": {"enable": clicks, "enable_text": clicks},
        "open_tracking": {"enable": opens},
    }
    if no_subscription_link:
        settings["subscription_tracking"] = {"enable": False}
    return settings


class Personalizer:
    """Each recipient's part of a request from their journal record: their substitutions (merge
    values escaped for the html part, raw for the text part and subject, their unsubscribe link)
    and, with our own endpoint, their List-Unsubscribe header. The hot loop of a send, kept lean
    on purpose (``merge.substitutions`` says the same thing more slowly)."""

    def __init__(self, fields: Iterable[MergeField], link: Callable[[str], str], config: Config):
        self.tokens = [
            (f.name, f.default or "", "" if f.safe else f.token(HTML_CONTEXT), f.token(TEXT_CONTEXT)) for f in fields
        ]
        self.link = link
        self.own_endpoint = config.unsubscribe_url is not None
        self.tail = unsubscribe.list_unsubscribe_tail(config)

    def payload(self, envelope: dict[str, Any], records: Iterable[str]) -> dict[str, Any]:
        return {**envelope, "personalizations": [self.personalization(r) for r in records]}

    def personalization(self, record: str) -> dict[str, Any]:
        email, name, *pairs = record.split(UNIT)
        fields = {}
        for pair in pairs:
            key, value = pair.split(PAIR, 1)
            fields[key] = value
        link = self.link(email)
        substitutions = {}
        for field_name, default, html_token, text_token in self.tokens:
            if field_name == merge.UNSUBSCRIBE_FIELD:
                value = link
            elif field_name == "email":
                value = email
            else:
                value = fields.get(field_name) or default
            if html_token:
                substitutions[html_token] = html.escape(value) if NEEDS_ESCAPE.search(value) else value
            substitutions[text_token] = value
        entry: dict[str, Any] = {
            "to": [{"email": email, "name": name} if name else {"email": email}],
            "substitutions": substitutions,
        }
        if self.own_endpoint:
            entry["headers"] = {"List-Unsubscribe": f"<{link}>{self.tail}"}
        return entry
