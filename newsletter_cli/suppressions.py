"""Filling the suppression store: by hand, from a CSV export, and from SendGrid's lists."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from newsletter_cli.errors import NewsletterError
from newsletter_cli.listfile import layout
from newsletter_cli.sendgrid_api import SUPPRESSION_LISTS, SendGrid, SendGridError
from newsletter_cli.store import Store, Suppression
from newsletter_cli.subscribers import normalize_address, read_rows


@dataclass(frozen=True)
class Added:
    added: int
    already: int
    invalid: int = 0
    kept: int = 0  # rows a platform's export marks as still subscribed: not suppressed


def add(store: Store, emails: Iterable[str], reason: str, source: str) -> Added:
    """Suppress addresses typed by hand; any invalid one stops the whole call before writing."""
    clean = []
    for email in emails:
        try:
            clean.append(normalize_address(email))
        except ValueError as exc:
            raise NewsletterError(f"invalid address {email!r}: {exc}") from None
    added = store.suppress(Suppression(e, reason, source) for e in clean)
    return Added(added, len(set(e.lower() for e in clean)) - added)


def import_csv(store: Store, path: Path, reason: str) -> Added:
    """Suppress the addresses of a CSV with an email column (an unsubscribe export, say). A
    platform's export of its whole audience says who left in its status columns (listfile):
    then only those rows are suppressed, each with the reason its status gives (a bounce, a
    complaint), and the others, still subscribed there, are counted as ``kept``."""
    invalid = kept = total = 0
    has_status = bool(layout(path).rules)

    def entries() -> Iterable[Suppression]:
        nonlocal invalid, kept, total
        for _, cells, status in read_rows(path):
            if has_status and status is None:
                kept += 1
                continue
            try:
                email = normalize_address(cells.get("email", ""))
            except ValueError:
                invalid += 1
                continue
            total += 1
            yield Suppression(email, status.kind if status else reason, f"import:{path.name}")

    added = store.suppress(entries())
    return Added(added, total - added, invalid, kept)


def sync(store: Store, api: SendGrid, group_id: int | None) -> dict[str, int]:
    """Pull SendGrid's suppressions into the store; returns how many new ones came from each list."""
    learned: dict[str, int] = {}
    for path, reason in SUPPRESSION_LISTS:
        name = path.rsplit("/", 1)[-1]
        emails = list(api.suppression_list(path))  # every page first: no write lock held across requests
        learned[name] = store.suppress(Suppression(e, reason, f"sendgrid:{name}") for e in emails)
    if group_id is not None:
        emails = api.group_suppressions(group_id)
        learned[f"group {group_id}"] = store.suppress(
            Suppression(e, "unsubscribed", f"sendgrid:group {group_id}") for e in emails
        )
    return learned


def push_pending(store: Store, api: SendGrid) -> int:
    """Tell SendGrid of the unsubscribes the endpoint recorded but could not yet pass on (its
    global suppressions), oldest first; returns how many it took. A failure keeps them for the
    next try and is raised."""
    told = 0
    while emails := store.pushes(PUSH_BATCH):
        try:
            api.add_global_suppressions(emails)
        except SendGridError as exc:
            store.push_failed(emails, exc.message)
            raise
        store.pushed(emails)
        told += len(emails)
    return told


PUSH_BATCH = 1000
