"""One small threaded WSGI server for every app of the package: the preview, the unsubscribe
endpoint and what comes next. Development-grade, like any stdlib server; every app is plain
WSGI, so a production WSGI server (waitress, gunicorn) can serve it instead."""

from __future__ import annotations

import sys
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.simple_server import make_server as wsgi_make_server

from newsletter_cli.errors import NewsletterError

LISTEN_BACKLOG = 1024  # the default 5 made the kernel drop one-click POSTs under load


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # no token-bearing URLs in logs
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client gone mid-request (a closed tab during a long poll) is routine."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def make_server(host: str, port: int, app: Any) -> WSGIServer:
    """Bound and ready; ``server.server_port`` is the port (useful with port 0)."""
    try:
        return wsgi_make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    except OSError as exc:
        raise NewsletterError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
