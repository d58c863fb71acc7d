"""The only module that talks to SendGrid: the official client, a timeout on every request,
retries with backoff, and every failure turned into one readable line (never the key).

The ``sendgrid`` client has no default timeout, no retries, and lets urllib's network errors
through unwrapped; this module supplies all three. One cost it cannot remove: python_http_client
formats every request body into a debug message even when nothing is logged (the README's
"Sending" figures say what it costs a send).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import random
import threading
import time
import urllib.error
from collections.abc import Iterator, Mapping
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


class Unreachable(SendGridError):
    """The request provably never reached SendGrid (refused, no such host, no connection in
    time): safe to try again."""


class Uncertain(SendGridError):
    """The request went out but no answer came back (a read timeout, a connection closed after
    the body was sent, an answer cut short): SendGrid may have accepted it, so it is never sent
    again by itself."""


class NotSendGrid(SendGridError):
    """Something answered that is not SendGrid (a proxy, a captive portal, a wrong
    SENDGRID_API_HOST): nothing it says counts as SendGrid's."""


TIMEOUT_ENV, BACKOFF_ENV = "NEWSLETTER_HTTP_TIMEOUT", "NEWSLETTER_RETRY_BACKOFF"


@dataclass(frozen=True)
class Timing:
    """How long to wait for an answer and between attempts. The defaults suit SendGrid; the
    environment may shorten them (tests do, so that a lost answer takes a second, not 30)."""

    timeout: float = 30.0
    attempts: int = 6
    backoff: float = 1.0
    max_wait: float = 60.0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Timing:
        environ = os.environ if environ is None else environ
        values: dict[str, float] = {}
        for name, key in ((TIMEOUT_ENV, "timeout"), (BACKOFF_ENV, "backoff")):
            text = environ.get(name, "").strip()
            if not text:
                continue
            try:
                value = float(text)
            except ValueError:
                raise SendGridError(f"{name}={text!r}: expected a number of seconds") from None
            if not value > 0:
                raise SendGridError(f"{name}={text!r}: expected a number of seconds above 0")
            values[key] = value
        default = cls()
        backoff = values.get("backoff", default.backoff)
        return cls(
            timeout=values.get("timeout", default.timeout),
            attempts=default.attempts,
            backoff=backoff,
            max_wait=backoff * 60 if "backoff" in values else default.max_wait,
        )


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
        return "; ".join(parts) or _one_line(body)
    except (ValueError, AttributeError):
        return _one_line(body)


def _one_line(body: bytes) -> str:
    return " ".join(body.decode("utf-8", "replace").split())[:200]


class SendGrid:
    """A SendGrid API client with a timeout, retries and readable errors."""

    def __init__(
        self,
        api_key: str,
        host: str,
        *,
        timing: Timing | None = None,
        stop: threading.Event | None = None,
    ):
        if not api_key:
            raise SendGridError(f"{KEY_ENV} is not set: create an API key in SendGrid and export it")
        self.host = host.rstrip("/")
        self.timing = timing or Timing()
        self._api = SendGridAPIClient(api_key, host=self.host)
        self._api.client.timeout = self.timing.timeout
        self.stop = stop or threading.Event()  # set it to end retry waits early

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, Any] | None = None,
        idempotent: bool = True,
    ) -> Answer:
        """One API call, retried on 429, 5xx and when it provably never left; a lost answer is
        retried only for an ``idempotent`` call (raised as Uncertain otherwise). Raises
        SendGridError for everything else."""
        attempts = self.timing.attempts
        for attempt in range(1, attempts + 1):
            try:
                return self._once(method, path, body, query)
            except SendGridError as exc:
                again = isinstance(exc, Unreachable) or exc.status in RETRY_STATUSES
                if not again and not (idempotent and isinstance(exc, Uncertain)):
                    raise
                if attempt == attempts:
                    raise type(exc)(f"{exc.message} (gave up after {attempt} attempts)", exc.status) from None
                if self.stop.wait(self._wait(attempt, exc.reset)):
                    raise Stopped(f"stopped before retrying: {exc.message}") from None
        raise AssertionError("unreachable")

    def _once(self, method: str, path: str, body: Any, query: dict[str, Any] | None) -> Answer:
        endpoint = self._api.client._(path)
        call = getattr(endpoint, method.lower())
        try:
            response = call(request_body=body, query_params=query)
        except HTTPError as exc:
            raise _http_error(method, path, exc, self.host) from None
        except urllib.error.URLError as exc:
            # urllib wraps only what fails while connecting and sending: the request was not whole
            raise Unreachable(f"cannot reach SendGrid at {self.host}: {exc.reason}") from None
        except TimeoutError:
            raise Uncertain(
                f"no answer from {self.host} to {method} /v3/{path} within {self.timing.timeout:g} s"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise Uncertain(
                f"the connection to {self.host} broke before {method} /v3/{path} was answered "
                f"({exc.__class__.__name__})"
            ) from None
        return Answer(response.status_code, response.body or b"", dict(response.headers or {}))

    def _wait(self, attempt: int, reset: float | None) -> float:
        timing = self.timing
        if reset is not None:
            return min(max(reset - time.time(), 0.0) + random.uniform(0, 0.25), timing.max_wait)
        return min(timing.backoff * 2 ** (attempt - 1), timing.max_wait) * random.uniform(0.5, 1.0)

    def _json(self, method: str, path: str, answer: Answer) -> Any:
        """The answer's JSON, which SendGrid always sends for these calls; anything else is not SendGrid."""
        kind = _header(answer.headers, "Content-Type")
        try:
            if "json" not in kind.lower():
                raise ValueError(kind)
            return answer.json()
        except ValueError:
            raise NotSendGrid(
                f"{self.host} answered {method} /v3/{path} with {answer.status} {kind or 'without a type'}, "
                "not SendGrid's JSON: is SENDGRID_API_HOST right, or is a proxy in the way?",
                answer.status,
            ) from None

    # --- mail ----------------------------------------------------------------------------------

    def send_mail(self, payload: dict[str, Any]) -> str:
        """POST /v3/mail/send; returns SendGrid's X-Message-Id for the accepted batch.

        Only SendGrid's own acceptance counts: a 202 with a message id. A lost answer raises
        Uncertain, and is not retried (SendGrid may have accepted the batch)."""
        answer = self.request("POST", "mail/send", body=payload, idempotent=False)
        if answer.status != 202:
            kind = _header(answer.headers, "Content-Type") or "no content type"
            raise NotSendGrid(
                f"{self.host} answered POST /v3/mail/send with {answer.status} ({kind}), not SendGrid's 202: "
                "is SENDGRID_API_HOST right, or is a proxy or a captive portal in the way?",
                answer.status,
            )
        message_id = _header(answer.headers, "X-Message-Id")
        if not message_id:
            raise Uncertain(f"{self.host} answered 202 to POST /v3/mail/send but without SendGrid's X-Message-Id")
        return message_id

    # --- scheduled sends -----------------------------------------------------------------------

    def create_batch(self) -> str:
        """POST /v3/mail/batch: a batch id for the requests of one scheduled send (to cancel it).
        Asking twice only leaves an unused id, so a lost answer is asked again."""
        answer = self.request("POST", "mail/batch")
        found = self._json("POST", "mail/batch", answer)
        if not isinstance(found, dict) or not isinstance(found.get("batch_id"), str) or not found["batch_id"]:
            raise NotSendGrid(f"{self.host} answered POST /v3/mail/batch without a batch_id", answer.status)
        return found["batch_id"]

    def cancel_scheduled(self, batch_id: str) -> str:
        """Ask SendGrid to cancel a scheduled send, then read back what it holds for the batch:
        returns "cancel" only when SendGrid says so (its answer to the first call may be lost,
        and a second cancel is refused as a duplicate)."""
        with contextlib.suppress(Uncertain, SendGridError):
            self.request(
                "POST", "user/scheduled_sends", body={"batch_id": batch_id, "status": "cancel"}, idempotent=False
            )
        path = f"user/scheduled_sends/{batch_id}"
        found = self._json("GET", path, self.request("GET", path))
        if not isinstance(found, list):
            raise NotSendGrid(f"{self.host} answered GET /v3/{path} with JSON that is not SendGrid's list")
        return next((str(entry.get("status")) for entry in found if entry.get("batch_id") == batch_id), "")

    # --- the account, for `newsletter doctor` ---------------------------------------------------

    def read(self, path: str) -> Any:
        """A GET of SendGrid's JSON (domains, scopes, settings)."""
        return self._json("GET", path, self.request("GET", path))

    # --- suppressions ------------------------------------------------------------------------

    def suppression_list(self, path: str) -> Iterator[str]:
        """Every address on one of SendGrid's paginated suppression lists."""
        offset = 0
        while True:
            page = self._json("GET", path, self.request("GET", path, query={"limit": PAGE, "offset": offset}))
            if not isinstance(page, list):
                raise NotSendGrid(f"{self.host} answered GET /v3/{path} with JSON that is not SendGrid's list")
            for entry in page:
                yield entry["email"]
            if len(page) < PAGE:
                return
            offset += PAGE

    def group_suppressions(self, group_id: int) -> list[str]:
        path = f"asm/groups/{group_id}/suppressions"
        found = self._json("GET", path, self.request("GET", path))
        if not isinstance(found, list):
            raise NotSendGrid(f"{self.host} answered GET /v3/{path} with JSON that is not SendGrid's list")
        return [str(email) for email in found]

    def add_global_suppressions(self, emails: list[str]) -> None:
        self.request("POST", "asm/suppressions/global", body={"recipient_emails": emails})


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), "")


def _http_error(method: str, path: str, exc: HTTPError, host: str) -> SendGridError:
    status = exc.status_code
    detail = error_messages(exc.body or b"")
    said = f"; SendGrid said: {detail}" if detail else ""
    if status == 401:
        message = f"SendGrid rejected the API key (401): check SENDGRID_API_KEY{said}"
    elif status == 403:
        # on a new account this is most often an unverified sender, not a missing scope
        message = f"SendGrid refused {method} /v3/{path} (403){said or ': check the API key scopes and the sender'}"
    elif status in (400, 413) or status in RETRY_STATUSES:
        message = f"SendGrid answered {status} to {method} /v3/{path}" + (f": {detail}" if detail else "")
    else:
        message = f"{host} answered {method} /v3/{path} with {status}" + (f": {detail}" if detail else "")
    reset = (exc.headers or {}).get("X-RateLimit-Reset") if status == 429 else None
    return SendGridError(message, status, float(reset) if reset and str(reset).isdigit() else None)
