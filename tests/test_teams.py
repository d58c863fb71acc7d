"""A team on several machines: two folders standing in for two laptops and a third for the
server running `newsletter serve`, all pointed at one PostgreSQL ([store] url), sending through
the loopback SendGrid. Every command runs as a real process, as it would on each machine."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from newsletter_cli.store import Store
from newsletter_cli.unsubscribe import ONE_CLICK, Signer

from .conftest import MINIMAL_CONFIG, newsletter_process
from .test_unsubscribe import free_port, http, port_open

SECRET = "a-team-secret-of-enough-length-0123456789"
ISSUE, SECOND = "issues/test.md", "issues/second.md"
BODY = '---\nsubject: "News for {{ subscriber.first_name | default(\\"you\\") }}"\n---\nHi there!\n'


def make_folder(root: Path, url: str, count: int) -> Path:
    root.mkdir()
    (root / "newsletter.toml").write_text(MINIMAL_CONFIG + f'\n[store]\nurl = "{url}"\n', encoding="utf-8")
    (root / "issues").mkdir()
    (root / ISSUE).write_text(BODY, encoding="utf-8")
    (root / SECOND).write_text(BODY.replace("News for", "More news for"), encoding="utf-8")
    rows = "".join(f"user{i}@example.com,User{i}\n" for i in range(count))
    (root / "subscribers.csv").write_text("email,first_name\n" + rows, encoding="utf-8")
    return root


@pytest.fixture
def team(tmp_path, pg_url, sendgrid, monkeypatch):
    """Maria's and Sam's laptops, and the server: three folders, one database."""
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    monkeypatch.setenv("NEWSLETTER_RETRY_BACKOFF", "0.01")
    monkeypatch.setenv("NEWSLETTER_HTTP_TIMEOUT", "2")
    sendgrid.keep_content = False
    return {name: make_folder(tmp_path / name, pg_url, 300) for name in ("maria", "sam", "server")}


def run(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "newsletter_cli", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


def status(folder: Path, issue: str = ISSUE) -> dict:
    done = run(folder, "status", issue, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def mailed(sendgrid, subject_start: str = "") -> Counter:
    return Counter(d.email for d in sendgrid.deliveries if d.custom_args.get("newsletter_issue") == subject_start)


class Server:
    """`newsletter serve` in the server's folder."""

    def __init__(self, folder: Path):
        self.port = free_port()
        self.process = newsletter_process(folder, "serve", "--port", str(self.port))
        deadline = time.monotonic() + 30
        while not port_open(self.port):
            assert self.process.poll() is None, self.process.communicate()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)

    def unsubscribe(self, email: str) -> int:
        token = Signer(SECRET.encode(), "news@testnews.ca").token(email)
        url = f"http://127.0.0.1:{self.port}/unsubscribe?token={token}"
        return http(url, ONE_CLICK.encode(), "application/x-www-form-urlencoded")[0]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.communicate(timeout=30)


def test_an_unsubscribe_through_the_server_is_honoured_by_a_send_from_either_laptop(team, sendgrid):
    server = Server(team["server"])
    try:
        assert server.unsubscribe("user3@example.com") == 200
        first = run(team["maria"], "send", ISSUE, "--yes")
        assert first.returncode == 0, first.stdout + first.stderr
        assert server.unsubscribe("user5@example.com") == 200
        second = run(team["sam"], "send", SECOND, "--yes")
        assert second.returncode == 0, second.stdout + second.stderr
        again = run(team["sam"], "send", ISSUE, "--yes")  # Sam's laptop sees Maria's journal
    finally:
        server.stop()
    test, more = mailed(sendgrid, "test"), mailed(sendgrid, "second")
    assert "user3@example.com" not in test and len(test) == 299 and max(test.values()) == 1
    assert {"user3@example.com", "user5@example.com"}.isdisjoint(more) and len(more) == 298
    assert again.returncode == 0 and "Nothing to send" in again.stdout, again.stdout
    from_sam = status(team["sam"])
    assert (from_sam["sent"], from_sam["pending"], from_sam["suppressed"]) == (299, 0, 1)
    assert not (team["maria"] / ".newsletter" / "newsletter.db").exists(), "no laptop keeps a state of its own"


def test_two_laptops_sending_one_issue_at_once_mail_everyone_once_and_honour_an_unsubscribe_meanwhile(
    team, sendgrid, pg_url
):
    """Maria and Sam start the same issue at the same moment while Sam's laptop also sends
    another, and patients unsubscribe meanwhile: one send of an issue refuses (or finds nothing
    left), nobody is mailed an issue twice, and nobody is mailed after their unsubscribe is
    committed. (The last 40 of the list unsubscribe as the first batch arrives; batches go in
    list order, so theirs are claimed long after.)"""
    sendgrid.delay = 0.02
    late = [f"user{i}@example.com" for i in range(260, 300)]

    def unsubscribe_meanwhile() -> None:
        while not sendgrid.deliveries:
            time.sleep(0.005)
        with Store(pg_url) as endpoint:
            from newsletter_cli.store import Suppression

            endpoint.suppress([Suppression(email, "unsubscribed", "endpoint") for email in late], push=True)

    writer = threading.Thread(target=unsubscribe_meanwhile)
    writer.start()
    args = ("--yes", "--batch-size", "10", "--concurrency", "2")
    maria = newsletter_process(team["maria"], "send", ISSUE, *args)
    sam = newsletter_process(team["sam"], "send", ISSUE, *args)
    other = newsletter_process(team["sam"], "send", SECOND, *args)
    outputs = [process.communicate(timeout=120) for process in (maria, sam, other)]
    writer.join(timeout=30)
    codes = [process.returncode for process in (maria, sam, other)]
    test, more = mailed(sendgrid, "test"), mailed(sendgrid, "second")
    assert max(test.values()) == 1 and max(more.values()) == 1, "nobody mailed an issue twice"
    assert set(late).isdisjoint(test) and set(late).isdisjoint(more), "nobody mailed after unsubscribing"
    assert len(test) == len(more) == 260
    assert codes[2] == 0, outputs[2]
    refused = [err for code, (_, err) in zip(codes[:2], outputs[:2], strict=True) if code != 0]
    for err in refused:
        assert "another 'newsletter send' of test is running (newsletter on " in err, err
        assert "Traceback" not in err
    counts = status(team["maria"])
    assert (counts["sent"], counts["suppressed"], counts["pending"], counts["uncertain"]) == (260, 40, 0, 0)


def test_a_killed_sender_s_batches_become_uncertain_when_its_lease_ends_and_another_laptop_finishes(
    team, sendgrid, monkeypatch
):
    monkeypatch.setenv("NEWSLETTER_SEND_LEASE", "1")
    sendgrid.delay = 0.05
    maria = newsletter_process(team["maria"], "send", ISSUE, "--yes", "--batch-size", "10", "--concurrency", "4")
    deadline = time.monotonic() + 60
    while sendgrid.batches < 5:
        assert time.monotonic() < deadline and maria.poll() is None, maria.communicate()
        time.sleep(0.01)
    maria.send_signal(signal.SIGKILL)
    maria.wait(timeout=10)
    sendgrid.delay = 0
    finished = run(team["sam"], "send", ISSUE, "--yes")  # the server dropped Maria's lock with her session
    assert "Traceback" not in finished.stderr, finished.stderr
    time.sleep(1.1)  # Maria's leases end
    counts = status(team["sam"])
    if counts["uncertain"]:  # Maria's batches in flight: Sam's send said it could not know them
        last = finished.stdout.splitlines()[-1]
        assert finished.returncode == 1
        # still leased when Sam's send ended, or not (processes start slower where they are spawned)
        assert "in flight in a send that stopped or lost the database: not known yet" in last or (
            "uncertain: SendGrid may or may not have accepted them" in last
        )
    received = mailed(sendgrid, "test")
    assert max(received.values()) == 1, "nobody received the issue twice"
    assert counts["pending"] == 0 and counts["in_flight"] == 0
    assert counts["sent"] + counts["uncertain"] == 300
    assert counts["sent"] <= len(received) <= counts["sent"] + counts["uncertain"]
    uncertain = set(run(team["sam"], "status", ISSUE, "--addresses", "uncertain").stdout.split())
    assert len(uncertain) == counts["uncertain"]
    assert set(received) - uncertain <= set(run(team["sam"], "status", ISSUE, "--addresses", "sent").stdout.split())


def test_status_names_the_machine_whose_send_holds_batches_in_flight_without_the_lock(team, pg_url):
    """Maria's laptop lost the database mid-batch: Sam's status says whose batches they are, and
    when they become uncertain, rather than calling them sent, failed or uncertain already."""
    import os
    import socket

    from newsletter_cli.store.journal import Journal, record

    with Store(pg_url) as store:  # as Maria's send left it
        journal = Journal(store, "test")
        number = journal.start_run("News", str(team["maria"] / "subscribers.csv"))
        journal.add([[("a@example.com", record("a@example.com", "", {}))]], number)
        journal.settle(number)
        journal.record_skips(number, 1, 0, 0, 0)
        journal.next_batch(1)
    shown = run(team["sam"], "status", ISSUE)
    counts = status(team["sam"])
    assert (counts["in_flight"], counts["uncertain"], counts["running"]) == (1, 0, False)
    assert f"1 in flight in a send on {socket.gethostname()} (pid {os.getpid()}) that no longer holds the lock" in (
        shown.stdout
    )
