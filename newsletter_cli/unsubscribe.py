"""Unsubscribe links. (Signed per-recipient tokens and the endpoint arrive with the subscribers issue.)"""

from __future__ import annotations

from newsletter_cli.config import Config
from newsletter_cli.render import SENDGRID_UNSUBSCRIBE_TAG

PREVIEW_TOKEN = "preview-token-not-valid"


def sample_link(config: Config) -> str:
    """The link shown by build and preview, which need no secret: a placeholder token."""
    if config.unsubscribe_url is None:
        return SENDGRID_UNSUBSCRIBE_TAG
    return f"{config.unsubscribe_url}?token={PREVIEW_TOKEN}"
