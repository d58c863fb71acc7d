"""Signups through the form: pending until their confirmation link is used, then confirmed (and
their consent in the ledger, written in the same transaction), and the confirmation emails
sent, for the per-address limit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from newsletter_cli.consent.ledger import Record
from newsletter_cli.store.consents import consent_lifting
from newsletter_cli.store.database import Store, now

PENDING, CONFIRMED = "pending", "confirmed"


@dataclass(frozen=True)
class Signup:
    email: str
    address: str
    first_name: str
    form: str
    wording: str
    status: str
    requested_at: str
    confirmed_at: str | None
    ip: str | None


def find(store: Store, email: str) -> Signup | None:
    row = store.db.execute(
        "SELECT email, address, first_name, form, wording, status, requested_at, confirmed_at, ip"
        " FROM signups WHERE email = ?",
        (email.lower(),),
    ).fetchone()
    return Signup(*row) if row else None


def mails_since(store: Store, email: str, since: dt.datetime) -> int:
    return store.db.execute(
        "SELECT count(*) FROM confirmation_mails WHERE email = ? AND sent_at >= ?",
        (email.lower(), since.astimezone(dt.UTC).isoformat(timespec="seconds")),
    ).fetchone()[0]


def request(store: Store, address: str, first_name: str, form: str, wording: str, ip: str | None) -> None:
    """A new signup, or a pending one asked again (its details replaced), and its mail counted."""
    stamp = now()
    with store.transaction() as db:
        db.execute(
            "INSERT INTO signups (email, address, first_name, form, wording, status, requested_at, ip)"
            " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT (email) DO UPDATE SET address = excluded.address,"
            " first_name = excluded.first_name, form = excluded.form, wording = excluded.wording,"
            " requested_at = excluded.requested_at, ip = excluded.ip WHERE signups.status = 'pending'",
            (address.lower(), address, first_name, form, wording, stamp, ip),
        )
        db.execute("INSERT INTO confirmation_mails (email, sent_at) VALUES (?, ?)", (address.lower(), stamp))


def forget_mail(store: Store, email: str) -> None:
    """The confirmation could not be sent after all: it does not count against the limit."""
    with store.transaction() as db:
        db.execute(
            "DELETE FROM confirmation_mails WHERE rowid = (SELECT max(rowid) FROM confirmation_mails WHERE email = ?)",
            (email.lower(),),
        )


def confirm(store: Store, email: str, record: Record) -> bool:
    """Mark a pending signup confirmed and append its consent (lifting any suppression), all
    at once. False when there was nothing pending (confirmed already, or purged)."""
    key = email.lower()
    with store.transaction() as db:
        done = db.execute(
            "UPDATE signups SET status = 'confirmed', confirmed_at = ? WHERE email = ? AND status = 'pending'",
            (now(), key),
        ).rowcount
        if not done:
            return False
        consent_lifting(db, record)
    return True


def purge(store: Store, before: dt.datetime) -> int:
    """Forget pending signups older than ``before``, and old confirmation mails; returns how many signups."""
    stamp = before.astimezone(dt.UTC).isoformat(timespec="seconds")
    with store.transaction() as db:
        gone = db.execute("DELETE FROM signups WHERE status = 'pending' AND requested_at < ?", (stamp,)).rowcount
        db.execute("DELETE FROM confirmation_mails WHERE sent_at < ?", (stamp,))
    return gone


def confirmed(store: Store) -> Iterator[Signup]:
    """Confirmed signups, oldest first: recipients of every send besides the list."""
    for row in store.db.execute(
        "SELECT email, address, first_name, form, wording, status, requested_at, confirmed_at, ip"
        " FROM signups WHERE status = 'confirmed' ORDER BY confirmed_at, email"
    ):
        yield Signup(*row)
