"""Unsubscribe links: signed per-recipient tokens and List-Unsubscribe headers. The endpoint
that reads them is ``web.unsubscribe``.

A token is ``<address, base64url>.<HMAC-SHA256(secret, list id + address), base64url>``, the
HMAC truncated to 128 bits as RFC 2104 section 5 allows (42 bytes fewer in every recipient's
part of a request, where the link appears twice). The endpoint learns the address from the token
itself, so it needs no copy of the list and can never reveal whether an address is on it. GET
only shows a confirmation page (mail scanners open every link); POST, the RFC 8058 one-click
request or the page's button, unsubscribes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Callable, Mapping
from typing import Any

from newsletter_cli.config import Config
from newsletter_cli.errors import ConfigError
from newsletter_cli.render import SENDGRID_UNSUBSCRIBE_TAG

SECRET_ENV = "NEWSLETTER_SECRET"
MIN_SECRET_LENGTH = 16
PREVIEW_TOKEN = "preview-token-not-valid"
MAX_BODY = 64 * 1024
MAC_BYTES = 16  # HMAC-SHA256 truncated to 128 bits
ONE_CLICK = "List-Unsubscribe=One-Click"
ONE_CLICK_HEADER = {"List-Unsubscribe-Post": ONE_CLICK}  # the same for everyone


# --- tokens and links ------------------------------------------------------------------------


def load_secret(environ: Mapping[str, str] | None = None) -> bytes:
    """NEWSLETTER_SECRET, required for own-endpoint links; never printed."""
    value = (os.environ if environ is None else environ).get(SECRET_ENV, "")
    if not value:
        raise ConfigError(
            f"{SECRET_ENV} is not set: own-endpoint unsubscribe links are signed with it. Create one with\n"
            "  python -c 'import secrets; print(secrets.token_urlsafe(32))'\n"
            "and keep the same value for as long as links already sent must work"
        )
    if len(value) < MIN_SECRET_LENGTH:
        raise ConfigError(f"{SECRET_ENV} is too short: use at least {MIN_SECRET_LENGTH} random characters")
    return value.encode()


_URLSAFE = bytes.maketrans(b"+/", b"-_")
_INNER_PAD = bytes(x ^ 0x36 for x in range(256))
_OUTER_PAD = bytes(x ^ 0x5C for x in range(256))


def b64url(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Makes the tokens of one list. HMAC-SHA256 (RFC 2104) with the key's two pads hashed once:
    a send signs every recipient, and ``hmac.digest`` spends most of its time on the key."""

    def __init__(self, secret: bytes, list_id: str):
        self._made_from = (secret, list_id)
        key = (hashlib.sha256(secret).digest() if len(secret) > 64 else secret).ljust(64, b"\0")
        self._inner = hashlib.sha256(key.translate(_INNER_PAD))
        self._outer = hashlib.sha256(key.translate(_OUTER_PAD))
        self._prefix = f"{list_id}\n".encode()

    def __reduce__(self) -> tuple[type[Signer], tuple[bytes, str]]:
        """To another process (a pipe, never a file): hash objects themselves do not pickle."""
        return Signer, self._made_from

    def mac(self, address: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(self._prefix + address)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:MAC_BYTES]

    def token(self, email: str) -> str:
        address = email.strip().lower().encode()
        return f"{b64url(address)}.{b64url(self.mac(address))}"


def make_token(secret: bytes, list_id: str, email: str) -> str:
    return Signer(secret, list_id).token(email)


def read_token(secret: bytes, list_id: str, token: str) -> str | None:
    """The address a token was made for, or None for a missing, altered or foreign token."""
    payload, dot, signature = (token or "").partition(".")
    if not dot or not payload or not signature:
        return None
    try:
        address = unb64url(payload).decode()
        given = unb64url(signature)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    # base64 decoding tolerates some non-canonical spellings; insist on the exact token we make
    if b64url(address.encode()) != payload or b64url(given) != signature or address != address.strip().lower():
        return None
    return address if hmac.compare_digest(given, Signer(secret, list_id).mac(address.encode())) else None


def link(config: Config, secret: bytes, email: str) -> str:
    return linker(config, secret)(email)


def linker(config: Config, secret: bytes) -> Callable[[str], str]:
    """What makes each recipient's link, set up once per send."""
    return Linker(config.unsubscribe_url, Signer(secret, config.list_id))


class Linker:
    """Each recipient's unsubscribe link (SendGrid's tag when there is no own endpoint); an
    object rather than a closure so that it can travel to another process."""

    def __init__(self, url: str | None, signer: Signer):
        self.start = f"{url}?token=" if url is not None else None
        self.token = signer.token

    def __call__(self, email: str) -> str:
        return SENDGRID_UNSUBSCRIBE_TAG if self.start is None else self.start + self.token(email)


def measuring_linker(config: Config) -> Linker:
    """Links of the right length for any address, made without the secret (which a link's
    length does not depend on): for checking a row's size where no secret is needed."""
    return Linker(config.unsubscribe_url, Signer(b"only-the-length-counts", config.list_id))


def sample_link(config: Config) -> str:
    """The link shown by build and preview, which need no secret: a placeholder token."""
    if config.unsubscribe_url is None:
        return SENDGRID_UNSUBSCRIBE_TAG
    return f"{config.unsubscribe_url}?token={PREVIEW_TOKEN}"


def headers(config: Config, url: str) -> dict[str, str]:
    """RFC 2369 / RFC 8058 headers for one recipient's link (own-endpoint mode; SendGrid adds its own)."""
    return {"List-Unsubscribe": list_unsubscribe(config, url), **ONE_CLICK_HEADER}


def list_unsubscribe(config: Config, url: str) -> str:
    """The List-Unsubscribe value: the one-click link, and the mailto address when configured."""
    return f"<{url}>{list_unsubscribe_tail(config)}"


def list_unsubscribe_tail(config: Config) -> str:
    """What follows the link in every List-Unsubscribe value of a send."""
    return f", <{config.unsubscribe_mailto}?subject=unsubscribe>" if config.unsubscribe_mailto else ""


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The endpoint's old address, kept for WSGI servers configured with it: it is
    ``newsletter_cli.web.unsubscribe:app`` now."""
    from newsletter_cli.web.unsubscribe import app as endpoint_app

    return endpoint_app(environ, start_response)
