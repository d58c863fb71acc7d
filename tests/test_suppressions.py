import pytest

from newsletter_cli.errors import NewsletterError
from newsletter_cli.sendgrid_api import SendGrid, Timing
from newsletter_cli.store import Store
from newsletter_cli.suppressions import add, import_csv, sync

from .sendgrid_fake import API_KEY


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "db") as store:
        yield store


def api_for(fake) -> SendGrid:
    return SendGrid(API_KEY, fake.url, timing=Timing(backoff=0.01))


def test_add_normalises_and_refuses_an_invalid_address_before_writing(store):
    result = add(store, ["Ana@Example.COM", "lee@example.org", "ana@example.com"], "manual", "cli")
    assert (result.added, result.already) == (2, 0)
    with pytest.raises(NewsletterError, match="invalid address 'nope'"):
        add(store, ["zed@example.com", "nope"], "manual", "cli")
    assert store.count_suppressions() == 2


def test_import_reads_any_csv_with_an_email_column(store, tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("Email Address,Unsub Date\na@example.com,2022\nbad,2022\nB@example.com,2023\na@example.com,x\n")
    result = import_csv(store, path, "unsubscribed")
    assert (result.added, result.already, result.invalid) == (2, 1, 1)
    assert {(s.email, s.source) for s in store.suppressions()} == {
        ("a@example.com", "import:export.csv"),
        ("b@example.com", "import:export.csv"),
    }


def test_sync_pulls_every_list_and_every_page(store, sendgrid):
    sendgrid.lists["unsubscribes"] = [{"email": f"u{i}@example.com", "created": 1} for i in range(1203)]
    sendgrid.lists["bounces"] = [{"email": "b@example.com", "created": 1, "reason": "550", "status": "5.1.1"}]
    sendgrid.lists["spam_reports"] = [{"email": "s@example.com", "created": 1, "ip": "10.0.0.1"}]
    sendgrid.lists["invalid_emails"] = [{"email": "i@example.com", "created": 1, "reason": "bad"}]
    sendgrid.groups["77"] = ["g@example.com", "u3@example.com"]
    learned = sync(store, api_for(sendgrid), 77)
    assert learned == {"unsubscribes": 1203, "bounces": 1, "spam_reports": 1, "invalid_emails": 1, "group 77": 1}
    reasons = {s.email: s.reason for s in store.suppressions()}
    assert (reasons["b@example.com"], reasons["s@example.com"], reasons["i@example.com"]) == (
        "bounced",
        "spam_report",
        "invalid",
    )
    pages = [seen.query["offset"][0] for seen in sendgrid.seen if seen.path.endswith("/unsubscribes")]
    assert pages == ["0", "500", "1000"]
    assert sync(store, api_for(sendgrid), 77) == dict.fromkeys(learned, 0)
