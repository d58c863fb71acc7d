"""`newsletter serve`: one WSGI app for what SendGrid and readers reach on the internet. The
Event Webhook's path (``[events] path``) takes SendGrid's events; ``/subscribe`` and
``/confirm`` are the signup form and its confirmation link; every other path is the unsubscribe
endpoint, as `serve-unsubscribe` always served it.

``newsletter_cli.web.site:app`` for any WSGI server (configured from the environment, as the
unsubscribe endpoint is)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from newsletter_cli.web import ConfiguredOnFirstRequest
from newsletter_cli.web.events import EventsEndpoint
from newsletter_cli.web.signup import SignupPages
from newsletter_cli.web.unsubscribe import Endpoint, Environ, StartResponse
from newsletter_cli.web.unsubscribe import app_from_environment as unsubscribe_from_environment


class Site:
    def __init__(self, unsubscribe: Endpoint, log: Any = None):
        self.config = unsubscribe.config
        self.unsubscribe = unsubscribe
        self.events = EventsEndpoint(unsubscribe.config, log or unsubscribe.log)
        self.events_path = unsubscribe.config.events_path
        self.signup = SignupPages(unsubscribe.config, unsubscribe.secret, unsubscribe.api, log or unsubscribe.log)

    def close(self) -> None:
        self.unsubscribe.close()

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        path = environ.get("PATH_INFO", "/").rstrip("/")
        if path == self.events_path.rstrip("/"):
            return self.events(environ, start_response)
        if path.endswith(("/subscribe", "/confirm")):
            return self.signup(environ, start_response)
        return self.unsubscribe(environ, start_response)


def app_from_environment(environ: Mapping[str, str] | None = None) -> Site:
    """The unsubscribe endpoint's settings, and the webhook key from the config or
    SENDGRID_WEBHOOK_PUBLIC_KEY."""
    return Site(unsubscribe_from_environment(environ))


# `newsletter_cli.web.site:app` for any WSGI server
app = ConfiguredOnFirstRequest(app_from_environment)
