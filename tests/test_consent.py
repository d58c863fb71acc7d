"""The consent ledger: when implied consent lapses (on a fixed clock), whose consent is live,
imports that are all or nothing, withdrawals from every unsubscribe route, and a ledger that
never changes."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time

import pytest

from newsletter_cli.cli import cli
from newsletter_cli.consent.ledger import Record, add_months, expires, verdict
from newsletter_cli.store import Store, StoreError
from newsletter_cli.store.consents import wording

from .conftest import sg

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "basis", "given", "lapses"),
    [
        ("implied", "purchase", "2024-03-05T10:00", "2026-03-05T10:00"),
        ("implied", "purchase", "2024-02-29T10:00", "2026-02-28T10:00"),  # no 29 February: a day early
        ("implied", "non-business", "2024-02-29T10:00", "2026-02-28T10:00"),
        ("implied", "purchase", "2026-02-28T10:00", "2028-02-28T10:00"),
        ("implied", "inquiry", "2025-08-31T10:00", "2026-02-28T10:00"),  # no 31 February
        ("implied", "inquiry", "2023-08-31T10:00", "2024-02-29T10:00"),  # a leap year has the 29th
        ("implied", "inquiry", "2026-09-15T10:00", "2027-03-15T10:00"),  # across a year's end
        ("implied", "published", "2020-01-01T10:00", None),
        ("express", None, "2020-01-01T10:00", None),
    ],
)
def test_when_consent_lapses(kind, basis, given, lapses):
    assert expires(kind, basis, at(given)) == (at(lapses) if lapses else None)


def test_adding_months_never_makes_a_day_the_month_lacks():
    assert add_months(at("2024-01-31T00:00"), 1) == at("2024-02-29T00:00")
    assert add_months(at("2023-01-31T00:00"), 1) == at("2023-02-28T00:00")
    assert add_months(at("2024-12-31T00:00"), 2) == at("2025-02-28T00:00")


def record(kind: str, when: str, basis: str | None = None) -> Record:
    given = at(when)
    return Record(
        "ann@testnews.ca", kind, "staff", "test", given, "tester", basis, expires_at=expires(kind, basis, given)
    )


NOW = at("2026-12-01T09:00")


@pytest.mark.parametrize(
    ("records", "live", "reason"),
    [
        ([], False, "no consent"),
        ([record("express", "2020-01-01T00:00")], True, ""),
        ([record("implied", "2025-01-10T00:00", "purchase")], True, ""),
        ([record("implied", "2024-11-30T00:00", "purchase")], False, "implied consent lapsed"),
        ([record("express", "2020-01-01T00:00"), record("withdrawn", "2026-01-01T00:00")], False, "consent withdrawn"),
        ([record("withdrawn", "2026-01-01T00:00"), record("express", "2026-06-01T00:00")], True, ""),
        ([record("express", "2020-01-01T00:00"), record("implied", "2025-01-01T00:00", "inquiry")], True, ""),
        ([record("express", "2027-01-01T00:00")], False, "no consent"),  # not yet given at NOW
    ],
)
def test_whose_consent_is_live(records, live, reason):
    found = verdict(records, NOW)
    assert (found.live, found.reason) == (live, reason)


IMPORT = ["consent", "import"]
IMPORT_SIGNUPS = [*IMPORT, "signups.csv", "--kind", "express", "--method", "paper form", "--date-column", "signed"]
SIGNUPS = "email,first_name,signed\nana@testnews.ca,Ana,2026-11-02\nlee@testnews.ca,Lee,2026-10-15T14:30\n"


def test_an_import_records_each_row_and_show_tells_the_history(runner, folder):
    (folder / "signups.csv").write_text(SIGNUPS)
    (folder / "wording.txt").write_text("Yes, send me the clinic's monthly newsletter.\r\n")
    proof = ["--wording-file", "wording.txt", "--evidence", "binder 3, page 12"]
    args = [*IMPORT, "signups.csv", "--kind", "express", "--method", "paper form", "--date-column", "Signed"]
    result = runner.invoke(cli, [*args, *proof])
    assert result.exit_code == 0, result.output
    assert result.output == "Recorded the express consent of 2 addresses.\n"
    shown = runner.invoke(cli, ["consent", "show", "Ana@testnews.ca"]).output.splitlines()
    assert shown[0] == "Ana@testnews.ca: consent is live"
    assert shown[1] == (
        "  2026-11-02: gave express consent by paper form (import:signups.csv); lasts until withdrawn; "
        "evidence: binder 3, page 12"
    )
    [entry] = json.loads(runner.invoke(cli, ["consent", "show", "ana@testnews.ca", "--json"]).output)
    assert (entry["kind"], entry["method"], entry["source"], entry["expires_at"]) == (
        "express",
        "paper form",
        "import:signups.csv",
        None,
    )
    with Store.for_folder(folder / ".newsletter") as store:  # kept in the store, for every machine sharing it
        assert wording(store, entry["wording"]) == "Yes, send me the clinic's monthly newsletter.\n"


def test_a_wording_kept_as_a_file_before_schema_10_is_still_found(tmp_path):
    state = tmp_path / ".newsletter"
    (state / "wordings").mkdir(parents=True)
    (state / "wordings" / "abc123.txt").write_text("Old words.\n", encoding="utf-8")
    with Store.for_folder(state) as store:
        assert wording(store, "abc123") == "Old words.\n"
        assert wording(store, "def456") is None


def test_a_bad_row_stops_the_whole_import_naming_its_line(runner, folder):
    (folder / "signups.csv").write_text(SIGNUPS + "not-an-address,X,2026-01-01\nkim@testnews.ca,Kim,03/05/2026\n")
    result = runner.invoke(
        cli,
        ["consent", "import", "signups.csv", "--kind", "express", "--method", "paper form", "--date-column", "signed"],
    )
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == "Error: 2 rows of signups.csv cannot be imported, so none was:"
    assert lines[1].startswith("  signups.csv:4: ")
    assert lines[2] == "  signups.csv:5: '03/05/2026' is not a date like 2024-03-05"
    assert "no consent records" in runner.invoke(cli, ["consent", "show", "ana@testnews.ca"]).output


def test_an_excel_export_imports_and_its_unsubscribed_rows_are_left_out(runner, folder):
    text = "Email Address;First Name;Status\r\nrene@testnews.ca;René;subscribed\r\nmo@testnews.ca;Mo;unsubscribed\r\n"
    (folder / "export.csv").write_bytes(text.encode("cp1252"))
    result = runner.invoke(
        cli,
        [
            *IMPORT,
            "export.csv",
            "--kind",
            "implied",
            "--basis",
            "inquiry",
            "--method",
            "import",
            "--date",
            "2026-11-20",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Recorded the implied consent of 1 address." in result.output
    assert "Left out 1 row the file marks as unsubscribed." in result.output
    shown = runner.invoke(cli, ["consent", "show", "rene@testnews.ca"]).output
    assert "consent is live until 2027-05-20" in shown


def test_implied_consent_needs_its_basis(runner, folder):
    (folder / "signups.csv").write_text(SIGNUPS)
    result = runner.invoke(
        cli, ["consent", "import", "signups.csv", "--kind", "implied", "--method", "import", "--date", "2026-01-01"]
    )
    assert result.output == (
        "Error: implied consent needs --basis, one of purchase, non-business, inquiry, published, disclosed\n"
    )


def test_every_unsubscribe_route_appends_a_withdrawal(runner, folder, webhook):
    (folder / "signups.csv").write_text(SIGNUPS)
    assert runner.invoke(cli, IMPORT_SIGNUPS).exit_code == 0
    assert runner.invoke(cli, ["unsubscribes", "add", "ana@testnews.ca"]).exit_code == 0
    webhook(sg("spamreport", "lee@testnews.ca", 1, timestamp=int(time.time())))
    (folder / "left.csv").write_text("email\nkim@testnews.ca\n")
    assert runner.invoke(cli, ["unsubscribes", "import", "left.csv"]).exit_code == 0
    ana = runner.invoke(cli, ["consent", "show", "ana@testnews.ca"]).output.splitlines()
    assert ana[0] == "ana@testnews.ca: may not be mailed (consent withdrawn)"
    assert ana[-1].endswith(": withdrew consent (staff, cli)")
    lee = runner.invoke(cli, ["consent", "show", "lee@testnews.ca"]).output.splitlines()
    assert lee[0] == "lee@testnews.ca: may not be mailed (consent withdrawn)"
    assert lee[-1].endswith(": withdrew consent (spam report, sendgrid:event:spamreport)")
    kim = runner.invoke(cli, ["consent", "show", "kim@testnews.ca"]).output.splitlines()
    assert kim[-1].endswith(": withdrew consent (import, import:left.csv)")
    exported = list(csv.DictReader(io.StringIO(runner.invoke(cli, ["consent", "export"]).output)))
    assert [row["kind"] for row in exported] == ["express", "express", "withdrawn", "withdrawn", "withdrawn"]


def test_the_ledger_cannot_be_changed_only_added_to(folder, runner):
    (folder / "signups.csv").write_text(SIGNUPS)
    assert runner.invoke(cli, IMPORT_SIGNUPS).exit_code == 0
    with Store.for_folder(folder / ".newsletter") as store:
        for sql in ("UPDATE consents SET kind = 'implied'", "DELETE FROM consents"):
            with pytest.raises(StoreError, match="append-only"), store.transaction() as db:
                db.execute(sql)


def test_lifting_a_suppression_needs_a_new_consent_recorded_with_it(runner, folder):
    assert runner.invoke(cli, ["unsubscribes", "add", "ana@testnews.ca"]).exit_code == 0
    assert runner.invoke(cli, ["unsubscribes", "remove", "ana@testnews.ca"]).exit_code == 2  # --kind and --method
    result = runner.invoke(
        cli, ["unsubscribes", "remove", "ana@testnews.ca", "--kind", "express", "--method", "verbal"]
    )
    assert (
        result.output
        == "ana@testnews.ca is no longer suppressed (was: manual); their new express consent is recorded.\n"
    )
    assert runner.invoke(cli, ["unsubscribes", "list"]).output == ""
    shown = runner.invoke(cli, ["consent", "show", "ana@testnews.ca"]).output.splitlines()
    assert shown[0] == "ana@testnews.ca: consent is live" and "by verbal (unsubscribes remove)" in shown[-1]
    again = runner.invoke(cli, ["unsubscribes", "remove", "ana@testnews.ca", "--kind", "express", "--method", "verbal"])
    assert again.output == "Error: ana@testnews.ca is not suppressed: nothing to lift\n"


def test_expiring_lists_implied_consents_that_lapse_soon(runner, folder):
    soon = (dt.datetime.now(UTC) - dt.timedelta(days=24 * 30 - 20)).date().isoformat()  # about 20 days left
    later = (dt.datetime.now(UTC) - dt.timedelta(days=300)).date().isoformat()
    (folder / "buyers.csv").write_text(f"email,bought\nsoon@testnews.ca,{soon}\nlater@testnews.ca,{later}\n")
    args = ["consent", "import", "buyers.csv", "--kind", "implied", "--basis", "purchase", "--method", "import"]
    assert runner.invoke(cli, [*args, "--date-column", "bought"]).exit_code == 0
    found = runner.invoke(cli, ["consent", "expiring", "--within", "60d"]).output.splitlines()
    assert len(found) == 2 and found[0].startswith("soon@testnews.ca\tlapses ") and found[0].endswith("purchase")
    assert found[1] == "1 implied consent lapse within 60d."


# --- [consent] require ----------------------------------------------------------------------

PARTS = ("sent", "scheduled", "pending", "failed", "uncertain", "suppressed", "invalid", "duplicate", "unsubscribed")


def require_consent(folder) -> None:
    toml = folder / "newsletter.toml"
    toml.write_text(toml.read_text() + "\n[consent]\nrequire = true\n")


IMPLIED_PURCHASE = ("--kind", "implied", "--basis", "purchase", "--method", "import")


def import_consent(runner, rows: str, *args: str) -> None:
    """Record consents from a CSV in the current folder (the folder fixture's)."""
    with open("consent-import.csv", "w") as handle:
        handle.write("email,date\n" + rows)
    result = runner.invoke(cli, ["consent", "import", "consent-import.csv", *args, "--date-column", "date"])
    assert result.exit_code == 0, result.output


def test_with_require_a_send_mails_only_those_with_live_consent_and_says_why_not(runner, newsletter, sendgrid):
    from .test_send import ISSUE, send, status, write_list

    emails = write_list(newsletter, 5)  # user0..user4@example.com
    import_consent(runner, f"{emails[0]},2025-05-01\n", "--kind", "express", "--method", "paper form")
    recent = (dt.datetime.now(UTC) - dt.timedelta(days=30)).date().isoformat()
    import_consent(runner, f"{emails[1]},2023-01-01\n{emails[3]},{recent}\n", *IMPLIED_PURCHASE)
    assert runner.invoke(cli, ["unsubscribes", "add", emails[4]]).exit_code == 0
    require_consent(newsletter)
    checked = runner.invoke(cli, ["check", ISSUE]).output
    assert "warning: 2 of the list's 4 addresses (50%) have no live consent, so a send skips them" in checked
    result = send(runner, "--yes")
    assert result.exit_code == 0, result.output
    assert "no consent: 1, implied expired: 1" in result.output
    assert sorted(d.email for d in sendgrid.deliveries) == [emails[0], emails[3]]
    counts = status(runner)
    assert (counts["no_consent"], counts["consent_lapsed"], counts["suppressed"], counts["sent"]) == (1, 1, 1, 2)
    assert sum(counts[k] for k in PARTS) + counts["no_consent"] + counts["consent_lapsed"] == counts["rows"] == 5
    shown = runner.invoke(cli, ["status", ISSUE]).output
    assert "no consent: 1, implied expired: 1" in shown


def test_consent_is_judged_at_the_send_time_of_a_scheduled_send(runner, newsletter, sendgrid):
    from .test_send import send, status, write_list

    emails = write_list(newsletter, 2)
    bought = add_months(dt.datetime.now(UTC), -24) + dt.timedelta(hours=1)  # lapses an hour from now
    import_consent(runner, f"{emails[0]},{bought.isoformat()}\n{emails[1]},{dt.date.today()}\n", *IMPLIED_PURCHASE)
    require_consent(newsletter)
    when = (dt.datetime.now() + dt.timedelta(hours=2)).replace(microsecond=0).isoformat()
    assert send(runner, "--yes", "--at", when).exit_code == 0
    assert [d.email for d in sendgrid.deliveries] == [emails[1]]
    assert status(runner)["consent_lapsed"] == 1
