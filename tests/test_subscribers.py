import csv
import io

import pytest
from email_validator import SPECIAL_USE_DOMAIN_NAMES, validate_email
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from newsletter_cli.errors import SubscriberError
from newsletter_cli.listfile import normalize_column
from newsletter_cli.subscribers import (
    DUPLICATE,
    FAST_EMAIL,
    INVALID,
    SPECIAL_USE_DOMAINS,
    SUPPRESSED,
    VALID,
    Refused,
    Row,
    addresses,
    columns,
    normalize_address,
    sample_row,
    scan,
    validated,
)

from .conftest import REPO


def write(tmp_path, text, name="subscribers.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_columns_are_matched_loosely_and_mailchimps_email_address_is_email():
    assert normalize_column(" First Name ") == "first_name"
    assert normalize_column("first-name") == "first_name"
    assert normalize_column("Email Address") == "email"


def test_the_example_list_is_valid():
    rows = list(scan(REPO / "subscribers.csv.example"))
    assert [row.status for row in rows] == [VALID, VALID, VALID]
    assert rows[2].email == "Priya.Patel@example.net"
    assert rows[2].fields["city"] == "Toronto, ON"


def test_bom_crlf_quoted_commas_and_line_breaks(tmp_path):
    text = '\ufeffEmail Address,First Name,Note\r\na@example.com,"Lee, Jr.","two\r\nlines"\r\nb@example.com,Bo,x\r\n'
    path = write(tmp_path, text)
    rows = list(scan(path))
    assert [(r.line, r.email) for r in rows] == [(2, "a@example.com"), (4, "b@example.com")]
    assert rows[0].fields == {"email": "a@example.com", "first_name": "Lee, Jr.", "note": "two lines"}
    assert columns(path) == {"email", "first_name", "note"}


def test_invalid_and_duplicate_rows_say_why_with_the_line_where_the_record_starts(tmp_path):
    text = (
        "email,first_name\n"
        "ana@example.com,Ana\n"
        '"bad@@example.com","multi\nline"\n'
        "  ANA@Example.COM ,Again\n"
        ",nobody\n"
        "x@localhost\n"
    )
    rows = list(scan(write(tmp_path, text)))
    assert [(r.line, r.status) for r in rows] == [(2, VALID), (3, INVALID), (5, DUPLICATE), (6, INVALID), (7, INVALID)]
    assert rows[1].reason.startswith("invalid address 'bad@@example.com': ")
    assert rows[2].reason == "duplicate of line 2 (ANA@example.com)"
    assert rows[3].reason == "invalid address '': no email address"


def test_duplicates_are_found_across_chunks(tmp_path):
    lines = [f"user{i}@example.com" for i in range(2500)] + ["USER7@example.com"]
    rows = list(scan(write(tmp_path, "email\n" + "\n".join(lines) + "\n")))
    assert [r.status for r in rows].count(DUPLICATE) == 1
    assert rows[-1].reason == "duplicate of line 9 (USER7@example.com)"


def test_suppressed_addresses_are_marked(tmp_path):
    path = write(tmp_path, "email\na@example.com\nB@example.com\n")
    rows = list(scan(path, suppressed=lambda keys: {k for k in keys if k == "b@example.com"}))
    assert [r.status for r in rows] == [VALID, SUPPRESSED]


def test_names_are_made_safe_for_headers():
    row = Row(2, "a@example.com", {"first_name": 'Ann; "Bo",', "last_name": "Smith\r\nBcc: x@evil.example"})
    assert row.name == "Ann Bo Smith Bcc: x@evil.example"
    assert "\n" not in row.name and ";" not in row.name and "," not in row.name


def test_internationalised_domains_are_sent_in_ascii():
    assert normalize_address("jose@exämple.com") == "jose@xn--exmple-cua.com"
    with pytest.raises(ValueError, match="special-use or reserved"):
        normalize_address("a@b.test")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "subscribers.csv:1: empty file: a header row with an 'email' column is required"),
        (
            "name,city\nAna,Toronto\n",
            "subscribers.csv:1: no email column in the header row (columns found: 'name', 'city')",
        ),
    ],
)
def test_unusable_files_are_one_line_errors(tmp_path, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SubscriberError) as error:
        list(scan(write(tmp_path, text)))
    assert error.value.message == message


def test_sample_row_picks_the_first_valid_or_the_named_one(tmp_path):
    path = write(tmp_path, "email,first_name\nnot-an-address,X\nana@example.com,Ana\nlee@example.com,Lee\n")
    assert sample_row(path)["first_name"] == "Ana"
    assert sample_row(path, "LEE@example.com")["first_name"] == "Lee"


# --- properties ------------------------------------------------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=400))
def test_arbitrary_text_never_crashes_the_reader(tmp_path, text):
    path = write(tmp_path, "email,first_name\n" + text)
    try:
        rows = list(scan(path))
    except SubscriberError:
        return
    assert all(row.status in (VALID, INVALID, DUPLICATE) for row in rows)
    assert all(row.line >= 2 for row in rows)


local = st.from_regex(r"[a-zA-Z0-9_+-]{1,12}(\.[a-zA-Z0-9_+-]{1,8}){0,2}", fullmatch=True)
domain = st.from_regex(r"([a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?\.){1,3}[a-zA-Z]{2,8}", fullmatch=True)
edge = st.sampled_from(["x.test", "x.TEST", "x.localhost", "xn--80ak6aa92e.com", "a--b.example.com", "x.onion"])


@settings(max_examples=400)
@given(local, domain | edge)
@example("a" * 64, "example.com")
@example("a" * 65, "example.com")
@example("a" * 59, ("b" * 60 + ".") * 3 + "example.com")  # 254 characters in all
@example("a" * 60, ("b" * 60 + ".") * 3 + "example.com")  # 255
def test_the_fast_path_agrees_with_email_validator(local_part, domain_part):
    address = f"{local_part}@{domain_part}"
    try:
        result = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except ValueError:
        assert not FAST_EMAIL.fullmatch(address)
        with pytest.raises(ValueError):
            normalize_address(address)
        return
    assert normalize_address(address) == (result.ascii_email or result.normalized)  # SendGrid takes ASCII
    plain = len(local_part) <= 64 and "--" not in domain_part
    if plain and domain_part.rsplit(".", 1)[-1].lower() not in ("test", "localhost", "onion"):
        assert FAST_EMAIL.fullmatch(address), "a plain address should take the fast path"


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(local, st.sampled_from(["example.com", "Example.org", "mail.example.net"])), max_size=40))
def test_every_valid_row_comes_out_once(tmp_path, pairs):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["email"])
    for local_part, host in pairs:
        writer.writerow([f"{local_part}@{host}"])
    rows = list(scan(write(tmp_path, buffer.getvalue())))
    valid = [row.key for row in rows if row.status == VALID]
    expected = list(dict.fromkeys(f"{lp}@{host}".lower() for lp, host in pairs))
    assert valid == expected


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from([*'ab@.,"\n x', "example.com", "Ann"]), max_size=80).map("".join))
@example(",,x\n")  # a record with data only in an unnamed column: blank to both
def test_the_send_paths_lean_reader_agrees_with_the_full_one(tmp_path, text):
    path = write(tmp_path, "email,first_name,\n" + text)
    try:
        full = [(r.line, r.reason) if r.status == INVALID else (r.email, r.name, VALID) for r in validated(path)]
    except SubscriberError:
        with pytest.raises(SubscriberError):
            list(addresses(path, ["first_name"]))
        return
    lean = list(addresses(path, ["first_name"]))
    assert [(a.line, a.reason) if isinstance(a, Refused) else (a[0], a[1], VALID) for a in lean] == full


def test_the_fast_paths_special_use_domains_are_email_validators():
    assert set(SPECIAL_USE_DOMAINS) == set(SPECIAL_USE_DOMAIN_NAMES)
