"""All the doctor's checks, in the order a coordinator fixes them: SendGrid, DNS, this folder."""

from __future__ import annotations

import os
from collections.abc import Mapping

from newsletter_cli.config import Config
from newsletter_cli.doctor import dns, local, sendgrid
from newsletter_cli.doctor.finding import WARNING, Finding
from newsletter_cli.sendgrid_api import KEY_ENV, SendGrid, Timing


def examine(
    config: Config, environ: Mapping[str, str] | None = None, probe: bool = False, lifetime: float = dns.LIFETIME
) -> list[Finding]:
    """``probe``: also send the unsubscribe endpoint a HEAD. ``lifetime``: seconds a DNS lookup may take."""
    environ = os.environ if environ is None else environ
    found: list[Finding] = []
    key = environ.get(KEY_ENV, "")
    account = sendgrid.Account()
    if key:
        account = sendgrid.account(SendGrid(key, config.sendgrid_host, timing=Timing.from_environ(environ)), config)
        found += account.findings
    else:
        found.append(Finding(WARNING, "sendgrid-unchecked", f"{KEY_ENV} is not set: SendGrid's settings not checked"))
    domain = config.from_email.rsplit("@", 1)[1].lower()
    lookup = dns.Lookup(environ, lifetime)
    found += dns.spf(lookup, domain, account.return_path)
    found += dns.dmarc(lookup, domain)
    if account.reached:
        found += dns.dkim(lookup, account.dkim)
    else:
        found.append(Finding(WARNING, "dkim-unchecked", "DKIM not checked: it needs SendGrid's list of the records"))
    found += local.store(config)
    found += local.endpoint(config, probe)
    found += local.consent(config)
    return found


QUICK_SECONDS = 5.0  # what a send waits for the doctor before going on without it


def quick(config: Config, environ: Mapping[str, str] | None = None, seconds: float = QUICK_SECONDS) -> list[Finding]:
    """What a send shows before asking: the doctor's warnings and errors, as warnings (DNS
    answers differ between networks; a send is never refused for them), within ``seconds``."""
    import concurrent.futures

    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="doctor")
    future = pool.submit(examine, config, environ, False, min(dns.LIFETIME, seconds / 3))
    pool.shutdown(wait=False)
    try:
        found = future.result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        return [Finding(WARNING, "doctor-slow", f"the checks of 'newsletter doctor' took over {seconds:g} s: run it")]
    return [f for f in found if f.level != "ok"]
