"""A subscriber list file as platforms and Excel write it: its encoding, its delimiter, its
header, and what its status columns say about each row.

Every reader of a list (``subscribers``: `subscribers check`, `check`, `send`, the preview and
`unsubscribes import`) goes through ``open_list``, so all of them read a file the same way:

- UTF-8 with or without a BOM, UTF-16 with a BOM (Excel's "Unicode text"), and Windows-1252
  (Excel's "CSV" on Windows), which a file that is not valid UTF-8 is read as, with a notice;
- `,`, `;` or tab, taken from Excel's ``sep=`` first line or from the header row;
- Python's csv rules in strict mode, and a quote that opens a cell and swallows further rows is
  an error naming the line where it opens;
- two columns that read as one name: an error when that name decides who is mailed (the
  address, the name, a status column), else the first is read and the user told;
- status columns of Mailchimp, Substack, Ghost, Buttondown and Kit exports, and a generic
  ``status``/``subscribed`` column: a row they mark as not subscribed is never mailed, and its
  reason names the column.
"""

from __future__ import annotations

import codecs
import csv
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from newsletter_cli.errors import SubscriberError

EMAIL_ALIASES = {"email_address": "email", "e_mail": "email", "e_mail_address": "email"}
DELIMITERS = (",", ";", "\t")
BLOCK = 1 << 20
SEP_LINE = re.compile(r"^sep=(.)\r?\n?$")
IDENTITY = ("email", "name", "first_name", "last_name")

TRUE = {"true", "yes", "y", "1", "t"}
FALSE = {"false", "no", "n", "0", "f"}
# Buttondown's subscriber types (buttondown/openapi, enums.json): mailed, and not mailed
BUTTONDOWN_ON = {"regular", "premium", "trialed", "gifted", "unpaid", "churning", "paused", "past_due"}
BUTTONDOWN_OFF = {"unactivated", "unsubscribed", "spammy", "removed"}
# Kit's subscriber states (its v4 API)
KIT_ON = {"active"}
KIT_OFF = {"cancelled", "bounced", "complained", "inactive"}
GENERIC_ON = {"subscribed", "active", "confirmed", "opted_in", "opted in", "yes", "true", "1"}
GENERIC_OFF = {
    "unsubscribed",
    "bounced",
    "cleaned",
    "cancelled",
    "canceled",
    "complained",
    "inactive",
    "deleted",
    "removed",
    "spam",
    "spammy",
    "pending",
    "unconfirmed",
    "unactivated",
    "false",
    "no",
    "0",
}
# what `unsubscribes import` records a row as
BOUNCED, COMPLAINED, LEFT = "bounced", "spam_report", "unsubscribed"


@dataclass(frozen=True)
class Status:
    """Why a row is not to be mailed: the message names the column; ``kind`` is what a
    suppression of it records."""

    reason: str
    kind: str = LEFT


Rule = Callable[[str], Status | None]


def _flag(column: str, values: set[str], platform: str) -> Rule:
    return lambda v: Status(f"not subscribed: {column} is {v} ({platform})") if v.lower() in values else None


def _set(column: str, platform: str, kind: str = LEFT) -> Rule:
    return lambda v: Status(f"not subscribed: {column} is set ({platform})", kind) if v else None


def _states(column: str, on: set[str], off: set[str], platform: str) -> Rule:
    def rule(value: str) -> Status | None:
        lowered = value.lower()
        if lowered in off:
            kind = BOUNCED if lowered in ("bounced", "cleaned") else COMPLAINED if lowered == "complained" else LEFT
            return Status(f"not subscribed: {column} is {value}{f' ({platform})' if platform else ''}", kind)
        if lowered in on or not value:
            return None
        return Status(f"unknown {column} {value!r}: not mailed, since it may mean they left")

    return rule


# normalised column name -> rule; the README's table of what each platform's export says
STATUS_RULES: dict[str, Rule] = {
    "email_disabled": _flag("email_disabled", TRUE, "Substack"),
    "subscribed_to_emails": _flag("subscribed_to_emails", FALSE, "Ghost"),
    "deleted_at": _set("deleted_at", "Ghost"),
    "subscriber_type": _states("subscriber_type", BUTTONDOWN_ON, BUTTONDOWN_OFF, "Buttondown"),
    "state": _states("state", KIT_ON, KIT_OFF, "Kit"),
    "unsub_time": _set("UNSUB_TIME", "Mailchimp's unsubscribed export"),
    "clean_time": _set("CLEAN_TIME", "Mailchimp's cleaned export: it bounced", BOUNCED),
    "status": _states("status", GENERIC_ON | KIT_ON, GENERIC_OFF, ""),
    "subscribed": _states("subscribed", TRUE, FALSE, ""),
}


@dataclass
class Layout:
    """How one list file is written, found once from its start."""

    path: Path
    encoding: str
    delimiter: str
    sep_line: bool  # Excel's "sep=;" first line
    columns: list[str]  # normalised; "" for a column not read (unnamed, or a repeated name)
    notices: list[str] = field(default_factory=list)
    rules: list[tuple[int, Rule]] = field(default_factory=list)
    derive_first_name: bool = False  # a name column and no first-name column

    def status(self, record: list[str]) -> Status | None:
        for index, rule in self.rules:
            if index < len(record):
                found = rule(record[index].strip())
                if found is not None:
                    return found
        return None

    @property
    def names(self) -> frozenset[str]:
        """The merge fields the list offers."""
        named = {c for c in self.columns if c}
        return frozenset(named | {"first_name"} if self.derive_first_name else named)


def normalize_column(name: str) -> str:
    """`First Name`, `first-name` and `FIRST_NAME` are one column; Mailchimp's `Email Address` is `email`."""
    key = re.sub(r"[\s\-]+", "_", name.strip().lower())
    return EMAIL_ALIASES.get(key, key)


def layout(path: Path) -> Layout:
    """Read the file's start (and, for the encoding, check it whole) to know how to read it;
    remembered while the file is unchanged, since every reader asks."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise SubscriberError("subscriber list not found", path) from None
    except OSError as exc:
        raise SubscriberError(f"cannot read: {exc.strerror}", path) from None
    return _layout(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _layout(path: Path, mtime: int, size: int) -> Layout:
    encoding, notice = _encoding(path)
    with _text(path, encoding) as handle:
        first = handle.readline()
        sep = SEP_LINE.match(first)
        header_line = handle.readline() if sep else first
    if not header_line.strip():
        raise SubscriberError("empty file: a header row with an 'email' column is required", path, 1)
    header_at = 2 if sep else 1
    delimiter = sep.group(1) if sep else _delimiter(header_line, path, header_at)
    header = _parse_header(header_line, delimiter, path, header_at)
    names = [normalize_column(name) for name in header]
    if "email" not in names:
        found = ", ".join(repr(h) for h in header if h.strip()) or "none"
        raise SubscriberError(f"no email column in the header row (columns found: {found})", path, header_at)
    result = Layout(path, encoding, delimiter, bool(sep), [], [notice] if notice else [])
    seen: dict[str, int] = {}
    for index, (written, name) in enumerate(zip(header, names, strict=True)):
        if name and name in seen:
            first_at = seen[name]
            if name in IDENTITY or name in STATUS_RULES:
                raise SubscriberError(
                    f"columns {first_at + 1} {header[first_at]!r} and {index + 1} {written!r} both read as "
                    f"{name!r}: keep one, so that every command reads the same one",
                    path,
                    header_at,
                )
            result.notices.append(
                f"column {index + 1} {written!r} repeats the name of column {first_at + 1}; only the first is read"
            )
            name = ""
        if name:
            seen[name] = index
        result.columns.append(name)
    result.rules = [(seen[name], rule) for name, rule in STATUS_RULES.items() if name in seen]
    result.derive_first_name = "first_name" not in seen and "name" in seen
    return result


def records(found: Layout) -> Iterator[tuple[int, list[str]]]:
    """(physical line where it starts, cells) for every record after the header. A CSV error is
    one line naming the line; so is a quoted cell that runs on over what look like further rows
    (a stray quote), at the line where it opens."""
    path = found.path
    with _text(path, found.encoding) as handle:
        reader = csv.reader(handle, delimiter=found.delimiter, strict=True)
        skipped = 0
        if found.sep_line:
            handle.readline()
            skipped = 1  # the csv reader does not count it
        start = 1 + skipped
        try:
            next(reader, None)  # the header
            start = reader.line_num + skipped + 1
            for record in reader:
                end = reader.line_num + skipped
                if end > start:
                    _refuse_swallowed_rows(record, start, end, path)
                yield start, record
                start = end + 1
        except UnicodeDecodeError as exc:
            raise SubscriberError(f"cannot be read as {found.encoding}: {exc.reason}", path, start) from None
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                raise SubscriberError(
                    "a quote opens a cell here and is never closed: it would swallow the rest of the file",
                    path,
                    start,
                ) from None
            raise SubscriberError(f"malformed CSV: {exc}", path, reader.line_num + skipped) from None


def _refuse_swallowed_rows(record: list[str], start: int, end: int, path: Path) -> None:
    """A cell with a line break is fine (a postal address, a note), unless what follows the
    break looks like rows of the list: an address each. Then a quote was left open."""
    for cell in record:
        if "\n" not in cell and "\r" not in cell:
            continue
        later = cell.splitlines()[1:]
        if any("@" in line for line in later):
            raise SubscriberError(
                f"a quote opens a cell here that runs on to line {end} and takes in what look like other rows "
                "(an address on a line of its own): close the quote, or remove it",
                path,
                start,
            )


def _encoding(path: Path) -> tuple[str, str | None]:
    """The file's encoding and, when it is not UTF-8, a one-line notice saying so."""
    try:
        with path.open("rb") as handle:
            start = handle.read(4)
    except FileNotFoundError:
        raise SubscriberError("subscriber list not found", path) from None
    except OSError as exc:
        raise SubscriberError(f"cannot read: {exc.strerror}", path) from None
    if start.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", None
    if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", None
    bad = _first_undecodable(path, "utf-8")
    if bad is None:
        return "utf-8", None
    line, byte = bad
    still_bad = _first_undecodable(path, "cp1252")
    if still_bad is not None:
        raise SubscriberError(
            f"neither UTF-8 nor Windows-1252 text (byte 0x{still_bad[1]:02x}): save it as CSV UTF-8 from Excel",
            path,
            still_bad[0],
        )
    return "cp1252", (
        f"{path.name} is not UTF-8 (line {line} has byte 0x{byte:02x}): read as Windows-1252, "
        "as Excel on Windows saves CSV; check the names with accents"
    )


def _first_undecodable(path: Path, encoding: str) -> tuple[int, int] | None:
    """(physical line, byte) of the first byte that ``encoding`` cannot decode, else None."""
    decoder = codecs.getincrementaldecoder(encoding)()
    lines = 1
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                return lines + block.count(b"\n", 0, exc.start), block[exc.start]
            lines += block.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            return lines, exc.object[exc.start]
    return None


def _text(path: Path, encoding: str) -> TextIO:
    return path.open(newline="", encoding=encoding)


def _delimiter(header_line: str, path: Path, line: int) -> str:
    """The delimiter whose split of the header has an email column, the most columns winning."""
    best: tuple[int, str] | None = None
    for delimiter in DELIMITERS:
        try:
            names = [normalize_column(n) for n in _parse_header(header_line, delimiter, path, line)]
        except SubscriberError:
            continue
        if "email" in names and (best is None or len(names) > best[0]):
            best = (len(names), delimiter)
    return best[1] if best else ","


def _parse_header(header_line: str, delimiter: str, path: Path, line: int) -> list[str]:
    try:
        return next(csv.reader([header_line], delimiter=delimiter, strict=True), [])
    except csv.Error as exc:
        raise SubscriberError(f"unreadable header row: {exc}", path, line) from None
