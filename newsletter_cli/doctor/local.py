"""What this folder itself decides: the unsubscribe endpoint, and consent across the list."""

from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

from newsletter_cli import subscribers
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


def consent(config: Config) -> Iterator[Finding]:
    """The share of the list with live consent, when consent is required."""
    from newsletter_cli.consent.gate import Gate
    from newsletter_cli.store import DB_NAME, Store

    if not config.consent_require or not config.subscribers_path.exists():
        return
    keys = [row.key for row in subscribers.scan(config.subscribers_path) if row.status == subscribers.VALID]
    if not keys:
        return
    refused = 0
    if (config.state_dir / DB_NAME).exists():
        with Store.for_folder(config.state_dir) as store:
            refused = len(Gate(store, dt.datetime.now(dt.UTC)).refused(keys))
    else:
        refused = len(keys)
    share = 1 - refused / len(keys)
    level = OK if share >= CONSENT_WARN_BELOW else WARNING
    yield Finding(level, "consent", f"{share:.0%} of the list's {len(keys):,} addresses have live consent")
