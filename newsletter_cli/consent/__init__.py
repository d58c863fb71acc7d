"""Consent that answers CASL: who agreed to be mailed, how, when, to which words, and until when.

- ``ledger``: the kinds of consent and their bases, when implied consent lapses, whether a
  person's records add up to live consent, and each record in plain words.
- ``importer``: consent records from a CSV (a paper sign-up sheet typed in, an old platform's
  export), every row checked before any is written.

The records themselves live in ``store.consents``, append-only.
"""
