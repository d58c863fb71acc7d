"""`subscribers export`: everyone a send would consider, the list's valid rows then the
confirmed signups (the list wins for an address on both), suppressed addresses left out."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import TextIO

from newsletter_cli import subscribers
from newsletter_cli.config import Config
from newsletter_cli.store import Store, signups
from newsletter_cli.store.consents import verdicts

COLUMNS = ("email", "first_name", "source", "consent")


class Joining:
    """The confirmed signups a list lacks: every row of the list is ``seen``, then ``rest``
    gives the signups left, less the suppressed (a row of the list wins for its address)."""

    def __init__(self, store: Store):
        self.store = store
        self.left = {s.email: s for s in signups.confirmed(store)}

    def seen(self, key: str) -> None:
        self.left.pop(key, None)

    def rest(self) -> tuple[list[signups.Signup], int]:
        """The signups to add, and how many more were left out as suppressed."""
        suppressed = self.store.suppressed_among(list(self.left))
        return [s for s in self.left.values() if s.email not in suppressed], len(suppressed)


def export(config: Config, list_path: Path, out: TextIO) -> int:
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    now = dt.datetime.now(dt.UTC)
    count = 0
    with Store.for_config(config) as store:
        joining = Joining(store)
        rows: list[tuple[str, str, str]] = []
        if list_path.exists():
            for row in subscribers.scan(list_path, store.suppressed_among):
                if row.status == subscribers.VALID:
                    joining.seen(row.key)
                    rows.append((row.email, row.fields.get("first_name", ""), list_path.name))
        rows += [(s.address, s.first_name, f"form:{s.form}") for s in joining.rest()[0]]
        for start in range(0, len(rows), 500):
            part = rows[start : start + 500]
            found = verdicts(store, [email.lower() for email, _, _ in part], now)
            for email, first_name, source in part:
                state = found[email.lower()]
                writer.writerow((email, first_name, source, "live" if state.live else state.reason))
                count += 1
    return count
