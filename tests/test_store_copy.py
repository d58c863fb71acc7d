"""`newsletter store copy` (store/copy.py): a folder's SQLite state moves into the team's
PostgreSQL whole, checked, and the folder then reads the same journal, suppressions and consents
from there."""

from __future__ import annotations

import json

from newsletter_cli.cli import cli
from newsletter_cli.store import Store, postgres
from newsletter_cli.store.consents import history, keep_wording, wording

WORDS = "Yes, send me the clinic's monthly newsletter."


def state_of(runner) -> dict:
    status = json.loads(runner.invoke(cli, ["status", "issues/test.md", "--json"]).output)
    status.pop("lease_ends")
    return {
        "status": status,
        "suppressions": runner.invoke(cli, ["unsubscribes", "list", "--json"]).output,
        "consent": runner.invoke(cli, ["consent", "show", "ana@testnews.ca", "--json"]).output,
    }


def test_a_folder_s_state_copied_into_postgresql_reads_the_same_from_there(
    runner, newsletter, sendgrid, postgres_cluster, monkeypatch
):
    (newsletter / "subscribers.csv").write_text(
        "email,first_name\n" + "".join(f"u{i}@example.com,U{i}\n" for i in range(120)), encoding="utf-8"
    )
    assert runner.invoke(cli, ["unsubscribes", "add", "u7@example.com", "--reason", "unsubscribed"]).exit_code == 0
    (newsletter / "signups.csv").write_text("email,signed\nana@testnews.ca,2026-11-02\n")
    (newsletter / "wording.txt").write_text(WORDS + "\n")
    how = ["--kind", "express", "--method", "paper form", "--date-column", "signed", "--wording-file", "wording.txt"]
    imported = runner.invoke(cli, ["consent", "import", "signups.csv", *how])
    assert imported.exit_code == 0, imported.output
    sent = runner.invoke(cli, ["send", "issues/test.md", "--yes", "--batch-size", "50"])
    assert sent.exit_code == 0, sent.output
    (newsletter / ".newsletter" / "wordings").mkdir()  # a wording kept as a file before schema 10
    (newsletter / ".newsletter" / "wordings" / "0ld.txt").write_text("Older words.\n")
    before = state_of(runner)

    url = postgres_cluster.database()  # new and empty: the copy migrates it
    copied = runner.invoke(cli, ["store", "copy", "--to", url])
    assert copied.exit_code == 0, copied.output
    lines = copied.output.splitlines()
    assert lines[0].startswith("Copied ") and lines[0].endswith(
        f"rows into {postgres.display(url)}, and checked them: the same on both sides."
    )
    assert "  recipients: 119" in lines and "  suppressions: 1" in lines and "  wordings: 2" in lines
    assert lines[-1].startswith(f'Next: add [store] url = "{postgres.display(url)}" to newsletter.toml')

    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", url)
    assert state_of(runner) == before
    again = runner.invoke(cli, ["send", "issues/test.md", "--yes"])
    assert "Nothing to send: all 119 eligible recipients already have this issue." in again.output
    with Store(url) as store:
        assert wording(store, "0ld") == "Older words.\n"
        digest = history(store, "ana@testnews.ca")[0].wording
        assert digest is not None and wording(store, digest) == WORDS + "\n"
        store.db.execute(  # PostgreSQL's counter has moved past the copied ids
            "INSERT INTO consents (email, kind, method, source, occurred_at, recorded_by, recorded_at)"
            " VALUES ('b@example.com', 'express', 'web', 'form', 'x', 'me', 'y')"
        )
    assert len(sendgrid.deliveries) == 119


def test_a_copy_goes_only_into_an_empty_store_and_never_into_itself(runner, newsletter, pg_url, monkeypatch):
    assert runner.invoke(cli, ["unsubscribes", "add", "a@example.com"]).exit_code == 0
    assert runner.invoke(cli, ["store", "copy", "--to", pg_url]).exit_code == 0
    twice = runner.invoke(cli, ["store", "copy", "--to", pg_url])
    assert twice.exit_code == 1
    assert twice.output == (
        f"Error: {postgres.display(pg_url)}: is not empty (its suppressions table has rows): a copy goes only "
        "into a store nothing uses yet\n"
    )
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", pg_url)
    itself = runner.invoke(cli, ["store", "copy", "--to", pg_url])
    assert itself.exit_code == 1 and "is the store this folder already uses" in itself.output


def test_a_shared_store_copies_back_into_a_file(runner, newsletter, pg_url, monkeypatch, tmp_path):
    """A backup, or a team going back to one machine."""
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", pg_url)
    assert runner.invoke(cli, ["unsubscribes", "add", "a@example.com", "b@example.com"]).exit_code == 0
    copied = runner.invoke(cli, ["store", "copy", "--to", str(tmp_path / "backup.db")])
    assert copied.exit_code == 0, copied.output
    with Store(tmp_path / "backup.db") as backup:
        assert [s.email for s in backup.suppressions()] == ["a@example.com", "b@example.com"]


def test_no_copy_while_a_send_is_running(runner, newsletter, sendgrid, pg_url):
    (newsletter / "subscribers.csv").write_text("email\na@example.com\n", encoding="utf-8")
    assert runner.invoke(cli, ["send", "issues/test.md", "--yes"]).exit_code == 0
    with Store.for_folder(newsletter / ".newsletter") as store, store.send_lock("test"):  # as a running send holds it
        refused = runner.invoke(cli, ["store", "copy", "--to", pg_url])
    assert refused.exit_code == 1
    assert "a send of test is running: let it finish (or stop it) before copying" in refused.output
    with Store(pg_url) as target:
        assert target.db.execute("SELECT count(*) FROM sends").fetchone()[0] == 0


def test_a_wording_kept_both_as_an_old_file_and_in_the_store_is_copied_once(runner, newsletter, pg_url):
    with Store.for_folder(newsletter / ".newsletter") as store:
        digest = keep_wording(store, WORDS)
    (newsletter / ".newsletter" / "wordings").mkdir()
    (newsletter / ".newsletter" / "wordings" / f"{digest}.txt").write_text(WORDS + "\n")
    copied = runner.invoke(cli, ["store", "copy", "--to", pg_url])
    assert copied.exit_code == 0, copied.output
    assert "  wordings: 1" in copied.output.splitlines()
    with Store(pg_url) as target:
        assert wording(target, digest) == WORDS + "\n"
