"""[consent] require: a send mails only people whose consent is live at its send time; the
rest are skipped and counted by reason ("no consent", "implied consent lapsed")."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from newsletter_cli import store as state
from newsletter_cli import subscribers
from newsletter_cli.config import Config
from newsletter_cli.store import Store
from newsletter_cli.store.consents import verdicts

LAPSED = "implied consent lapsed"


class Gate:
    def __init__(self, store: Store, at: dt.datetime):
        self.store = store
        self.at = at
        self.skipped: Counter[str] = Counter()  # reason -> rows
        self.suppressed = 0  # rows left for the suppressions to count

    def refused(self, keys: Sequence[str]) -> set[str]:
        """Which of these addresses may not be mailed (counted here). A suppressed address is
        left for the suppressions to count: it is skipped as suppressed, not for consent."""
        suppressed = self.store.suppressed_among(keys)
        self.suppressed += sum(key in suppressed for key in keys)
        found = verdicts(self.store, [k for k in keys if k not in suppressed], self.at)
        out = set()
        for key in keys:
            state = found.get(key)
            if state is not None and not state.live:
                out.add(key)
                self.skipped[state.reason] += 1
        return out

    @property
    def lapsed(self) -> int:
        return self.skipped[LAPSED]

    @property
    def no_consent(self) -> int:
        return sum(count for reason, count in self.skipped.items() if reason != LAPSED)


@dataclass(frozen=True)
class Survey:
    """The list's valid, unsuppressed addresses (``considered``), and those a send with
    [consent] require would skip, by reason."""

    considered: int
    no_consent: int
    lapsed: int

    @property
    def skipped(self) -> int:
        return self.no_consent + self.lapsed


def survey(config: Config, path: Path) -> Survey:
    """What [consent] require would do to this list today (`check` and `doctor` report it)."""
    keys = [row.key for row in subscribers.scan(path) if row.status == subscribers.VALID]
    if not state.exists(config):
        return Survey(len(keys), len(keys), 0)
    with Store.for_config(config) as store:
        gate = Gate(store, dt.datetime.now(dt.UTC))
        gate.refused(keys)
    return Survey(len(keys) - gate.suppressed, gate.no_consent, gate.lapsed)
