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


def export(config: Config, list_path: Path, out: TextIO) -> int:
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    now = dt.datetime.now(dt.UTC)
    count = 0
    with Store.for_folder(config.state_dir) as store:
        joined = {s.email: s for s in signups.confirmed(store)}
        rows: list[tuple[str, str, str]] = []
        if list_path.exists():
            for row in subscribers.scan(list_path, store.suppressed_among):
                if row.status == subscribers.VALID:
                    joined.pop(row.key, None)
                    rows.append((row.email, row.fields.get("first_name", ""), list_path.name))
        suppressed = store.suppressed_among(list(joined))
        rows += [(s.address, s.first_name, f"form:{s.form}") for s in joined.values() if s.email not in suppressed]
        for start in range(0, len(rows), 500):
            part = rows[start : start + 500]
            found = verdicts(store, [email.lower() for email, _, _ in part], now)
            for email, first_name, source in part:
                state = found[email.lower()]
                writer.writerow((email, first_name, source, "live" if state.live else state.reason))
                count += 1
    return count
