import datetime as dt

import pytest
from click.testing import CliRunner

from newsletter_cli import __version__
from newsletter_cli.cli import cli


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
    write_issue("Hi {{ nope }}\n")
    result = runner.invoke(cli, ["build", "issues/test.md"])
    assert result.exit_code == 1
    assert result.output == (
        "Error: issues/test.md:5: unknown variable: 'nope' is undefined; merge fields are written subscriber.<column>\n"
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
