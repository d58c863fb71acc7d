"""Signup with double opt-in on `newsletter serve`: the form, the confirmation email as SendGrid
receives it, the link that a person confirms in one click and a mail scanner cannot, and the
limits that keep the form from mail-bombing strangers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest

from newsletter_cli.cli import cli
from newsletter_cli.config import load_config
from newsletter_cli.consent.signup import make_token
from newsletter_cli.sendgrid_api import SendGrid, Timing
from newsletter_cli.store import Store
from newsletter_cli.store import signups as stored
from newsletter_cli.web.server import make_server
from newsletter_cli.web.site import Site
from newsletter_cli.web.unsubscribe import Endpoint

from .conftest import SEND_SECRET
from .sendgrid_fake import API_KEY, Fault
from .test_send import send

WORDING = "Yes, send me the Test News newsletter by email, about once a month."


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC).timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server(newsletter, sendgrid):
    """`newsletter serve` on loopback, with the signup form open and SendGrid the stand-in."""
    toml = newsletter / "newsletter.toml"
    toml.write_text(
        toml.read_text() + f'\n[signup]\nurl = "https://testnews.ca/subscribe"\nwording = "{WORDING}"\nkeep_ip = true\n'
    )
    config = load_config(toml)
    api = SendGrid(API_KEY, sendgrid.url, timing=Timing(timeout=5, backoff=0.01))
    site = Site(Endpoint(config, SEND_SECRET.encode(), api), log=io.StringIO())
    clock = Clock()
    site.signup.clock = clock
    httpd = make_server("127.0.0.1", 0, site)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield Server(f"http://127.0.0.1:{httpd.server_port}", site, clock, config)
    httpd.shutdown()
    httpd.server_close()


class Server:
    def __init__(self, url, site, clock, config):
        self.url, self.site, self.clock, self.config = url, site, clock, config

    def request(self, path: str, data: dict | None = None, headers: dict | None = None) -> tuple[int, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.url + path, data=body, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def subscribe(self, email: str, **extra: str) -> tuple[int, str]:
        return self.request("/subscribe", {"email": email, "consent": "yes", "form": "homepage", **extra})

    def local(self, link: str) -> str:
        """The confirmation link of an email, pointed at this server."""
        return self.url + link.split("testnews.ca", 1)[1]


def confirmation_link(sendgrid, email: str) -> str:
    [mail] = [d for d in sendgrid.deliveries if d.email == email]
    return re.search(r"https://testnews\.ca/confirm\?token=[\w.\-]+", mail.text).group(0)


def consent_of(runner, email: str) -> str:
    return runner.invoke(cli, ["consent", "show", email]).output


def test_the_confirmation_email_tracks_nothing_and_says_who_why_and_how_to_withdraw(server, sendgrid):
    assert server.subscribe("ana@testnews.ca", first_name="Ana")[0] == 200
    [request] = [s for s in sendgrid.seen if s.path == "/v3/mail/send"]
    assert request.body["tracking_settings"] == {
        "click_tracking": {"enable": False, "enable_text": False},
        "open_tracking": {"enable": False},
        "subscription_tracking": {"enable": False},
    }
    [mail] = sendgrid.deliveries
    assert mail.subject == "Please confirm your subscription to Test News"
    assert (
        "Hi Ana," in mail.text and "1 Test Street, Testville" in mail.text and "1 Test Street, Testville" in mail.html
    )
    assert "You can withdraw your consent at any time" in mail.text and "withdraw your consent" in mail.html
    assert "receive the Test News newsletter by email at ana@testnews.ca" in mail.text


@pytest.mark.browser
def test_a_person_confirms_in_one_click_and_the_next_send_reaches_them(server, sendgrid, runner, browser):
    assert server.subscribe("ana@testnews.ca", first_name="Ana")[0] == 200
    assert "no consent records" in consent_of(runner, "ana@testnews.ca")  # pending: not yet consent
    page = browser.new_page()
    page.goto(server.local(confirmation_link(sendgrid, "ana@testnews.ca")))
    page.wait_for_selector("text=You are subscribed")
    shown = consent_of(runner, "ana@testnews.ca").splitlines()
    assert shown[0] == "ana@testnews.ca: consent is live"
    assert "gave express consent by web double opt-in (form:homepage), confirmed " in shown[1]
    (server.config.root / "subscribers.csv").write_text("email,first_name\nlee@testnews.ca,Lee\n")
    assert send(runner, "--yes").exit_code == 0
    newsletters = {d.email: d for d in sendgrid.deliveries if d.subject.startswith("News for")}
    assert set(newsletters) == {"lee@testnews.ca", "ana@testnews.ca"}
    assert newsletters["ana@testnews.ca"].subject == "News for Ana"


@pytest.mark.browser
def test_without_javascript_nothing_changes_until_the_button_is_pressed(server, sendgrid, runner, browser):
    server.subscribe("ana@testnews.ca")
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(server.local(confirmation_link(sendgrid, "ana@testnews.ca")))
    assert page.inner_text("h1") == "Confirm your subscription"
    assert "no consent records" in consent_of(runner, "ana@testnews.ca")
    page.click("text=Yes, subscribe me")
    assert page.inner_text("h1") == "You are subscribed"
    assert "consent is live" in consent_of(runner, "ana@testnews.ca")
    context.close()


def test_a_mail_scanners_get_of_the_link_records_nothing(server, sendgrid, runner):
    server.subscribe("ana@testnews.ca")
    link = server.local(confirmation_link(sendgrid, "ana@testnews.ca"))
    for _ in range(3):
        status, page = server.request(link.split(server.url, 1)[1])
        assert status == 200 and "Confirm your subscription" in page
    assert "no consent records" in consent_of(runner, "ana@testnews.ca")


def test_forged_expired_and_damaged_tokens_get_400(server, sendgrid, runner):
    server.subscribe("ana@testnews.ca")
    good = confirmation_link(sendgrid, "ana@testnews.ca").split("token=", 1)[1]
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=8)
    with Store.for_folder(server.config.state_dir) as store:
        wording = stored.find(store, "ana@testnews.ca").wording
    forged = make_token(
        b"another-secret-of-enough-length", "ana@testnews.ca", "homepage", wording, dt.datetime.now(dt.UTC)
    )
    expired = make_token(SEND_SECRET.encode(), "ana@testnews.ca", "homepage", wording, old)
    for token in (forged, expired, good[:-3], "garbage", ""):
        for data in (None, {}):
            assert server.request(f"/confirm?token={token}", data)[0] == 400
    assert "no consent records" in consent_of(runner, "ana@testnews.ca")


def test_the_fourth_signup_for_one_address_within_24_hours_sends_nothing(server, sendgrid):
    answers = [server.subscribe("ana@testnews.ca") for _ in range(4)]
    assert len({page for _, page in answers}) == 1 and {status for status, _ in answers} == {200}
    assert len(sendgrid.deliveries) == 3
    server.clock.now += 24 * 3600 + 1
    assert server.subscribe("ana@testnews.ca")[0] == 200
    assert len(sendgrid.deliveries) == 4


def test_the_answer_is_the_same_whoever_the_address_is(server, sendgrid, runner):
    server.subscribe("ana@testnews.ca")
    server.request(server.local(confirmation_link(sendgrid, "ana@testnews.ca")).split(server.url, 1)[1], {})
    assert "consent is live" in consent_of(runner, "ana@testnews.ca")
    confirmed, fresh = server.subscribe("ana@testnews.ca"), server.subscribe("new@testnews.ca")
    bot = server.subscribe("bot@testnews.ca", website="https://spam.example")
    assert confirmed == fresh == bot
    assert [d.email for d in sendgrid.deliveries] == ["ana@testnews.ca", "new@testnews.ca"]


def test_a_form_without_the_consent_ticked_or_with_a_bad_address_is_refused_on_its_page(server, sendgrid):
    status, page = server.request("/subscribe", {"email": "ana@testnews.ca", "form": "homepage"})
    assert status == 400 and "Please tick the box" in page and WORDING in page
    status, page = server.request("/subscribe", {"email": "not an address", "consent": "yes"})
    assert status == 400 and "does not look like an email address" in page
    assert sendgrid.deliveries == []


def test_one_ip_address_gets_ten_signups_an_hour(server, sendgrid):
    statuses = [server.subscribe(f"person{i}@testnews.ca")[0] for i in range(11)]
    assert statuses == [200] * 10 + [429]


def test_the_ip_kept_is_the_peers_and_a_forwarded_one_only_from_the_trusted_proxy(server, sendgrid):
    server.subscribe("ana@testnews.ca", website="")
    server.request("/subscribe", {"email": "lee@testnews.ca", "consent": "yes"}, {"X-Forwarded-For": "203.0.113.7"})
    with Store.for_folder(server.config.state_dir) as store:
        assert stored.find(store, "ana@testnews.ca").ip == "127.0.0.1"
        assert stored.find(store, "lee@testnews.ca").ip == "127.0.0.1"
    pages = server.site.signup
    proxied = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "198.51.100.1, 203.0.113.7"}
    assert pages.client_ip(proxied) == "10.0.0.2"
    pages.config = dataclasses.replace(server.config, signup_trusted_proxy="10.0.0.2")
    assert pages.client_ip(proxied) == "203.0.113.7"


def test_sendgrid_refusing_the_confirmation_says_try_again_and_records_nothing(server, sendgrid):
    sendgrid.fail_next(Fault(400, body={"errors": [{"message": "bad", "field": None}]}, path="/mail/send"))
    status, page = server.subscribe("ana@testnews.ca")
    assert status == 503 and "could not be sent just now" in page
    with Store.for_folder(server.config.state_dir) as store:
        assert stored.mails_since(store, "ana@testnews.ca", dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)) == 0


def test_pending_signups_are_forgotten_after_60_days(server, sendgrid):
    server.subscribe("ana@testnews.ca")
    server.clock.now += 61 * 24 * 3600
    server.subscribe("lee@testnews.ca")
    with Store.for_folder(server.config.state_dir) as store:
        assert stored.find(store, "ana@testnews.ca") is None and stored.find(store, "lee@testnews.ca") is not None


def test_signup_form_prints_the_snippet_that_posts_to_the_server(runner, server):
    result = runner.invoke(cli, ["signup-form", "--form", "homepage"])
    assert result.exit_code == 0
    assert result.output.startswith('<form method="post" action="https://testnews.ca/subscribe">')
    assert WORDING in result.output and 'name="website"' in result.output and 'value="homepage"' in result.output


def test_subscribers_export_is_the_list_and_the_confirmed_signups(runner, server, sendgrid):
    server.subscribe("ana@testnews.ca", first_name="Ana")
    server.request(server.local(confirmation_link(sendgrid, "ana@testnews.ca")).split(server.url, 1)[1], {})
    (server.config.root / "subscribers.csv").write_text("email,first_name\nlee@testnews.ca,Lee\n")
    assert runner.invoke(cli, ["subscribers", "export"]).output.splitlines() == [
        "email,first_name,source,consent",
        "lee@testnews.ca,Lee,subscribers.csv,no consent",
        "ana@testnews.ca,Ana,form:homepage,live",
    ]


def test_an_unsubscribe_after_confirming_appends_withdrawn(runner, server, sendgrid):
    server.subscribe("ana@testnews.ca")
    server.request(server.local(confirmation_link(sendgrid, "ana@testnews.ca")).split(server.url, 1)[1], {})
    assert runner.invoke(cli, ["unsubscribes", "add", "ana@testnews.ca"]).exit_code == 0
    shown = consent_of(runner, "ana@testnews.ca").splitlines()
    assert shown[0] == "ana@testnews.ca: may not be mailed (consent withdrawn)"
    assert shown[-1].endswith(": withdrew consent (staff, cli)")


def test_the_form_page_shows_the_exact_wording_unticked_and_the_sender(server):
    status, page = server.request("/subscribe")
    assert status == 200
    assert f'<input type="checkbox" name="consent" value="yes" required> {WORDING}' in page
    assert "Test News, 1 Test Street, Testville" in page and 'name="website"' in page


def test_a_pending_signup_is_never_mailed(server, sendgrid, runner):
    server.subscribe("ana@testnews.ca")
    (server.config.root / "subscribers.csv").write_text("email,first_name\nlee@testnews.ca,Lee\n")
    assert send(runner, "--yes").exit_code == 0
    assert [d.email for d in sendgrid.deliveries if d.subject.startswith("News for")] == ["lee@testnews.ca"]


def test_the_dry_run_counts_a_confirmed_signup_as_the_send_does(server, sendgrid, runner):
    for email in ("ana@testnews.ca", "kim@testnews.ca"):
        server.subscribe(email)
        server.request(server.local(confirmation_link(sendgrid, email)).split(server.url, 1)[1], {})
    assert runner.invoke(cli, ["unsubscribes", "add", "kim@testnews.ca"]).exit_code == 0
    (server.config.root / "subscribers.csv").write_text("email,first_name\nlee@testnews.ca,Lee\n")
    result = runner.invoke(cli, ["send", "issues/test.md", "--dry-run"])
    assert result.exit_code == 0, result.output
    batch = json.loads((server.config.root / "build" / "test-dry-run" / "batch-0001.json").read_text())
    assert [p["to"][0]["email"] for p in batch["personalizations"]] == ["lee@testnews.ca", "ana@testnews.ca"]
    assert "1 suppressed" in result.output
