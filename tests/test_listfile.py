"""Lists as platforms and Excel export them: every row read, nobody mailed who left.

Each platform's header row below is its real export header, with its source:
- Mailchimp's unsubscribed-members export, quoted in a comment of a one-off script of
  code-dot-org/code-dot-org (the search index's file 13120224759): note the repeated
  UNSUB_CAMPAIGN_ID and UNSUB_REASON.
- Substack's subscriber export, TryGhost/migrate
  packages/mg-substack-members-csv/test/fixtures/fixtures_subscriber_emails.csv
  (commit 5189c947, MIT).
- Ghost's members export, TryGhost/Ghost's test of its members CSV serialiser
  (ghost/core/test/unit/server/services/members/..., the header of unparse(); MIT).
- Buttondown: no public export file was found; the column is ``subscriber_type`` as the issue
  describes the export, its values those of buttondown/openapi enums.json (commit 026b1833).
- Kit: the field names and states of its v4 API (first_name, email_address, state: active,
  cancelled, bounced, complained, inactive).
"""

from __future__ import annotations

import csv
import io

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from newsletter_cli.cli import cli
from newsletter_cli.errors import SubscriberError
from newsletter_cli.listfile import layout, records
from newsletter_cli.store import Store
from newsletter_cli.subscribers import UNSUBSCRIBED, VALID, Counts, columns, scan

MAILCHIMP_UNSUBSCRIBED = (
    '"Email Address",Name,"ZIP code","Help time",Country,UNSUB_CAMPAIGN_ID,UNSUB_REASON,UNSUB_TIME,'
    'UNSUB_CAMPAIGN_TITLE,UNSUB_CAMPAIGN_ID,UNSUB_REASON,UNSUB_REASON_OTHER,"MailChimp Integration",Languages,'
    '"Help Location",MEMBER_RATING,OPTIN_TIME,OPTIN_IP,CONFIRM_TIME,CONFIRM_IP,LATITUDE,LONGITUDE,GMTOFF,'
    "DSTOFF,TIMEZONE,CC,REGION,LAST_CHANGED,LEID,EUID,NOTES"
)
SUBSTACK = "email,expiry,email_disabled,stripe_connected_customer_id,type"
GHOST = (
    "id,email,name,note,subscribed_to_emails,complimentary_plan,stripe_customer_id,created_at,deleted_at,labels,tiers"
)
BUTTONDOWN = "email,notes,metadata,tags,creation_date,subscriber_type"
KIT = "first_name,email_address,state,created_at"


def write(tmp_path, text: str, encoding: str = "utf-8", name: str = "subscribers.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def statuses(path) -> list[tuple[str, str]]:
    return [(row.email, row.status) for row in scan(path)]


def counts(path) -> Counts:
    tally = Counts()
    for row in scan(path):
        tally.add(row)
    return tally


def row_of(header: str, **cells: str) -> str:
    names = next(csv.reader([header]))
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([cells.get(n, "") for n in names])
    return out.getvalue()


# --- each platform's status columns ----------------------------------------------------------


def test_substack_email_disabled_rows_are_not_mailed(tmp_path):
    path = write(
        tmp_path,
        SUBSTACK + "\n"
        "herroooo@substack.com,2021-07-06T16:20:44.000Z,false,cus_D5JgW66mn4j0BQ,paid\n"
        "maguirec086@comm.ca,2025-06-23T23:41:42.980Z,true,,comp\n",
    )
    assert statuses(path) == [("herroooo@substack.com", VALID), ("maguirec086@comm.ca", UNSUBSCRIBED)]
    [left] = [r for r in scan(path) if r.status == UNSUBSCRIBED]
    assert left.reason == "not subscribed: email_disabled is true (Substack)"


def test_ghost_unsubscribed_and_deleted_members_are_not_mailed_and_the_name_gives_a_first_name(tmp_path):
    path = write(
        tmp_path,
        GHOST
        + "\n"
        + row_of(GHOST, email="grace@example.com", name="Grace Hopper", subscribed_to_emails="true")
        + row_of(GHOST, email="off@example.com", name="Off Person", subscribed_to_emails="false")
        + row_of(GHOST, email="gone@example.com", subscribed_to_emails="true", deleted_at="2024-02-01T00:00:00.000Z"),
    )
    rows = list(scan(path))
    assert [(r.email, r.status) for r in rows] == [
        ("grace@example.com", VALID),
        ("off@example.com", UNSUBSCRIBED),
        ("gone@example.com", UNSUBSCRIBED),
    ]
    assert rows[0].fields["first_name"] == "Grace"
    assert rows[1].reason == "not subscribed: subscribed_to_emails is false (Ghost)"
    assert rows[2].reason == "not subscribed: deleted_at is set (Ghost)"
    assert "first_name" in columns(path)


@pytest.mark.parametrize(
    ("subscriber_type", "mailed"),
    [
        ("regular", True),
        ("premium", True),
        ("trialed", True),
        ("gifted", True),
        ("unsubscribed", False),
        ("unactivated", False),
        ("removed", False),
        ("spammy", False),
        ("something-new", False),
    ],
)
def test_buttondown_subscriber_types(tmp_path, subscriber_type, mailed):
    path = write(
        tmp_path, BUTTONDOWN + "\n" + row_of(BUTTONDOWN, email="a@example.com", subscriber_type=subscriber_type)
    )
    assert statuses(path) == [("a@example.com", VALID if mailed else UNSUBSCRIBED)]


@pytest.mark.parametrize("state", ["cancelled", "bounced", "complained", "inactive"])
def test_kit_states_other_than_active_are_not_mailed(tmp_path, state):
    path = write(
        tmp_path, f"{KIT}\nMaja,maja@example.com,active,2025-03-03\nNils,nils@example.com,{state},2025-04-04\n"
    )
    assert statuses(path) == [("maja@example.com", VALID), ("nils@example.com", UNSUBSCRIBED)]


def test_mailchimps_unsubscribed_export_reads_despite_its_repeated_columns_and_mails_nobody(tmp_path):
    row = row_of(MAILCHIMP_UNSUBSCRIBED, **{"Email Address": "rick@example.com", "UNSUB_TIME": "2013-06-27 12:11:50"})
    path = write(tmp_path, MAILCHIMP_UNSUBSCRIBED + "\n" + row)
    assert statuses(path) == [("rick@example.com", UNSUBSCRIBED)]
    notes = layout(path).notices
    assert any("column 10 'UNSUB_CAMPAIGN_ID' repeats the name of column 6" in n for n in notes)


@pytest.mark.parametrize("value", ["unsubscribed", "bounced", "cleaned", "false", "no", "0", "Pending"])
def test_a_generic_status_column(tmp_path, value):
    path = write(tmp_path, f"email,status\na@example.com,subscribed\nb@example.com,{value}\n")
    assert statuses(path) == [("a@example.com", VALID), ("b@example.com", UNSUBSCRIBED)]


def test_an_unknown_status_is_not_mailed_and_says_why(tmp_path):
    path = write(tmp_path, "email,status\na@example.com,VIP\n")
    [row] = scan(path)
    assert (row.status, row.reason) == (UNSUBSCRIBED, "unknown status 'VIP': not mailed, since it may mean they left")


# --- encodings -------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_utf8_with_or_without_bom_and_utf16_with_bom_read_alike(tmp_path, encoding):
    path = write(tmp_path, "email,first_name\r\nzoe@example.com,Zoë\r\n", encoding)
    [row] = scan(path)
    assert (row.email, row.fields["first_name"]) == ("zoe@example.com", "Zoë")
    assert layout(path).notices == []


def test_windows_1252_is_read_with_a_notice_naming_the_line_of_the_first_odd_byte(tmp_path):
    path = write(tmp_path, "email,first_name\nana@example.com,Ana\nzoe@example.com,Zoë – Müller\n", "cp1252")
    assert [row.fields["first_name"] for row in scan(path)] == ["Ana", "Zoë – Müller"]
    assert layout(path).notices == [
        "subscribers.csv is not UTF-8 (line 3 has byte 0xeb): read as Windows-1252, as Excel on Windows saves CSV; "
        "check the names with accents"
    ]
    result = CliRunner().invoke(cli, ["subscribers", "check", str(path), "--config", str(config(tmp_path))])
    assert result.output.startswith("Note: subscribers.csv is not UTF-8 (line 3 has byte 0xeb)")


def test_a_file_that_is_no_text_at_all_names_the_physical_line_of_the_bad_byte(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = "email\n" + "".join(f"u{i}@example.com\n" for i in range(500))
    path = write(tmp_path, lines)
    path.write_bytes(path.read_bytes() + b"x\x81@example.com\n")  # 0x81: undefined in Windows-1252 too
    with pytest.raises(SubscriberError) as error:
        list(scan(path))
    assert error.value.message.startswith("subscribers.csv:502: neither UTF-8 nor Windows-1252 text (byte 0x81)")


# --- delimiters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "email;first_name\nana@example.com;Ana\n",  # European Excel
        "sep=;\nemail;first_name\nana@example.com;Ana\n",  # Excel's own first line
        "email\tfirst_name\nana@example.com\tAna\n",  # "Text (Tab delimited)"
    ],
)
def test_semicolon_tab_and_excels_sep_line(tmp_path, text):
    [row] = scan(write(tmp_path, text))
    assert (row.email, row.fields["first_name"]) == ("ana@example.com", "Ana")


def test_lines_are_still_physical_lines_after_a_sep_line(tmp_path):
    path = write(tmp_path, "sep=;\nemail;first_name\nana@example.com;Ana\nnot-an-address;X\n")
    assert [row.line for row in scan(path)] == [3, 4]


def test_no_email_column_lists_the_columns_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SubscriberError) as error:
        list(scan(write(tmp_path, "Correo;Nombre\nana@example.com;Ana\n")))
    assert (
        error.value.message == "subscribers.csv:1: no email column in the header row (columns found: 'Correo;Nombre')"
    )


# --- stray quotes and duplicate columns -------------------------------------------------------


def stray_quote_list() -> str:
    """41 lines: a header and 40 rows, the third row (line 4) opening a quote it never closes."""
    rows = [f"user{i}@example.com,User{i}" for i in range(40)]
    rows[2] = 'user2@example.com,"User2'
    return "email,first_name\n" + "\n".join(rows) + "\n"


def test_a_stray_quote_is_an_error_at_the_line_where_it_opens(tmp_path, monkeypatch):
    """Once, one unclosed quote made 'subscribers check' say '2 rows: 2 valid' and one
    recipient's subject carry 38 other subscribers' addresses."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SubscriberError) as error:
        list(scan(write(tmp_path, stray_quote_list())))
    assert error.value.message == (
        "subscribers.csv:4: a quote opens a cell here and is never closed: it would swallow the rest of the file"
    )


def test_a_quote_closed_many_rows_later_is_an_error_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = 'email,first_name\na@example.com,"Ann\nb@example.com,Bo\nc@example.com,Cy"\nd@example.com,Di\n'
    with pytest.raises(SubscriberError) as error:
        list(scan(write(tmp_path, text)))
    assert error.value.message.startswith("subscribers.csv:2: a quote opens a cell here that runs on to line 4")


def test_a_real_multi_line_cell_is_fine(tmp_path):
    path = write(tmp_path, 'email,address\na@example.com,"1 Queen St\nMississauga ON"\nb@example.com,x\n')
    assert [(r.email, r.fields["address"], r.line) for r in scan(path)] == [
        ("a@example.com", "1 Queen St Mississauga ON", 2),
        ("b@example.com", "x", 4),
    ]


def test_two_columns_that_both_read_as_email_are_an_error_naming_both(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SubscriberError) as error:
        list(scan(write(tmp_path, "Email Address,Name,Email\na@example.com,Ann,b@example.com\n")))
    assert error.value.message == (
        "subscribers.csv:1: columns 1 'Email Address' and 3 'Email' both read as 'email': keep one, "
        "so that every command reads the same one"
    )


# --- the commands ----------------------------------------------------------------------------


def config(tmp_path):
    path = tmp_path / "newsletter.toml"
    if not path.exists():
        path.write_text(
            '[newsletter]\nname = "T"\nfrom_email = "n@t.example"\npostal_address = "1 St"\n'
            'website = "https://t.example/"\n[unsubscribe]\nurl = "https://t.example/u"\n'
        )
    return path


def test_subscribers_check_counts_and_names_the_unsubscribed_rows(tmp_path):
    path = write(
        tmp_path,
        SUBSTACK + "\na@example.com,,false,,free\nb@example.com,,true,,free\nc@example.com,,false,,paid\n",
    )
    result = CliRunner().invoke(cli, ["subscribers", "check", str(path), "--config", str(config(tmp_path))])
    assert result.exit_code == 0, "unsubscribed rows are not errors in the file"
    assert result.output.splitlines() == [
        f"{path}:3: not subscribed: email_disabled is true (Substack)",
        f"{path}: 3 rows: 2 valid, 0 invalid, 0 duplicates, 0 suppressed, 1 unsubscribed (the list says so)",
    ]


def test_unsubscribes_import_of_a_whole_export_suppresses_only_who_left(tmp_path):
    path = write(
        tmp_path, f"{KIT}\nMaja,maja@example.com,active,2025-03-03\nNils,nils@example.com,bounced,2025-04-04\n"
    )
    result = CliRunner().invoke(cli, ["unsubscribes", "import", str(path), "--config", str(config(tmp_path))])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "Left out 1 row the file marks as still subscribed."
    with Store.for_folder(tmp_path / ".newsletter") as store:
        assert [(s.email, s.reason) for s in store.suppressions()] == [("nils@example.com", "bounced")]


# --- any CSV text: what Python's csv module reads in strict mode, or an error with a line ------


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["a@b.co", ",", '"', "\n", "x", " ", "\r\n", ";"]), max_size=40).map("".join))
@example('"a@b.co\n')
def test_any_text_reads_as_strict_csv_does_or_is_an_error_with_a_line(tmp_path, text):
    path = write(tmp_path, "email,name\n" + text, name="any.csv")
    try:
        found = [cells for _, cells in records(layout(path))]
    except SubscriberError as exc:
        assert exc.line is not None and exc.line >= 1
        return
    expected = list(csv.reader(io.StringIO("email,name\n" + text, newline=""), strict=True))[1:]
    assert found == expected
