"""A real MIME message for one recipient, as they would receive it: for `send --dry-run`'s
sample .eml and for scoring with a spam filter."""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, make_msgid

from newsletter_cli.config import Config
from newsletter_cli.render import Message

# Long unbreakable headers (a List-Unsubscribe URL) must stay plain, not turn into RFC 2047
# encoded words that mail clients would not parse as a URL: fold only past RFC 5322's hard limit.
POLICY = SMTP.clone(max_line_length=998)


def build_message(
    config: Config,
    message: Message,
    to_email: str,
    to_name: str = "",
    headers: dict[str, str] | None = None,
    when: dt.datetime | None = None,
) -> EmailMessage:
    mail = EmailMessage(policy=POLICY)
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
