"""What the `consent` commands and `unsubscribes remove` ask of the ledger: one person's
history in words or JSON, the whole ledger as CSV, lapses coming up, and a new consent that
lifts a suppression."""

from __future__ import annotations

import csv
import datetime as dt
import re
from typing import Any, TextIO

from newsletter_cli.consent.importer import ConsentError, check_kind
from newsletter_cli.consent.ledger import IMPLIED, Record, expires, verdict
from newsletter_cli.store import Store
from newsletter_cli.store.consents import all_records, everyone, history, lift_suppression
from newsletter_cli.subscribers import normalize_address

FIELDS = (
    "email",
    "kind",
    "basis",
    "method",
    "source",
    "wording",
    "occurred_at",
    "confirmed_at",
    "expires_at",
    "recorded_by",
    "evidence",
    "ip",
    "recorded_at",
)


def _iso(when: dt.datetime | None) -> str | None:
    return when.isoformat(timespec="seconds") if when else None


def as_dict(record: Record) -> dict[str, Any]:
    return {name: _iso(v) if isinstance(v := getattr(record, name), dt.datetime) else v for name in FIELDS}


def history_json(store: Store, email: str) -> list[dict[str, Any]]:
    return [as_dict(r) for r in history(store, email)]


def summary(store: Store, email: str, now: dt.datetime | None = None) -> list[str]:
    """Whether the person may be mailed, then each record in plain words."""
    records = history(store, email)
    if not records:
        return [f"{email}: no consent records: under CASL, mail them only once they have agreed"]
    found = verdict(records, now or dt.datetime.now(dt.UTC))
    if found.live:
        until = f" until {found.until.date().isoformat()}" if found.until else ""
        head = f"{email}: consent is live{until}"
    else:
        head = f"{email}: may not be mailed ({found.reason})"
    return [head, *(f"  {record.words()}" for record in records)]


def export_csv(store: Store, out: TextIO) -> int:
    writer = csv.DictWriter(out, FIELDS)
    writer.writeheader()
    count = 0
    for record in all_records(store):
        writer.writerow(as_dict(record))
        count += 1
    return count


def parse_within(text: str) -> dt.timedelta:
    match = re.fullmatch(r"\s*(\d+)\s*d?\s*", text)
    if not match:
        raise ConsentError(f"--within {text!r}: expected a number of days, like 60d")
    return dt.timedelta(days=int(match.group(1)))


def expiring(store: Store, within: str, now: dt.datetime | None = None) -> list[tuple[str, dt.datetime, str]]:
    """(address, lapse, basis) of each live consent that is only implied and lapses within ``within``."""
    now = now or dt.datetime.now(dt.UTC)
    horizon = now + parse_within(within)
    found = []
    for records in everyone(store):
        state = verdict(records, now)
        if state.live and state.until is not None and state.until <= horizon:
            basis = next((r.basis for r in reversed(records) if r.expires_at == state.until), "") or ""
            found.append((records[0].email, state.until, basis))
    return sorted(found, key=lambda item: item[1])


def resubscribe(
    store: Store, email: str, kind: str, basis: str | None, method: str, recorded_by: str, evidence: str | None
) -> str:
    """Lift a suppression: only with a new consent, recorded in the same transaction."""
    check_kind(kind, basis, method)
    try:
        address = normalize_address(email)
    except ValueError as exc:
        raise ConsentError(f"invalid address {email!r}: {exc}") from None
    given = dt.datetime.now(dt.UTC)
    record = Record(
        email=address,
        kind=kind,
        method=method,
        source="unsubscribes remove",
        occurred_at=given,
        recorded_by=recorded_by,
        basis=basis if kind == IMPLIED else None,
        expires_at=expires(kind, basis, given),
        evidence=evidence,
    )
    reason = lift_suppression(store, record)
    if reason is None:
        raise ConsentError(f"{address} is not suppressed: nothing to lift")
    return reason
