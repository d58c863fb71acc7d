"""A live-reload server around a ``build()`` callable, after MkDocs' livereload.

It knows nothing about newsletters: ``build()`` returns the site as a mapping of paths to
(content type, body); the server serves exactly those paths, watches some files, rebuilds when
they change (debounced, in one thread), and keeps serving the last good site with the error
shown when a rebuild fails. Pages long-poll ``/_livereload?since=N`` to learn of a new version.

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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from newsletter_cli.errors import NewsletterError

Site = Mapping[str, tuple[str, bytes]]
Action = Callable[[dict[str, str]], tuple[int, str]]
POLL_SECONDS = 25.0
TOKEN_HEADER = "X-Preview-Token"
POSTS_PER_MINUTE = 5  # test sends: enough for a person, too few for a page that fires them in a loop
# Shown until a first build succeeds: the error, and a reload as soon as a build works.
WAITING_PAGE = b"""<!doctype html><html lang="en"><meta charset="utf-8"><title>Preview</title>
<body style="font: 15px/1.5 sans-serif; margin: 32px; color: #9b1c1c">
<strong>Nothing to show yet.</strong> Fix the error and save: this page updates by itself.
<pre id="error" style="white-space: pre-wrap"></pre>
<script>
(async () => {
  let version = 0;
  for (;;) {
    const answer = await (await fetch("/_livereload?since=" + version)).json();
    if (!answer.error) { location.reload(); return; }
    document.getElementById("error").textContent = answer.error;
    version = answer.version;
  }
})();
</script></body></html>
"""


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


class Watcher(threading.Thread):
    """Polls files' modification times; after a change settles, calls ``on_change`` once."""

    def __init__(self, paths: Callable[[], Iterable[Path]], on_change: Callable[[], None], interval: float = 0.1):
        super().__init__(daemon=True, name="preview-watcher")
        self.paths = paths
        self.on_change = on_change
        self.interval = interval
        self.stopped = threading.Event()

    def snapshot(self) -> dict[Path, float]:
        seen = {}
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


def allowed_host(header: str | None, port: int) -> bool:
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


def make_server(site: LiveSite, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "newsletter-preview"

        def log_message(self, *args: object) -> None:
            pass

        def _foreign(self) -> bool:
            if allowed_host(self.headers.get("Host"), self.server.server_address[1]):
                origin = self.headers.get("Origin")
                if origin is None or allowed_host(urlsplit(origin).netloc, self.server.server_address[1]):
                    return False
            self._send(Response(403, "text/plain; charset=utf-8", b"this preview answers on 127.0.0.1 only\n"))
            return True

        def _send(self, response: Response) -> None:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(response.body)

        def do_GET(self) -> None:
            if not self._foreign():
                self._send(site.get(self.path))

        def do_POST(self) -> None:
            if self._foreign():
                return
            try:
                length = min(max(int(self.headers.get("Content-Length") or 0), 0), 64 * 1024)
            except ValueError:
                self._send(Response(400, "text/plain; charset=utf-8", b"bad Content-Length\n"))
                return
            raw = self.rfile.read(length).decode("utf-8", "replace")
            form = {key: values[0] for key, values in parse_qs(raw).items()}
            self._send(site.post(self.path, form, self.headers.get(TOKEN_HEADER, "")))

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            """A browser tab closed during a long poll is routine, not worth a traceback."""
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    try:
        return Server((host, port), Handler)
    except OSError as exc:
        raise NewsletterError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def serve(
    site: LiveSite, host: str, port: int, watch: Callable[[], Iterable[Path]], ready: Callable[[str], None]
) -> None:
    """Serve until Ctrl-C; ``ready`` gets the URL once the port is bound."""
    server = make_server(site, host, port)
    watcher = Watcher(watch, site.rebuild)
    watcher.start()
    ready(f"http://{host}:{server.server_address[1]}/")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        watcher.stopped.set()
        server.server_close()
