"""A live-reloading WSGI site around a ``build()`` callable, after MkDocs' livereload.

It knows nothing about newsletters: ``build()`` returns the site as a mapping of paths to
(content type, body); the app serves exactly those paths, a watcher rebuilds when files change
(debounced, in one thread), and the last good site stays up with the error shown when a rebuild
fails. Pages long-poll ``/_livereload?since=N`` to learn of a new version.

Other web pages in the same browser must not drive it: a request whose Host is not an address
of this machine (DNS rebinding) is refused, and a POST must carry the run's token, which only
the served page knows (a cross-origin page cannot read it, nor send the header without a CORS
preflight that this server never grants). POST actions are rate-limited.
"""

from __future__ import annotations

import collections
import hmac
import ipaddress
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from newsletter_cli.errors import NewsletterError
from newsletter_cli.web import TEMPLATES
from newsletter_cli.web.server import make_server

Site = Mapping[str, tuple[str, bytes]]
Action = Callable[[dict[str, str]], tuple[int, str]]
POLL_SECONDS = 25.0
TOKEN_HEADER = "X-Preview-Token"
TOKEN_ENVIRON = "HTTP_" + TOKEN_HEADER.upper().replace("-", "_")  # as WSGI names it
POSTS_PER_MINUTE = 5  # test sends: enough for a person, too few for a page that fires them in a loop
WAITING_PAGE = (TEMPLATES / "waiting.html").read_bytes()  # until a first build succeeds


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes


def new_token() -> str:
    """The token a run's page puts on its POSTs."""
    return secrets.token_urlsafe(24)


class LiveSite:
    """The current build, its version and its error; thread-safe, no sockets (testable alone)."""

    def __init__(
        self,
        build: Callable[[], Site],
        actions: Mapping[str, Action] | None = None,
        token: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._build = build
        self.actions = dict(actions or {})
        self.token = token or new_token()
        self._clock = clock
        self._posts: collections.deque[float] = collections.deque()
        self.site: Site = {}
        self.version = 0
        self.error: str | None = None
        self._changed = threading.Condition()
        self.rebuild()

    def rebuild(self) -> None:
        """Build again; on failure keep the last good site and remember the error. Any error:
        a bug in a rebuild must not stop later saves from showing."""
        try:
            site, error = self._build(), None
        except NewsletterError as exc:
            site, error = None, exc.message
        except Exception as exc:
            site, error = (
                None,
                f"the preview failed unexpectedly ({exc.__class__.__name__}: {exc}); save again to retry",
            )
        with self._changed:
            if site is not None:
                self.site = site
            self.error = error
            self.version += 1
            self._changed.notify_all()

    def wait(self, since: int, timeout: float = POLL_SECONDS) -> dict[str, Any]:
        """Block until the version passes ``since`` (or the timeout); the long-poll answer."""
        with self._changed:
            self._changed.wait_for(lambda: self.version > since, timeout=timeout)
            return {"version": self.version, "error": self.error}

    def get(self, target: str) -> Response:
        parts = urlsplit(target)
        if parts.path == "/_livereload":
            try:
                since = int((parse_qs(parts.query).get("since") or ["0"])[0] or 0)
            except ValueError:
                return Response(400, "text/plain; charset=utf-8", b"since must be a whole number\n")
            return Response(200, "application/json", json.dumps(self.wait(since)).encode())
        with self._changed:
            found = self.site.get(parts.path)
            if found is None and parts.path == "/" and not self.site:
                found = ("text/html; charset=utf-8", WAITING_PAGE)  # no good build yet
        if found is None:
            return Response(404, "text/plain; charset=utf-8", b"not found\n")
        return Response(200, *found)

    def post(self, target: str, form: dict[str, str], token: str = "") -> Response:
        action = self.actions.get(urlsplit(target).path)
        if action is None:
            return Response(404, "text/plain; charset=utf-8", b"not found\n")
        if not hmac.compare_digest(token.encode(), self.token.encode()):
            return Response(403, "text/plain; charset=utf-8", b"this preview takes requests from its own page only\n")
        if not self._admit():
            text = f"at most {POSTS_PER_MINUTE} a minute: wait a moment and try again\n"
            return Response(429, "text/plain; charset=utf-8", text.encode())
        try:
            status, text = action(form)
        except NewsletterError as exc:
            status, text = 400, exc.message
        return Response(status, "text/plain; charset=utf-8", text.encode())

    def _admit(self) -> bool:
        now = self._clock()
        with self._changed:
            while self._posts and now - self._posts[0] >= 60:
                self._posts.popleft()
            if len(self._posts) >= POSTS_PER_MINUTE:
                return False
            self._posts.append(now)
            return True

    # --- WSGI ------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        port = environ.get("SERVER_PORT", "")
        origin = environ.get("HTTP_ORIGIN")
        if not allowed_host(environ.get("HTTP_HOST"), port) or (
            origin is not None and not allowed_host(urlsplit(origin).netloc, port)
        ):
            response = Response(403, "text/plain; charset=utf-8", b"this preview answers on 127.0.0.1 only\n")
        else:
            target = environ.get("PATH_INFO", "/") + (
                f"?{environ['QUERY_STRING']}" if environ.get("QUERY_STRING") else ""
            )
            method = environ.get("REQUEST_METHOD", "GET")
            if method == "POST":
                response = self.post(target, _form(environ), environ.get(TOKEN_ENVIRON, ""))
            elif method in ("GET", "HEAD"):
                response = self.get(target)
            else:
                response = Response(405, "text/plain; charset=utf-8", b"method not allowed\n")
        reason = HTTPStatus(response.status).phrase
        start_response(
            f"{response.status} {reason}",
            [
                ("Content-Type", response.content_type),
                ("Content-Length", str(len(response.body))),
                ("Cache-Control", "no-store"),
                ("X-Content-Type-Options", "nosniff"),
            ],
        )
        return [response.body]


def _form(environ: dict[str, Any]) -> dict[str, str]:
    try:
        length = min(max(int(environ.get("CONTENT_LENGTH") or 0), 0), 64 * 1024)
    except ValueError:
        length = 0
    raw = environ["wsgi.input"].read(length).decode("utf-8", "replace") if length else ""
    return {key: values[0] for key, values in parse_qs(raw).items()}


class Watcher(threading.Thread):
    """Polls files' modification times; after a change settles, calls ``on_change`` once."""

    def __init__(self, paths: Callable[[], Iterable[Path]], on_change: Callable[[], None], interval: float = 0.1):
        super().__init__(daemon=True, name="preview-watcher")
        self.paths = paths
        self.on_change = on_change
        self.interval = interval
        self.stopped = threading.Event()

    def snapshot(self) -> dict[Path, float]:
        seen: dict[Path, float] = {}
        for path in self.paths():
            try:
                seen[path] = os.stat(path).st_mtime_ns
            except OSError:
                seen[path] = -1
        return seen

    def run(self) -> None:
        last = self.snapshot()
        while not self.stopped.wait(self.interval):
            current = self.snapshot()
            if current == last:
                continue
            while not self.stopped.wait(self.interval):  # debounce: let an editor finish saving
                settled = self.snapshot()
                if settled == current:
                    break
                current = settled
            last = current
            try:
                self.on_change()
            except Exception as exc:  # never let one bad rebuild stop the watching
                print(f"newsletter preview: a rebuild failed: {exc!r}", file=sys.stderr)


def allowed_host(header: str | None, port: int | str) -> bool:
    """A Host this server answers to: localhost or an IP address, with its port. A DNS name
    pointing at 127.0.0.1 is how another site's page reaches a local server (DNS rebinding)."""
    if not header:
        return False
    name, _, given_port = header.rpartition(":")
    if not name or given_port != str(port):
        return False
    if name.lower() == "localhost":
        return True
    try:
        ipaddress.ip_address(name[1:-1] if name.startswith("[") and name.endswith("]") else name)
    except ValueError:
        return False
    return True


def serve(
    site: LiveSite, host: str, port: int, watch: Callable[[], Iterable[Path]], ready: Callable[[str], None]
) -> None:
    """Serve until Ctrl-C; ``ready`` gets the URL once the port is bound."""
    server = make_server(host, port, site)
    watcher = Watcher(watch, site.rebuild)
    watcher.start()
    ready(f"http://{host}:{server.server_port}/")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        watcher.stopped.set()
        server.server_close()
