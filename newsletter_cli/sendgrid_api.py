"""The only module that talks to SendGrid: the official client, a timeout on every request,
retries with backoff, and every failure turned into one readable line (never the key).

The ``sendgrid`` client has no default timeout, no retries, and lets urllib's network errors
through unwrapped; this module supplies all three. One cost it cannot remove: python_http_client
formats every request body into a debug message even when nothing is logged (the repr of some
450 KB per batch: about a fifth of a send worker's instructions, by valgrind's count).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from newsletter_cli.errors import NewsletterError

KEY_ENV = "SENDGRID_API_KEY"
PAGE = 500  # the suppression lists' largest page
RETRY_STATUSES = {429, 500, 502, 503, 504}
# python_http_client logs request headers, Authorization included, at DEBUG: keep it quieter.
logging.getLogger("python_http_client.client").setLevel(logging.INFO)

# (list path, our reason) for every suppression list that `sync` pulls
SUPPRESSION_LISTS = (
    ("suppression/unsubscribes", "unsubscribed"),
    ("suppression/bounces", "bounced"),
    ("suppression/spam_reports", "spam_report"),
    ("suppression/invalid_emails", "invalid"),
)


class Stopped(Exception):
    """A retry wait was cut short because the send is stopping; the request was not accepted."""


class SendGridError(NewsletterError):
    """SendGrid refused a request or could not be reached."""

    def __init__(self, message: str, status: int | None = None, reset: float | None = None):
        self.status = status
        self.reset = reset  # X-RateLimit-Reset of a 429, as unix time
        super().__init__(message)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def error_messages(body: bytes) -> str:
    """SendGrid's ``{"errors": [{"message", "field"}]}`` as one line."""
    try:
        errors = json.loads(body).get("errors", [])
        parts = [f"{e.get('field')}: {e.get('message')}" if e.get("field") else str(e.get("message")) for e in errors]
        return "; ".join(parts) or body.decode("utf-8", "replace")[:200]
    except (ValueError, AttributeError):
        return body.decode("utf-8", "replace")[:200]


class SendGrid:
    """A SendGrid API client with a timeout, retries and readable errors."""

    def __init__(
        self,
        api_key: str,
        host: str,
        *,
        timeout: float = 30.0,
        attempts: int = 6,
        backoff: float = 1.0,
        max_wait: float = 60.0,
        stop: threading.Event | None = None,
    ):
        if not api_key:
            raise SendGridError(f"{KEY_ENV} is not set: create an API key in SendGrid and export it")
        self.host = host.rstrip("/")
        self._api = SendGridAPIClient(api_key, host=self.host)
        self._api.client.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.max_wait = max_wait
        self.stop = stop or threading.Event()  # set it to end retry waits early

    def request(self, method: str, path: str, *, body: Any = None, query: dict[str, Any] | None = None) -> Answer:
        """One API call, retried on 429, 5xx and network errors; raises SendGridError otherwise."""
        for attempt in range(1, self.attempts + 1):
            try:
                return self._once(method, path, body, query)
            except SendGridError as exc:
                if exc.status not in RETRY_STATUSES and exc.status is not None:
                    raise
                if attempt == self.attempts:
                    raise SendGridError(f"{exc.message} (gave up after {attempt} attempts)", exc.status) from None
                if self.stop.wait(self._wait(attempt, exc.reset)):
                    raise Stopped(f"stopped before retrying: {exc.message}") from None
        raise AssertionError("unreachable")

    def _once(self, method: str, path: str, body: Any, query: dict[str, Any] | None) -> Answer:
        endpoint = self._api.client._(path)
        call = getattr(endpoint, method.lower())
        try:
            response = call(request_body=body, query_params=query)
        except HTTPError as exc:
            raise _http_error(method, path, exc) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc.__class__.__name__
            raise SendGridError(f"cannot reach SendGrid at {self.host}: {reason}") from None
        return Answer(response.status_code, response.body or b"", dict(response.headers or {}))

    def _wait(self, attempt: int, reset: float | None) -> float:
        if reset is not None:
            return min(max(reset - time.time(), 0.0) + random.uniform(0, 0.25), self.max_wait)
        return min(self.backoff * 2 ** (attempt - 1), self.max_wait) * random.uniform(0.5, 1.0)

    # --- mail ----------------------------------------------------------------------------------

    def send_mail(self, payload: dict[str, Any]) -> str:
        """POST /v3/mail/send; returns SendGrid's X-Message-Id for the accepted batch."""
        answer = self.request("POST", "mail/send", body=payload)
        return answer.headers.get("X-Message-Id") or answer.headers.get("x-message-id") or ""

    # --- suppressions ------------------------------------------------------------------------

    def suppression_list(self, path: str) -> Iterator[str]:
        """Every address on one of SendGrid's paginated suppression lists."""
        offset = 0
        while True:
            page = self.request("GET", path, query={"limit": PAGE, "offset": offset}).json() or []
            for entry in page:
                yield entry["email"]
            if len(page) < PAGE:
                return
            offset += PAGE

    def group_suppressions(self, group_id: int) -> list[str]:
        return list(self.request("GET", f"asm/groups/{group_id}/suppressions").json() or [])

    def add_global_suppressions(self, emails: list[str]) -> None:
        self.request("POST", "asm/suppressions/global", body={"recipient_emails": emails})


def _http_error(method: str, path: str, exc: HTTPError) -> SendGridError:
    status = exc.status_code
    if status == 401:
        message = "SendGrid rejected the API key (401): check SENDGRID_API_KEY"
    elif status == 403:
        message = f"the API key may not use {method} /v3/{path} (403): give it the needed scope in SendGrid"
    else:
        detail = error_messages(exc.body or b"")
        message = f"SendGrid answered {status} to {method} /v3/{path}" + (f": {detail}" if detail else "")
    reset = (exc.headers or {}).get("X-RateLimit-Reset") if status == 429 else None
    return SendGridError(message, status, float(reset) if reset and str(reset).isdigit() else None)
