"""The one-click unsubscribe endpoint, a WSGI app (`newsletter serve-unsubscribe`, or
``newsletter_cli.web.unsubscribe:app`` in any WSGI server).

It learns the address from the token itself, so it needs no copy of the list and can never
reveal whether an address is on it. GET only shows a confirmation page (mail scanners open every
link); POST, the RFC 8058 one-click request or the page's button, unsubscribes.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from newsletter_cli.config import Config, load_config
from newsletter_cli.errors import ConfigError
from newsletter_cli.sendgrid_api import KEY_ENV, SendGrid, SendGridError, Stopped, Timing
from newsletter_cli.store import Store, StoreError, Suppression
from newsletter_cli.unsubscribe import load_secret, read_token
from newsletter_cli.web import ConfiguredOnFirstRequest, html_page, page_template

MAX_BODY = 64 * 1024
PAGE = page_template("unsubscribe.html.j2")

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


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
        self.pusher = Pusher(config, api, self.log) if api is not None else None

    def close(self) -> None:
        if self.pusher is not None:
            self.pusher.close()

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        respond = _Responder(self.config, start_response, method)
        if method not in ("GET", "HEAD", "POST"):
            return respond("405 Method Not Allowed", "not-allowed", "Not allowed", [("Allow", "GET, HEAD, POST")])
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            form = read_form(environ) if method == "POST" else {}
        except ValueError:
            return respond("400 Bad Request", "unreadable", "Bad request")
        if form is None:
            return respond("413 Content Too Large", "too-large", "Too large")
        token = (query.get("token") or form.get("token") or [""])[0]
        address = read_token(self.secret, self.config.list_id, token)
        if address is None:
            return respond("400 Bad Request", "invalid", "Link not valid")
        if method == "POST":
            try:
                self._unsubscribe(address)
            except StoreError as exc:
                print(f"newsletter: could not record an unsubscribe: {exc.message}", file=self.log)
                return respond("503 Service Unavailable", "retry", "Try again", [("Retry-After", "120")])
            return respond("200 OK", "done", "Unsubscribed", address=address)
        return respond("200 OK", "confirm", "Unsubscribe", address=address, token=token)

    def _unsubscribe(self, address: str) -> None:
        with self._writing, Store.for_config(self.config) as store:
            store.suppress([Suppression(address, "unsubscribed", "endpoint")], push=self.pusher is not None)
        if self.pusher is not None:
            self.pusher.wake()


class _Responder:
    """One page of ``templates/unsubscribe.html.j2``, with the headers every page gets."""

    def __init__(self, config: Config, start_response: StartResponse, method: str):
        self.config = config
        self.start_response = start_response
        self.method = method

    def __call__(
        self, status: str, page: str, title: str, extra: list[tuple[str, str]] | None = None, **values: str
    ) -> list[bytes]:
        values = {"address": "", "token": "", **values}
        body = PAGE.render(lang=self.config.language, name=self.config.name, title=title, page=page, **values)
        return html_page(self.start_response, self.method, status, body, extra)


def read_form(environ: Environ) -> dict[str, list[str]] | None:
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

    def __init__(self, config: Config, api: SendGrid, log: Any, retry: float = 120.0):
        self.config = config
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
                with Store.for_config(self.config) as store:
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


# `newsletter_cli.web.unsubscribe:app` for any WSGI server
app = ConfiguredOnFirstRequest(app_from_environment)
