import time
from concurrent.futures import ThreadPoolExecutor

from newsletter_cli.store import Store, Suppression
from newsletter_cli.store.journal import (
    FAILED,
    IN_FLIGHT,
    PENDING,
    SENT,
    UNCERTAIN,
    Journal,
    Recipient,
    decode,
    record,
)


def test_journal_records_round_trip_even_with_separators_in_cells():
    assert decode(record("a@example.com", "Ann", {"first_name": "Ann", "city": "Toronto, ON"})) == Recipient(
        "a@example.com", "Ann", {"first_name": "Ann", "city": "Toronto, ON"}
    )
    odd = record("a@example.com", "A\x1fB", {"note": "x\x1ey\x1fz"})
    assert decode(odd) == Recipient("a@example.com", "A B", {"note": "x y z"})
    assert decode(record("a@example.com", "", {})) == Recipient("a@example.com", "", {})


def journal_with(where, addresses: list[str]) -> tuple[Store, Journal, int]:
    store = Store(where)
    journal = Journal(store, "issue")
    run = journal.start_run("Subject")
    journal.add([[(a, record(a, "", {})) for a in addresses]], run)
    journal.settle(run)
    return store, journal, run


def emails(journal: Journal, batch) -> list[str]:
    return [decode(r).email for r in journal.records(batch)]


def test_batches_take_pending_recipients_in_list_order_and_a_reader_sees_their_records(where):
    store, journal, _ = journal_with(where, [f"u{i}@example.com" for i in range(5)])
    first, second = journal.next_batch(3), journal.next_batch(3)
    assert journal.next_batch(3) is None
    reader = Journal(Store(store.where, readonly=True), "issue")
    assert emails(reader, first) == ["u0@example.com", "u1@example.com", "u2@example.com"]
    assert (second.size, emails(reader, second)) == (2, ["u3@example.com", "u4@example.com"])
    assert journal.counts() == {SENT: 0, PENDING: 0, FAILED: 0, UNCERTAIN: 0, IN_FLIGHT: 5}
    journal.finish(first.id, SENT, message_id="m1")
    journal.release(second.id)
    assert journal.counts() == {SENT: 3, PENDING: 2, FAILED: 0, UNCERTAIN: 0, IN_FLIGHT: 0}
    again = journal.next_batch(3)
    assert emails(journal, again) == ["u3@example.com", "u4@example.com"]
    journal.finish(again.id, FAILED, error="bad request")
    assert journal.counts() == {SENT: 3, PENDING: 0, FAILED: 2, UNCERTAIN: 0, IN_FLIGHT: 0}
    assert journal.requeue(FAILED) == 2
    assert journal.counts() == {SENT: 3, PENDING: 2, FAILED: 0, UNCERTAIN: 0, IN_FLIGHT: 0}
    assert emails(journal, journal.next_batch(3)) == ["u3@example.com", "u4@example.com"]


def test_an_unsubscribe_written_during_a_send_is_honoured_by_the_next_batch(where):
    store, journal, _ = journal_with(where, [f"u{i}@example.com" for i in range(6)])
    first = journal.next_batch(2)
    with Store(store.where) as endpoint:  # another connection, as the unsubscribe endpoint is
        endpoint.suppress([Suppression("U3@example.com", "unsubscribed", "endpoint")])
    second = journal.next_batch(2)
    assert emails(journal, first) == ["u0@example.com", "u1@example.com"]
    assert emails(journal, second) == ["u2@example.com", "u4@example.com"]
    with Store(store.where) as endpoint:
        endpoint.suppress([Suppression("u5@example.com", "unsubscribed", "endpoint")])
    assert journal.next_batch(2) is None
    assert journal.counts()[PENDING] == 0


def test_a_suppression_already_known_when_planning_is_settled_before_any_batch(where):
    store = Store(where)
    store.suppress([Suppression("u1@example.com", "bounced", "cli")])
    journal = Journal(store, "issue")
    run = journal.start_run("Subject")
    journal.add([[(a, record(a, "", {})) for a in ("u0@example.com", "u1@example.com")]], run)
    assert journal.settle(run) == (1, 0)
    assert emails(journal, journal.next_batch(5)) == ["u0@example.com"]


def test_a_list_written_in_several_steps_is_deduplicated_across_them(where):
    store = Store(where)
    journal = Journal(store, "issue")
    chunks = [[(a, record(a, "", {})) for a in pair] for pair in (["a@x.org", "b@x.org"], ["a@x.org", "c@x.org"])]
    assert journal.add(chunks, journal.start_run("Subject")) == (3, 3)
    journal.finish(journal.next_batch(1).id, SENT)
    more = [[(a, record(a, "", {})) for a in ("b@x.org", "d@x.org", "a@x.org")]]
    run = journal.start_run("Subject")
    assert journal.add(more, run) == (1, 3)  # d is new; a was sent; c has left the list
    journal.settle(run)
    assert [decode(r).email for r in journal.records(journal.next_batch(5))] == ["b@x.org", "d@x.org"]


def test_no_write_transaction_is_open_while_the_list_is_read(where):
    """A suppression sync (or the unsubscribe endpoint) writing while a slow list reader is
    waited for once ran into 'database is locked' after 10 s."""
    store = Store(where)
    journal = Journal(store, "issue")
    run = journal.start_run("Subject")
    other = Store(where)
    other.db.execute("PRAGMA busy_timeout=100" if other.db.dialect == "sqlite" else "SET lock_timeout = '100ms'")
    written = []

    def slow_reader():
        for n in range(3):
            yield [(f"u{n}@example.com", record(f"u{n}@example.com", "", {}))]
            other.suppress([Suppression(f"x{n}@example.com", "bounced", "sendgrid:bounces")])  # would wait
            written.append(n)

    assert journal.add(slow_reader(), run) == (3, 3)
    assert written == [0, 1, 2]


def test_a_declined_run_restores_what_it_changed(where):
    _, journal, first_run = journal_with(where, ["a@example.com", "b@example.com"])
    journal.record_skips(first_run, 2, 0, 0, 0)
    second = journal.start_run("Subject", "/lists/other.csv")
    journal.add([[(a, record(a, "", {})) for a in ("b@example.com", "c@example.com")]], second)
    assert journal.stale(second) == {"": 1}  # a@ came from a run that recorded no list
    journal.discard(second)
    assert journal.counts()[PENDING] == 2
    assert sorted(journal.addresses_with(PENDING)) == ["a@example.com", "b@example.com"]
    assert journal.summary()["not_on_list"] == 0, "b@ belongs to the first run's list again"


def test_a_batch_in_flight_whose_lease_ends_counts_as_uncertain_until_its_answer_comes(where):
    _, journal, _ = journal_with(where, ["a@example.com", "b@example.com", "c@example.com"])
    journal.lease = 0.05
    lapsed = journal.next_batch(1)
    journal.lease = 60
    live = journal.next_batch(1)
    time.sleep(0.1)  # the lease is a wall-clock time in the store, shared by every machine
    assert journal.counts() == {SENT: 0, PENDING: 1, FAILED: 0, UNCERTAIN: 1, IN_FLIGHT: 1}
    assert [b.id for b in journal.batches_with(UNCERTAIN)] == [lapsed.id]
    assert list(journal.addresses_with(UNCERTAIN)) == ["a@example.com"]
    journal.finish(lapsed.id, SENT, message_id="m1")  # the answer came after all: it is what happened
    assert journal.counts() == {SENT: 1, PENDING: 1, FAILED: 0, UNCERTAIN: 0, IN_FLIGHT: 1}
    assert journal.live_leases()[0] is not None and live.id not in [b.id for b in journal.batches_with(UNCERTAIN)]


def test_a_renewed_lease_keeps_a_slow_batch_in_flight(where):
    _, journal, _ = journal_with(where, ["a@example.com"])
    journal.lease = 0.3
    journal.next_batch(1)
    for _ in range(4):
        time.sleep(0.1)
        journal.renew()
    assert journal.counts()[IN_FLIGHT] == 1


def test_a_new_run_takes_a_dead_sends_batches_as_uncertain_only_when_it_can_know_it_is_dead(where):
    """SQLite's file lock dies with its process, so a run holding it knows every batch left in
    flight is orphaned; a server's lock dies with a session, which a machine cut off from the
    network outlives while it may still be posting: there only an ended lease counts."""
    store, journal, _ = journal_with(where, ["a@example.com", "b@example.com"])
    journal.next_batch(1)
    other = Journal(Store(store.where), "issue")  # a later send, elsewhere
    other.start_run("Subject")
    expected = UNCERTAIN if store.db.lock_proves_exit else IN_FLIGHT
    assert other.counts()[expected] == 1
    journal.lease = 0.01
    journal.renew()
    time.sleep(0.05)
    other.start_run("Subject")
    assert other.counts()[UNCERTAIN] == 1 and other.counts()[IN_FLIGHT] == 0


def test_an_answer_for_a_batch_queued_again_meanwhile_leaves_the_newer_record_alone(where):
    _, journal, _ = journal_with(where, ["a@example.com"])
    journal.lease = 0.01
    batch = journal.next_batch(1)
    time.sleep(0.05)
    journal.start_run("Subject")  # lease ended: uncertain
    assert journal.requeue(UNCERTAIN) == 1  # --resend-uncertain
    journal.finish(batch.id, SENT, message_id="late")
    assert journal.counts() == {SENT: 0, PENDING: 1, FAILED: 0, UNCERTAIN: 0, IN_FLIGHT: 0}


def test_senders_claiming_batches_at_once_never_share_a_recipient(where):
    """Three connections claiming from one issue's pending rows (as senders on three machines
    would): every row is claimed, none twice."""
    store, _, _ = journal_with(where, [f"u{i}@example.com" for i in range(3000)])

    def claim(_: int) -> list[str]:
        with Store(store.where) as mine:
            journal = Journal(mine, "issue")
            claimed: list[str] = []
            while (batch := journal.next_batch(37)) is not None:
                claimed.extend(decode(r).email for r in journal.records(batch))
            return claimed

    with ThreadPoolExecutor(3) as senders:  # a StoreError in any is raised here
        everyone = [email for part in senders.map(claim, range(3)) for email in part]
    assert len(everyone) == len(set(everyone)) == 3000


def test_a_cell_with_a_nul_byte_is_journaled_with_a_space_on_either_back_end(where):
    """PostgreSQL's text holds no NUL; a list exported by a broken tool may."""
    _, journal, _ = journal_with(where, [])
    run = journal.start_run("Subject")
    journal.add([[("a@example.com", record("a@example.com", "A\x00B", {"city": "To\x00ronto"}))]], run)
    [data] = journal.records(journal.next_batch(1))
    assert decode(data) == Recipient("a@example.com", "A B", {"city": "To ronto"})
