"""subscribers.csv -> rows of merge fields keyed by normalised column names, read as a stream.

(Validation, de-duplication and suppression arrive with the subscribers issue; this module
already owns the header rules so that build and preview read the list the way send will.)
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from newsletter_cli.errors import SubscriberError

EMAIL_ALIASES = {"email_address": "email", "e_mail": "email", "e_mail_address": "email"}


def normalize_column(name: str) -> str:
    """`First Name`, `first-name` and `FIRST_NAME` are one column; Mailchimp's `Email Address` is `email`."""
    key = re.sub(r"[\s\-]+", "_", name.strip().lower())
    return EMAIL_ALIASES.get(key, key)


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line where the record starts, row) for each record; the header is required."""
    with _open(path) as handle:
        reader = csv.reader(handle)
        try:
            columns = _header(reader, path)
            start = reader.line_num + 1
            for record in reader:
                if any(cell.strip() for cell in record):
                    cells = zip(columns, record, strict=False)
                    yield start, {col: cell.strip() for col, cell in cells if col}
                start = reader.line_num + 1
        except UnicodeDecodeError:
            raise SubscriberError("not UTF-8 text", path, reader.line_num + 1) from None
        except csv.Error as exc:
            raise SubscriberError(f"malformed CSV: {exc}", path, reader.line_num) from None


def columns(path: Path) -> frozenset[str]:
    """The list's merge fields, from its header row alone."""
    with _open(path) as handle:
        try:
            return frozenset(c for c in _header(csv.reader(handle), path) if c)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise SubscriberError(f"unreadable header row: {exc}", path, 1) from None


def _open(path: Path) -> TextIO:
    try:
        return path.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise SubscriberError("subscriber list not found", path) from None
    except OSError as exc:
        raise SubscriberError(f"cannot read: {exc.strerror}", path) from None


def _header(reader: Iterator[list[str]], path: Path) -> list[str]:
    header = next(reader, None)
    if header is None:
        raise SubscriberError("empty file: a header row with an 'email' column is required", path, 1)
    names = [normalize_column(name) for name in header]
    if "email" not in names:
        raise SubscriberError("no 'email' column in the header row", path, 1)
    return names


def sample_row(path: Path, email: str | None = None) -> dict[str, str]:
    """The row used to fill merge fields in a preview: the one for ``email``, else the first."""
    for _, row in read_rows(path):
        if email is None or row.get("email", "").lower() == email.strip().lower():
            return row
    if email is None:
        raise SubscriberError("the list has no subscribers to preview with", path)
    raise SubscriberError(f"no subscriber {email} in the list", path)
