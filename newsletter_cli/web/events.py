"""SendGrid's Event Webhook, a WSGI app (the events path of `newsletter serve`).

Bad input gets a 4xx and changes nothing; SendGrid retries only 5xx (for 24 hours), so a 5xx
is kept for what is our fault and passes (the store cannot be written). A 2xx comes only once
the events, and all they change, are committed.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from newsletter_cli.config import Config
from newsletter_cli.events.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, Refused, Verifier, parse
from newsletter_cli.store import Store, StoreError
from newsletter_cli.store.events import record
from newsletter_cli.web.unsubscribe import Environ, StartResponse

MAX_BODY = 16 * 1024 * 1024  # SendGrid posts batches of events far smaller than this
STATUS = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized", 403: "403 Forbidden"}
STATUS |= {404: "404 Not Found", 405: "405 Method Not Allowed", 413: "413 Content Too Large"}
STATUS |= {503: "503 Service Unavailable"}


def _header(environ: Environ, name: str) -> str | None:
    return environ.get("HTTP_" + name.upper().replace("-", "_"))


class EventsEndpoint:
    """POST a signed JSON array of events; without a public key, every POST is refused."""

    def __init__(self, config: Config, log: Any = None):
        self.config = config
        self.log = log or sys.stderr
        self.verifier = Verifier(config.events_public_key) if config.events_public_key else None
        self._writing = threading.Lock()  # one writer at a time here: SQLite's own wait is unfair

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return _answer(start_response, 405, {"error": "POST SendGrid's events here"}, [("Allow", "POST")])
        if self.verifier is None:
            return _answer(start_response, 404, {"error": "no Event Webhook key is configured ([events] public_key)"})
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY:
            return _answer(start_response, 413, {"error": "too large"})
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        try:
            text = self.verifier.verify(body, _header(environ, SIGNATURE_HEADER), _header(environ, TIMESTAMP_HEADER))
            parsed = parse(text, self.config.events_keep_client)
        except Refused as exc:
            print(f"newsletter: refused a POST of events: {exc.message}", file=self.log)
            return _answer(start_response, exc.status, {"error": exc.message})
        try:
            with self._writing, Store.for_config(self.config) as store:
                done = record(store, parsed.events, self.config.unsubscribe_group_id)
        except StoreError as exc:
            print(f"newsletter: could not record SendGrid's events (it will retry): {exc.message}", file=self.log)
            return _answer(start_response, 503, {"error": "try again"}, [("Retry-After", "60")])
        for reason in parsed.skipped:
            print(f"newsletter: skipped one of SendGrid's events, {reason}", file=self.log)
        for event in parsed.events:
            if event.event == "group_resubscribe":
                print(
                    f"newsletter: {event.email} resubscribed to SendGrid group {event.group}; a suppression "
                    "here is lifted only by hand",
                    file=self.log,
                )
        answer = {
            "stored": done.new,
            "duplicates": done.duplicates,
            "skipped": len(parsed.skipped),
            "suppressed": done.suppressed,
            "settled_batches": done.settled,
        }
        return _answer(start_response, 200, answer)


def _answer(
    start_response: StartResponse, status: int, payload: dict[str, Any], extra: list[tuple[str, str]] | None = None
) -> list[bytes]:
    data = json.dumps(payload).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("Cache-Control", "no-store")]
    start_response(STATUS[status], headers + (extra or []))
    return [data]
