"""The consent ledger in the store: records appended, never changed (the database's triggers
refuse an UPDATE or DELETE), and the words consented to, kept once each by their SHA-256 (in the
store, so every machine sharing it has them; before schema 10, in ``wordings/`` beside the file)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator

from newsletter_cli.consent.ledger import Record, Verdict, verdict, wording_hash
from newsletter_cli.store.connection import Connection
from newsletter_cli.store.database import CHUNK, Store, chunks, now

COLUMNS = (
    "email, kind, basis, method, source, wording, occurred_at, confirmed_at, expires_at, recorded_by, evidence, ip,"
    " recorded_at"
)


def _iso(when: dt.datetime | None) -> str | None:
    return when.astimezone(dt.UTC).isoformat(timespec="seconds") if when else None


def _when(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


INSERT = f"INSERT INTO consents ({COLUMNS}) VALUES ({', '.join('?' * 13)})"


def append(store: Store, records: Iterable[Record]) -> int:
    """Append records in one transaction; returns how many."""
    stamp = now()
    rows = [record_values(r, stamp) for r in records]
    with store.transaction() as db:
        db.executemany(INSERT, rows)
    return len(rows)


def lift_suppression(store: Store, record: Record) -> str | None:
    """Remove an address's suppression and append its new consent, together; returns the
    suppression's reason (None, and nothing written, when it was not suppressed)."""
    email = record.email.strip().lower()
    with store.transaction() as db:
        row = db.execute("SELECT reason FROM suppressions WHERE email = ?", (email,)).fetchone()
        if row is None:
            return None
        consent_lifting(db, record)
    return str(row[0])


def consent_lifting(db: Connection, record: Record) -> None:
    """Inside the caller's transaction: append a new consent, and lift the address's
    suppression (and any unsubscribe still to be told to SendGrid) with it."""
    email = record.email.strip().lower()
    db.execute(INSERT, record_values(record, now()))
    db.execute("DELETE FROM suppressions WHERE email = ?", (email,))
    db.execute("DELETE FROM pushes WHERE email = ?", (email,))


def record_values(r: Record, stamp: str) -> tuple[str | None, ...]:
    when = (_iso(r.occurred_at), _iso(r.confirmed_at), _iso(r.expires_at))
    email = r.email.strip().lower()
    return (email, r.kind, r.basis, r.method, r.source, r.wording, *when, r.recorded_by, r.evidence, r.ip, stamp)


def _record(row: tuple) -> Record:
    email, kind, basis, method, source, wording, occurred, confirmed, expires, by, evidence, ip, recorded = row
    return Record(
        email=email,
        kind=kind,
        method=method,
        source=source,
        occurred_at=_when(occurred) or dt.datetime.min.replace(tzinfo=dt.UTC),
        recorded_by=by,
        basis=basis,
        wording=wording,
        confirmed_at=_when(confirmed),
        expires_at=_when(expires),
        evidence=evidence,
        ip=ip,
        recorded_at=_when(recorded),
    )


def history(store: Store, email: str) -> list[Record]:
    """One person's records, oldest first (as they happened, then as they were recorded)."""
    rows = store.db.execute(
        f"SELECT {COLUMNS} FROM consents WHERE email = ? ORDER BY occurred_at, id", (email.strip().lower(),)
    )
    return [_record(row) for row in rows]


def everyone(store: Store) -> Iterator[list[Record]]:
    """Each person's records, oldest first, person by person."""
    rows = store.db.execute(f"SELECT {COLUMNS} FROM consents ORDER BY email, occurred_at, id")
    current: list[Record] = []
    for row in rows:
        record = _record(row)
        if current and current[0].email != record.email:
            yield current
            current = []
        current.append(record)
    if current:
        yield current


def all_records(store: Store) -> Iterator[Record]:
    for row in store.db.execute(f"SELECT {COLUMNS} FROM consents ORDER BY id"):
        yield _record(row)


def keep_wording(store: Store, text: str) -> str:
    """Keep the words consented to in the store (once); returns their hash."""
    digest = wording_hash(text)
    with store.transaction() as db:
        db.execute(
            "INSERT INTO wordings (hash, text) VALUES (?, ?) ON CONFLICT (hash) DO NOTHING",
            (digest, text.strip() + "\n"),
        )
    return digest


def wording(store: Store, digest: str) -> str | None:
    """The words with this hash, as kept (None: never kept here)."""
    row = store.db.execute("SELECT text FROM wordings WHERE hash = ?", (digest,)).fetchone()
    if row is not None:
        return str(row[0])
    return legacy_wordings(store).get(digest)


def legacy_wordings(store: Store) -> dict[str, str]:
    """The wordings a store before schema 10 kept in a folder beside its file, by hash."""
    folder = store.path.parent / "wordings" if store.path is not None else None
    if folder is None or not folder.is_dir():
        return {}
    return {path.stem: path.read_text(encoding="utf-8") for path in sorted(folder.glob("*.txt"))}


def verdicts(store: Store, keys: Iterable[str], at: dt.datetime) -> dict[str, Verdict]:
    """Whether each (lower-cased) address has live consent at ``at``; one query per 500."""
    found: dict[str, Verdict] = {}
    for chunk in chunks(keys, CHUNK):
        marks = ",".join("?" * len(chunk))
        people: dict[str, list[Record]] = {key: [] for key in chunk}
        for row in store.db.execute(
            f"SELECT {COLUMNS} FROM consents WHERE email IN ({marks}) ORDER BY email, occurred_at, id", chunk
        ):
            people[row[0]].append(_record(row))
        for key, records in people.items():
            found[key] = verdict(records, at)
    return found
