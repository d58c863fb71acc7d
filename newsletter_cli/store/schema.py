"""The state's schema, as numbered migrations for each back end.

Migration N is the same change on SQLite and on PostgreSQL, so a store's schema version means
the same tables whichever holds it (``tests/test_store.py`` compares them). PostgreSQL's differ
only where the dialects do: no ``WITHOUT ROWID``, identity columns for SQLite's implicit rowid,
64-bit unix times, and a trigger function for the append-only ledger.
"""

from __future__ import annotations

REASONS = ("unsubscribed", "bounced", "spam_report", "invalid", "manual")

SQLITE: tuple[str, ...] = (
    f"""
    CREATE TABLE suppressions (
        email TEXT PRIMARY KEY,          -- lower-cased address
        reason TEXT NOT NULL CHECK (reason IN ({", ".join(repr(r) for r in REASONS)})),
        source TEXT NOT NULL,            -- who recorded it: cli, import:FILE, endpoint, sendgrid:LIST
        created_at TEXT NOT NULL         -- ISO 8601, UTC
    ) WITHOUT ROWID;
    """,
    """
    CREATE TABLE sends (
        slug TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        created_at TEXT NOT NULL,
        invalid INTEGER NOT NULL DEFAULT 0,      -- rows skipped by the latest run, by reason
        duplicate INTEGER NOT NULL DEFAULT 0,
        suppressed INTEGER NOT NULL DEFAULT 0,
        last_batch_at TEXT
    );
    CREATE TABLE recipients (
        seq INTEGER PRIMARY KEY,                 -- order of sending; a batch's rows sit together
        slug TEXT NOT NULL,
        email TEXT NOT NULL,                     -- lower-cased: one row per address and issue
        batch INTEGER,                           -- NULL while pending; then its batch holds its state
        run INTEGER NOT NULL,                    -- the run that last found it in the list
        data TEXT NOT NULL                       -- JSON: address, name, merge field values
    );
    CREATE UNIQUE INDEX recipients_by_email ON recipients (slug, email);
    CREATE INDEX recipients_pending ON recipients (slug, seq) WHERE batch IS NULL;
    CREATE TABLE batches (
        slug TEXT NOT NULL,
        id INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('in_flight', 'sent', 'failed', 'uncertain', 'requeued')),
        size INTEGER NOT NULL,
        first_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        message_id TEXT,
        error TEXT,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        PRIMARY KEY (slug, id)
    );
    """,
    # Pending rows are found by walking seq from a cursor (journal.py): keeping this index slowed
    # every row written into the journal.
    "DROP INDEX recipients_pending;",
    # Which list each run read (a resume from another list must not drop anyone silently), what
    # a declined run must restore, the list's row count for status, and the unsubscribes the
    # endpoint still has to tell SendGrid about.
    """
    CREATE TABLE runs (
        slug TEXT NOT NULL,
        run INTEGER NOT NULL,
        list TEXT NOT NULL,                      -- the list's absolute path
        first_seq INTEGER NOT NULL,              -- rows this run created have a larger seq
        started_at TEXT NOT NULL,
        PRIMARY KEY (slug, run)
    );
    ALTER TABLE recipients ADD COLUMN prev_run INTEGER;   -- run before this run listed it again
    ALTER TABLE sends ADD COLUMN run INTEGER;             -- the latest run whose plan was made
    ALTER TABLE sends ADD COLUMN listed_rows INTEGER;     -- rows of that run's list
    CREATE TABLE pushes (
        email TEXT PRIMARY KEY,                  -- an unsubscribe SendGrid has not yet been told of
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    ) WITHOUT ROWID;
    """,
    # rows a platform's export marks as not subscribed, skipped by the latest run
    "ALTER TABLE sends ADD COLUMN unsubscribed INTEGER NOT NULL DEFAULT 0;",
    # SendGrid's Event Webhook (store/events.py), how an uncertain batch was settled by it, and
    # the batch id of a scheduled send (to cancel it)
    """
    CREATE TABLE events (
        id TEXT PRIMARY KEY,                     -- sg_event_id: a replayed event is stored once
        slug TEXT,                               -- the newsletter_issue custom arg; NULL: not ours
        email TEXT NOT NULL,                     -- lower-cased
        event TEXT NOT NULL,
        kind TEXT,                               -- bounce: type; dropped: reason; click: url
        classification TEXT,                     -- bounce: bounce_classification
        machine INTEGER NOT NULL DEFAULT 0,      -- sg_machine_open: an open by a machine
        grp INTEGER,                             -- asm_group_id of a group (un)subscribe
        at INTEGER NOT NULL,                     -- SendGrid's unix time
        message_id TEXT,
        client TEXT,                             -- IP and user agent, only with [events] keep_client
        received_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX events_by_issue ON events (slug, event, email);
    ALTER TABLE batches ADD COLUMN settled TEXT; -- the event that showed an uncertain batch accepted
    ALTER TABLE sends ADD COLUMN schedule_batch TEXT; -- SendGrid's batch id of a scheduled send
    ALTER TABLE sends ADD COLUMN send_at TEXT;
    ALTER TABLE sends ADD COLUMN cancelled_at TEXT;
    """,
    # the consent ledger (store/consents.py): append-only, so the history a regulator may ask
    # for can be trusted
    """
    CREATE TABLE consents (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL,                     -- lower-cased
        kind TEXT NOT NULL CHECK (kind IN ('express', 'implied', 'withdrawn')),
        basis TEXT,                              -- implied: purchase, inquiry, published, ...
        method TEXT NOT NULL,                    -- web double opt-in, paper form, ...; how withdrawn
        source TEXT NOT NULL,                    -- a form, a file, a suppression's source
        wording TEXT,                            -- SHA-256 of the words consented to (wordings)
        occurred_at TEXT NOT NULL,               -- when given or withdrawn (ISO 8601, UTC)
        confirmed_at TEXT,
        expires_at TEXT,                         -- implied consent's lapse
        recorded_by TEXT NOT NULL,
        evidence TEXT,                           -- a file path or URI
        ip TEXT,                                 -- only when configured
        recorded_at TEXT NOT NULL
    );
    CREATE INDEX consents_by_email ON consents (email, id);
    CREATE TRIGGER consents_never_change BEFORE UPDATE ON consents
        BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only'); END;
    CREATE TRIGGER consents_never_go BEFORE DELETE ON consents
        BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only'); END;
    """,
    # rows the latest run skipped for want of live consent ([consent] require)
    """
    ALTER TABLE sends ADD COLUMN no_consent INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sends ADD COLUMN consent_lapsed INTEGER NOT NULL DEFAULT 0;
    """,
    # signups through the form (store/signups.py): pending until confirmed, never mailed before
    """
    CREATE TABLE signups (
        email TEXT PRIMARY KEY,                  -- lower-cased
        address TEXT NOT NULL,                   -- as typed, cleaned
        first_name TEXT NOT NULL DEFAULT '',
        form TEXT NOT NULL,
        wording TEXT NOT NULL,                   -- SHA-256 of the checkbox's words
        status TEXT NOT NULL CHECK (status IN ('pending', 'confirmed')),
        requested_at TEXT NOT NULL,
        confirmed_at TEXT,
        ip TEXT
    ) WITHOUT ROWID;
    CREATE TABLE confirmation_mails (
        email TEXT NOT NULL,
        sent_at TEXT NOT NULL
    );
    CREATE INDEX confirmation_mails_by_email ON confirmation_mails (email, sent_at);
    """,
    # a lease on each in-flight batch, renewed by the send that took it (only an expired one is
    # uncertain: another machine may be mid-batch), who holds it, and the words consented to, in
    # the store so that every machine sharing it has them
    """
    ALTER TABLE batches ADD COLUMN lease_until TEXT;
    ALTER TABLE batches ADD COLUMN holder TEXT;
    CREATE TABLE wordings (
        hash TEXT PRIMARY KEY,                   -- SHA-256 of the text, as consents.wording names it
        text TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
)


_APPEND_ONLY_PG = """
    CREATE FUNCTION consents_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'the consent ledger is append-only'; END $$;
    CREATE TRIGGER consents_never_change BEFORE UPDATE OR DELETE ON consents
        FOR EACH ROW EXECUTE FUNCTION consents_append_only();
    CREATE TRIGGER consents_never_emptied BEFORE TRUNCATE ON consents
        FOR EACH STATEMENT EXECUTE FUNCTION consents_append_only();
"""


def _postgresql(number: int, sql: str) -> str:
    """SQLite's migration ``number`` in PostgreSQL's words."""
    sql = sql.replace(") WITHOUT ROWID;", ");")
    if number == 6:
        sql = sql.replace("at INTEGER NOT NULL", "at BIGINT NOT NULL")
    if number == 7:
        sql = sql.replace("id INTEGER PRIMARY KEY", "id INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
        sql = sql[: sql.index("CREATE TRIGGER")] + _APPEND_ONLY_PG
    if number == 9:  # SQLite's implicit rowid, made explicit under the same name
        sql = sql.replace(
            "CREATE TABLE confirmation_mails (",
            "CREATE TABLE confirmation_mails (\n        rowid INTEGER GENERATED BY DEFAULT AS IDENTITY,",
        )
    return sql


POSTGRESQL: tuple[str, ...] = tuple(_postgresql(n, sql) for n, sql in enumerate(SQLITE, start=1))
