"""Double opt-in: a signup asks for a confirmation email; its link, used by a person, records
express consent.

The confirmation token is ``<address|form|wording hash|unix time, base64url>.<HMAC>``, keyed by
NEWSLETTER_SECRET under a label of its own (an unsubscribe token can never pass for one), bound
to the address, the form, the exact words agreed to and the time; it expires after 7 days.
Nothing is recorded on GET (mail scanners open every link): the page posts itself when
JavaScript runs, and its one button does the same.
"""

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
import hmac
import html
import re
from dataclasses import dataclass
from typing import Any

from newsletter_cli.config import Config
from newsletter_cli.consent.ledger import EXPRESS, Record
from newsletter_cli.errors import NewsletterError
from newsletter_cli.sendgrid_api import SendGrid
from newsletter_cli.sending.payload import tracking_settings
from newsletter_cli.store import Store
from newsletter_cli.store import signups as stored
from newsletter_cli.store.consents import keep_wording
from newsletter_cli.subscribers import display_name, normalize_address
from newsletter_cli.unsubscribe import b64url, unb64url

VALID_FOR = dt.timedelta(days=7)
MAILS_PER_DAY = 3  # confirmation emails to one address in 24 hours
PENDING_KEPT = dt.timedelta(days=60)
FORM_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
LABEL = b"newsletter signup confirmation\n"


class SignupError(NewsletterError):
    """A signup that cannot be taken as given (no address, consent not ticked): shown to the person."""


@dataclass(frozen=True)
class Confirmation:
    email: str
    form: str
    wording: str
    issued: dt.datetime


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, LABEL + payload, hashlib.sha256).digest()[:16]


def make_token(secret: bytes, email: str, form: str, wording: str, issued: dt.datetime) -> str:
    payload = f"{email}|{form}|{wording}|{int(issued.timestamp())}".encode()
    return f"{b64url(payload)}.{b64url(_mac(secret, payload))}"


def read_token(secret: bytes, token: str, now: dt.datetime) -> Confirmation | None:
    """The confirmation a token stands for, or None: forged, damaged or expired alike."""
    try:
        body, mac = token.split(".", 1)
        payload = unb64url(body)
        if not hmac.compare_digest(unb64url(mac), _mac(secret, payload)):
            return None
        email, form, wording, stamp = payload.decode().split("|")
        issued = dt.datetime.fromtimestamp(int(stamp), dt.UTC)
    except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError, OSError):
        return None
    if not (issued <= now + dt.timedelta(minutes=5) and now - issued <= VALID_FOR):
        return None
    return Confirmation(email, form, wording, issued)


def confirm_url(config: Config, token: str) -> str:
    assert config.signup_url is not None
    return config.signup_url[: -len("subscribe")] + "confirm?token=" + token


@dataclass(frozen=True)
class Asked:
    mailed: bool  # a confirmation email went out; False: nothing was done (kept quiet)
    why: str  # for the server's log only, never the page


def ask(
    store: Store,
    config: Config,
    api: SendGrid,
    secret: bytes,
    fields: dict[str, str],
    ip: str | None,
    now: dt.datetime,
) -> Asked:
    """Take a signup: mail a confirmation unless the address is already confirmed or has had
    its three today. The answer to the person is the same whatever happens here."""
    purge(store, now)
    if fields.get("website"):  # the honeypot: people never see it, bots fill it in
        return Asked(False, "honeypot filled")
    try:
        address = normalize_address(fields.get("email", ""))
    except ValueError:
        raise SignupError("That does not look like an email address. Please check it and try again.") from None
    if fields.get("consent") not in ("yes", "on", "1"):
        raise SignupError("Please tick the box to say you agree to receive the newsletter.")
    form = fields.get("form") or "signup"
    if not FORM_ID.match(form):
        raise SignupError("This form is not one of ours.")
    assert config.signup_wording is not None
    first_name = display_name(fields.get("first_name", "")[:100], None, None)
    found = stored.find(store, address)
    if found is not None and found.status == stored.CONFIRMED:
        return Asked(False, "already confirmed")
    if stored.mails_since(store, address, now - dt.timedelta(hours=24)) >= MAILS_PER_DAY:
        return Asked(False, f"{MAILS_PER_DAY} confirmation emails in 24 hours already")
    wording = keep_wording(store, config.signup_wording)
    stored.request(store, address, first_name, form, wording, ip if config.signup_keep_ip else None)
    link = confirm_url(config, make_token(secret, address.lower(), form, wording, now))
    try:
        api.send_mail(confirmation_email(config, address, first_name, link))
    except NewsletterError:
        stored.forget_mail(store, address)
        raise
    return Asked(True, "confirmation sent")


def confirm(store: Store, config: Config, secret: bytes, token: str, ip: str | None, now: dt.datetime) -> str | None:
    """Record the consent a valid token stands for; returns the address (None: not valid)."""
    found = read_token(secret, token, now)
    if found is None:
        return None
    signup = stored.find(store, found.email)
    if signup is None:
        return None  # purged, or never asked here
    record = Record(
        email=found.email,
        kind=EXPRESS,
        method="web double opt-in",
        source=f"form:{found.form}",
        occurred_at=dt.datetime.fromisoformat(signup.requested_at),
        recorded_by="signup form",
        wording=found.wording,
        confirmed_at=now,
        ip=(ip or signup.ip) if config.signup_keep_ip else None,
    )
    stored.confirm(store, found.email, record)  # a second use changes nothing
    return signup.address


def confirmation_email(config: Config, address: str, first_name: str, link: str) -> dict[str, Any]:
    """One transactional email: nothing tracked, the sender named with its postal address and
    contact, what the address will receive, and that consent can be withdrawn at any time."""
    contact = config.reply_to or config.from_email
    hello = f"Hi {first_name}," if first_name else "Hello,"
    lines = [
        hello,
        "",
        f"Please confirm that you want to receive the {config.name} newsletter by email at {address}:",
        "",
        link,
        "",
        "If you did not ask for it, ignore this email: nothing will be sent to you.",
        f"You can withdraw your consent at any time: every newsletter has an unsubscribe link, or write to {contact}.",
        "",
        f"{config.name}, {config.postal_address}",
        f"{config.website} - {contact}",
    ]
    text = "\n".join(lines) + "\n"
    e = html.escape
    page = (
        f"<p>{e(hello)}</p><p>Please confirm that you want to receive the {e(config.name)} newsletter by email at "
        f'{e(address)}:</p><p><a href="{e(link)}">Confirm my subscription</a></p>'
        "<p>If you did not ask for it, ignore this email: nothing will be sent to you.</p>"
        "<p>You can withdraw your consent at any time: every newsletter has an unsubscribe link, or write to "
        f"{e(contact)}.</p><p>{e(config.name)}, {e(config.postal_address)}<br>"
        f'<a href="{e(config.website)}">{e(config.website)}</a> - {e(contact)}</p>'
    )
    body: dict[str, Any] = {
        "personalizations": [{"to": [{"email": address}]}],
        "from": {"email": config.from_email, "name": config.from_name},
        "subject": f"Please confirm your subscription to {config.name}",
        "content": [{"type": "text/plain", "value": text}, {"type": "text/html", "value": page}],
        "categories": ["newsletter-signup-confirmation"],
        "tracking_settings": tracking_settings(clicks=False, opens=False, no_subscription_link=True),
    }
    if config.reply_to:
        body["reply_to"] = {"email": config.reply_to}
    return body


def purge(store: Store, now: dt.datetime) -> int:
    """Pending signups are forgotten after 60 days."""
    return stored.purge(store, now - PENDING_KEPT)


def form_snippet(config: Config, form: str = "signup") -> str:
    """The HTML form a clinic's own site embeds: it posts to `newsletter serve`'s /subscribe."""
    assert config.signup_url is not None and config.signup_wording is not None
    e = html.escape
    return "\n".join(
        [
            f'<form method="post" action="{e(config.signup_url)}">',
            '  <label>Email address <input type="email" name="email" required autocomplete="email"></label>',
            '  <label>First name (optional) <input type="text" name="first_name" autocomplete="given-name"></label>',
            f'  <label><input type="checkbox" name="consent" value="yes" required> {e(config.signup_wording)}</label>',
            f'  <input type="hidden" name="form" value="{e(form)}">',
            '  <label style="position:absolute;left:-10000px" aria-hidden="true">Leave this empty'
            ' <input type="text" name="website" tabindex="-1" autocomplete="off"></label>',
            '  <button type="submit">Subscribe</button>',
            "</form>",
        ]
    )
