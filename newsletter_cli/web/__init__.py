"""The package's web apps, all plain WSGI on one server (``server``).

- ``livereload``: a live-reloading site around a build callable, that only its own page can drive.
- ``preview``: `newsletter preview`'s pages: the email at two widths, light and dark, plain text.
- ``unsubscribe``: the one-click unsubscribe endpoint.
- ``events``: SendGrid's signed Event Webhook.
- ``site``: `newsletter serve`, the two above as one app.
- ``templates/``: their pages, as autoescaped Jinja files.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(__file__).parent / "templates"
CSP = "Content-Security-Policy"
SECURITY_HEADERS = [
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    (CSP, "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"),
]


def html_page(
    start_response: Callable[..., Any],
    method: str,
    status: str,
    body: str,
    extra: list[tuple[str, str]] | None = None,
    csp: str | None = None,
) -> list[bytes]:
    """A page with the headers every page of ours gets (``csp`` in place of the default
    policy); nothing but the headers for a HEAD."""
    data = body.encode()
    headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(data)))]
    headers += [(name, csp if csp and name == CSP else value) for name, value in SECURITY_HEADERS]
    start_response(status, headers + (extra or []))
    return [] if method == "HEAD" else [data]


def page_template(name: str) -> jinja2.Template:
    """A page of ``templates/``: autoescaped, and strict about missing values."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    return env.get_template(name)


class ConfiguredOnFirstRequest:
    """A module-level WSGI app for any WSGI server, which imports it before the environment is
    complete: ``factory`` (reading the environment) runs on the first request, once."""

    def __init__(self, factory: Callable[[], Callable[..., list[bytes]]]):
        self.factory = factory
        self._app: Callable[..., list[bytes]] | None = None
        self._making = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if self._app is None:
            with self._making:
                if self._app is None:
                    self._app = self.factory()
        return self._app(environ, start_response)
