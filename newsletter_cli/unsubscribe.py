"""Unsubscribe links: signed per-recipient tokens, List-Unsubscribe headers, and the endpoint.

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
import html
import os
import sys
import threading
from collections.abc import Callable, Mapping
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs, quote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.simple_server import make_server as wsgi_make_server

from newsletter_cli.config import Config, load_config
from newsletter_cli.errors import ConfigError, NewsletterError
from newsletter_cli.render import SENDGRID_UNSUBSCRIBE_TAG
from newsletter_cli.sendgrid_api import KEY_ENV, SendGrid, SendGridError, Stopped, Timing
from newsletter_cli.store import Store, StoreError, Suppression

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


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
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
        return f"{_b64(address)}.{_b64(self.mac(address))}"


def make_token(secret: bytes, list_id: str, email: str) -> str:
    return Signer(secret, list_id).token(email)


def read_token(secret: bytes, list_id: str, token: str) -> str | None:
    """The address a token was made for, or None for a missing, altered or foreign token."""
    payload, dot, signature = (token or "").partition(".")
    if not dot or not payload or not signature:
        return None
    try:
        address = _unb64(payload).decode()
        given = _unb64(signature)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    # base64 decoding tolerates some non-canonical spellings; insist on the exact token we make
    if _b64(address.encode()) != payload or _b64(given) != signature or address != address.strip().lower():
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


# --- the endpoint ----------------------------------------------------------------------------

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
SECURITY_HEADERS = [
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"),
]
PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title} - {name}</title>
<style>
body {{ margin: 0; background: #eef1f4; color: #1f2933;
  font: 16px/1.6 -apple-system, BlinkMacSystemFont, 'Segoe UI', Helvetica, Arial, sans-serif; }}
main {{ max-width: 480px; margin: 48px auto; padding: 32px; background: #fff; border-radius: 8px; }}
h1 {{ font-size: 22px; margin: 0 0 12px; }}
p.brand {{ font-weight: 700; color: #0a5c63; margin: 0 0 24px; }}
button {{ font: inherit; font-weight: 600; color: #fff; background: #0a5c63; border: 0;
  border-radius: 6px; padding: 12px 24px; cursor: pointer; }}
@media (prefers-color-scheme: dark) {{
  body {{ background: #111418; color: #e5e9ee; }} main {{ background: #1b2026; }}
  p.brand {{ color: #7fd3d9; }}
}}
</style></head>
<body><main><p class="brand">{name}</p>{content}</main></body></html>
"""


class Endpoint:
    """The WSGI application behind `newsletter serve-unsubscribe` and any WSGI server.

    A POST is answered as soon as the suppression is stored here; SendGrid is told in the
    background (``Pusher``), so a slow or unreachable SendGrid never holds a request up."""

    def __init__(self, config: Config, secret: bytes, api: SendGrid | None = None, log: Any = None):
        self.config = config
        self.secret = secret
        self.api = api
        self.log = log or sys.stderr
        self._writing = threading.Lock()  # one writer at a time here: SQLite's own wait is unfair
        self.pusher = Pusher(config.state_dir, api, self.log) if api is not None else None

    def close(self) -> None:
        if self.pusher is not None:
            self.pusher.close()

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD", "POST"):
            return self._page(
                start_response,
                "405 Method Not Allowed",
                "Not allowed",
                "<h1>Not allowed</h1>",
                [("Allow", "GET, HEAD, POST")],
                method,
            )
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            form = _form(environ) if method == "POST" else {}
        except ValueError:
            return self._page(
                start_response,
                "400 Bad Request",
                "Bad request",
                "<h1>This request could not be read</h1>",
                method=method,
            )
        if form is None:
            return self._page(
                start_response, "413 Content Too Large", "Too large", "<h1>Request too large</h1>", method=method
            )
        token = (query.get("token") or form.get("token") or [""])[0]
        address = read_token(self.secret, self.config.list_id, token)
        if address is None:
            content = (
                "<h1>This unsubscribe link is not valid</h1>"
                "<p>It may have been cut short or changed. Please use the link from the newsletter "
                "email itself, or reply to it and ask to be removed.</p>"
            )
            return self._page(start_response, "400 Bad Request", "Link not valid", content, method=method)
        shown = html.escape(address)
        name = html.escape(self.config.name)
        if method == "POST":
            try:
                self._unsubscribe(address)
            except StoreError as exc:
                print(f"newsletter: could not record an unsubscribe: {exc.message}", file=self.log)
                content = (
                    "<h1>Please try again in a few minutes</h1>"
                    "<p>Your request could not be recorded just now. Nothing has changed yet.</p>"
                )
                return self._page(
                    start_response, "503 Service Unavailable", "Try again", content, [("Retry-After", "120")], method
                )
            content = (
                "<h1>You are unsubscribed</h1>"
                f"<p><strong>{shown}</strong> will no longer receive the {name} newsletter.</p>"
            )
            return self._page(start_response, "200 OK", "Unsubscribed", content, method=method)
        action = html.escape(f"?token={quote(token)}")
        content = (
            "<h1>Unsubscribe?</h1>"
            f"<p>Stop sending the {name} newsletter to <strong>{shown}</strong>?</p>"
            f'<form method="post" action="{action}"><button type="submit">Unsubscribe</button></form>'
        )
        return self._page(start_response, "200 OK", "Unsubscribe", content, method=method)

    def _unsubscribe(self, address: str) -> None:
        with self._writing, Store.for_folder(self.config.state_dir) as store:
            store.suppress([Suppression(address, "unsubscribed", "endpoint")], push=self.pusher is not None)
        if self.pusher is not None:
            self.pusher.wake()

    def _page(
        self,
        start_response: StartResponse,
        status: str,
        title: str,
        content: str,
        extra: list[tuple[str, str]] | None = None,
        method: str = "GET",
    ) -> list[bytes]:
        body = PAGE.format(lang=self.config.language, title=title, name=html.escape(self.config.name), content=content)
        data = body.encode()
        headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(data)))]
        start_response(status, headers + SECURITY_HEADERS + (extra or []))
        return [] if method == "HEAD" else [data]


def _form(environ: Environ) -> dict[str, list[str]] | None:
    """The fields of a form-urlencoded or multipart POST body; None when it is too large;
    ValueError when it cannot be read (an unknown charset, say)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        return None
    raw = environ["wsgi.input"].read(length) if length > 0 else b""
    kind = environ.get("CONTENT_TYPE", "")
    if kind.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {kind}\r\n\r\n".encode() + raw)
        fields: dict[str, list[str]] = {}
        for part in message.iter_parts() if message.is_multipart() else ():
            name = part.get_param("name", header="content-disposition")
            if name:
                try:
                    value = part.get_content()
                except (LookupError, UnicodeError, KeyError) as exc:
                    raise ValueError(f"unreadable form part: {exc}") from None
                fields.setdefault(str(name), []).append(str(value).strip())
        return fields
    return parse_qs(raw.decode("utf-8", "replace"))


class Pusher:
    """Tells SendGrid of the endpoint's unsubscribes in the background. They wait in the store
    (``pushes``) until SendGrid has taken them, so none is lost when SendGrid is unreachable or
    the server stops; ``unsubscribes sync`` and ``send`` pass on whatever is left."""

    def __init__(self, state_dir: Path, api: SendGrid, log: Any, retry: float = 120.0):
        self.state_dir = state_dir
        self.api = api
        self.log = log
        self.retry = retry
        self._woken = threading.Event()
        self._stopped = threading.Event()
        self.api.stop = self._stopped  # stopping cuts a retry wait short
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def wake(self) -> None:
        with self._starting:  # started on first use: a WSGI server may fork its workers first
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="sendgrid-push")
                self._thread.start()
        self._woken.set()

    def close(self) -> None:
        self._stopped.set()
        self._woken.set()

    def _run(self) -> None:
        from newsletter_cli.suppressions import push_pending

        wait: float | None = None
        while True:
            self._woken.wait(wait)
            self._woken.clear()
            if self._stopped.is_set():
                return
            try:
                with Store.for_folder(self.state_dir) as store:
                    push_pending(store, self.api)
                wait = None
            except Stopped:
                return
            except (SendGridError, StoreError) as exc:
                print(f"newsletter: SendGrid not yet told of an unsubscribe ({exc.message}); retrying", file=self.log)
                wait = self.retry


def app_from_environment(environ: Mapping[str, str] | None = None) -> Endpoint:
    """Settings from the environment: NEWSLETTER_CONFIG (else newsletter.toml found from the
    current folder), NEWSLETTER_SECRET, and SENDGRID_API_KEY when SendGrid should learn too."""
    environ = os.environ if environ is None else environ
    config_path = environ.get("NEWSLETTER_CONFIG")
    config = load_config(Path(config_path) if config_path else None, environ)
    if config.unsubscribe_url is None:
        raise ConfigError("the unsubscribe endpoint needs [unsubscribe] url in newsletter.toml")
    key = environ.get(KEY_ENV)
    api = SendGrid(key, config.sendgrid_host, timing=Timing.from_environ(environ)) if key else None
    return Endpoint(config, load_secret(environ), api)


def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """`newsletter_cli.unsubscribe:app` for any WSGI server; configured on its first request."""
    global _app
    if _app is None:
        _app = app_from_environment()
    return _app(environ, start_response)


_app: Endpoint | None = None


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # no token-bearing URLs in logs
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 1024  # the default 5 made the kernel drop one-click POSTs under load


def make_server(host: str, port: int, endpoint: Endpoint) -> WSGIServer:
    """A small threaded server for the endpoint; any WSGI server works as well."""
    try:
        return wsgi_make_server(host, port, endpoint, server_class=_ThreadingServer, handler_class=_QuietHandler)
    except OSError as exc:
        raise NewsletterError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
