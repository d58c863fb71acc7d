"""The sender's DNS as receivers read it: one SPF record that lets SendGrid send, DMARC for the
domain or its organizational domain (RFC 7489, 6.6.3: the Public Suffix List decides what that
is), and the DKIM CNAMEs SendGrid's domain authentication asked for.

The resolver is the system's, or NEWSLETTER_DNS_SERVERS (``host:port,...``) for split DNS and
tests. A lookup that times out or finds no server is a warning that the check could not be
made: answers differ between networks, and no network is not a broken domain.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from newsletter_cli.doctor.finding import ERROR, OK, WARNING, Finding

DNS_ENV = "NEWSLETTER_DNS_SERVERS"
TIMEOUT_ENV = "NEWSLETTER_DNS_TIMEOUT"  # seconds for one lookup; the tests shorten it
LIFETIME = 3.0  # seconds for one lookup, every server tried


class Unchecked(Exception):
    """The lookup could not be made (timeout, no reachable server)."""


class Lookup:
    def __init__(self, environ: Mapping[str, str] | None = None, lifetime: float = LIFETIME):
        import dns.nameserver
        import dns.resolver

        environ = os.environ if environ is None else environ
        if environ.get(TIMEOUT_ENV):
            lifetime = min(lifetime, float(environ[TIMEOUT_ENV]))
        self.down: str | None = None  # once no server answered, none is asked again
        servers = [s.strip() for s in environ.get(DNS_ENV, "").split(",") if s.strip()]
        if servers:
            self.resolver = dns.resolver.Resolver(configure=False)
            chosen: list[Any] = []
            for server in servers:
                host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "53")
                chosen.append(dns.nameserver.Do53Nameserver(host or server, int(port or 53)))
            self.resolver.nameservers = chosen
        else:
            self.resolver = dns.resolver.Resolver()
        self.resolver.lifetime = lifetime
        self.resolver.timeout = lifetime

    def txt(self, name: str) -> list[str]:
        return [b"".join(r.strings).decode("utf-8", "replace") for r in self._answer(name, "TXT")]

    def cname(self, name: str) -> str | None:
        found = self._answer(name, "CNAME")
        return str(found[0].target).rstrip(".").lower() if found else None

    def _answer(self, name: str, kind: str) -> list[Any]:
        import dns.exception
        import dns.resolver

        if self.down:
            raise Unchecked(f"{kind} {name}: not asked, {self.down}")
        try:
            return list(self.resolver.resolve(name, kind, raise_on_no_answer=False) or [])
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout, OSError) as exc:
            self.down = f"no DNS server answered ({exc.__class__.__name__})"
            raise Unchecked(f"{kind} {name}: {exc.__class__.__name__}") from None


def organizational_domain(domain: str) -> str:
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList().privatesuffix(domain) or domain


def spf(lookup: Lookup, domain: str, sendgrid_return_path: bool) -> Iterator[Finding]:
    """Exactly one SPF record; it must let SendGrid send unless SendGrid's own return path
    (its authenticated subdomain) carries the envelope sender."""
    try:
        records = [t for t in lookup.txt(domain) if t.lower().startswith("v=spf1")]
    except Unchecked as exc:
        yield Finding(WARNING, "spf-unchecked", f"could not look up SPF for {domain} ({exc}): not checked")
        return
    if len(records) > 1:
        yield Finding(
            ERROR,
            "spf-multiple",
            f"{domain} has {len(records)} SPF records: receivers treat that as a permanent error and fail SPF "
            "for all its mail; merge them into one",
        )
    elif not records:
        if sendgrid_return_path:
            yield Finding(OK, "spf", f"{domain} has no SPF record; SendGrid's return path carries its own")
        else:
            yield Finding(ERROR, "spf-missing", f"{domain} has no SPF record, and SendGrid's return path is not set up")
    elif sendgrid_return_path or "include:sendgrid.net" in records[0].lower():
        yield Finding(OK, "spf", f"{domain} has one SPF record")
    else:
        yield Finding(
            ERROR,
            "spf-sendgrid",
            f"the SPF record of {domain} does not let SendGrid send (add include:sendgrid.net), and SendGrid's "
            "return path is not set up",
        )


def dmarc(lookup: Lookup, domain: str) -> Iterator[Finding]:
    """DMARC at _dmarc.<domain>, else at the organizational domain's (policy discovery)."""
    org = organizational_domain(domain)
    for name in dict.fromkeys((domain, org)):
        try:
            records = [t for t in lookup.txt(f"_dmarc.{name}") if t.replace(" ", "").upper().startswith("V=DMARC1")]
        except Unchecked as exc:
            yield Finding(WARNING, "dmarc-unchecked", f"could not look up DMARC for {name} ({exc}): not checked")
            return
        if len(records) > 1:
            yield Finding(ERROR, "dmarc-multiple", f"_dmarc.{name} has {len(records)} DMARC records: keep one")
            return
        if records:
            inherited = f" (from {org}, the organizational domain)" if name != domain else ""
            yield Finding(OK, "dmarc", f"DMARC for {domain}{inherited}: {records[0]}")
            return
    yield Finding(
        ERROR,
        "dmarc-missing",
        f"no DMARC record at _dmarc.{domain}"
        + (f" or _dmarc.{org}" if org != domain else "")
        + ": Gmail and Yahoo refuse bulk mail without one; publish v=DMARC1; p=none to start",
    )


def dkim(lookup: Lookup, records: list[tuple[str, str]]) -> Iterator[Finding]:
    """Each CNAME SendGrid's domain authentication lists (host -> target) is in the DNS."""
    for host, target in records:
        try:
            found = lookup.cname(host)
        except Unchecked as exc:
            yield Finding(WARNING, "dkim-unchecked", f"could not look up {host} ({exc}): not checked")
            continue
        if found is None:
            yield Finding(ERROR, "dkim-missing", f"{host} has no CNAME: add one pointing to {target}")
        elif found != target.rstrip(".").lower():
            yield Finding(ERROR, "dkim-wrong", f"{host} points to {found}, not {target} as SendGrid asks")
        else:
            yield Finding(OK, "dkim", f"{host} points to SendGrid")
