import sqlite3

import pytest

from newsletter_cli.store import MIGRATIONS, Store, StoreError, Suppression


def test_created_on_first_use_in_wal_mode_with_a_schema_version(tmp_path):
    with Store.for_folder(tmp_path / ".newsletter") as store:
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert (tmp_path / ".newsletter" / "newsletter.db").is_file()


def test_suppressions_are_case_insensitive_and_the_first_record_is_kept(tmp_path):
    with Store(tmp_path / "db") as store:
        assert store.suppress([Suppression("Ana@Example.com", "unsubscribed", "endpoint")]) == 1
        assert store.suppress([Suppression("ana@example.com", "bounced", "sendgrid:bounces")]) == 0
        [only] = list(store.suppressions())
        assert (only.email, only.reason, only.source) == ("ana@example.com", "unsubscribed", "endpoint")
        assert only.created_at.endswith("+00:00")
        assert store.suppressed_among(["ana@example.com", "lee@example.com"]) == {"ana@example.com"}


def test_many_suppressions_in_one_call(tmp_path):
    with Store(tmp_path / "db") as store:
        entries = (Suppression(f"u{i}@example.com", "manual", "cli") for i in range(1234))
        assert store.suppress(entries) == 1234
        assert len(store.suppressed_among([f"u{i}@example.com" for i in range(0, 2000, 2)])) == 617


def test_an_unknown_reason_is_refused_and_nothing_is_written(tmp_path):
    with Store(tmp_path / "db") as store:
        with pytest.raises(StoreError, match="unknown suppression reason 'bored'"):
            store.suppress(
                [Suppression("a@example.com", "manual", "cli"), Suppression("b@example.com", "bored", "cli")]
            )
        assert store.count_suppressions() == 0


def test_the_database_itself_refuses_an_unknown_reason(tmp_path):
    with Store(tmp_path / "db") as store, pytest.raises(StoreError, match="CHECK constraint failed"):
        store.db.execute("INSERT INTO suppressions VALUES ('a@example.com', 'bored', 'x', 'now')")


def test_a_database_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer than this newsletter understands"):
        Store(path)


def test_an_older_database_is_migrated_and_keeps_its_suppressions(tmp_path):
    path = tmp_path / "db"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    db.execute("INSERT INTO suppressions VALUES ('old@example.com', 'bounced', 'sendgrid:bounces', '2022-12-01')")
    db.commit()
    db.close()
    with Store(path) as store:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert [s.email for s in store.suppressions()] == ["old@example.com"]
        assert store.db.execute("SELECT count(*) FROM recipients").fetchone()[0] == 0
