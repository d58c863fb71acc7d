import sqlite3
import threading
from pathlib import Path

import pytest

from newsletter_cli.store import MIGRATIONS, Store, StoreError, Suppression, failure


def test_created_on_first_use_in_wal_mode_with_a_schema_version(tmp_path):
    with Store.for_folder(tmp_path / ".newsletter") as store:
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert (tmp_path / ".newsletter" / "newsletter.db").is_file()


def test_suppressions_are_case_insensitive_and_the_first_record_is_kept(where):
    with Store(where) as store:
        assert store.suppress([Suppression("Ana@Example.com", "unsubscribed", "endpoint")]) == 1
        assert store.suppress([Suppression("ana@example.com", "bounced", "sendgrid:bounces")]) == 0
        [only] = list(store.suppressions())
        assert (only.email, only.reason, only.source) == ("ana@example.com", "unsubscribed", "endpoint")
        assert only.created_at.endswith("+00:00")
        assert store.suppressed_among(["ana@example.com", "lee@example.com"]) == {"ana@example.com"}


def test_many_suppressions_in_one_call(where):
    with Store(where) as store:
        entries = (Suppression(f"u{i}@example.com", "manual", "cli") for i in range(1234))
        assert store.suppress(entries) == 1234
        assert len(store.suppressed_among([f"u{i}@example.com" for i in range(0, 2000, 2)])) == 617


def test_an_unknown_reason_is_refused_and_nothing_is_written(where):
    with Store(where) as store:
        with pytest.raises(StoreError, match="unknown suppression reason 'bored'"):
            store.suppress(
                [Suppression("a@example.com", "manual", "cli"), Suppression("b@example.com", "bored", "cli")]
            )
        assert store.count_suppressions() == 0


def test_the_database_itself_refuses_an_unknown_reason(where):
    with Store(where) as store, pytest.raises(StoreError, match=r"CHECK constraint failed|violates check constraint"):
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


def test_an_empty_file_is_refused_never_taken_for_a_new_store(tmp_path):
    """A 0-byte newsletter.db was once silently a new store: the next send mailed all 40,000 again."""
    path = tmp_path / "newsletter.db"
    path.write_bytes(b"")
    for readonly in (False, True):
        with pytest.raises(StoreError, match=r"is empty \(0 bytes\).*Restore \.newsletter/ from a backup"):
            Store(path, readonly=readonly)
    assert path.read_bytes() == b""


def test_a_damaged_file_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "newsletter.db"
    path.write_bytes(b"this is not a database, it is a text file someone saved here\n" * 100)
    with pytest.raises(StoreError) as error:
        Store(path)
    assert error.value.message == (
        f"{path}: is damaged (file is not a database): restore .newsletter/ from a backup; do not delete it while "
        "any issue is being sent (its journal is what keeps people from being mailed twice)"
    )


def test_stores_opened_at_once_by_many_threads_all_open_the_same_new_file(tmp_path):
    """A new store is linked into place whole, so nobody sees it at 0 bytes and refuses it."""
    path = tmp_path / ".newsletter" / "newsletter.db"
    errors = []

    def open_and_write(n: int) -> None:
        try:
            with Store(path) as store:
                store.suppress([Suppression(f"u{n}@example.com", "manual", "cli")])
        except StoreError as exc:
            errors.append(exc.message)

    threads = [threading.Thread(target=open_and_write, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with Store(path) as store:
        assert store.count_suppressions() == 20
    assert [p.name for p in path.parent.iterdir() if not p.name.startswith("newsletter.db")] == [], "no draft left"


def test_a_full_disk_is_one_line_saying_what_to_do():
    failure_text = failure(sqlite3.OperationalError("database or disk is full"), Path("newsletter.db")).message
    assert failure_text == (
        "newsletter.db: the disk is full, so nothing more could be recorded: free some space and run the same "
        "command again (what was recorded before stands)"
    )


def test_store_migrate_on_the_folder_s_own_file_says_from_which_version(runner, folder):
    from newsletter_cli.cli import cli

    (folder / ".newsletter").mkdir()
    db = sqlite3.connect(folder / ".newsletter" / "newsletter.db")
    db.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    db.close()
    assert runner.invoke(cli, ["store", "migrate"]).output == (
        f".newsletter/newsletter.db: schema version 1 -> {len(MIGRATIONS)}.\n"
    )
    assert runner.invoke(cli, ["store", "migrate"]).output == (
        f".newsletter/newsletter.db: schema version {len(MIGRATIONS)}, already current.\n"
    )
