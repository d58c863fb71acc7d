"""What SendGrid tells us after its 202: the Event Webhook's events.

- ``webhook``: a signed POST body -> verified, parsed events (and why any was skipped).
- ``rules``: which event suppresses an address, and which shows that a batch was accepted.
- ``stats``: an issue's figures (delivered, bounced, opens...) and its html page.

The events themselves are stored by ``store.events``; ``web.events`` is the WSGI endpoint.
"""
