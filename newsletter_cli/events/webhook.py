"""A POST of SendGrid's Event Webhook -> verified, parsed events.

SendGrid signs the timestamp header followed by the body exactly as sent (ECDSA P-256, SHA-256,
base64 DER), so the body is verified as received, never as re-serialised JSON; the official
``sendgrid`` package's verifier does the arithmetic.
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from newsletter_cli.errors import NewsletterError
from newsletter_cli.events.rules import Event

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
ISSUE_ARG = "newsletter_issue"
LAST_TIME = 253402300800  # 10000-01-01: a later "unix time" is no time


class Refused(NewsletterError):
    """A POST that is not a genuine batch of SendGrid's events: answered 4xx, nothing changed."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Parsed:
    events: list[Event] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one reason per event that was not stored


class Verifier:
    """Checks a body against the webhook's public key (base64 SubjectPublicKeyInfo)."""

    def __init__(self, public_key: str):
        from sendgrid.helpers.eventwebhook import EventWebhook

        self._webhook = EventWebhook()
        self._key = self._webhook.convert_public_key_to_ecdsa(public_key)

    def verify(self, body: bytes, signature: str | None, timestamp: str | None) -> str:
        """The body as text once its signature holds; ``Refused`` otherwise."""
        from cryptography.exceptions import InvalidSignature

        if not signature or not timestamp:
            raise Refused(401, f"no {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(400, "the body is not UTF-8") from None
        try:
            good = self._webhook.verify_signature(text, signature, timestamp, self._key)
        except (binascii.Error, ValueError, InvalidSignature):
            raise Refused(400, "the signature is not base64 DER") from None
        if not good:
            raise Refused(403, "the signature does not match the body")
        return text


def parse(text: str, keep_client: bool = False) -> Parsed:
    """SendGrid's JSON array of events; an entry that cannot be read is skipped with its reason."""
    try:
        items = json.loads(text)
    except ValueError:
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(items, list):
        raise Refused(400, "the body is not a JSON array of events")
    parsed = Parsed()
    for number, item in enumerate(items, start=1):
        try:
            parsed.events.append(_event(item, keep_client))
        except ValueError as exc:
            parsed.skipped.append(f"event {number}: {exc}")
    return parsed


def _event(item: Any, keep_client: bool) -> Event:
    if not isinstance(item, dict):
        raise ValueError("not an object")
    for key in ("sg_event_id", "email", "event"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise ValueError(f"no {key}")
    stamp = item.get("timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, int | float) or not 0 <= stamp < LAST_TIME:
        raise ValueError("no timestamp (unix seconds)")
    name = item["event"]
    kind = {"bounce": item.get("type"), "dropped": item.get("reason"), "click": item.get("url")}.get(name)
    group = item.get("asm_group_id")
    client = None
    if keep_client and (item.get("ip") or item.get("useragent")):
        client = f"{item.get('ip', '')} {item.get('useragent', '')}".strip()
    issue = item.get(ISSUE_ARG)
    return Event(
        id=item["sg_event_id"],
        email=item["email"].strip().lower(),
        event=name,
        at=int(stamp),
        issue=issue if isinstance(issue, str) and issue else None,
        kind=_text(kind),
        classification=_text(item.get("bounce_classification")) if name == "bounce" else None,
        machine=item.get("sg_machine_open") is True,
        group=group if isinstance(group, int) and not isinstance(group, bool) and 0 < group < 2**63 else None,
        message_id=_text(item.get("sg_message_id")),
        client=client,
    )


def _text(value: Any) -> str | None:
    """A field SendGrid sends as a string; anything else is not kept."""
    return value if isinstance(value, str) and value else None
