"""newsletter.toml plus the environment -> one frozen, validated Config.

The whole file is checked before anything stops, so a user with three typos sees three lines,
each naming the key, the line, what was expected and what was found.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from newsletter_cli.errors import ConfigError, display_path

CONFIG_NAME = "newsletter.toml"
DEFAULT_SENDGRID_HOST = "https://api.sendgrid.com"
WEBHOOK_KEY_ENV = "SENDGRID_WEBHOOK_PUBLIC_KEY"
DATABASE_URL_ENV = "NEWSLETTER_DATABASE_URL"
EMAIL_RE = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
LANGUAGE_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
SECRET_FIELDS = {"store_url"}  # a value that may hold a password is never repeated in an error


class UnsubscribeMode(StrEnum):
    """Who serves the unsubscribe link: our own endpoint, or a SendGrid unsubscribe group."""

    ENDPOINT = "endpoint"
    SENDGRID = "sendgrid"


@dataclass(frozen=True)
class Config:
    path: Path
    name: str
    from_email: str
    from_name: str
    postal_address: str
    website: str
    language: str = "en"
    typographer: bool = False  # "curly quotes" and dashes -- as – in the email
    reply_to: str | None = None
    phones: tuple[tuple[str, str], ...] = ()
    unsubscribe_url: str | None = None
    unsubscribe_group_id: int | None = None
    unsubscribe_mailto: str | None = None
    unsubscribe_list_id: str | None = None
    sendgrid_host: str = DEFAULT_SENDGRID_HOST
    track_clicks: bool = False  # SendGrid rewrites every link through its own domain
    track_opens: bool = False  # SendGrid adds a tracking pixel
    events_path: str = "/sendgrid/events"
    events_public_key: str | None = None  # the Event Webhook's verification key (base64 SPKI)
    events_keep_client: bool = False  # keep an event's IP address and user agent
    consent_require: bool = False  # send only to people with live consent in the ledger
    archive_url: str | None = None  # where `newsletter archive`'s site is published (https)
    signup_url: str | None = None  # the public address of `newsletter serve`'s /subscribe
    signup_wording: str | None = None  # the consent checkbox's words, exactly
    signup_keep_ip: bool = False  # keep the IP address a signup came from
    signup_trusted_proxy: str | None = None  # its X-Forwarded-For is believed; nobody else's
    # a PostgreSQL server holding the state instead of .newsletter/newsletter.db; never shown
    # (NEWSLETTER_DATABASE_URL's may carry a password)
    store_url: str | None = field(default=None, repr=False)

    @property
    def root(self) -> Path:
        """The newsletter folder: issues/, templates/ and .newsletter/ live here."""
        return self.path.parent

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def subscribers_path(self) -> Path:
        """The list every command reads unless told otherwise (--list)."""
        return self.root / "subscribers.csv"

    @property
    def state_dir(self) -> Path:
        return self.root / ".newsletter"

    @property
    def list_id(self) -> str:
        """What unsubscribe tokens are bound to: changing it invalidates links already sent."""
        return self.unsubscribe_list_id or self.from_email.lower()

    @property
    def unsubscribe_mode(self) -> UnsubscribeMode:
        return UnsubscribeMode.SENDGRID if self.unsubscribe_group_id is not None else UnsubscribeMode.ENDPOINT


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")  # Cc, Zl, Zp but tab and LF


# --- value checkers: return the clean value or raise ValueError("expected ...") ---------------


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    if "\n" in value.strip() or "\r" in value:
        raise ValueError("expected a single line of text")
    if CONTROL.search(value):  # it may reach a header (the sender's name does)
        raise ValueError("expected text without control characters")
    return value.strip()


def _email(value: Any) -> str:
    if not isinstance(value, str) or not EMAIL_RE.match(value.strip()):
        raise ValueError("expected an email address like news@clinic.example")
    return value.strip()


def _url(value: Any, *, https_only: bool = False) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an absolute URL starting with https://")
    if https_only and parts.scheme != "https" and parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError("expected an https:// URL (RFC 8058); http is allowed only on localhost")
    return value.strip()


def _website(value: Any) -> str:
    return _url(value).rstrip("/") + "/"


def _unsubscribe_url(value: Any) -> str:
    url = _url(value, https_only=True)
    if urlsplit(url).query:
        raise ValueError("expected a URL without a query string (the token is added as ?token=)")
    if re.search(r"[&<>\"'\s]", url):
        raise ValueError("expected a URL without &, <, >, quotes or spaces")
    return url


def _language(value: Any) -> str:
    if not isinstance(value, str) or not LANGUAGE_RE.match(value):
        raise ValueError("expected a language tag such as en or fr-CA")
    return value


def _group_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError("expected a positive whole number (SendGrid's unsubscribe group id)")
    return value


def _mailto(value: Any) -> str:
    address = value.removeprefix("mailto:") if isinstance(value, str) else value
    return "mailto:" + _email(address)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _path(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"/[A-Za-z0-9._~/-]*", value):
        raise ValueError("expected a URL path such as /sendgrid/events")
    return value


def _public_key(value: Any) -> str:
    """SendGrid's verification key as its settings page shows it: base64 of a P-256 public key."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    text = "".join(value.split()) if isinstance(value, str) else ""
    try:
        key = load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error):
        raise ValueError("expected the Event Webhook's verification key as SendGrid shows it (base64)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("expected an ECDSA P-256 key, as SendGrid's signed Event Webhook uses")
    return text


def _signup_url(value: Any) -> str:
    url = _url(value, https_only=True)
    if not urlsplit(url).path.rstrip("/").endswith("/subscribe") or urlsplit(url).query:
        raise ValueError("expected the public URL of newsletter serve's /subscribe, like https://clinic.ca/subscribe")
    return url.rstrip("/")


def _archive_url(value: Any) -> str:
    url = _url(value, https_only=True)
    if urlsplit(url).query or urlsplit(url).fragment:
        raise ValueError("expected the archive's address without ? or #, like https://clinic.ca/newsletter")
    return url.rstrip("/")


def _ip(value: Any) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise ValueError("expected an IP address, like 10.0.0.2") from None


def _store_url(value: Any, *, password_allowed: bool = False) -> str:
    parts = urlsplit(value.strip()) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("expected a PostgreSQL URL like postgresql://newsletter@db.clinic.ca/newsletter")
    if not parts.path.strip("/"):
        raise ValueError(
            "expected the database's name at the end, like postgresql://newsletter@db.clinic.ca/newsletter"
        )
    if parts.password is not None and not password_allowed:
        raise ValueError(
            "a password does not belong in newsletter.toml, which a team shares: remove it and set PGPASSWORD "
            f"(or use ~/.pgpass), or put the whole URL in {DATABASE_URL_ENV}"
        )
    return value.strip()


def _phones(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(isinstance(v, str) and re.search(r"\d", v) for v in value.values()):
        raise ValueError('expected a table of label = "phone number"')
    return tuple((str(label), number.strip()) for label, number in value.items())


Checker = Callable[[Any], Any]

# section -> key -> (checker, required, field name in Config)
SCHEMA: dict[str, dict[str, tuple[Checker, bool, str]]] = {
    "newsletter": {
        "name": (_text, True, "name"),
        "from_email": (_email, True, "from_email"),
        "from_name": (_text, False, "from_name"),
        "reply_to": (_email, False, "reply_to"),
        "postal_address": (_text, True, "postal_address"),
        "website": (_website, True, "website"),
        "language": (_language, False, "language"),
        "phones": (_phones, False, "phones"),
        "typographer": (_bool, False, "typographer"),
    },
    "unsubscribe": {
        "url": (_unsubscribe_url, False, "unsubscribe_url"),
        "sendgrid_group_id": (_group_id, False, "unsubscribe_group_id"),
        "mailto": (_mailto, False, "unsubscribe_mailto"),
        "list_id": (_text, False, "unsubscribe_list_id"),
    },
    "sendgrid": {
        "host": (_url, False, "sendgrid_host"),
    },
    "tracking": {
        "clicks": (_bool, False, "track_clicks"),
        "opens": (_bool, False, "track_opens"),
    },
    "consent": {
        "require": (_bool, False, "consent_require"),
    },
    "archive": {
        "url": (_archive_url, False, "archive_url"),
    },
    "signup": {
        "url": (_signup_url, False, "signup_url"),
        "wording": (_text, False, "signup_wording"),
        "keep_ip": (_bool, False, "signup_keep_ip"),
        "trusted_proxy": (_ip, False, "signup_trusted_proxy"),
    },
    "store": {
        "url": (_store_url, False, "store_url"),
    },
    "events": {
        "path": (_path, False, "events_path"),
        "public_key": (_public_key, False, "events_public_key"),
        "keep_client": (_bool, False, "events_keep_client"),
    },
}


def find_config(start: Path) -> Path:
    """The newsletter.toml in ``start`` or the nearest parent, as MkDocs finds mkdocs.yml."""
    start = start.resolve()
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no {CONFIG_NAME} in {start} or its parents; run 'newsletter init' to create one, or pass --config PATH"
    )


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a newsletter.toml (found from the current folder when ``path`` is None)."""
    environ = os.environ if environ is None else environ
    path = find_config(Path.cwd()) if path is None else path
    shown = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", shown) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", shown) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _toml_error_line(str(exc))
        raise ConfigError(f"invalid TOML: {str(exc).split(' (at line')[0]}", shown, line) from None

    values, problems = _validate(data, text)
    if problems:
        lines = [f"{shown}:{line}: {msg}" if line else f"{shown}: {msg}" for line, msg in problems]
        if len(lines) == 1:
            raise ConfigError(lines[0])
        raise ConfigError(f"{len(lines)} problems in {shown}:\n  " + "\n  ".join(lines))

    values.setdefault("from_name", values["name"])
    host = environ.get("SENDGRID_API_HOST", "").strip()
    if host:
        values["sendgrid_host"] = host
    if key := environ.get(WEBHOOK_KEY_ENV, "").strip():
        try:
            values["events_public_key"] = _public_key(key)
        except ValueError as exc:
            raise ConfigError(f"{WEBHOOK_KEY_ENV}: {exc}") from None
    if url := environ.get(DATABASE_URL_ENV, "").strip():
        try:
            values["store_url"] = _store_url(url, password_allowed=True)
        except ValueError as exc:  # the URL itself is never repeated: it may hold a password
            raise ConfigError(f"{DATABASE_URL_ENV}: {exc}") from None
    return Config(path=path.resolve(), **values)


def _validate(data: dict[str, Any], text: str) -> tuple[dict[str, Any], list[tuple[int, str]]]:
    values: dict[str, Any] = {}
    problems: list[tuple[int, str]] = []
    for section, table in data.items():
        if section not in SCHEMA:
            expected = ", ".join(f"[{name}]" for name in SCHEMA)
            problems.append(
                (key_line(text, section, None), f"unknown section [{section}] (expected one of {expected})")
            )
            continue
        if not isinstance(table, dict):
            problems.append((key_line(text, None, section), f"{section}: expected a [{section}] table"))
            continue
        for key, value in table.items():
            line = key_line(text, section, key)
            if key not in SCHEMA[section]:
                known = ", ".join(SCHEMA[section])
                problems.append((line, f"[{section}] {key}: unknown key (expected one of {known})"))
                continue
            checker, _, field = SCHEMA[section][key]
            try:
                values[field] = checker(value)
            except ValueError as exc:
                got = "" if field in SECRET_FIELDS else f", got {value!r}"
                problems.append((line, f"[{section}] {key}: {exc}{got}"))
    for section, keys in SCHEMA.items():
        for key, (_, required, _) in keys.items():
            if required and key not in data.get(section, {}):
                problems.append((0, f"[{section}] {key}: required key is missing"))
    unsubscribe = data.get("unsubscribe", {})
    if isinstance(unsubscribe, dict):
        modes = [key for key in ("url", "sendgrid_group_id") if key in unsubscribe]
        if not modes:
            problems.append((0, "[unsubscribe]: set url (your own endpoint) or sendgrid_group_id"))
        elif len(modes) == 2:
            line = key_line(text, "unsubscribe", "sendgrid_group_id")
            problems.append((line, "[unsubscribe]: set url or sendgrid_group_id, not both"))
    return values, problems


def key_line(text: str, section: str | None, key: str | None) -> int:
    """Best-effort line number of ``key`` inside ``[section]`` (0 when not found); `check`
    uses it too, to point at a placeholder value."""
    current = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        header = re.match(r"^\[\s*([^\]]+?)\s*\]", line)
        if header:
            current = header.group(1).split(".")[0].strip('"')
            if key is None and current == section:
                return number
            continue
        if key is not None and current == section and re.match(rf"^\"?{re.escape(key)}\"?\s*[=.]", line):
            return number
    return 0


def _toml_error_line(message: str) -> int | None:
    match = re.search(r"at line (\d+)", message)
    return int(match.group(1)) if match else None
