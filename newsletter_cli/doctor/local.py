"""What this folder itself decides: the store, the unsubscribe endpoint, and consent across the list."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

from newsletter_cli.config import LOOPBACK_HOSTS, Config
from newsletter_cli.doctor.finding import ERROR, OK, WARNING, Finding

CONSENT_WARN_BELOW = 0.9


def endpoint(config: Config, probe: bool, timeout: float = 5.0) -> Iterator[Finding]:
    """Own-endpoint mode: the link is https (http only for a test on this computer), and with
    ``probe``, the endpoint answers."""
    url = config.unsubscribe_url
    if url is None:
        yield Finding(OK, "unsubscribe", f"unsubscribes go through SendGrid group {config.unsubscribe_group_id}")
        return
    if urlsplit(url).scheme != "https":
        host = urlsplit(url).hostname or ""
        yield Finding(
            WARNING if host in LOOPBACK_HOSTS else ERROR,
            "unsubscribe-http",
            f"{url} is not https: fine for a test on this computer, never for real readers",
        )
    if not probe:
        return
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        yield Finding(ERROR, "unsubscribe-unreachable", f"{url} does not answer ({getattr(exc, 'reason', exc)})")
        return
    if status in (200, 400):  # 400: no token, which is the endpoint's own answer to a bare HEAD
        yield Finding(OK, "unsubscribe", f"{url} answers")
    else:
        yield Finding(ERROR, "unsubscribe-status", f"{url} answered {status} to a HEAD")


def store(config: Config) -> Iterator[Finding]:
    """A shared store answers and is at this version's schema (before a send finds out)."""
    from newsletter_cli.store import Store, StoreError

    if config.store_url is None:
        yield Finding(OK, "store", "the state is in .newsletter/ in this folder (one computer)")
        return
    try:
        with Store.for_config(config) as opened:
            yield Finding(OK, "store", f"the state is shared in {opened.name}, which answers and is current")
    except StoreError as exc:
        yield Finding(ERROR, exc.code or "store-unreachable", exc.message)


def consent(config: Config) -> Iterator[Finding]:
    """The share of the list with live consent, when consent is required."""
    from newsletter_cli.consent.gate import survey

    if not config.consent_require or not config.subscribers_path.exists():
        return
    found = survey(config, config.subscribers_path)
    if not found.considered:
        return
    share = 1 - found.skipped / found.considered
    level = OK if share >= CONSENT_WARN_BELOW else WARNING
    yield Finding(level, "consent", f"{share:.0%} of the list's {found.considered:,} addresses have live consent")
