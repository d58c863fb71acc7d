"""The consent ledger's rules (CASL, s. 10 and the CRTC's guidance on records).

Express consent lasts until it is withdrawn. Implied consent lapses: two years after a purchase
or the end of another non-business relationship, six months after an inquiry. Consent implied by
an address that was published or disclosed to us has no fixed term in the Act; it is kept open
here, and the record's basis says which it is. A person's consent is live when, since their
latest withdrawal, they gave express consent or an implied consent that has not lapsed.

Lapse dates add calendar years or months and, where that day does not exist (29 February two
years on, 31 August plus six months), take the last day of that month: consent then lapses a
day early, never late.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

EXPRESS, IMPLIED, WITHDRAWN = "express", "implied", "withdrawn"
KINDS = (EXPRESS, IMPLIED)
# implied consent's basis -> months it lasts (None: no fixed term)
BASES: dict[str, int | None] = {
    "purchase": 24,
    "non-business": 24,
    "inquiry": 6,
    "published": None,
    "disclosed": None,
}
METHODS = ("web double opt-in", "paper form", "verbal", "import", "staff")
# how a withdrawal came, by the suppression's route
WITHDRAWN_BY = {
    "endpoint": "unsubscribe link",
    "sendgrid:event": "SendGrid event",
    "sendgrid": "SendGrid's lists",
    "import": "import",
    "cli": "staff",
}


def add_months(when: dt.datetime, months: int) -> dt.datetime:
    """``months`` calendar months later; a day the month lacks becomes its last day."""
    index = when.month - 1 + months
    year, month = when.year + index // 12, index % 12 + 1
    return when.replace(year=year, month=month, day=min(when.day, calendar.monthrange(year, month)[1]))


def expires(kind: str, basis: str | None, given: dt.datetime) -> dt.datetime | None:
    if kind != IMPLIED:
        return None
    months = BASES[basis or ""]
    return add_months(given, months) if months is not None else None


def wording_hash(text: str) -> str:
    """What a record keeps of the words consented to: their SHA-256 (the text is kept once,
    beside the store, under this name). Line endings do not count."""
    return hashlib.sha256("\n".join(text.strip().splitlines()).encode()).hexdigest()


@dataclass(frozen=True)
class Record:
    email: str
    kind: str  # express, implied or withdrawn
    method: str
    source: str
    occurred_at: dt.datetime
    recorded_by: str
    basis: str | None = None
    wording: str | None = None  # SHA-256 of the wording
    confirmed_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    evidence: str | None = None
    ip: str | None = None
    recorded_at: dt.datetime | None = None

    def words(self) -> str:
        """The record in plain words, for `consent show`."""
        day = self.occurred_at.date().isoformat()
        if self.kind == WITHDRAWN:
            return f"{day}: withdrew consent ({self.method}, {self.source})"
        how = f"{self.kind} consent" + (f", implied by {self.basis}" if self.basis else "")
        text = f"{day}: gave {how} by {self.method} ({self.source})"
        if self.confirmed_at:
            text += f", confirmed {self.confirmed_at.date().isoformat()}"
        text += f"; lapses {self.expires_at.date().isoformat()}" if self.expires_at else "; lasts until withdrawn"
        if self.evidence:
            text += f"; evidence: {self.evidence}"
        return text


@dataclass(frozen=True)
class Verdict:
    live: bool
    reason: str  # why not: "no consent", "consent withdrawn", "implied consent lapsed"
    until: dt.datetime | None = None  # when a live implied consent lapses


def verdict(records: Iterable[Record], at: dt.datetime) -> Verdict:
    """Whether these records (one person's, oldest first) give live consent at ``at``."""
    since: list[Record] = []
    withdrawn = False
    for record in records:
        if record.occurred_at > at:
            continue
        if record.kind == WITHDRAWN:
            since, withdrawn = [], True
        else:
            since.append(record)
    if any(r.kind == EXPRESS for r in since):
        return Verdict(True, "")
    open_ended = [r for r in since if r.expires_at is None]
    if open_ended:
        return Verdict(True, "")
    lasting = [r.expires_at for r in since if r.expires_at is not None and r.expires_at > at]
    if lasting:
        return Verdict(True, "", max(lasting))
    if since:
        return Verdict(False, "implied consent lapsed")
    return Verdict(False, "consent withdrawn" if withdrawn else "no consent")
