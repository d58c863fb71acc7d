"""A real MIME message for one recipient, as they would receive it: for `send --dry-run`'s
sample .eml and for scoring with a spam filter."""

from __future__ import annotations

import datetime as dt
import re
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, make_msgid

from newsletter_cli.config import Config
from newsletter_cli.render import Message

# Headers that must stay as written: the email package would turn a List-Unsubscribe URL longer
# than a line into RFC 2047 encoded words, which no client reads as a URL (RFC 5322 allows
# lines up to 998 characters).
VERBATIM = ("List-Unsubscribe",)


def build_message(
    config: Config,
    message: Message,
    to_email: str,
    to_name: str = "",
    headers: dict[str, str] | None = None,
    when: dt.datetime | None = None,
) -> EmailMessage:
    mail = EmailMessage(policy=SMTP)
    mail["From"] = formataddr((config.from_name, config.from_email))
    mail["To"] = formataddr((to_name, to_email))
    mail["Subject"] = message.subject
    mail["Date"] = format_datetime((when or dt.datetime.now(dt.UTC)).astimezone())
    mail["Message-ID"] = make_msgid(domain=config.from_email.rsplit("@", 1)[-1])
    if config.reply_to:
        mail["Reply-To"] = config.reply_to
    for name, value in (headers or {}).items():
        mail[name] = value
    mail.set_content(message.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    mail.add_alternative(message.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return mail


def to_bytes(mail: EmailMessage) -> bytes:
    """The message as sent, with the VERBATIM headers unfolded and unencoded."""
    raw = mail.as_bytes()
    head, sep, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
    newline = b"\r\n" if sep == b"\r\n\r\n" else b"\n"
    for name in VERBATIM:
        value = mail.get(name)
        if value is None:
            continue
        pattern = re.compile(rb"^" + name.encode() + rb":.*?(?=" + newline + rb"(?![ \t])|\Z)", re.S | re.M | re.I)
        line = f"{name}: {' '.join(str(value).split())}".encode()
        head = pattern.sub(line.replace(b"\\", b"\\\\"), head, count=1)
    return head + sep + body
