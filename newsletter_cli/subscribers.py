"""subscribers.csv -> validated, de-duplicated rows, read as a stream.

Memory does not grow with the list: rows are handled in chunks, and the addresses already seen
live in a private temporary SQLite database (on disk, a bounded page cache) rather than in a set.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import NamedTuple

from newsletter_cli.errors import SubscriberError
from newsletter_cli.listfile import Layout, Status, layout, records
from newsletter_cli.merge import FOOTER_FIELDS, Budget, MergeField

VALID, INVALID, DUPLICATE, SUPPRESSED = "valid", "invalid", "duplicate", "suppressed"
UNSUBSCRIBED = "unsubscribed"  # the platform's own export says so (listfile's status columns)
CHUNK = 1000
# The common case, checked by one regex (benchmarks/subscribers_scan.py): a plain ASCII address that
# email-validator accepts unchanged but for the domain's case (tests/test_subscribers.py holds
# it to that): at most 254 characters, a local part of at most 64, no "--" in the domain (IDNA's
# reserved spelling) and no special-use top-level domain. Anything else goes to email-validator
# itself, some thirty times slower.
_LOCAL = r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# email-validator's SPECIAL_USE_DOMAIN_NAMES (a test holds the copy to it): a send's parent
# process never imports email-validator, whose import alone is slow.
SPECIAL_USE_DOMAINS = ("arpa", "invalid", "local", "localhost", "onion", "test")
_SPECIAL_TLD = "|".join(map(re.escape, SPECIAL_USE_DOMAINS))
FAST_EMAIL = re.compile(
    rf"(?=.{{3,254}}\Z)(?=[^@]{{1,64}}@)({_LOCAL})@(?![^@]*--)((?:{_LABEL}\.)+(?!(?i:{_SPECIAL_TLD})\Z)[A-Za-z]{{2,63}})"
)
# Unicode's Cc, Zl and Zp: line breaks (NEL, U+2028, U+2029 too), NUL, VT, FF... A merge value
# can reach the Subject header, where any of them breaks the message; each becomes a space.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAME_JUNK = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029;,\"<>]+")
MAX_NAME = 100


class Refused(NamedTuple):
    """A record the send path skips, with its line and why (``addresses``); ``status`` is
    INVALID or UNSUBSCRIBED."""

    line: int
    reason: str
    status: str = INVALID


class Row(NamedTuple):
    """One record of the list: ``status`` is valid, invalid, duplicate or suppressed.

    A named tuple rather than a dataclass: a million of them are made per send.
    """

    line: int
    email: str
    fields: dict[str, str]
    status: str = VALID
    reason: str = ""

    @property
    def key(self) -> str:
        """The address as compared for duplicates and suppressions."""
        return self.email.lower()

    @property
    def name(self) -> str:
        fields = self.fields
        return display_name(fields.get("name"), fields.get("first_name"), fields.get("last_name"))


def display_name(name: str | None, first: str | None, last: str | None) -> str:
    """A display name safe for a To: header (SendGrid rejects ; and , in names)."""
    name = name or " ".join(filter(None, (first, last)))
    if _NAME_JUNK.search(name):
        name = " ".join(_NAME_JUNK.sub(" ", name).split())
    return name[:MAX_NAME]


def normalize_address(raw: str) -> str:
    """The address to send to, or ValueError with email-validator's reason."""
    address = raw.strip()
    match = FAST_EMAIL.fullmatch(address)
    if match:
        return f"{match.group(1)}@{match.group(2).lower()}"
    if not address:
        raise ValueError("no email address")
    from email_validator import EmailNotValidError, validate_email  # imported on first need: see above

    try:
        result = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return result.ascii_email or result.normalized


def _records(path: Path) -> Iterator[tuple[int, Layout, list[str]]]:
    """(line where the record starts, the file's layout, the record's cells) for every record;
    any error is one line naming the file and line (see listfile)."""
    found = layout(path)
    for start, record in records(found):
        yield start, found, record


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, str], Status | None]]:
    """(line where the record starts, cells by column, what a status column says) for each
    non-blank record."""
    for start, found, record in _records(path):
        if any(record):
            cells = {col: _clean(cell) for col, cell in zip(found.columns, record, strict=False) if col}
            if any(cells.values()):
                if found.derive_first_name and not cells.get("first_name"):
                    cells["first_name"] = first_word(cells.get("name", ""))
                yield start, cells, found.status(record)


def first_word(name: str) -> str:
    """A first name from a whole one: Ghost's and others' exports have only ``name``."""
    return name.split(maxsplit=1)[0] if name.strip() else ""


def validated(path: Path, budget: Budget | None = None) -> Iterator[Row]:
    """Every record with its address checked (valid or invalid), not yet de-duplicated; with a
    ``budget``, a record whose merge values SendGrid would refuse is invalid too."""
    for line, cells, status in read_rows(path):
        raw = cells.get("email", "")
        if status is not None:
            yield Row(line, raw, cells, UNSUBSCRIBED, status.reason)
            continue
        try:
            email = normalize_address(raw)
        except ValueError as exc:
            yield Row(line, raw, cells, INVALID, f"invalid address {raw!r}: {exc}")
            continue
        cells["email"] = email
        size = budget.over(email, cells) if budget is not None else None
        if size is not None:
            assert budget is not None
            yield Row(line, email, cells, INVALID, budget.reason(size, cells))
            continue
        yield Row(line, email, cells)


def _clean(cell: str) -> str:
    """Trim a cell; a line break or other control character inside it becomes a space, so
    merge fields are single-line and safe in a header (runs of white space, a no-break space
    among them, become one space too). ``isprintable`` is the quick test: C-fast, and false for
    every control character."""
    cell = cell.strip()
    return cell if cell.isprintable() else " ".join(_CONTROL.sub(" ", cell).split())


def addresses(
    path: Path, kept: Sequence[str], budget: Budget | None = None
) -> Iterator[tuple[str, str, dict[str, str]] | Refused]:
    """The send path's reader: for each record, (address, display name, the ``kept`` merge
    fields), or Refused (its line and why) when the address is invalid or its merge values are
    over the ``budget``. The rules of ``validated`` and ``Row.name``,
    without a row and a dict of every cell for each of a million records (a property test holds
    the two readers together). It spells out normalize_address's fast path and _clean inline:
    calling them made this loop 15-20% slower."""
    fast, junk = FAST_EMAIL.fullmatch, _NAME_JUNK.search
    surely_fits = budget.surely_fits if budget is not None else None
    at: tuple[int, list[int], list[tuple[str, int]], list[int | None], bool] | None = None
    for line, found, record in _records(path):
        if at is None:
            columns = found.columns
            at = (
                columns.index("email"),
                [i for i, column in enumerate(columns) if column],
                [(name, columns.index(name)) for name in kept if name in columns],
                [columns.index(c) if c in columns else None for c in ("name", "first_name", "last_name")],
                found.derive_first_name and "first_name" in kept,
            )
        email_at, named_at, kept_at, (name_at, first_at, last_at), derive_first = at
        if len(record) < len(columns):
            record += [""] * (len(columns) - len(record))
        raw = record[email_at]
        if found.rules:
            status = found.status(record)
            if status is not None:  # never for a blank record: every rule passes empty cells
                yield Refused(line, status.reason, UNSUBSCRIBED)
                continue
        match = fast(raw.strip())
        if match is not None:
            email = f"{match.group(1)}@{match.group(2).lower()}"
        elif not raw.strip() and not any(record[i].strip() for i in named_at):
            continue  # a blank record, as read_rows sees it
        else:
            raw = _clean(raw)
            try:
                email = normalize_address(raw)
            except ValueError as exc:
                yield Refused(line, f"invalid address {raw!r}: {exc}")
                continue
        # display_name's clean-up also does _clean's, so the name cells are only trimmed here
        name = record[name_at].strip() if name_at is not None else ""
        if not name:
            first = record[first_at].strip() if first_at is not None else ""
            last = record[last_at].strip() if last_at is not None else ""
            name = f"{first} {last}" if first and last else first or last
        values = {}
        length = 2 * len(email)
        for field, i in kept_at:
            value = record[i].strip()
            if not value.isprintable():  # _clean's test, spelled out (see above)
                value = " ".join(_CONTROL.sub(" ", value).split())
            if value:
                values[field] = value
                length += len(value)
        if derive_first and not values.get("first_name") and name_at is not None:
            first = first_word(_clean(record[name_at]))
            if first:
                values["first_name"] = first
                length += len(first)
        if junk(name) or len(name) > MAX_NAME:
            name = display_name(name, None, None)
        if surely_fits is not None and length >= surely_fits:
            assert budget is not None
            size = budget.over(email, values)
            if size is not None:
                yield Refused(line, budget.reason(size, values))
                continue
        yield email, name, values


def scan(
    path: Path, suppressed: Callable[[Sequence[str]], set[str]] | None = None, budget: Budget | None = None
) -> Iterator[Row]:
    """Every record of the list, in order, each with its status and the reason for it."""
    rows = validated(path, budget)
    with _Seen() as seen:
        while chunk := list(islice(rows, CHUNK)):
            yield from _classify(chunk, seen, suppressed)


def _classify(chunk: list[Row], seen: _Seen, suppressed: Callable[[Sequence[str]], set[str]] | None) -> list[Row]:
    """Mark duplicates (against every earlier chunk too) and suppressed addresses."""
    out = chunk
    first_lines = seen.add([(row.key, row.line) for row in out if row.status == VALID])
    blocked = suppressed([row.key for row in out if row.status == VALID]) if suppressed else set()
    for i, row in enumerate(chunk):
        if row.status != VALID:
            continue
        first = first_lines.get(row.key, row.line)
        if first != row.line:
            out[i] = Row(row.line, row.email, row.fields, DUPLICATE, f"duplicate of line {first} ({row.email})")
        elif row.key in blocked:
            out[i] = Row(row.line, row.email, row.fields, SUPPRESSED, "suppressed")
    return out


class _Seen:
    """Addresses seen so far, with the line of their first appearance, in a temporary database."""

    def __enter__(self) -> _Seen:
        self.db = sqlite3.connect("")  # "" = private, on-disk, deleted on close
        self.db.execute("PRAGMA cache_size = -8192")
        self.db.execute("PRAGMA journal_mode = OFF")
        self.db.execute("PRAGMA synchronous = OFF")
        self.db.execute("CREATE TABLE seen (email TEXT PRIMARY KEY, line INTEGER) WITHOUT ROWID")
        return self

    def __exit__(self, *exc: object) -> None:
        self.db.close()

    def add(self, entries: list[tuple[str, int]]) -> dict[str, int]:
        """Record these (key, line) pairs; return the first line of every key among them."""
        first: dict[str, int] = {}
        for key, line in entries:
            first.setdefault(key, line)
        if not first:
            return first
        keys = list(first)
        marks = ",".join("?" * len(keys))
        for key, line in self.db.execute(f"SELECT email, line FROM seen WHERE email IN ({marks})", keys):
            first[key] = line
        with self.db:  # one transaction per chunk, not one per row
            self.db.executemany("INSERT OR IGNORE INTO seen VALUES (?, ?)", first.items())
        return first


def notices(path: Path) -> list[str]:
    """What the user should know about how the file was read (its encoding, a repeated column)."""
    return list(layout(path).notices)


def columns(path: Path) -> frozenset[str]:
    """The list's merge fields, from its header row alone."""
    return layout(path).names


def columns_if_listed(path: Path) -> frozenset[str] | None:
    """The list's columns, or None when there is no list (merge fields are then unchecked)."""
    return columns(path) if path.exists() else None


def sample_row(path: Path, email: str | None = None) -> dict[str, str]:
    """The row used to fill merge fields in a preview: the one for ``email``, else the first valid one."""
    wanted = email.strip().lower() if email else None
    for row in scan(path):
        if row.status == VALID and (wanted is None or row.key == wanted):
            return row.fields
    if email is None:
        raise SubscriberError("the list has no valid subscriber to preview with", path)
    raise SubscriberError(f"no subscriber {email} in the list", path)


@dataclass
class Counts:
    """Tally of a scan; valid, invalid, duplicate and suppressed rows are disjoint."""

    rows: int = 0
    valid: int = 0
    invalid: int = 0
    duplicates: int = 0
    suppressed: int = 0
    unsubscribed: int = 0

    def add(self, row: Row) -> None:
        self.rows += 1
        if row.status == VALID:
            self.valid += 1
        elif row.status == INVALID:
            self.invalid += 1
        elif row.status == DUPLICATE:
            self.duplicates += 1
        elif row.status == UNSUBSCRIBED:
            self.unsubscribed += 1
        else:
            self.suppressed += 1

    @property
    def rejected(self) -> int:
        return self.invalid + self.duplicates

    def __str__(self) -> str:
        return (
            f"{self.rows} rows: {self.valid} valid, {self.invalid} invalid, "
            f"{self.duplicates} duplicate{'s' * (self.duplicates != 1)}, {self.suppressed} suppressed"
            + (f", {self.unsubscribed} unsubscribed (the list says so)" if self.unsubscribed else "")
        )


def any_issue_budget(path: Path, link: Callable[[str], str]) -> Budget:
    """The budget of an issue that uses every column of the list: what `subscribers check`,
    which knows no issue, holds each row to."""
    fields = [MergeField(name, None, 0) for name in sorted(columns(path)) if name != "email"]
    return Budget([*fields, *FOOTER_FIELDS], link)
