"""`newsletter consent import`: consent records from a CSV, all or nothing.

Every row is checked first (its address, its date); any problem is reported with its line and
nothing is written, so a file is never half imported. Rows an export marks as unsubscribed are
left out and counted: they no longer consent.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from newsletter_cli.consent.ledger import BASES, IMPLIED, KINDS, METHODS, Record, expires
from newsletter_cli.errors import NewsletterError, display_path
from newsletter_cli.listfile import layout, normalize_column
from newsletter_cli.store import Store
from newsletter_cli.store.consents import append, keep_wording
from newsletter_cli.subscribers import normalize_address, read_rows

SHOWN = 10  # problems listed before "and N more"


class ConsentError(NewsletterError):
    pass


@dataclass(frozen=True)
class Imported:
    added: int
    unsubscribed: int  # rows the file marks as no longer subscribed: left out
    lapsed: int  # implied consents recorded that had lapsed already


def parse_when(text: str) -> dt.datetime:
    """A date (2024-03-05) or a time (2024-03-05T14:22, 2024-03-05 14:22:00, with or without an
    offset; without one it is the computer's local time). Day-first or month-first dates are
    refused: 03/05/2024 could be either."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a date like 2024-03-05") from None
    return when.astimezone() if when.tzinfo is None else when


def check_kind(kind: str, basis: str | None, method: str) -> None:
    if kind not in KINDS:
        raise ConsentError(f"--kind {kind}: expected {' or '.join(KINDS)}")
    if kind == IMPLIED and basis not in BASES:
        raise ConsentError(f"implied consent needs --basis, one of {', '.join(BASES)}")
    if kind != IMPLIED and basis is not None:
        raise ConsentError("--basis is for implied consent only")
    if method not in METHODS:
        raise ConsentError(f"--method {method}: expected one of {', '.join(METHODS)}")


def import_csv(
    store: Store,
    path: Path,
    *,
    kind: str,
    method: str,
    recorded_by: str,
    basis: str | None = None,
    date_column: str | None = None,
    date: dt.datetime | None = None,
    wording: str | None = None,
    source: str | None = None,
    evidence: str | None = None,
    now: dt.datetime | None = None,
) -> Imported:
    check_kind(kind, basis, method)
    if (date_column is None) == (date is None):
        raise ConsentError("say when consent was given: --date-column COLUMN or --date DATE")
    now = now or dt.datetime.now(dt.UTC)
    shown = display_path(path)
    column = normalize_column(date_column) if date_column is not None else None
    if column is not None and column not in layout(path).names:
        raise ConsentError(f"{shown}: no column {date_column!r} (the dates were to come from it)")
    digest = keep_wording(store, wording) if wording else None
    records, problems = [], []
    unsubscribed = lapsed = 0
    for line, cells, status in read_rows(path):
        if status is not None:
            unsubscribed += 1
            continue
        try:
            email = normalize_address(cells.get("email", ""))
            given = date if date is not None else parse_when(cells.get(column or "", ""))
            if given > now:
                raise ValueError(f"{given.date().isoformat()} is in the future")
        except ValueError as exc:
            problems.append(f"{shown}:{line}: {exc}")
            continue
        lapse = expires(kind, basis, given)
        lapsed += lapse is not None and lapse <= now
        records.append(
            Record(
                email=email,
                kind=kind,
                method=method,
                source=source or f"import:{path.name}",
                occurred_at=given,
                recorded_by=recorded_by,
                basis=basis,
                wording=digest,
                expires_at=lapse,
                evidence=evidence,
            )
        )
    if problems:
        more = f"\n  and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise ConsentError(
            f"{len(problems)} row{'s' * (len(problems) != 1)} of {shown} cannot be imported, so none was:\n  "
            + "\n  ".join(problems[:SHOWN])
            + more
        )
    return Imported(append(store, records), unsubscribed, lapsed)
