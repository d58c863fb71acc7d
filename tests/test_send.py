import datetime as dt
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from newsletter_cli.cli import cli
from newsletter_cli.config import load_config
from newsletter_cli.errors import NewsletterError
from newsletter_cli.sending import parse_send_at
from newsletter_cli.sending.reader import ListReader
from newsletter_cli.store import Store, Suppression
from newsletter_cli.store.lock import FileSendLock
from newsletter_cli.web.unsubscribe import Endpoint

from .conftest import SEND_SECRET as SECRET
from .conftest import interrupt, newsletter_process
from .sendgrid_fake import Fault, accepted_then_dropped, html_page, rate_limited, slow_answer

ISSUE = "issues/test.md"


def write_list(folder: Path, count: int, extra: str = "") -> list[str]:
    emails = [f"user{i}@example.com" for i in range(count)]
    rows = "".join(f"{email},User{i}\n" for i, email in enumerate(emails))
    (folder / "subscribers.csv").write_text("email,first_name\n" + rows + extra)
    return emails


def send(runner, *args):
    return runner.invoke(cli, ["send", ISSUE, *args])


def status(runner) -> dict:
    result = runner.invoke(cli, ["status", ISSUE, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def never_sent(runner) -> bool:
    result = runner.invoke(cli, ["status", ISSUE])
    return (
        result.exit_code == 1
        and result.output == "Error: test has never been sent from this folder: its journal is empty\n"
    )


def delivered(sendgrid) -> Counter:
    return Counter(d.email for d in sendgrid.deliveries)


def test_a_send_delivers_once_to_everyone_with_their_fields_and_unsubscribe_headers(runner, newsletter, sendgrid):
    write_list(newsletter, 3)
    result = send(runner, "--yes")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "Sent to 3 recipients; all 3 eligible recipients have this issue."
    assert "batch 1: 3 sent (3/3)" in result.output
    assert delivered(sendgrid) == Counter({"user0@example.com": 1, "user1@example.com": 1, "user2@example.com": 1})
    first = sendgrid.deliveries[0]
    assert first.subject == "News for User0"
    assert "Hi User0!" in first.html and "Hi User0!" in first.text
    assert first.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert first.headers["List-Unsubscribe"].startswith("<https://testnews.ca/unsubscribe?token=")
    assert first.headers["List-Unsubscribe"][1:-1] in first.html
    assert not any(token in first.html + first.text + first.subject for token in ("NLH", "NLT", "NLF"))
    counts = status(runner)
    assert {k: counts[k] for k in ("sent", "pending", "failed", "uncertain", "suppressed", "invalid", "duplicate")} == {
        "sent": 3,
        "pending": 0,
        "failed": 0,
        "uncertain": 0,
        "suppressed": 0,
        "invalid": 0,
        "duplicate": 0,
    }
    assert counts["last_batch_at"]


def test_the_summary_shows_everything_before_sending(runner, newsletter, sendgrid):
    write_list(newsletter, 2, extra="bad address,X\nUSER0@example.com,Dup\n")
    runner.invoke(cli, ["unsubscribes", "add", "user1@example.com"])
    result = send(runner, "--yes", "--no-sync")
    lines = result.output.splitlines()
    assert lines[:7] == [
        "Issue:       test",
        "Subject:     News for you",
        "From:        Test News <news@testnews.ca>",
        "Recipients:  1",
        "Skipped:     1 invalid, 1 duplicate, 1 suppressed, 0 already sent",
        "Batches:     1 of up to 1000, 8 at a time",
        "Unsubscribe: own endpoint (https://testnews.ca/unsubscribe)",
    ]
    assert delivered(sendgrid) == Counter({"user0@example.com": 1})


def test_names_with_markup_commas_quotes_and_line_breaks_arrive_escaped_and_clean(runner, newsletter, sendgrid):
    (newsletter / "subscribers.csv").write_text(
        'email,first_name,last_name\na@example.com,"<script>x</script>","O\'Neil, ""Jr""\nBcc: evil"\n'
    )
    result = send(runner, "--yes")
    assert result.exit_code == 0, result.output
    [mail] = sendgrid.deliveries
    assert "Hi &lt;script&gt;x&lt;/script&gt;!" in mail.html
    assert "<script>x</script>" not in mail.html
    assert "Hi <script>x</script>!" in mail.text
    assert mail.subject == "News for <script>x</script>"
    assert mail.name == "script x /script O'Neil Jr Bcc: evil"


def test_a_second_send_mails_nobody_twice_and_asks_about_new_addresses(runner, newsletter, sendgrid):
    emails = write_list(newsletter, 3)
    assert send(runner, "--yes").exit_code == 0
    again = send(runner, "--yes")
    assert again.exit_code == 0
    assert again.output.splitlines()[-1] == "Nothing to send: all 3 eligible recipients already have this issue."
    write_list(newsletter, 5)
    asked = send(runner)
    assert asked.exit_code == 1
    assert "Recipients:  2 (2 new since the last send of this issue)" in asked.output
    assert (
        asked.output.splitlines()[-1]
        == "Error: no terminal to confirm on: add --yes to send without asking. Nothing was sent."
    )
    assert status(runner)["pending"] == 0
    assert send(runner, "--yes").exit_code == 0
    assert delivered(sendgrid) == Counter({email: 1 for email in [*emails, "user3@example.com", "user4@example.com"]})


def test_limit_sends_the_first_n_and_the_next_send_continues(runner, newsletter, sendgrid):
    write_list(newsletter, 5)
    first = send(runner, "--yes", "--limit", "2", "--batch-size", "1")
    assert first.exit_code == 0, first.output
    assert first.output.splitlines()[-1] == (
        f"Sent to 2 (--limit); 3 still pending: run 'newsletter send {ISSUE}' to continue."
    )
    assert sorted(d.email for d in sendgrid.deliveries) == ["user0@example.com", "user1@example.com"]
    assert send(runner, "--yes").exit_code == 0
    assert sorted(delivered(sendgrid).values()) == [1] * 5


def test_faults_are_retried_and_a_rejected_batch_is_recorded_and_retried_later(runner, newsletter, sendgrid):
    emails = write_list(newsletter, 50)
    mail = "/mail/send"
    sendgrid.fail_next(
        rate_limited(1, path=mail),
        Fault(503, path=mail),
        Fault(502, path=mail),
        Fault(
            400,
            body={"errors": [{"message": "The content value must be a string", "field": "content.0.value"}]},
            path=mail,
        ),
    )
    result = send(runner, "--yes", "--batch-size", "10", "--concurrency", "1")
    assert result.exit_code == 1
    assert (
        "failed: SendGrid answered 400 to POST /v3/mail/send: content.0.value: The content value must be a string"
        in result.output
    )
    assert result.output.splitlines()[-1].startswith("Sent to 40 in this run; 10 failed (see 'newsletter status")
    counts = status(runner)
    assert (counts["sent"], counts["failed"]) == (40, 10)
    assert counts["failed_batches"] == [
        {
            "batch": counts["failed_batches"][0]["batch"],
            "recipients": 10,
            "error": "SendGrid answered 400 to POST /v3/mail/send: content.0.value: The content value must be a string",
        }
    ]
    assert send(runner, "--yes", "--retry-failed").exit_code == 0
    assert delivered(sendgrid) == Counter({email: 1 for email in emails})
    assert status(runner)["failed_batches"] == []


def test_401_stops_the_whole_send_at_once_without_showing_the_key(runner, newsletter, sendgrid, monkeypatch):
    write_list(newsletter, 30)
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.wrong-key-value")
    result = send(runner, "--yes", "--no-sync", "--batch-size", "10")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        "Error: SendGrid rejected the API key (401): check SENDGRID_API_KEY; SendGrid said: "
        "The provided authorization grant is invalid. Sending stopped; "
        f"0 sent in this run, 30 still pending: run 'newsletter send {ISSUE}' to resume."
    )
    assert "SG.wrong" not in result.output
    assert sendgrid.deliveries == []
    assert status(runner)["pending"] == 30


def test_a_key_refused_while_syncing_stops_before_anything_is_planned(runner, newsletter, sendgrid, monkeypatch):
    write_list(newsletter, 30)
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.wrong-key-value")
    result = send(runner, "--yes")
    assert result.exit_code == 1
    assert result.output == (
        "Error: SendGrid rejected the API key (401): check SENDGRID_API_KEY; "
        "SendGrid said: The provided authorization grant is invalid\n"
    )
    assert sendgrid.deliveries == []
    assert never_sent(runner)


def test_without_an_api_key_or_secret_it_says_so(runner, newsletter, monkeypatch):
    write_list(newsletter, 1)
    monkeypatch.delenv("SENDGRID_API_KEY")
    result = send(runner, "--yes")
    assert (
        result.output
        == "Error: SENDGRID_API_KEY is not set: sending needs a SendGrid API key with the Mail Send scope\n"
    )
    monkeypatch.delenv("NEWSLETTER_SECRET")
    assert send(runner, "--yes").output.startswith("Error: NEWSLETTER_SECRET is not set")


def test_dry_run_writes_payloads_and_a_real_eml_and_touches_no_journal(runner, newsletter, sendgrid):
    write_list(newsletter, 3)
    result = send(runner, "--dry-run", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert (
        result.output.splitlines()[-1]
        == "Dry run: wrote 2 batch payloads and sample.eml to build/test-dry-run/; nothing was sent."
    )
    out = newsletter / "build" / "test-dry-run"
    assert sorted(p.name for p in out.iterdir()) == ["batch-0001.json", "batch-0002.json", "sample.eml"]
    payload = json.loads((out / "batch-0001.json").read_text())
    assert [p["to"][0]["email"] for p in payload["personalizations"]] == ["user0@example.com", "user1@example.com"]
    assert [c["type"] for c in payload["content"]] == ["text/plain", "text/html"]
    assert sendgrid.seen == []
    assert never_sent(runner)
    eml = (out / "sample.eml").read_text()
    for header in (
        "From:",
        "To: User0 <user0@example.com>",
        "Subject: News for User0",
        "Date:",
        "Message-ID:",
        "MIME-Version: 1.0",
        "List-Unsubscribe: <https://testnews.ca/unsubscribe?token=",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        "Content-Type: multipart/alternative",
    ):
        assert header in eml
    assert SECRET not in eml and SECRET not in (out / "batch-0001.json").read_text()
    if os.name == "posix":  # for any mail client or colleague to open, as build/ is
        assert stat.S_IMODE(out.stat().st_mode) == 0o755
        assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o644}


def test_suppressed_and_unsubscribed_addresses_receive_nothing(runner, newsletter, sendgrid):
    write_list(newsletter, 4)
    runner.invoke(cli, ["unsubscribes", "add", "user0@example.com"])
    sendgrid.lists["bounces"] = [{"email": "user1@example.com", "created": 1, "reason": "550", "status": "5.1.1"}]
    result = send(runner, "--yes")
    assert "Synced:      learned 1 new suppressions from SendGrid" in result.output
    assert set(delivered(sendgrid)) == {"user2@example.com", "user3@example.com"}


def test_schedule_with_at(runner, newsletter, sendgrid):
    """Every request of a scheduled send carries one SendGrid batch id, which can cancel them all."""
    write_list(newsletter, 5)
    when = (dt.datetime.now() + dt.timedelta(hours=2)).replace(microsecond=0)
    result = send(runner, "--yes", "--at", when.isoformat(), "--batch-size", "2")
    assert result.exit_code == 0, result.output
    shown = when.astimezone().isoformat(timespec="minutes")
    until = (when - dt.timedelta(minutes=10)).astimezone().isoformat(timespec="minutes")
    assert result.output.splitlines()[-1] == (
        f"Scheduled 5 recipients for {when.astimezone().isoformat(timespec='minutes')}: nothing goes out before then, "
        f"and 'newsletter cancel {ISSUE}' calls it off until {until}."
    )
    requests = [s for s in sendgrid.seen if s.path == "/v3/mail/send"]
    assert len(requests) == 3 and {r.body["send_at"] for r in requests} == {int(when.timestamp())}
    assert {r.body["batch_id"] for r in requests} == set(sendgrid.mail_batches)
    counts = status(runner)
    assert (counts["sent"], counts["scheduled"], counts["scheduled_at"], counts["cancel_until"]) == (0, 5, shown, until)
    printed = runner.invoke(cli, ["status", ISSUE]).output
    assert printed.startswith("test: 5 scheduled, 0 sent, 0 pending")
    assert (
        f"Scheduled for {shown}: SendGrid sends it then; 'newsletter cancel {ISSUE}' calls it off until {until}."
        in (printed)
    )


def test_a_resumed_scheduled_send_keeps_its_batch_id_and_its_time(runner, newsletter, sendgrid):
    write_list(newsletter, 4)
    when = (dt.datetime.now() + dt.timedelta(hours=2)).replace(microsecond=0).isoformat()
    assert send(runner, "--yes", "--at", when, "--limit", "2").exit_code == 0
    later = (dt.datetime.now() + dt.timedelta(hours=3)).replace(microsecond=0).isoformat()
    for args in (["--at", later], []):
        refused = send(runner, "--yes", *args)
        assert refused.exit_code == 1 and "this issue is already scheduled for " in refused.output
        assert f"or first 'newsletter cancel {ISSUE}'" in refused.output
    assert send(runner, "--yes", "--at", when).exit_code == 0
    requests = [s for s in sendgrid.seen if s.path == "/v3/mail/send"]
    assert len(sendgrid.mail_batches) == 1 and len({r.body["batch_id"] for r in requests}) == 1
    assert status(runner)["scheduled"] == 4


def scheduled(runner, newsletter, sendgrid, hours: float = 2) -> dt.datetime:
    write_list(newsletter, 3)
    when = (dt.datetime.now() + dt.timedelta(hours=hours)).replace(microsecond=0).astimezone()
    assert send(runner, "--yes", "--at", when.isoformat()).exit_code == 0
    return when


def test_cancel_calls_off_a_scheduled_send_and_everyone_is_pending_again(runner, newsletter, sendgrid):
    when = scheduled(runner, newsletter, sendgrid)
    result = runner.invoke(cli, ["cancel", ISSUE])
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"Cancelled the send scheduled for {when.isoformat(timespec='minutes')}; 3 recipients are pending again: "
        f"'newsletter send {ISSUE}' sends them (add --at to schedule again).\n"
    )
    assert list(sendgrid.mail_batches.values()) == ["cancel"] and sendgrid.mailed() == []
    counts = status(runner)
    assert (counts["sent"], counts["scheduled"], counts["pending"]) == (0, 0, 3) and counts["cancelled_at"]
    parts = ("sent", "scheduled", "pending", "failed", "uncertain", "suppressed", "invalid", "duplicate")
    assert sum(counts[k] for k in parts) + counts["unsubscribed"] == counts["rows"] == 3
    assert send(runner, "--yes").exit_code == 0
    assert sorted(d.email for d in sendgrid.mailed()) == [f"user{i}@example.com" for i in range(3)]
    assert runner.invoke(cli, ["cancel", ISSUE]).output == "Error: test has no scheduled send to cancel\n"


def test_cancel_counts_only_what_sendgrid_confirms(runner, newsletter, sendgrid):
    scheduled(runner, newsletter, sendgrid)
    sendgrid.fail_next(accepted_then_dropped("/user/scheduled_sends"))  # its answer lost: read back
    assert runner.invoke(cli, ["cancel", ISSUE]).exit_code == 0
    assert status(runner)["pending"] == 3

    (newsletter / "issues" / "next.md").write_text("---\nsubject: Next\n---\nHello\n")
    when = (dt.datetime.now() + dt.timedelta(hours=2)).isoformat()
    assert runner.invoke(cli, ["send", "issues/next.md", "--yes", "--at", when]).exit_code == 0
    refused = {"errors": [{"field": None, "message": "max cancellations reached"}]}
    sendgrid.fail_next(Fault(400, body=refused, path="/user/scheduled_sends"))
    result = runner.invoke(cli, ["cancel", "issues/next.md"])
    assert result.exit_code == 1
    assert "Error: SendGrid did not confirm the cancel (it holds no status for batch " in result.output
    assert "the send may still go out at" in result.output
    next_counts = json.loads(runner.invoke(cli, ["status", "issues/next.md", "--json"]).output)
    assert next_counts["scheduled"] == 3 and next_counts["pending"] == 0


def test_within_10_minutes_of_its_time_a_cancel_needs_force(runner, newsletter, sendgrid, monkeypatch):
    from newsletter_cli.sending.cancel import cancel

    when = scheduled(runner, newsletter, sendgrid, hours=1)
    config = load_config(newsletter / "newsletter.toml")  # SENDGRID_API_HOST: the stand-in
    close = when - dt.timedelta(minutes=5)
    with pytest.raises(NewsletterError, match="within 10 minutes of its time SendGrid does not promise to cancel"):
        cancel(config, "test", now=close)
    with pytest.raises(NewsletterError, match="which has passed: SendGrid has sent it"):
        cancel(config, "test", now=when + dt.timedelta(minutes=1))
    assert cancel(config, "test", force=True, now=close).pending == 3


def test_at_must_be_ahead_and_within_72_hours():
    now = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    assert parse_send_at("2026-12-02T09:00+00:00", now) == dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)
    for text, message in [
        ("2026-12-05T09:00+00:00", "SendGrid schedules at most 72 hours ahead"),
        ("2026-11-30T09:00+00:00", "that time has passed"),
        ("tomorrow", "expected a time like 2026-12-01T09:00"),
    ]:
        with pytest.raises(NewsletterError, match=message):
            parse_send_at(text, now)


def test_sendgrid_mode_carries_the_group_and_lets_sendgrid_add_the_headers(runner, newsletter, sendgrid):
    config = (
        (newsletter / "newsletter.toml")
        .read_text()
        .replace('url = "https://testnews.ca/unsubscribe"', "sendgrid_group_id = 42")
    )
    (newsletter / "newsletter.toml").write_text(config)
    write_list(newsletter, 3)
    sendgrid.groups["42"] = ["user1@example.com"]
    assert send(runner, "--yes").exit_code == 0
    [request] = [s for s in sendgrid.seen if s.path == "/v3/mail/send"]
    assert request.body["asm"] == {"group_id": 42}
    assert all("headers" not in p for p in request.body["personalizations"])
    assert "<%asm_group_unsubscribe_raw_url%>" in request.body["content"][1]["value"]
    assert set(delivered(sendgrid)) == {"user0@example.com", "user2@example.com"}


# --- real processes: kill -9 and Ctrl-C ------------------------------------------------------


def start_send(folder: Path, *args: str) -> subprocess.Popen:
    return newsletter_process(folder, "send", ISSUE, "--yes", *args)


def wait_for(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_kill_9_in_the_middle_then_resume_mails_nobody_twice(runner, newsletter, sendgrid):
    emails = write_list(newsletter, 4000)
    sendgrid.keep_content = False
    sendgrid.delay = 0.05
    process = start_send(newsletter, "--batch-size", "100", "--concurrency", "4")
    wait_for(lambda: sendgrid.batches >= 8)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    before = status(runner)
    assert before["sent"] < 4000
    sendgrid.delay = 0
    resumed = send(runner, "--yes")
    counts = status(runner)
    received = delivered(sendgrid)
    assert max(received.values()) == 1, "nobody received the issue twice"
    assert counts["sent"] + counts["failed"] + counts["uncertain"] == 4000
    assert counts["pending"] == 0
    assert set(received) <= set(emails)
    if counts["uncertain"]:
        assert resumed.exit_code == 1
        assert "uncertain" in resumed.output.splitlines()[-1], resumed.output
        uncertain_total = sum(b["recipients"] for b in counts["uncertain_batches"])
        assert uncertain_total == counts["uncertain"]


def test_ctrl_c_lets_requests_in_flight_finish_and_leaves_nothing_uncertain(runner, newsletter, sendgrid):
    write_list(newsletter, 3000)
    sendgrid.keep_content = False
    sendgrid.delay = 0.1
    process = start_send(newsletter, "--batch-size", "100", "--concurrency", "4")
    wait_for(lambda: sendgrid.batches >= 4)
    out, err = interrupt(process)
    assert process.returncode == 1
    assert "Traceback" not in err
    assert out.splitlines()[-1].endswith(f"still pending: run 'newsletter send {ISSUE}' to resume.")
    counts = status(runner)
    assert counts["uncertain"] == 0 and counts["failed"] == 0
    assert counts["sent"] == len(sendgrid.deliveries)
    assert counts["sent"] + counts["pending"] == 3000
    sendgrid.delay = 0
    assert send(runner, "--yes").exit_code == 0
    assert max(delivered(sendgrid).values()) == 1 and len(delivered(sendgrid)) == 3000


def test_a_one_click_unsubscribe_is_honoured_by_the_next_send(runner, newsletter, sendgrid):
    write_list(newsletter, 3)
    assert send(runner, "--yes").exit_code == 0
    link = next(d for d in sendgrid.deliveries if d.email == "user1@example.com").headers["List-Unsubscribe"][1:-1]
    config = load_config(newsletter / "newsletter.toml", environ={})
    body = b"List-Unsubscribe=One-Click"
    environ = {
        "REQUEST_METHOD": "POST",
        "QUERY_STRING": link.split("?", 1)[1],
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "wsgi.input": io.BytesIO(body),
    }
    statuses = []
    Endpoint(config, SECRET.encode())(environ, lambda status, headers: statuses.append(status))
    assert statuses == ["200 OK"]
    (newsletter / "issues" / "next.md").write_text("---\nsubject: The next issue\n---\nHello again\n")
    result = runner.invoke(cli, ["send", "issues/next.md", "--yes"])
    assert result.exit_code == 0, result.output
    january = [d.email for d in sendgrid.deliveries if d.subject == "The next issue"]
    assert sorted(january) == ["user0@example.com", "user2@example.com"]


def test_send_refuses_an_issue_with_check_errors_unless_forced(runner, newsletter, sendgrid, write_issue):
    write_list(newsletter, 2)
    write_issue("![](https://testnews.ca/a.png)\n")
    refused = send(runner, "--yes")
    assert refused.exit_code == 1
    assert refused.output == (
        f"Error: 1 error found by 'newsletter check {ISSUE}' (first: {ISSUE}:5: error: an image without alt text); "
        "fix them, or pass --force to send anyway\n"
    )
    assert sendgrid.seen == []
    assert never_sent(runner)  # the list read while the email was checked is forgotten
    forced = send(runner, "--yes", "--force")
    assert forced.exit_code == 0, forced.output
    assert "Check:       1 error ignored (--force); see 'newsletter check'" in forced.output
    assert len(sendgrid.deliveries) == 2


def test_a_template_error_found_while_the_list_is_read_stops_the_send_with_its_line(runner, newsletter, sendgrid):
    write_list(newsletter, 30_000)  # more than the reader can queue: it is stopped, not waited for
    (newsletter / "templates").mkdir()
    (newsletter / "templates" / "newsletter.mjml.j2").write_text("<mjml>\n{% for %}\n</mjml>")
    result = send(runner, "--yes")
    assert result.exit_code == 1
    assert result.output.startswith("Error: templates/newsletter.mjml.j2:2: ")
    assert len(result.output.splitlines()) == 1
    assert sendgrid.seen == []
    assert never_sent(runner)


def test_the_example_issue_goes_out_to_the_example_list(runner, example, sendgrid, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    issue = "issues/2022-12-baby-botox.md"
    dry = runner.invoke(cli, ["send", issue, "--list", "subscribers.csv.example", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "Recipients:  3" in dry.output
    assert "Check:       1 error, which a real send refuses (first: newsletter.toml:15: error: postal_address" in (
        dry.output
    )
    refused = runner.invoke(cli, ["send", issue, "--list", "subscribers.csv.example", "--yes"])
    assert refused.exit_code == 1 and sendgrid.deliveries == [], "no real send with a placeholder postal address"
    config = (example / "newsletter.toml").read_text()
    postal = "1 Queen Street West, Mississauga, ON L5B 1A1"  # what the clinic does first: a stand-in here
    (example / "newsletter.toml").write_text(
        config.replace("REPLACE: MCSC postal address, Mississauga, Ontario", postal)
    )
    assert (example / "build" / "2022-12-baby-botox-dry-run" / "sample.eml").is_file()
    assert sendgrid.seen == []
    sent = runner.invoke(cli, ["send", issue, "--list", "subscribers.csv.example", "--yes"])
    assert sent.exit_code == 0, sent.output
    assert sorted(delivered(sendgrid).values()) == [1, 1, 1]
    result = runner.invoke(cli, ["status", issue, "--json"])
    assert json.loads(result.output)["sent"] == 3


def test_the_list_reader_process_does_not_hold_the_send_lock(tmp_path):
    """Else a reader orphaned by a kill -9 of the send would keep every later send locked out."""
    path = tmp_path / "list.csv"
    path.write_text("email,first_name\n" + "".join(f"u{i}@example.com,U{i}\n" for i in range(20_000)))
    lock = FileSendLock(tmp_path / "send.lock")
    chunks = iter(ListReader(path, ["first_name"]))
    assert len(next(chunks)) == 1000  # the reader process is running, and has more to give
    lock.close()
    FileSendLock(tmp_path / "send.lock").close()  # raises LockHeld if the reader held it
    chunks.close()


def test_a_second_send_of_the_same_issue_is_refused_while_the_first_runs(runner, newsletter, sendgrid):
    write_list(newsletter, 2)
    assert send(runner, "--yes", "--limit", "1").exit_code == 0
    with FileSendLock(newsletter / ".newsletter" / "send-test.lock"):  # as a running send holds it
        result = send(runner, "--yes")
        assert result.output == "Error: another 'newsletter send' of test is running\n"
        assert "A send is running: 0 in flight." in runner.invoke(cli, ["status", ISSUE]).output
    assert "A send is running" not in runner.invoke(cli, ["status", ISSUE]).output
    assert len(sendgrid.deliveries) == 1


# --- when the network lies -------------------------------------------------------------------


def addresses(runner, state: str) -> set[str]:
    result = runner.invoke(cli, ["status", ISSUE, "--addresses", state])
    assert result.exit_code == 0, result.output
    return set(result.output.split())


def assert_the_journal_tells_the_truth(runner, sendgrid, emails: list[str]) -> dict:
    """Nobody has two copies; whoever got one is sent or uncertain; whoever is sent got one;
    and the counts add up to the list."""
    received = delivered(sendgrid)
    assert max(received.values(), default=1) == 1, "somebody received the issue twice"
    sent, uncertain = addresses(runner, "sent"), addresses(runner, "uncertain")
    assert sent <= set(received), "recorded as sent but never delivered"
    assert set(received) <= sent | uncertain, "delivered but recorded as neither sent nor uncertain"
    counts = status(runner)
    parts = (
        "sent",
        "scheduled",
        "pending",
        "failed",
        "uncertain",
        "suppressed",
        "invalid",
        "duplicate",
        "unsubscribed",
    )
    assert sum(counts[k] for k in parts) == counts["rows"] + counts["not_on_list"] == len(emails)
    return counts


LOST_ANSWERS = {
    "accepted, then the connection dropped": accepted_then_dropped(),
    "accepted, answered after the client's timeout": slow_answer(3.0),
    "dropped after the request was read, not accepted": Fault(0, path="/mail/send"),
    "a 202 without SendGrid's message id": Fault(202, path="/mail/send"),
}


@pytest.mark.parametrize("fault", LOST_ANSWERS.values(), ids=LOST_ANSWERS.keys())
def test_a_lost_answer_makes_its_batch_uncertain_and_the_send_goes_on(runner, newsletter, sendgrid, fault):
    emails = write_list(newsletter, 50)
    sendgrid.fail_next(fault)
    result = send(runner, "--yes", "--batch-size", "10", "--concurrency", "1")
    assert result.exit_code == 1
    assert "batch 1: 10 uncertain: " in result.output
    assert result.output.splitlines()[-1] == (
        f"Sent to 40 in this run; 10 uncertain: SendGrid may or may not have accepted them (see 'newsletter status "
        f"{ISSUE}'; 'newsletter send {ISSUE} --resend-uncertain' mails them again, perhaps twice)."
    )
    assert len([s for s in sendgrid.seen if s.path == "/v3/mail/send"]) == 5, "no request was repeated"
    counts = assert_the_journal_tells_the_truth(runner, sendgrid, emails)
    assert (counts["sent"], counts["uncertain"], counts["pending"]) == (40, 10, 0)
    [batch] = counts["uncertain_batches"]
    assert batch["recipients"] == 10 and batch["error"]
    again = send(runner, "--yes")
    assert again.exit_code == 1, "an uncertain batch is not sent again by itself"
    assert_the_journal_tells_the_truth(runner, sendgrid, emails)


def test_a_lost_answer_for_every_batch_mails_nobody_twice(runner, newsletter, sendgrid):
    """Once, each of these people got 6 copies and --retry-failed sent a 7th."""
    emails = write_list(newsletter, 30)
    sendgrid.fail_next(*[slow_answer(3.0) for _ in range(3)])
    result = send(runner, "--yes", "--batch-size", "10", "--concurrency", "3")
    assert result.exit_code == 1
    counts = assert_the_journal_tells_the_truth(runner, sendgrid, emails)
    assert (counts["uncertain"], counts["failed"], counts["sent"]) == (30, 0, 0)
    assert send(runner, "--yes", "--retry-failed").exit_code == 1
    assert max(delivered(sendgrid).values()) == 1


def test_resend_uncertain_mails_the_uncertain_batch_again(runner, newsletter, sendgrid):
    emails = write_list(newsletter, 20)
    sendgrid.fail_next(Fault(0, path="/mail/send"))  # read, then dropped: in fact not delivered
    send(runner, "--yes", "--batch-size", "10", "--concurrency", "1")
    assert len(addresses(runner, "uncertain")) == 10
    result = send(runner, "--yes", "--resend-uncertain")
    assert result.exit_code == 0, result.output
    assert delivered(sendgrid) == Counter({email: 1 for email in emails})


def test_an_answer_that_is_not_sendgrids_stops_the_send_and_leaves_the_batch_pending(runner, newsletter, sendgrid):
    emails = write_list(newsletter, 30)
    sendgrid.fail_next(html_page(200))
    result = send(runner, "--yes", "--batch-size", "10", "--concurrency", "1")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: {sendgrid.url} answered POST /v3/mail/send with 200 (text/html; charset=utf-8), not SendGrid's "
        "202: is SENDGRID_API_HOST right, or is a proxy or a captive portal in the way?. Sending stopped; "
        f"0 sent in this run, 30 still pending: run 'newsletter send {ISSUE}' to resume."
    )
    assert_the_journal_tells_the_truth(runner, sendgrid, emails)
    assert send(runner, "--yes").exit_code == 0
    assert delivered(sendgrid) == Counter({email: 1 for email in emails})


def test_sendgrid_out_of_reach_stops_the_send_with_everyone_pending(runner, newsletter, sendgrid, monkeypatch):
    emails = write_list(newsletter, 20)
    monkeypatch.setenv("SENDGRID_API_HOST", "http://127.0.0.1:9")
    result = send(runner, "--yes", "--no-sync", "--batch-size", "10")
    assert result.exit_code == 1
    last = result.output.splitlines()[-1]
    assert last.startswith("Error: cannot reach SendGrid at http://127.0.0.1:9: ")
    assert last.endswith(f"0 sent in this run, 20 still pending: run 'newsletter send {ISSUE}' to resume.")
    monkeypatch.setenv("SENDGRID_API_HOST", sendgrid.url)
    assert send(runner, "--yes").exit_code == 0
    assert delivered(sendgrid) == Counter({email: 1 for email in emails})


# --- a resume never drops people -------------------------------------------------------------


def test_the_resume_hint_repeats_the_list(runner, newsletter, sendgrid):
    (newsletter / "other.csv").write_text("email\n" + "".join(f"o{i}@example.com\n" for i in range(5)))
    result = send(runner, "--yes", "--list", "other.csv", "--limit", "2")
    assert result.output.splitlines()[-1] == (
        f"Sent to 2 (--limit); 3 still pending: run 'newsletter send {ISSUE} --list other.csv' to continue."
    )


def test_another_list_never_silently_drops_pending_recipients_of_the_first(runner, newsletter, sendgrid):
    others = [f"o{i}@example.com" for i in range(5)]
    (newsletter / "other.csv").write_text("email\n" + "".join(f"{e}\n" for e in others))
    write_list(newsletter, 2)
    assert send(runner, "--yes", "--list", "other.csv", "--limit", "2").exit_code == 0
    refused = send(runner, "--yes")  # the default list, which lacks the 3 still pending
    assert refused.exit_code == 1
    assert refused.output == (
        "Error: 3 pending recipients of an earlier send of this issue came from other.csv and are not in "
        f"subscribers.csv: finish that send with 'newsletter send {ISSUE} --list other.csv', or add "
        "--drop-pending to drop them. Nothing was sent.\n"
    )
    assert addresses(runner, "pending") == set(others[2:])
    declined = send(runner)  # no terminal: the same as answering "n"
    assert declined.exit_code == 1
    assert addresses(runner, "pending") == set(others[2:])
    assert send(runner, "--yes", "--list", "other.csv").exit_code == 0
    assert delivered(sendgrid) == Counter({e: 1 for e in others})


def test_drop_pending_drops_them_and_says_so(runner, newsletter, sendgrid):
    (newsletter / "other.csv").write_text("email\n" + "".join(f"o{i}@example.com\n" for i in range(5)))
    emails = write_list(newsletter, 2)
    send(runner, "--yes", "--list", "other.csv", "--limit", "2")
    result = send(runner, "--yes", "--drop-pending")
    assert result.exit_code == 0, result.output
    assert (
        "Skipped:     0 invalid, 0 duplicate, 0 suppressed, 0 already sent, 3 pending no longer on the list (dropped)"
        in (result.output)
    )
    assert result.output.splitlines()[-1] == (
        "Sent to 2 recipients; all 2 eligible recipients have this issue (2 more from an earlier list)."
    )
    assert set(delivered(sendgrid)) == {"o0@example.com", "o1@example.com", *emails}
    counts = status(runner)
    assert (counts["rows"], counts["not_on_list"], counts["sent"], counts["pending"]) == (2, 2, 4, 0)


def test_a_declined_resume_keeps_everyone_pending(runner, newsletter, sendgrid):
    write_list(newsletter, 5)
    send(runner, "--yes", "--limit", "2")
    assert send(runner).exit_code == 1  # declined: no terminal
    assert len(addresses(runner, "pending")) == 3
    assert send(runner, "--yes").exit_code == 0
    assert sorted(delivered(sendgrid).values()) == [1] * 5


def test_counts_add_up_when_people_unsubscribe_during_the_send(runner, newsletter, sendgrid):
    emails = write_list(newsletter, 3000)
    sendgrid.keep_content = False
    sendgrid.delay = 0.02
    process = start_send(newsletter, "--batch-size", "100", "--concurrency", "1", "--no-sync")
    wait_for(lambda: sendgrid.batches >= 3)
    leaving = emails[-280:]
    with Store.for_folder(newsletter / ".newsletter") as store:
        store.suppress(Suppression(e, "unsubscribed", "endpoint") for e in leaving)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, out + err
    counts = assert_the_journal_tells_the_truth(runner, sendgrid, emails)
    assert counts["suppressed"] == 280 and counts["sent"] == 2720
    assert not set(leaving) & set(delivered(sendgrid))


# --- values that would break a batch or a header ---------------------------------------------


def write_long_row_list(folder: Path) -> None:
    """Row 3 (line 4) has a 6,000-character value: used twice, each with its html twin, far over SendGrid's
    10,000 bytes of substitutions, which would fail its whole batch."""
    rows = ["a@example.com,Ana", f'b@example.com,"{"&" * 600}"', f"c@example.com,{'x' * 6000}", "d@example.com,Dee"]
    (folder / "subscribers.csv").write_text("email,first_name\n" + "\n".join(rows) + "\n")


def test_a_row_over_sendgrids_substitution_limit_is_refused_up_front_not_its_batch(runner, newsletter, sendgrid):
    write_long_row_list(newsletter)
    result = send(runner, "--yes")
    assert result.exit_code == 0, result.output
    assert (
        "subscribers.csv:4: skipped: merge values too long: 24,196 bytes for this subscriber, "
        "SendGrid takes at most 10,000 (the longest is the first_name column)"
    ) in result.output
    assert "Skipped:     1 invalid," in result.output
    assert set(delivered(sendgrid)) == {"a@example.com", "b@example.com", "d@example.com"}
    counts = status(runner)
    assert (counts["sent"], counts["invalid"], counts["failed"]) == (3, 1, 0)


def test_the_same_row_is_refused_by_subscribers_check_check_and_the_dry_run(runner, newsletter, sendgrid):
    write_long_row_list(newsletter)
    checked = runner.invoke(cli, ["subscribers", "check"])
    assert checked.exit_code == 1
    assert checked.output.splitlines()[0].startswith("subscribers.csv:4: merge values too long: ")
    assert checked.output.splitlines()[-1] == "subscribers.csv: 4 rows: 3 valid, 1 invalid, 0 duplicates, 0 suppressed"
    linted = runner.invoke(cli, ["check", ISSUE])
    assert linted.exit_code == 1
    assert f"{newsletter / 'subscribers.csv'}:4: error: merge values too long: " in linted.output
    dry = send(runner, "--dry-run")
    assert "subscribers.csv:4: skipped: merge values too long" in dry.output
    payload = json.loads((newsletter / "build" / "test-dry-run" / "batch-0001.json").read_text())
    sent_to = [p["to"][0]["email"] for p in payload["personalizations"]]
    assert sent_to == ["a@example.com", "b@example.com", "d@example.com"]


CONTROL_CHARACTERS = "\x00\x0b\x0c\x85\u2028\u2029\x1b"


def test_control_characters_in_merge_values_never_reach_a_header(runner, newsletter, sendgrid):
    (newsletter / "subscribers.csv").write_text(
        f"email,first_name,last_name\na@example.com,An{CONTROL_CHARACTERS}a,Li{CONTROL_CHARACTERS}\n", encoding="utf-8"
    )
    dry = send(runner, "--dry-run")
    assert dry.exit_code == 0, dry.output
    eml = (newsletter / "build" / "test-dry-run" / "sample.eml").read_bytes()
    head = eml.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in eml else eml.split(b"\n\n", 1)[0]
    assert b"Subject: News for An a" in head
    assert not any(chr(c).encode() in head for c in (0, 0x0B, 0x0C, 0x1B))
    assert send(runner, "--yes").exit_code == 0
    [mail] = sendgrid.deliveries
    assert mail.subject == "News for An a"
    assert mail.name == "An a Li"


def test_the_size_it_refuses_by_is_the_size_sendgrid_counts_or_a_little_more(runner, newsletter, sendgrid):
    """Before the template is rendered it cannot know whether it shows the address: it counts it."""
    from newsletter_cli import merge, unsubscribe
    from newsletter_cli.issue import load_issue
    from newsletter_cli.render import issue_fields

    write_long_row_list(newsletter)
    send(runner, "--dry-run")
    payload = json.loads((newsletter / "build" / "test-dry-run" / "batch-0001.json").read_text())
    config = load_config(newsletter / "newsletter.toml", environ={})
    budget = merge.Budget(
        (*issue_fields(load_issue(newsletter / ISSUE)), *merge.FOOTER_FIELDS), unsubscribe.measuring_linker(config)
    )
    for person, first_name in zip(payload["personalizations"], ["Ana", "&" * 600, "Dee"], strict=True):
        counted = sum(len(k.encode()) + len(v.encode()) for k, v in person["substitutions"].items())
        email = person["to"][0]["email"]
        address_twice = 2 * (merge.TOKEN_LENGTH + len(email))
        assert budget.weigh(email, {"first_name": first_name}) == counted + address_twice


# --- one line, nothing lost ------------------------------------------------------------------


@pytest.mark.parametrize("command", [["send", ISSUE, "--yes"], ["status", ISSUE], ["unsubscribes", "list"]])
def test_an_empty_state_database_is_refused_by_every_command(runner, newsletter, sendgrid, command):
    write_list(newsletter, 3)
    (newsletter / ".newsletter").mkdir()
    (newsletter / ".newsletter" / "newsletter.db").write_bytes(b"")
    result = runner.invoke(cli, command)
    assert result.exit_code == 1
    assert len(result.output.splitlines()) == 1
    assert result.output.startswith("Error: .newsletter/newsletter.db: is empty (0 bytes)")
    assert sendgrid.deliveries == []
    assert (newsletter / ".newsletter" / "newsletter.db").read_bytes() == b""


def test_a_damaged_state_database_is_one_line(runner, newsletter, sendgrid):
    write_list(newsletter, 3)
    (newsletter / ".newsletter").mkdir()
    (newsletter / ".newsletter" / "newsletter.db").write_bytes(b"\x00garbage" * 4096)
    result = send(runner, "--yes")
    assert result.exit_code == 1
    assert result.output.startswith("Error: .newsletter/newsletter.db: is damaged (file is not a database)")
    assert len(result.output.splitlines()) == 1
    assert sendgrid.deliveries == []


def test_a_suppression_list_answered_with_a_web_page_is_one_line(runner, newsletter, sendgrid):
    write_list(newsletter, 3)
    sendgrid.fail_next(html_page(200, path="/suppression/unsubscribes"))
    result = send(runner, "--yes")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {sendgrid.url} answered GET /v3/suppression/unsubscribes with 200 text/html; charset=utf-8, "
        "not SendGrid's JSON: is SENDGRID_API_HOST right, or is a proxy in the way?\n"
    )
    assert sendgrid.deliveries == []


@pytest.fixture
def small_disk(tmp_path):
    """A real 8 MB file system (tmpfs), which a test can fill up and then grow."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        if os.environ.get("NEWSLETTER_REQUIRE_TOOLS"):
            pytest.fail(f"cannot mount a tmpfs (root is needed): {made.stderr.decode().strip()}")
        pytest.skip("cannot mount a tmpfs here (root is needed)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_during_a_send_is_one_line_and_the_journal_stays_exact(runner, newsletter, sendgrid, small_disk):
    for name in ("newsletter.toml", "issues"):
        shutil.move(str(newsletter / name), small_disk / name)
    emails = write_list(small_disk, 3000)
    os.chdir(small_disk)
    sendgrid.keep_content = False
    sendgrid.delay = 0.05
    process = start_send(small_disk, "--batch-size", "100", "--concurrency", "2", "--no-sync")
    wait_for(lambda: sendgrid.batches >= 3)
    filler = small_disk / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True, check=False)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1, out + err
    assert "Traceback" not in err
    [line] = [line for line in (out + err).splitlines() if line.startswith("Error: ")]
    assert line.startswith("Error: .newsletter/newsletter.db: the disk is full"), out + err
    filler.unlink()
    sendgrid.delay = 0
    resumed = send(runner, "--yes")
    counts = assert_the_journal_tells_the_truth(runner, sendgrid, emails)
    assert counts["pending"] == 0
    assert counts["sent"] + counts["uncertain"] == 3000, resumed.output


def test_a_dry_run_needs_no_key_and_no_secret_and_says_what_it_stood_in_for(runner, newsletter, monkeypatch):
    write_list(newsletter, 2)
    monkeypatch.delenv("SENDGRID_API_KEY")
    monkeypatch.delenv("NEWSLETTER_SECRET")
    result = send(runner, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Note: NEWSLETTER_SECRET is not set, so these unsubscribe links are signed with a throwaway" in result.output
    assert "Open build/test-dry-run/sample.eml in any mail client to see the email as sent." in result.output
    assert (newsletter / "build" / "test-dry-run" / "sample.eml").is_file()
    assert send(runner, "--yes").output.startswith("Error: NEWSLETTER_SECRET is not set"), "a real send still needs it"


# --- lists as platforms export them -----------------------------------------------------------

PLATFORM_EXPORTS = {
    # real export headers; see tests/test_listfile.py for where each comes from
    "Substack": "email,expiry,email_disabled,stripe_connected_customer_id,type\n"
    "on@example.com,2021-07-06T16:20:44.000Z,false,cus_D5JgW66mn4j0BQ,paid\n"
    "off@example.com,2025-06-23T23:41:42.980Z,true,,comp\n",
    "Ghost": "id,email,name,note,subscribed_to_emails,complimentary_plan,stripe_customer_id,created_at,deleted_at\n"
    "1,on@example.com,On Person,,true,false,,2024-01-15T10:00:00.000Z,\n"
    "2,off@example.com,Off Person,,false,false,,2024-01-15T10:00:00.000Z,\n"
    "3,gone@example.com,Gone Person,,true,false,,2024-01-15T10:00:00.000Z,2024-03-01T00:00:00.000Z\n",
    "Buttondown": "email,notes,metadata,tags,creation_date,subscriber_type\n"
    "on@example.com,,,,2024-01-01,regular\noff@example.com,,,,2024-01-01,unsubscribed\n",
    "Kit": "first_name,email_address,state,created_at\nOn,on@example.com,active,2025-03-03\n"
    "Off,off@example.com,cancelled,2025-03-03\n",
}


@pytest.mark.parametrize("platform", PLATFORM_EXPORTS)
def test_a_platforms_export_is_sent_to_exactly_its_subscribed_rows(runner, newsletter, sendgrid, platform):
    (newsletter / "subscribers.csv").write_text(PLATFORM_EXPORTS[platform])
    left = PLATFORM_EXPORTS[platform].count("\n") - 2
    checked = runner.invoke(cli, ["subscribers", "check"])
    assert checked.exit_code == 0, checked.output
    assert checked.output.splitlines()[-1] == (
        f"subscribers.csv: {left + 1} rows: 1 valid, 0 invalid, 0 duplicates, 0 suppressed, "
        f"{left} unsubscribed (the list says so)"
    )
    dry = send(runner, "--dry-run")
    assert dry.exit_code == 0, dry.output
    payload = json.loads((newsletter / "build" / "test-dry-run" / "batch-0001.json").read_text())
    assert [p["to"][0]["email"] for p in payload["personalizations"]] == ["on@example.com"]
    assert f"{left} unsubscribed (the list says so)" in dry.output
    assert "skipped: not subscribed: " in dry.output
    result = send(runner, "--yes")
    assert result.exit_code == 0, result.output
    assert [d.email for d in sendgrid.deliveries] == ["on@example.com"]
    counts = status(runner)
    assert (counts["sent"], counts["unsubscribed"], counts["rows"]) == (1, left, left + 1)


def test_a_stray_quote_stops_the_send_before_anything_leaves(runner, newsletter, sendgrid):
    rows = [f"user{i}@example.com,User{i}" for i in range(40)]
    rows[2] = 'user2@example.com,"User2'
    (newsletter / "subscribers.csv").write_text("email,first_name\n" + "\n".join(rows) + "\n")
    result = send(runner, "--yes")
    assert result.exit_code == 1
    assert result.output == (
        "Error: subscribers.csv:4: a quote opens a cell here and is never closed: it would swallow the rest of "
        "the file\n"
    )
    assert sendgrid.deliveries == []


def test_every_request_says_what_sendgrid_may_track_and_nothing_is_tracked_by_default(runner, newsletter, sendgrid):
    """Left out, the SendGrid account's defaults decide whether every link is rewritten."""
    write_list(newsletter, 2)
    assert send(runner, "--yes").exit_code == 0
    [request] = [s for s in sendgrid.seen if s.path == "/v3/mail/send"]
    assert request.body["tracking_settings"] == {
        "click_tracking": {"enable": False, "enable_text": False},
        "open_tracking": {"enable": False},
        "subscription_tracking": {"enable": False},
    }


def test_tracking_is_what_the_config_asks_and_check_warns_of_click_tracking(runner, newsletter, sendgrid):
    toml = newsletter / "newsletter.toml"
    toml.write_text(toml.read_text() + "\n[tracking]\nclicks = true\nopens = true\n")
    write_list(newsletter, 2)
    checked = runner.invoke(cli, ["check", ISSUE])
    assert "newsletter.toml:11: warning: click tracking is on" in checked.output
    assert send(runner, "--yes").exit_code == 0
    [request] = [s for s in sendgrid.seen if s.path == "/v3/mail/send"]
    assert request.body["tracking_settings"]["click_tracking"] == {"enable": True, "enable_text": True}
    assert request.body["tracking_settings"]["open_tracking"] == {"enable": True}
