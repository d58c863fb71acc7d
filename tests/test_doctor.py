"""`newsletter doctor` against a real DNS server on loopback (dnslib) asked by the real resolver
(dnspython), and the stand-in SendGrid answering from its OpenAPI files."""

from __future__ import annotations

import json
import shutil
import socket

import pytest
from dnslib import QTYPE, RCODE, RR
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from newsletter_cli.cli import cli
from newsletter_cli.config import load_config
from newsletter_cli.doctor.dns import organizational_domain
from newsletter_cli.doctor.run import examine

from .conftest import REPO
from .sendgrid_fake import authenticated_domain

GOOD = """
mcsc.example.                  60 IN TXT   "v=spf1 include:sendgrid.net ~all"
mcsc.example.                  60 IN TXT   "google-site-verification=abc"
_dmarc.mcsc.example.           60 IN TXT   "v=DMARC1; p=none; rua=mailto:dmarc@mcsc.example"
em1234.mcsc.example.           60 IN CNAME u7.wl1.sendgrid.net.
s1._domainkey.mcsc.example.    60 IN CNAME s1.domainkey.u7.wl1.sendgrid.net.
s2._domainkey.mcsc.example.    60 IN CNAME s2.domainkey.u7.wl1.sendgrid.net.
"""


class Zone(BaseResolver):
    """Answers from zone-file lines; any other name does not exist."""

    def __init__(self, text: str):
        self.records = RR.fromZone(text)

    def resolve(self, request, handler):
        reply = request.reply()
        name, kind = request.q.qname, QTYPE[request.q.qtype]
        matches = [r for r in self.records if r.rname == name]
        for record in matches:
            if QTYPE[record.rtype] == kind or QTYPE[record.rtype] == "CNAME":
                reply.add_answer(record)
        if not matches:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class Quiet(DNSLogger):
    """dnslib prints every query to standard output; the CLI's output must stay its own."""

    def log_prefix(self, handler):
        return ""

    def __getattribute__(self, name):
        if name.startswith("log_") and name != "log_prefix":
            return lambda *args: None
        return super().__getattribute__(name)


@pytest.fixture
def dns_server(monkeypatch):
    """Serves the zone it is given on a loopback UDP port; NEWSLETTER_DNS_SERVERS points at it."""
    monkeypatch.setenv("NEWSLETTER_DNS_TIMEOUT", "3")  # it answers: the default's time
    servers = []

    def serve(text: str) -> str:
        server = DNSServer(Zone(text), address="127.0.0.1", port=0, logger=Quiet())
        server.start_thread()
        servers.append(server)
        address = f"127.0.0.1:{server.server.server_address[1]}"
        monkeypatch.setenv("NEWSLETTER_DNS_SERVERS", address)
        return address

    yield serve
    for server in servers:
        server.stop()


@pytest.fixture
def clinic(tmp_path, monkeypatch, sendgrid):
    """The repository's folder (MCSC, news@ mcsc.example), its domain authenticated in the stand-in."""
    shutil.copy(REPO / "newsletter.toml", tmp_path / "newsletter.toml")
    monkeypatch.chdir(tmp_path)
    sendgrid.domains = [authenticated_domain("mcsc.example")]
    return tmp_path


def doctor(runner) -> tuple[int, dict[str, list[str]]]:
    """The exit code, and the codes found by level."""
    result = runner.invoke(cli, ["doctor", "--json"])
    found: dict[str, list[str]] = {"ok": [], "warning": [], "error": []}
    for finding in json.loads(result.output):
        found[finding["level"]].append(finding["code"])
    return result.exit_code, found


def test_a_good_domain_passes_every_check(runner, clinic, dns_server):
    dns_server(GOOD)
    code, found = doctor(runner)
    assert (code, found["error"]) == (0, [])
    assert {"domain", "scopes", "spf", "dmarc", "dkim"} <= set(found["ok"])
    assert found["ok"].count("dkim") == 3  # the return path's CNAME and both DKIM keys
    printed = runner.invoke(cli, ["doctor"]).output.splitlines()
    assert "ok: mcsc.example is authenticated in SendGrid" in printed
    assert (
        "ok: SendGrid's account default tracks clicks; every request says otherwise, as [tracking] clicks = false asks"
        in (printed)
    )
    assert printed[-1] == "0 errors, 0 warnings"


def test_two_spf_records_are_an_error(runner, clinic, dns_server):
    dns_server(GOOD + 'mcsc.example. 60 IN TXT "v=spf1 -all"\n')
    code, found = doctor(runner)
    assert code == 1 and found["error"] == ["spf-multiple"]


def test_a_subdomain_without_dmarc_takes_its_organizational_domains(runner, clinic, dns_server, sendgrid):
    toml = clinic / "newsletter.toml"
    toml.write_text(toml.read_text().replace("newsletter@mcsc.example", "news@letters.mcsc.example"))
    sendgrid.domains = [authenticated_domain("letters.mcsc.example")]
    moved = GOOD
    for host in ("s1._domainkey", "s2._domainkey", "em1234"):
        moved = moved.replace(f"{host}.mcsc", f"{host}.letters.mcsc")
    dns_server(moved)
    code, found = doctor(runner)
    assert code == 0 and "dmarc" in found["ok"], found
    message = next(
        f["message"] for f in json.loads(runner.invoke(cli, ["doctor", "--json"]).output) if f["code"] == "dmarc"
    )
    assert message.startswith("DMARC for letters.mcsc.example (from mcsc.example, the organizational domain)")


def test_no_dmarc_anywhere_is_an_error(runner, clinic, dns_server):
    dns_server("\n".join(line for line in GOOD.splitlines() if "_dmarc" not in line))
    code, found = doctor(runner)
    assert code == 1 and found["error"] == ["dmarc-missing"]


def test_a_missing_dkim_cname_is_an_error(runner, clinic, dns_server):
    dns_server("\n".join(line for line in GOOD.splitlines() if not line.startswith("s2.")))
    code, found = doctor(runner)
    assert code == 1 and found["error"] == ["dkim-missing"]
    assert "s2._domainkey.mcsc.example has no CNAME: add one pointing to s2.domainkey.u7.wl1.sendgrid.net" in (
        runner.invoke(cli, ["doctor"]).output
    )


def test_an_unreachable_dns_server_gives_warnings_never_errors(runner, clinic, monkeypatch):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as quiet:  # bound, never answers
        quiet.bind(("127.0.0.1", 0))
        monkeypatch.setenv("NEWSLETTER_DNS_SERVERS", f"127.0.0.1:{quiet.getsockname()[1]}")
        config = load_config(clinic / "newsletter.toml")
        found = examine(config, lifetime=0.3)
    assert [f.code for f in found if f.level == "error"] == []
    assert {"spf-unchecked", "dmarc-unchecked", "dkim-unchecked"} <= {f.code for f in found if f.level == "warning"}


def test_an_unauthenticated_domain_and_a_key_without_its_scopes(runner, clinic, dns_server, sendgrid):
    dns_server(GOOD)
    sendgrid.domains = [authenticated_domain("other.example")]
    sendgrid.scopes = ["mail.send"]
    code, found = doctor(runner)
    assert code == 1
    assert "domain-unauthenticated" in found["error"] and found["error"].count("scope-missing") == 1
    assert "spf-sendgrid" not in found["error"], "SPF includes SendGrid"


def test_without_a_key_sendgrid_and_dkim_are_warnings(runner, clinic, dns_server, monkeypatch):
    monkeypatch.delenv("SENDGRID_API_KEY")
    dns_server(GOOD)
    code, found = doctor(runner)
    assert code == 0 and {"sendgrid-unchecked", "dkim-unchecked"} <= set(found["warning"])


def test_the_organizational_domain_follows_the_public_suffix_list():
    assert organizational_domain("news.clinic.co.uk") == "clinic.co.uk"
    assert organizational_domain("letters.mcsc.ca") == "mcsc.ca"
    assert organizational_domain("mcsc.ca") == "mcsc.ca"


def test_a_send_lists_the_doctors_findings_as_warnings_and_goes_on(runner, newsletter, sendgrid):
    (newsletter / "subscribers.csv").write_text("email\nana@testnews.ca\n")
    result = runner.invoke(cli, ["send", "issues/test.md", "--yes"])
    assert result.exit_code == 0, result.output
    assert "Doctor:      testnews.ca is not authenticated in SendGrid" in result.output
    assert "(a warning: see 'newsletter doctor')" in result.output
    assert [d.email for d in sendgrid.deliveries] == ["ana@testnews.ca"]


def test_http_asks_the_unsubscribe_endpoint_itself(runner, folder, sendgrid):
    import threading

    from newsletter_cli.web.server import make_server
    from newsletter_cli.web.site import Site
    from newsletter_cli.web.unsubscribe import Endpoint

    toml = folder / "newsletter.toml"
    config = load_config(toml)
    httpd = make_server("127.0.0.1", 0, Site(Endpoint(config, b"a-test-secret-of-enough-length")))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    toml.write_text(
        toml.read_text().replace("https://testnews.ca/unsubscribe", f"http://127.0.0.1:{httpd.server_port}/unsubscribe")
    )
    try:
        report = json.loads(runner.invoke(cli, ["doctor", "--json", "--http"]).output)
    finally:
        httpd.shutdown()
        httpd.server_close()
    codes = {f["code"]: f["level"] for f in report}
    assert codes["unsubscribe-http"] == "warning" and codes["unsubscribe"] == "ok"
    report = json.loads(runner.invoke(cli, ["doctor", "--json", "--http"]).output)
    assert {f["code"]: f["level"] for f in report}["unsubscribe-unreachable"] == "error"


def test_the_consent_share_leaves_out_suppressed_addresses_as_a_send_does(runner, clinic, monkeypatch):
    """A suppressed address is skipped as suppressed: it is neither consent nor its lack."""
    monkeypatch.delenv("SENDGRID_API_KEY")
    toml = clinic / "newsletter.toml"
    toml.write_text(toml.read_text() + "\n[consent]\nrequire = true\n")
    (clinic / "subscribers.csv").write_text("email\ngone@testnews.ca\nyes@testnews.ca\nnone@testnews.ca\n")
    (clinic / "agreed.csv").write_text("email,date\nyes@testnews.ca,2026-01-05\n")
    args = ["consent", "import", "agreed.csv", "--kind", "express", "--method", "paper form", "--date-column", "date"]
    assert runner.invoke(cli, args).exit_code == 0
    assert runner.invoke(cli, ["unsubscribes", "add", "gone@testnews.ca"]).exit_code == 0
    report = json.loads(runner.invoke(cli, ["doctor", "--json"]).output)
    [consent] = [f for f in report if f["code"] == "consent"]
    assert consent == {
        "level": "warning",
        "code": "consent",
        "message": "50% of the list's 2 addresses have live consent",
    }


def test_a_shared_store_that_is_down_or_not_migrated_is_an_error(
    runner, clinic, dns_server, monkeypatch, postgres_cluster
):
    dns_server(GOOD)
    assert "store" in doctor(runner)[1]["ok"]  # the folder's own file
    url = postgres_cluster.database()
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", url)
    assert doctor(runner)[1]["error"] == ["store-schema"]
    assert runner.invoke(cli, ["store", "migrate"]).exit_code == 0
    assert "store" in doctor(runner)[1]["ok"]
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/news")
    assert doctor(runner)[1]["error"] == ["store-unreachable"]
