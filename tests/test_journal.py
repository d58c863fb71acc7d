from newsletter_cli.journal import Recipient, decode, record


def test_journal_records_round_trip_even_with_separators_in_cells():
    assert decode(record("a@example.com", "Ann", {"first_name": "Ann", "city": "Toronto, ON"})) == Recipient(
        "a@example.com", "Ann", {"first_name": "Ann", "city": "Toronto, ON"}
    )
    odd = record("a@example.com", "A\x1fB", {"note": "x\x1ey\x1fz"})
    assert decode(odd) == Recipient("a@example.com", "A B", {"note": "x y z"})
    assert decode(record("a@example.com", "", {})) == Recipient("a@example.com", "", {})
