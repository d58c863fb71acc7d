"""Sending an issue through SendGrid, at most once to each address, and knowing where it stands.

- ``sender``: one send of one issue (plan, confirm, run, record every answer in the journal).
- ``payload``: the envelope and each recipient's part of a request (pure).
- ``reader``, ``workers``, ``processes``: the processes a send starts, on every platform.
- ``dry_run``: everything but the requests; ``test_copy``: one [TEST] copy; ``status``: counts.
"""

from newsletter_cli.sending.sender import (
    Outcome,
    Plan,
    Progress,
    Sender,
    SendError,
    SendOptions,
    parse_send_at,
)

__all__ = ["Outcome", "Plan", "Progress", "SendError", "SendOptions", "Sender", "parse_send_at"]
