import datetime as dt
import json
import os
import socket
import stat
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from newsletter_cli import __version__
from newsletter_cli.cli import cli

from .conftest import REPO, interrupt, newsletter_process


@pytest.fixture
def runner():
    return CliRunner()


def test_version(runner):
    result = runner.invoke(cli, ["--version"])
    assert result.output == f"newsletter, version {__version__}\n"


def all_commands(group=cli, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if hasattr(command, "commands"):
            yield from all_commands(command, (*prefix, name))


@pytest.mark.parametrize(
    ("path", "command"), list(all_commands()), ids=lambda x: " ".join(x) if isinstance(x, tuple) else ""
)
def test_every_command_has_help_with_an_example(runner, path, command):
    result = runner.invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert command.help and command.help.strip().splitlines()[0]
    assert "Example:" in result.output and "newsletter " in result.output.split("Example:")[1]


def test_build_writes_html_and_text_into_build(runner, example):
    result = runner.invoke(cli, ["build", "issues/2022-12-baby-botox.md"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Wrote build/2022-12-baby-botox.html (")
    assert result.output.endswith(" KB) and build/2022-12-baby-botox.txt\n")
    assert (example / "build" / "2022-12-baby-botox.html").read_text().startswith("<!doctype html>")
    assert "Baby BOTOX" in (example / "build" / "2022-12-baby-botox.txt").read_text()


def test_build_from_a_subfolder_finds_the_config_and_honours_out(runner, example, monkeypatch, tmp_path):
    monkeypatch.chdir(example / "issues")
    result = runner.invoke(cli, ["build", "2022-12-baby-botox.md", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "2022-12-baby-botox.html").exists()


def test_build_warns_over_gmails_clipping_limit(runner, folder, write_issue):
    rows = "".join(f"| row {i} | {'value ' * 10} |\n" for i in range(500))
    write_issue("| a | b |\n|---|---|\n" + rows)
    result = runner.invoke(cli, ["build", "issues/test.md"])
    assert result.exit_code == 0
    assert "Warning: the html is " in result.output and "over Gmail's 102 KB limit" in result.output


def test_a_bad_issue_is_one_line_exit_1_and_leaves_earlier_output_alone(runner, folder, write_issue):
    write_issue("Hi\n")
    assert runner.invoke(cli, ["build", "issues/test.md"]).exit_code == 0
    before = (folder / "build" / "test.html").read_text()
    write_issue("Hi {{ subscriber.first_name | upper }}\n")
    result = runner.invoke(cli, ["build", "issues/test.md"])
    assert result.exit_code == 1
    assert result.output == (
        "Error: issues/test.md:5: {{ subscriber.first_name | upper }} is not a merge field: write "
        '{{ subscriber.<column> }} or {{ subscriber.<column> | default("...") }}; nothing else is filled in\n'
    )
    assert (folder / "build" / "test.html").read_text() == before
    assert sorted(p.name for p in (folder / "build").iterdir()) == ["test.html", "test.txt"]


def test_missing_config_keys_are_listed_once(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "newsletter.toml").write_text('[newsletter]\nname = "X"\n[unsubscribe]\nurl = "https://x.example/u"\n')
    (tmp_path / "a.md").write_text("---\nsubject: Hello\n---\n")
    result = runner.invoke(cli, ["build", "a.md"])
    assert result.exit_code == 1
    assert result.output == (
        "Error: 3 problems in newsletter.toml:\n"
        "  newsletter.toml: [newsletter] from_email: required key is missing\n"
        "  newsletter.toml: [newsletter] postal_address: required key is missing\n"
        "  newsletter.toml: [newsletter] website: required key is missing\n"
    )


def test_config_option_points_elsewhere(runner, example, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        cli,
        [
            "build",
            str(example / "issues" / "2022-12-baby-botox.md"),
            "--config",
            str(example / "newsletter.toml"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (example / "build" / "2022-12-baby-botox.html").exists()


def test_build_as_an_address_not_on_the_list(runner, example):
    (example / "subscribers.csv").write_text("email,first_name\nana@example.com,Ana\n")
    result = runner.invoke(cli, ["build", "issues/2022-12-baby-botox.md", "--as", "zed@example.com"])
    assert result.exit_code == 1
    assert result.output == "Error: subscribers.csv: no subscriber zed@example.com in the list\n"


def test_new_writes_a_dated_issue(runner, folder):
    result = runner.invoke(cli, ["new", "Winter skin care"])
    expected = f"issues/{dt.date.today():%Y-%m}-winter-skin-care.md"
    assert result.output == f"Wrote {expected}\n"
    assert runner.invoke(cli, ["build", expected]).exit_code == 0


def test_init_scaffolds_a_folder_that_builds_without_this_repository(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, ["init", "news"])
    assert result.exit_code == 0, result.output
    assert "Created news/newsletter.toml" in result.output
    for name in (
        "newsletter.toml",
        "subscribers.csv.example",
        "templates/newsletter.mjml.j2",
        "templates/newsletter.txt.j2",
    ):
        assert (tmp_path / "news" / name).is_file()
    monkeypatch.chdir(tmp_path / "news")
    issue = next((tmp_path / "news" / "issues").glob("*-welcome-to-our-newsletter.md"))
    assert runner.invoke(cli, ["build", str(issue)]).exit_code == 0
    again = runner.invoke(cli, ["init", "."])
    assert again.exit_code == 1
    assert again.output == "Error: newsletter.toml: newsletter.toml already exists; nothing was changed\n"


# --- subscribers and unsubscribes ------------------------------------------------------------


def test_subscribers_check_explains_every_rejected_row_and_exits_1(runner, folder):
    (folder / "subscribers.csv").write_text(
        "Email Address,First Name\nana@example.com,Ana\nnot an address,X\nANA@example.com,Again\nlee@example.org,Lee\n"
    )
    assert runner.invoke(cli, ["unsubscribes", "add", "lee@example.org"]).exit_code == 0
    result = runner.invoke(cli, ["subscribers", "check"])
    assert result.exit_code == 1
    assert result.output == (
        "subscribers.csv:3: invalid address 'not an address': An email address must have an @-sign.\n"
        "subscribers.csv:4: duplicate of line 2 (ANA@example.com)\n"
        "subscribers.csv: 4 rows: 1 valid, 1 invalid, 1 duplicate, 1 suppressed\n"
    )


def test_subscribers_check_of_a_clean_list_exits_0(runner, example):
    result = runner.invoke(cli, ["subscribers", "check", "subscribers.csv.example"])
    assert result.exit_code == 0
    assert result.output == "subscribers.csv.example: 3 rows: 3 valid, 0 invalid, 0 duplicates, 0 suppressed\n"


def test_subscribers_check_of_a_missing_list(runner, folder):
    result = runner.invoke(cli, ["subscribers", "check"])
    assert result.exit_code == 1
    assert result.output == "Error: subscribers.csv: subscriber list not found\n"


def test_unsubscribes_add_list_and_json(runner, folder):
    result = runner.invoke(
        cli, ["unsubscribes", "add", "Ana@Example.com", "lee@example.org", "--reason", "unsubscribed"]
    )
    assert result.output == "Suppressed 2 addresses\n"
    assert runner.invoke(cli, ["unsubscribes", "add", "ana@example.com"]).output == (
        "Suppressed 0 addresses (1 already suppressed)\n"
    )
    lines = runner.invoke(cli, ["unsubscribes", "list"]).output.splitlines()
    assert [line.split("\t")[:3] for line in lines] == [
        ["ana@example.com", "unsubscribed", "cli"],
        ["lee@example.org", "unsubscribed", "cli"],
    ]
    listed = json.loads(runner.invoke(cli, ["unsubscribes", "list", "--json"]).output)
    assert [(e["email"], e["reason"], e["source"]) for e in listed] == [
        ("ana@example.com", "unsubscribed", "cli"),
        ("lee@example.org", "unsubscribed", "cli"),
    ]
    assert set(listed[0]) == {"email", "reason", "source", "created_at"}


def test_unsubscribes_list_json_of_an_empty_store_is_an_empty_array(runner, folder):
    assert json.loads(runner.invoke(cli, ["unsubscribes", "list", "--json"]).output) == []


def test_unsubscribes_add_refuses_an_invalid_address(runner, folder):
    result = runner.invoke(cli, ["unsubscribes", "add", "ok@example.com", "nope"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: invalid address 'nope': ")
    assert runner.invoke(cli, ["unsubscribes", "list"]).output == ""


def test_unsubscribes_import(runner, folder):
    (folder / "unsubs.csv").write_text("email\na@example.com\nbad\nb@example.com\n")
    result = runner.invoke(cli, ["unsubscribes", "import", "unsubs.csv"])
    assert result.output == "Imported 2 from unsubs.csv (1 invalid address skipped)\n"


def test_unsubscribes_sync_needs_a_key(runner, folder):
    result = runner.invoke(cli, ["unsubscribes", "sync"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: SENDGRID_API_KEY is not set")


def test_unsubscribes_sync_reports_what_it_learned(runner, folder, sendgrid):
    sendgrid.lists["bounces"] = [{"email": "b@example.com", "created": 1, "reason": "550", "status": "5.1.1"}]
    result = runner.invoke(cli, ["unsubscribes", "sync"])
    assert result.exit_code == 0, result.output
    assert result.output == (
        "Learned 1 new suppression from SendGrid (0 unsubscribes, 1 bounces, 0 spam_reports, 0 invalid_emails)\n"
    )


def test_serve_unsubscribe_needs_the_secret(runner, folder):
    result = runner.invoke(cli, ["serve-unsubscribe", "--port", "0"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: NEWSLETTER_SECRET is not set")


def test_serve_unsubscribe_serves_until_ctrl_c_and_exits_cleanly(folder):
    env = {**os.environ, "NEWSLETTER_SECRET": "a-test-secret-of-enough-length"}
    process = newsletter_process(folder, "serve-unsubscribe", "--port", "0", env=env)
    try:
        line = process.stdout.readline()
        assert line.startswith("Serving unsubscribes on http://127.0.0.1:")
        assert process.stdout.readline() == (
            "SendGrid's events are refused: set [events] public_key or SENDGRID_WEBHOOK_PUBLIC_KEY to take them\n"
        )
        url = line.split()[3]
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(url + "?token=bad", timeout=10)
        assert error.value.code == 400
    finally:
        out, err = interrupt(process)
    assert process.returncode == 0
    assert out == "Stopped.\n"
    assert "Traceback" not in err


def test_preview_send_test_sends_one_marked_copy(runner, example, sendgrid, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", "a-test-secret-of-enough-length")
    result = runner.invoke(cli, ["preview", "issues/2022-12-baby-botox.md", "--send-test", "Me@Example.net"])
    assert result.exit_code == 0, result.output
    assert result.output == "Sent a [TEST] copy of 2022-12-baby-botox to Me@example.net.\n"
    [copy] = sendgrid.deliveries
    assert copy.subject == "[TEST] Baby BOTOX: prevention, smoother skin and more"
    assert "Hi there," in copy.html


def test_preview_send_test_without_a_key_says_so(runner, example):
    result = runner.invoke(cli, ["preview", "issues/2022-12-baby-botox.md", "--send-test", "me@example.net"])
    assert result.exit_code == 1
    assert result.output == (
        "Error: SENDGRID_API_KEY is not set: a test send goes through SendGrid and needs an API key\n"
    )


def test_preview_send_test_in_own_endpoint_mode_needs_the_secret_to_sign_its_link(runner, example, sendgrid):
    result = runner.invoke(cli, ["preview", "issues/2022-12-baby-botox.md", "--send-test", "me@example.net"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: NEWSLETTER_SECRET is not set")
    assert sendgrid.deliveries == []


def test_preview_serves_until_ctrl_c_then_exits_cleanly_and_frees_the_port(example):
    process = newsletter_process(example, "preview", "issues/2022-12-baby-botox.md", "--no-open", "--port", "0")
    try:
        line = process.stdout.readline()
        assert line.startswith("Previewing issues/2022-12-baby-botox.md at http://127.0.0.1:")
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url + "email.txt", timeout=10) as response:
            assert "Baby BOTOX" in response.read().decode()
    finally:
        out, err = interrupt(process)
    assert process.returncode == 0
    assert out == "Stopped.\n"
    assert "Traceback" not in err
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with socket.socket() as probe:  # as a second `newsletter preview` would: fails while one listens
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX's")
def test_built_files_are_readable_by_anyone_like_any_file_the_user_saves(runner, example):
    assert runner.invoke(cli, ["build", "issues/2022-12-baby-botox.md"]).exit_code == 0
    for name in ("2022-12-baby-botox.html", "2022-12-baby-botox.txt"):
        assert stat.S_IMODE((example / "build" / name).stat().st_mode) == 0o644


def test_the_reasons_help_offers_are_the_stores():
    """cli.py spells them out so that --help need not import the store."""
    from newsletter_cli import cli as cli_module
    from newsletter_cli.store import REASONS

    assert cli_module.REASONS == REASONS


def test_build_mjml_writes_the_mjml_and_an_mjml_error_names_the_element_not_a_byte_offset(runner, folder, write_issue):
    write_issue("Hello\n")
    assert runner.invoke(cli, ["build", "issues/test.md", "--mjml"]).exit_code == 0
    assert (folder / "build" / "test.mjml").read_text().startswith("<mjml")
    (folder / "templates").mkdir()
    template = (REPO / "newsletter_cli" / "templates" / "newsletter.mjml.j2").read_text()
    (folder / "templates" / "newsletter.mjml.j2").write_text(template.replace("<mj-body", "<wbr><mj-body", 1))
    (folder / "build" / "test.mjml").unlink()
    result = runner.invoke(cli, ["build", "issues/test.md", "--mjml"])
    assert result.exit_code == 1
    [line] = result.output.splitlines()
    assert line.startswith("Error: templates/newsletter.mjml.j2: the email could not be built: MJML stops at '<")
    assert "position" not in line
    assert line.endswith("; the MJML is in build/test.mjml")
    assert "<wbr><mj-body" in (folder / "build" / "test.mjml").read_text()
