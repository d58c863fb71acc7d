"""The signup form and its confirmation link, a WSGI app (the /subscribe and /confirm paths of
`newsletter serve`).

``POST /subscribe`` answers the same "check your inbox" page whatever the address (new,
pending, confirmed, over its limit), so the form tells nobody who is on the list. ``GET
/confirm`` changes nothing; the page posts itself when JavaScript runs (one click for a person,
nothing for a mail scanner), and ``POST /confirm`` records the consent.
"""

from __future__ import annotations

import collections
import datetime as dt
import secrets
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from newsletter_cli.config import Config
from newsletter_cli.consent.signup import SignupError, ask, confirm, read_token
from newsletter_cli.errors import NewsletterError
from newsletter_cli.sendgrid_api import SendGrid
from newsletter_cli.store import Store, StoreError
from newsletter_cli.web import html_page, page_template
from newsletter_cli.web.unsubscribe import Environ, StartResponse, read_form

PAGE = page_template("signup.html.j2")
PER_IP_HOUR = 10  # signup POSTs from one address an hour


class SignupPages:
    def __init__(
        self,
        config: Config,
        secret: bytes,
        api: SendGrid | None,
        log: Any = None,
        clock: Callable[[], float] = time.time,
    ):
        self.config = config
        self.secret = secret
        self.api = api
        self.log = log or sys.stderr
        self.clock = clock
        self._recent: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    @property
    def open(self) -> bool:
        return self.config.signup_url is not None and self.config.signup_wording is not None and self.api is not None

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        answer = self._answer(environ, start_response)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else answer

    def _answer(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        confirming = environ.get("PATH_INFO", "").rstrip("/").endswith("/confirm")
        if not self.open:
            return self._page(start_response, "404 Not Found", "unavailable", "Not available")
        if method not in ("GET", "HEAD", "POST"):
            return self._page(start_response, "405 Method Not Allowed", "unavailable", "Not allowed")
        try:
            fields = {k: v[0] for k, v in (read_form(environ) or {}).items()} if method == "POST" else {}
        except ValueError:
            fields = {}
        try:
            if confirming:
                return self._confirm(environ, start_response, method, fields)
            if method == "POST":
                return self._subscribe(environ, start_response, fields)
        except StoreError as exc:
            print(f"newsletter: a signup could not be recorded: {exc.message}", file=self.log)
            return self._page(start_response, "503 Service Unavailable", "retry", "Try again")
        return self._form_page(start_response, "200 OK")

    def _form_page(self, start_response: StartResponse, status: str, problem: str = "", **values: str) -> list[bytes]:
        return self._page(
            start_response,
            status,
            "form",
            "Subscribe",
            problem=problem,
            action=self.config.signup_url or "",
            wording=self.config.signup_wording or "",
            form=values.get("form", "signup"),
            email=values.get("email", ""),
            first_name=values.get("first_name", ""),
        )

    def _subscribe(self, environ: Environ, start_response: StartResponse, fields: dict[str, str]) -> list[bytes]:
        ip = self.client_ip(environ)
        if not self._allowed(ip):
            return self._page(start_response, "429 Too Many Requests", "too-many", "Too many tries")
        assert self.api is not None
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        try:
            with Store.for_config(self.config) as store:
                asked = ask(store, self.config, self.api, self.secret, fields, ip, now)
        except SignupError as exc:
            keep = {k: fields.get(k, "") for k in ("email", "first_name", "form")}
            return self._form_page(start_response, "400 Bad Request", exc.message, **keep)
        except StoreError:
            raise
        except NewsletterError as exc:  # SendGrid refused or could not be reached: say so, record nothing
            print(f"newsletter: a confirmation email could not be sent: {exc.message}", file=self.log)
            return self._page(start_response, "503 Service Unavailable", "retry", "Try again")
        if not asked.mailed:
            print(f"newsletter: a signup was not mailed ({asked.why})", file=self.log)
        return self._page(start_response, "200 OK", "sent", "Check your inbox")

    def _confirm(
        self, environ: Environ, start_response: StartResponse, method: str, fields: dict[str, str]
    ) -> list[bytes]:
        token = (parse_qs(environ.get("QUERY_STRING", "")).get("token") or [fields.get("token", "")])[0]
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        found = read_token(self.secret, token, now)
        if found is None:
            return self._page(start_response, "400 Bad Request", "invalid", "Link not valid")
        if method != "POST":
            nonce = secrets.token_urlsafe(16)
            policy = f"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; script-src 'nonce-{nonce}'"
            return self._page(
                start_response,
                "200 OK",
                "confirm",
                "Confirm",
                address=found.email,
                token=token,
                nonce=nonce,
                csp=policy,
            )
        with Store.for_config(self.config) as store:
            address = confirm(store, self.config, self.secret, token, self.client_ip(environ), now)
        if address is None:
            return self._page(start_response, "400 Bad Request", "invalid", "Link not valid")
        return self._page(start_response, "200 OK", "confirmed", "Subscribed", address=address)

    def client_ip(self, environ: Environ) -> str | None:
        """The peer's address; behind the configured proxy only, the last hop it names."""
        peer = environ.get("REMOTE_ADDR")
        forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
        if peer and peer == self.config.signup_trusted_proxy and forwarded.strip():
            return forwarded.split(",")[-1].strip()
        return peer

    def _allowed(self, ip: str | None) -> bool:
        now = self.clock()
        with self._lock:
            recent = self._recent.setdefault(ip or "?", collections.deque())
            while recent and recent[0] < now - 3600:
                recent.popleft()
            if len(recent) >= PER_IP_HOUR:
                return False
            recent.append(now)
            return True

    def _page(
        self, start_response: StartResponse, status: str, page: str, title: str, csp: str = "", **values: str
    ) -> list[bytes]:
        defaults = {
            "address": "",
            "token": "",
            "nonce": "",
            "problem": "",
            "postal_address": self.config.postal_address,
        }
        body = PAGE.render(
            lang=self.config.language, name=self.config.name, title=title, page=page, **defaults | values
        )
        return html_page(start_response, "GET", status, body, csp=csp)  # a HEAD: __call__ drops the body
