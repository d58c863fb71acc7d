"""What SendGrid knows of this sender: its domain authenticated (and the DNS records that
takes), the API key's scopes for each command, and the account's tracking defaults."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from newsletter_cli.config import Config
from newsletter_cli.doctor.finding import ERROR, OK, WARNING, Finding
from newsletter_cli.errors import NewsletterError
from newsletter_cli.sendgrid_api import SendGrid

# scope -> what needs it (and whether its lack stops a send)
SCOPES = {
    "mail.send": ("sending", ERROR),
    "suppression.read": ("the sync before each send (unsubscribes, bounces, spam reports)", ERROR),
}
ENDPOINT_SCOPE = ("asm.suppressions.global.create", "the unsubscribe endpoint telling SendGrid")
GROUP_SCOPE = ("asm.groups.suppressions.read", "reading your unsubscribe group")
SCHEDULE_SCOPES = ("mail.batch.create", "user.scheduled_sends.create")


@dataclass
class Account:
    findings: list[Finding] = field(default_factory=list)
    dkim: list[tuple[str, str]] = field(default_factory=list)  # host -> target SendGrid asks for
    return_path: bool = False  # SendGrid's authenticated subdomain carries the envelope sender
    reached: bool = False


def account(api: SendGrid, config: Config) -> Account:
    found = Account()
    domain = config.from_email.rsplit("@", 1)[1].lower()
    try:
        domains = api.read("whitelabel/domains")
        scopes = set(api.read("scopes").get("scopes", []))
        tracking = {kind: api.read(f"tracking_settings/{kind}") for kind in ("click", "open")}
    except NewsletterError as exc:
        found.findings.append(Finding(WARNING, "sendgrid-unchecked", f"could not ask SendGrid ({exc.message})"))
        return found
    found.reached = True
    found.findings += list(_domain(found, domains, domain))
    found.findings += list(_scopes(scopes, config))
    found.findings += list(_tracking(tracking, config))
    return found


def _domain(found: Account, domains: Any, domain: str) -> Iterator[Finding]:
    matching = [
        d
        for d in domains or []
        if domain == str(d.get("domain", "")).lower() or domain.endswith("." + str(d.get("domain", "")).lower())
    ]
    if not matching:
        yield Finding(
            ERROR,
            "domain-unauthenticated",
            f"{domain} is not authenticated in SendGrid (Settings, Sender Authentication): its mail fails DMARC "
            "at Gmail and Yahoo",
        )
        return
    best = max(matching, key=lambda d: (bool(d.get("valid")), len(str(d.get("domain", "")))))
    records = best.get("dns", {})
    found.dkim = [(str(r["host"]), str(r["data"])) for r in records.values() if isinstance(r, dict) and r.get("host")]
    found.return_path = bool(best.get("valid")) and "mail_cname" in records
    if best.get("valid"):
        yield Finding(OK, "domain", f"{best['domain']} is authenticated in SendGrid")
    else:
        yield Finding(
            ERROR,
            "domain-invalid",
            f"{best['domain']} is set up in SendGrid but not yet valid: add the DNS records it lists, then press "
            "Verify there",
        )


def _scopes(scopes: set[str], config: Config) -> Iterator[Finding]:
    missing = [(scope, need, level) for scope, (need, level) in SCOPES.items() if scope not in scopes]
    if config.unsubscribe_group_id is not None and GROUP_SCOPE[0] not in scopes:
        missing.append((GROUP_SCOPE[0], GROUP_SCOPE[1], ERROR))
    if config.unsubscribe_group_id is None and ENDPOINT_SCOPE[0] not in scopes:
        missing.append((ENDPOINT_SCOPE[0], ENDPOINT_SCOPE[1], WARNING))
    for scope in SCHEDULE_SCOPES:
        if scope not in scopes:
            missing.append((scope, "scheduling with --at and cancelling", WARNING))
    for scope, need, level in missing:
        yield Finding(level, "scope-missing", f"the API key lacks the {scope} scope, needed by {need}")
    if not missing:
        yield Finding(OK, "scopes", "the API key has every scope newsletter uses")


def _tracking(tracking: dict[str, Any], config: Config) -> Iterator[Finding]:
    account_clicks = bool(tracking["click"].get("enabled"))
    account_opens = bool(tracking["open"].get("enabled"))
    for what, on_there, on_here in (
        ("click", account_clicks, config.track_clicks),
        ("open", account_opens, config.track_opens),
    ):
        if on_there != on_here:
            yield Finding(
                OK,
                "tracking",
                f"SendGrid's account default {'tracks' if on_there else 'does not track'} {what}s; every request "
                f"says otherwise, as [tracking] {what}s = {str(on_here).lower()} asks",
            )
