"""`newsletter stats`: what SendGrid's events say became of an issue, per recipient."""

from __future__ import annotations

import json

import pytest

from newsletter_cli.cli import cli

from .conftest import sg
from .test_send import ISSUE, send, write_list

# the figures of test_the_figures_count_recipients_and_keep_machine_opens_apart, in recipients
EXPECTED = {
    "requested": 10,
    "processed": 10,
    "delivered": 8,
    "deferred": 1,
    "bounced": 1,
    "blocked": 1,
    "dropped": 0,
    "spam_reports": 1,
    "unsubscribes": 1,
    "opens": 4,
    "machine_opens": 2,
    "clicks": 2,
}


@pytest.fixture
def sent(runner, newsletter, sendgrid, webhook):
    """An issue sent to ten people, then the events SendGrid would post about it."""
    emails = write_list(newsletter, 10)
    assert send(runner, "--yes").exit_code == 0
    issue = {"newsletter_issue": "test"}
    events = [sg("processed", e, n, **issue) for n, e in enumerate(emails)]
    events += [sg("delivered", e, 100 + n, **issue) for n, e in enumerate(emails[:8])]
    events += [sg("deferred", emails[8], 200, **issue)]
    events += [sg("bounce", emails[8], 201, type="bounce", bounce_classification="Invalid Address", **issue)]
    events += [sg("bounce", emails[9], 202, type="blocked", bounce_classification="Reputation", **issue)]
    events += [sg("open", e, 300 + n, sg_machine_open=False, **issue) for n, e in enumerate(emails[:4])]
    events += [sg("open", emails[0], 310, **issue)]  # the same person again
    events += [sg("open", e, 320 + n, sg_machine_open=True, **issue) for n, e in enumerate(emails[4:6])]
    events += [sg("click", e, 400 + n, url="https://testnews.ca/", **issue) for n, e in enumerate(emails[:2])]
    events += [sg("spamreport", emails[3], 500, **issue), sg("unsubscribe", emails[2], 501, **issue)]
    events += [sg("delivered", "someone@else.ca", 600)]  # mail newsletter did not send
    webhook(*events)
    return newsletter


def test_the_figures_count_recipients_and_keep_machine_opens_apart(runner, sent):
    result = runner.invoke(cli, ["stats", ISSUE, "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)["figures"]
    assert list(figures) == list(EXPECTED)
    assert {name: f["count"] for name, f in figures.items()} == EXPECTED
    assert figures["opens"]["share_of_delivered"] == 0.5 and figures["delivered"]["share_of_delivered"] == 1.0
    text = runner.invoke(cli, ["stats", ISSUE]).output
    assert "  opens                  4    50.0% of delivered\n" in text
    assert "  machine opens          2    25.0% of delivered\n" in text
    assert text.rstrip().endswith("those are counted apart.")


def test_without_any_event_the_figures_are_unknown_not_zero(runner, newsletter, sendgrid):
    write_list(newsletter, 3)
    assert send(runner, "--yes").exit_code == 0
    figures = json.loads(runner.invoke(cli, ["stats", ISSUE, "--json"]).output)["figures"]
    assert figures["requested"]["count"] == 3
    assert all(figures[name] == {"count": None, "share_of_delivered": None} for name in EXPECTED if name != "requested")
    text = runner.invoke(cli, ["stats", ISSUE]).output
    assert text.startswith("test: 3 requested; no SendGrid event has arrived for this issue, so delivered, bounced")


def test_an_issue_never_sent_has_no_figures(runner, newsletter):
    result = runner.invoke(cli, ["stats", ISSUE])
    assert result.exit_code == 1
    assert result.output == "Error: test has never been sent from this folder: there is no journal yet\n"


@pytest.mark.browser
def test_the_html_page_shows_the_figures_and_their_course_on_a_phone(runner, sent, browser):
    result = runner.invoke(cli, ["stats", ISSUE, "--html"])
    assert result.exit_code == 0 and "Wrote build/test-stats.html" in result.output
    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
    page.goto((sent / "build" / "test-stats.html").as_uri())
    cells = page.evaluate("[...document.querySelectorAll('tbody tr')].map(r => [...r.cells].map(c => c.innerText))")
    assert cells[0] == ["requested", "10", ""] and cells[2] == ["delivered", "8", "100.0%"]
    assert ["opens", "4", "50.0%"] in cells
    series = page.evaluate(
        "[...document.querySelectorAll('polyline.series')].map(p => [p.dataset.name, p.points.numberOfItems])"
    )
    assert series == [["delivered", 10], ["opens", 6], ["clicks", 4]]  # each recipient a step, plus both ends
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert "Opens are a trend, not a fact" in page.inner_text("p.note")
