"""The package's web apps, all plain WSGI on one server (``server``).

- ``livereload``: a live-reloading site around a build callable, that only its own page can drive.
- ``preview``: `newsletter preview`'s pages: the email at two widths, light and dark, plain text.
- ``unsubscribe``: the one-click unsubscribe endpoint.
- ``events``: SendGrid's signed Event Webhook.
- ``site``: `newsletter serve`, the two above as one app.
- ``templates/``: their pages, as autoescaped Jinja files.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).parent / "templates"


def page_template(name: str) -> jinja2.Template:
    """A page of ``templates/``: autoescaped, and strict about missing values."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    return env.get_template(name)
