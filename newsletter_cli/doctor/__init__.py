"""`newsletter doctor`: whether mail from this folder will arrive, checked before the first send.

- ``finding``: what a check reports (ok, warning, error) and why.
- ``dns``: SPF, DMARC (with the Public Suffix List's organizational domain) and the DKIM
  records SendGrid's domain authentication lists, through dnspython.
- ``sendgrid``: the sender's domain authenticated, the key's scopes, the account's tracking.
- ``local``: the unsubscribe endpoint, and the share of the list with live consent.

A check that cannot be made (no network, no key) is a warning saying so, never an error.
"""
