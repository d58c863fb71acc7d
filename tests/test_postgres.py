"""The PostgreSQL back end (store/postgres.py): the same schema as SQLite's at each version,
migrated only on purpose, one line for every failure and never a password, and a send that
survives the server going away."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections import Counter

import psycopg
import pytest

from newsletter_cli.cli import cli
from newsletter_cli.config import load_config
from newsletter_cli.errors import ConfigError
from newsletter_cli.store import MIGRATIONS, Store, StoreError, migrate, postgres
from newsletter_cli.store.copy import TABLES
from newsletter_cli.store.schema import POSTGRESQL

from .conftest import MINIMAL_CONFIG, newsletter_process
from .test_unsubscribe import free_port


def sqlite_columns(path) -> dict[str, list[str]]:
    db = sqlite3.connect(path)
    tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    found = {t: sorted(row[1] for row in db.execute(f"PRAGMA table_info({t})")) for t in tables}
    db.close()
    return found


def postgres_columns(url) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    with psycopg.connect(url) as db:
        for table, column in db.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
        ):
            found.setdefault(table, []).append(column)
    return {table: sorted(columns) for table, columns in found.items()}


def test_both_back_ends_have_the_same_tables_and_columns_at_each_schema_version(tmp_path, postgres_cluster):
    assert len(MIGRATIONS) == len(POSTGRESQL)
    Store(tmp_path / "db").close()
    url = postgres_cluster.database()
    migrate(url)
    on_sqlite = sqlite_columns(tmp_path / "db")
    on_postgres = postgres_columns(url)
    on_postgres.pop("newsletter_schema")  # where PostgreSQL keeps the version SQLite keeps in a pragma
    on_postgres["confirmation_mails"].remove("rowid")  # SQLite's implicit column, made explicit
    assert on_postgres == on_sqlite
    assert sorted(TABLES) == sorted(on_sqlite), "store copy must copy every table"


def test_a_database_is_migrated_only_when_asked_and_says_so(runner, folder, postgres_cluster, monkeypatch):
    url = postgres_cluster.database()
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", url)
    refused = runner.invoke(cli, ["unsubscribes", "list"])
    assert refused.exit_code == 1
    assert refused.output == (
        f"Error: {postgres.display(url)}: has no newsletter tables yet; this newsletter needs version "
        f"{len(POSTGRESQL)}: run 'newsletter store migrate' (once, after every machine that shares it runs this "
        "version of newsletter)\n"
    )
    first = runner.invoke(cli, ["store", "migrate"])
    assert first.output == f"{postgres.display(url)}: schema version 0 -> {len(POSTGRESQL)}.\n"
    again = runner.invoke(cli, ["store", "migrate"])
    assert again.output == f"{postgres.display(url)}: schema version {len(POSTGRESQL)}, already current.\n"
    assert runner.invoke(cli, ["unsubscribes", "list"]).exit_code == 0


def test_a_database_from_a_newer_version_is_refused(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute("UPDATE newsletter_schema SET version = version + 1")
    with pytest.raises(StoreError, match=r"newer than this newsletter understands.*upgrade newsletter"):
        Store(pg_url)
    with pytest.raises(StoreError, match="newer than this newsletter understands"):
        migrate(pg_url)


def test_an_unreachable_server_is_one_line_without_the_password(runner, folder, monkeypatch):
    closed = free_port()  # nobody listens there
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", f"postgresql://clinic:s3cret-pw@127.0.0.1:{closed}/news")
    result = runner.invoke(cli, ["unsubscribes", "add", "ana@example.com"])
    assert result.exit_code == 1
    assert result.output.startswith(
        f"Error: postgresql://clinic@127.0.0.1:{closed}/news: cannot reach the database (connection to server at"
    )
    assert result.output.count("\n") == 1 and "s3cret" not in result.output
    assert "Traceback" not in result.output


def test_a_password_in_newsletter_toml_is_refused_and_the_environment_s_url_wins(folder):
    path = folder / "newsletter.toml"
    path.write_text(MINIMAL_CONFIG + '\n[store]\nurl = "postgresql://clinic:s3cret@db.clinic.ca/news"\n')
    with pytest.raises(ConfigError, match=r"a password does not belong in newsletter.toml.*PGPASSWORD") as error:
        load_config(path, environ={})
    assert "s3cret" not in error.value.message
    path.write_text(MINIMAL_CONFIG + '\n[store]\nurl = "postgresql://clinic@db.clinic.ca/news"\n')
    assert load_config(path, environ={}).store_url == "postgresql://clinic@db.clinic.ca/news"
    env = {"NEWSLETTER_DATABASE_URL": "postgresql://clinic:s3cret@10.0.0.5/news"}
    config = load_config(path, environ=env)
    assert config.store_url == env["NEWSLETTER_DATABASE_URL"]
    assert "s3cret" not in repr(config)
    with pytest.raises(ConfigError) as bad:
        load_config(path, environ={"NEWSLETTER_DATABASE_URL": "mysql://clinic:s3cret@10.0.0.5/news"})
    assert bad.value.message.startswith("NEWSLETTER_DATABASE_URL: expected a PostgreSQL URL")
    assert "s3cret" not in bad.value.message


def test_the_consent_ledger_refuses_to_change_or_be_emptied(pg_url):
    with Store(pg_url) as store:
        store.db.execute(
            "INSERT INTO consents (email, kind, method, source, occurred_at, recorded_by, recorded_at)"
            " VALUES ('a@example.com', 'express', 'web', 'form', 'x', 'me', 'y')"
        )
        for sql in ("UPDATE consents SET kind = 'implied'", "DELETE FROM consents", "TRUNCATE consents"):
            with pytest.raises(StoreError, match="the consent ledger is append-only"):
                store.db.execute(sql)
        assert store.db.execute("SELECT count(*) FROM consents").fetchone()[0] == 1


def test_without_the_driver_the_store_says_which_extra_to_install(pg_url, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(StoreError, match=r"needs the driver: pip install 'newsletter-cli\[postgres\]'"):
        Store(pg_url)


def test_the_server_going_away_mid_send_loses_nothing_and_the_send_resumes(
    runner, newsletter, sendgrid, postgres_cluster, monkeypatch
):
    """A private cluster, stopped at once in the middle of a send (as a crash or a cut network
    would), then started again: the send stops with one line, and resuming mails nobody twice."""
    from .postgres_cluster import Cluster

    own = Cluster(postgres_cluster.bin).start()
    try:
        url = own.database()
        migrate(url)
        monkeypatch.setenv("NEWSLETTER_DATABASE_URL", url)
        (newsletter / "subscribers.csv").write_text(
            "email\n" + "".join(f"u{i}@example.com\n" for i in range(2000)), encoding="utf-8"
        )
        sendgrid.keep_content = False
        sendgrid.delay = 0.03
        process = newsletter_process(newsletter, "send", "issues/test.md", "--yes", "--batch-size", "50")
        deadline = time.monotonic() + 60
        while sendgrid.batches < 4:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.01)
        own.halt()
        _, err = process.communicate(timeout=60)
        assert process.returncode == 1
        assert "Traceback" not in err
        [line] = err.strip().splitlines()
        assert line.startswith(f"Error: {postgres.display(url)}: cannot reach the database (")
        own.boot()
        sendgrid.delay = 0
        runner.invoke(cli, ["send", "issues/test.md", "--yes"])
        counts = json.loads(runner.invoke(cli, ["status", "issues/test.md", "--json"]).output)
    finally:
        own.stop()
    received = Counter(d.email for d in sendgrid.deliveries)
    assert max(received.values()) == 1, "nobody mailed twice"
    assert counts["pending"] == 0
    assert counts["sent"] + counts["uncertain"] + counts["in_flight"] == 2000
    assert counts["sent"] <= len(received) <= 2000


def test_leases_are_kept_on_the_server_s_clock_in_utc_whatever_the_session_s_time_zone(pg_url):
    """Every machine sharing the store compares leases on one clock, as UTC strings."""
    from newsletter_cli.store.journal import IN_FLIGHT, Journal, record

    with Store(pg_url) as store:
        store.db.execute("SET timezone = 'America/Toronto'")
        journal = Journal(store, "issue")
        run = journal.start_run("Subject")
        journal.add([[("a@example.com", record("a@example.com", "", {}))]], run)
        journal.next_batch(1)
        assert journal.counts()[IN_FLIGHT] == 1
        assert store.db.clock().utcoffset().total_seconds() == 0


def test_a_server_that_says_no_is_told_apart_from_one_that_cannot_be_reached(
    runner, folder, postgres_cluster, monkeypatch
):
    monkeypatch.setenv(
        "NEWSLETTER_DATABASE_URL", postgres_cluster.url("nosuchdb").replace("newsletter@", "newsletter:pw@")
    )
    result = runner.invoke(cli, ["unsubscribes", "list"])
    assert result.exit_code == 1
    assert result.output == (
        f'Error: {postgres.display(postgres_cluster.url("nosuchdb"))}: refused the connection (database "nosuchdb" '
        "does not exist): check the address in [store] url or NEWSLETTER_DATABASE_URL, and the password "
        "(PGPASSWORD or ~/.pgpass)\n"
    )
