"""`newsletter stats`: an issue's figures from SendGrid's events, in words people can read, and
as an html page with their course over time.

A figure is counted in recipients (each at most once), and each is given as a share of those
delivered. Opens by machines (Apple Mail Privacy Protection opens every message it fetches)
are kept apart from opens by people. With no event at all for the issue, the event figures are
unknown, not zero: nothing says whether the webhook was ever set up.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsletter_cli.config import Config
from newsletter_cli.store import events as stored
from newsletter_cli.store.journal import IN_FLIGHT, SENT, UNCERTAIN

NAMES = ("requested", *stored.FIGURES)
CHARTED = ("delivered", "opens", "clicks")
TREND_NOTE = (
    "Opens are a trend, not a fact: some mail apps never load the image that counts an open, and "
    "others (Apple Mail's privacy protection) open every message themselves; those are counted apart."
)


@dataclass(frozen=True)
class Stats:
    slug: str
    counts: dict[str, int | None]  # None: unknown (no event has arrived for the issue)
    uncertain: int  # recipients of batches SendGrid may or may not have taken
    last_event_at: int | None
    timeline: dict[str, list[int]]

    def share(self, name: str) -> float | None:
        count, delivered = self.counts[name], self.counts["delivered"]
        if count is None or not delivered:
            return None
        return count / delivered

    def as_json(self) -> dict[str, Any]:
        last = _iso(self.last_event_at) if self.last_event_at else None
        return {
            "issue": self.slug,
            "figures": {
                name: {"count": self.counts[name], "share_of_delivered": _rounded(self.share(name))} for name in NAMES
            },
            "uncertain": self.uncertain,
            "last_event_at": last,
        }


def stats(config: Config, slug: str) -> Stats:
    from newsletter_cli.sending.status import sent_journal

    with sent_journal(config, slug) as (store, journal):
        sent = journal.counts()
        known = stored.has_events(store, slug)
        counts: dict[str, int | None] = {"requested": sent[SENT] + sent[UNCERTAIN] + sent[IN_FLIGHT]}
        counts |= stored.counts(store, slug) if known else dict.fromkeys(stored.FIGURES)
        last = stored.last_event_at(store, slug)
        timeline = stored.timeline(store, slug, CHARTED) if known else {}
    return Stats(slug, counts, sent[UNCERTAIN] + sent[IN_FLIGHT], last, timeline)


def _rounded(share: float | None) -> float | None:
    return None if share is None else round(share, 4)


def _iso(at: int) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M")


def lines(result: Stats) -> list[str]:
    """The figures as `newsletter stats` prints them."""
    if result.counts["delivered"] is None:
        return [
            f"{result.slug}: {result.counts['requested']:,} requested; no SendGrid event has arrived for this "
            "issue, so delivered, bounced, opened and the rest are unknown (point SendGrid's Event Webhook at "
            "'newsletter serve')"
        ]
    last = _iso(result.last_event_at) if result.last_event_at else "?"
    out = [f"{result.slug}: from SendGrid's events, the last at {last} UTC"]
    for name in NAMES:
        share = result.share(name)
        shown = f"{share:7.1%} of delivered" if share is not None and name != "requested" else ""
        out.append(f"  {name.replace('_', ' '):14} {result.counts[name] or 0:>9,}  {shown}".rstrip())
    if result.uncertain:
        out.append(f"{result.uncertain:,} of those requested are uncertain: SendGrid may or may not have taken them.")
    out.append(TREND_NOTE)
    return out


def write_page(result: Stats, config: Config, out_dir: Path) -> Path:
    """build/<slug>-stats.html: the figures, and a chart of the charted ones over time."""
    from newsletter_cli.web import page_template

    rows = [
        (name.replace("_", " "), result.counts[name], result.share(name) if name != "requested" else None)
        for name in NAMES
    ]
    page = page_template("stats.html.j2").render(
        lang=config.language,
        name=config.name,
        slug=result.slug,
        rows=rows,
        known=result.counts["delivered"] is not None,
        uncertain=result.uncertain,
        last=_iso(result.last_event_at) if result.last_event_at else None,
        chart=chart(result.timeline),
        note=TREND_NOTE,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{result.slug}-stats.html"
    path.write_text(page, encoding="utf-8")
    return path


WIDTH, HEIGHT, PAD = 600, 240, 32
COLOURS = {"delivered": "#0a5c63", "opens": "#b45309", "clicks": "#6d28d9"}


@dataclass(frozen=True)
class Series:
    name: str
    colour: str
    points: str  # SVG polyline points
    total: int


@dataclass(frozen=True)
class Chart:
    series: list[Series]
    start: str
    end: str
    top: int


def chart(timeline: dict[str, list[int]]) -> Chart | None:
    """Each series as a running total of recipients over time, on one scale."""
    stamps = [at for ats in timeline.values() for at in ats]
    if not stamps:
        return None
    first, last = min(stamps), max(stamps)
    span = max(last - first, 1)
    top = max(len(ats) for ats in timeline.values()) or 1
    series = []
    for name, ats in timeline.items():
        points: list[tuple[float, float]] = [(PAD, HEIGHT - PAD)]
        for count, at in enumerate(ats, start=1):
            x = PAD + (at - first) / span * (WIDTH - 2 * PAD)
            y = HEIGHT - PAD - count / top * (HEIGHT - 2 * PAD)
            points.append((round(x, 1), round(y, 1)))
        points.append((WIDTH - PAD, points[-1][1]))
        series.append(Series(name, COLOURS[name], " ".join(f"{x},{y}" for x, y in points), len(ats)))
    return Chart(series, _iso(first), _iso(last), top)
