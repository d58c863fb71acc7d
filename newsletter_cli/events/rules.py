"""Which of SendGrid's events suppress an address, which are only counted, and which show that
SendGrid accepted a recipient's batch. One table each, so each row can be read and tested.

Soft bounces and blocks are counted, not suppressed: a full mailbox or a receiver's passing
distrust of the sender says nothing lasting about the address (listmonk suppresses them, and
loses readers who were only away). SendGrid keeps its own bounce list and drops later mail
to bounced addresses anyway (a ``dropped`` event, which maps here by its reason).
"""

from __future__ import annotations

from dataclasses import dataclass

# bounce classifications SendGrid gives to temporary trouble (its "bounce_classification")
SOFT = frozenset({"Reputation", "Content", "Technical", "Technical Failure", "Frequency or Volume Too High"})
# a dropped event's reason -> suppression reason; others (spam content, quota) are counted only
DROPPED = {
    "Bounced Address": "bounced",
    "Spam Reporting Address": "spam_report",
    "Unsubscribed Address": "unsubscribed",
    "Invalid": "invalid",
}
# any of these for a recipient of an issue shows that SendGrid took the recipient's batch
ACCEPTED = frozenset({"processed", "delivered", "deferred", "bounce", "dropped"})


@dataclass(frozen=True)
class Event:
    """One event of the webhook, as stored: what the rules and the figures need, no more."""

    id: str  # sg_event_id: a replayed event is the same event
    email: str  # lower-cased
    event: str
    at: int  # SendGrid's unix timestamp
    issue: str | None = None  # the newsletter_issue custom arg; None for mail newsletter did not send
    kind: str | None = None  # bounce: its type (bounce, blocked); dropped: its reason; click: the url
    classification: str | None = None  # bounce: bounce_classification
    machine: bool = False  # an open by a machine (Apple Mail Privacy Protection), sg_machine_open
    group: int | None = None  # asm_group_id of a group unsubscribe or resubscribe
    message_id: str | None = None
    client: str | None = None  # IP address and user agent, kept only when configured


def suppression(event: Event, group_id: int | None) -> str | None:
    """The suppression reason this event calls for, or None (counted, or only logged).

    ``group_id``: the SendGrid unsubscribe group of this newsletter, if it uses one."""
    if event.event == "bounce":
        if event.kind == "blocked" or event.classification in SOFT:
            return None
        return "bounced"
    if event.event == "dropped":
        return DROPPED.get(event.kind or "")
    if event.event == "spamreport":
        return "spam_report"
    if event.event == "unsubscribe":
        return "unsubscribed"
    if event.event == "group_unsubscribe":
        return "unsubscribed" if group_id is not None and event.group == group_id else None
    return None  # group_resubscribe never lifts a suppression by itself: it is stored and logged


def accepted(event: Event) -> bool:
    """Whether the event shows that SendGrid took this recipient's message of the issue."""
    return event.issue is not None and event.event in ACCEPTED
