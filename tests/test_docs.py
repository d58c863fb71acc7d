"""The README's quick start and the coordinator's guide say what the tool does: their commands
run here, as written."""

from __future__ import annotations

import csv
import datetime as dt
import email
import os
import re
import shlex
import shutil
import subprocess
import sys
from email.policy import default

import click
import pytest
from click.testing import CliRunner

from newsletter_cli.cli import cli

from .conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
GUIDE = (REPO / "docs" / "guide.md").read_text(encoding="utf-8")


def code_lines(markdown: str) -> list[str]:
    """The lines of the indented code blocks."""
    return [line[4:] for line in markdown.splitlines() if line.startswith("    ") and line.strip()]


def quick_start() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [line for line in code_lines(section) if line.startswith("pip install")]


def test_the_quick_start_is_two_commands_the_second_running_the_tests():
    first, second = quick_start()
    assert first.startswith("pip install -e . && newsletter send ")
    assert second == "pip install -e '.[test]' && pytest"


def test_the_quick_starts_first_command_sends_the_example_with_nothing_leaving_the_machine(tmp_path):
    for name in ("newsletter.toml", "subscribers.csv.example"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "issues", tmp_path / "issues")
    command = shlex.split(quick_start()[0].split(" && ", 1)[1])
    assert command[0] == "newsletter"
    env = {k: v for k, v in os.environ.items() if k not in ("SENDGRID_API_KEY", "NEWSLETTER_SECRET")}
    done = subprocess.run(
        [sys.executable, "-m", "newsletter_cli", *command[1:]], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing was sent" in done.stdout.splitlines()[-1]
    out = tmp_path / "build" / "2022-12-baby-botox-dry-run"
    mail = email.message_from_bytes((out / "sample.eml").read_bytes(), policy=default)
    assert mail["Subject"] == "Baby BOTOX: prevention, smoother skin and more"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert (out / "batch-0001.json").is_file()


GUIDE_COMMANDS = [line for line in code_lines(GUIDE) if line.startswith("newsletter ")]


@pytest.mark.parametrize("line", GUIDE_COMMANDS)
def test_every_command_in_the_guide_is_one_the_tool_takes(line):
    """Each parses: the command exists, and so does every option and argument (nothing runs)."""
    command: click.Command = cli
    name, args = "newsletter", shlex.split(line)[1:]
    parent = None
    try:
        while True:
            context = command.make_context(name, args, parent=parent)
            if not isinstance(command, click.Group):
                break
            rest = [*context._protected_args, *context.args]
            name, found, args = command.resolve_command(context, rest)
            assert found is not None, f"no command {rest[0]!r}"
            command, parent = found, context
    except click.exceptions.Exit as done:  # --version, --help
        assert done.exit_code == 0


def routine() -> list[str]:
    section = GUIDE.split("## 6. The monthly routine", 1)[1].split("\n## ", 1)[0]
    return [line for line in code_lines(section) if line.startswith("newsletter ")]


def test_the_guides_monthly_routine_works_as_written(tmp_path, monkeypatch, sendgrid):
    """In a fresh `newsletter init` folder whose placeholders were replaced as section 2 says,
    against the loopback SendGrid. `preview` runs a server and is skipped; sends get --yes,
    since a test has no terminal to answer on."""
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(cli, ["init", "clinic-news"]).exit_code == 0
    folder = tmp_path / "clinic-news"
    monkeypatch.chdir(folder)
    config = (folder / "newsletter.toml").read_text(encoding="utf-8")
    config = config.replace("REPLACE: your postal address", "1 Queen Street, Mississauga, ON L5B 1B8")
    config = re.sub(r"yourdomain\.example", "clinic-news.ca", config)
    (folder / "newsletter.toml").write_text(config, encoding="utf-8")
    shutil.copy(folder / "subscribers.csv.example", folder / "subscribers.csv")
    monkeypatch.setenv("NEWSLETTER_SECRET", "a-test-secret-of-enough-length")
    written = None
    for line in routine():
        words = shlex.split(line)[1:]
        if written is not None:
            words = [written if w.startswith("issues/") else w for w in words]
        if words[0] == "preview":
            continue
        if words[0] == "send" and "--dry-run" not in words:
            words.append("--yes")
        result = runner.invoke(cli, words)
        assert result.exit_code == 0, f"{line}\n{result.output}"
        if words[0] == "new":
            written = result.output.split("Wrote ", 1)[1].strip()
            issue = folder / written  # the coordinator writes the issue, replacing the sample text
            text = issue.read_text(encoding="utf-8")
            text = text.replace("One line that shows after the subject in the inbox", "Flu shots from December 4")
            text = text.replace("Write your newsletter here in Markdown.", "Our clinics close at 5 pm in December.")
            issue.write_text(text, encoding="utf-8")
    listed = [row["email"] for row in csv.DictReader((folder / "subscribers.csv").open(encoding="utf-8"))]
    assert sorted(d.email.lower() for d in sendgrid.deliveries) == sorted(e.lower() for e in listed)


def test_the_guides_set_time_section_works_as_written(tmp_path, monkeypatch, sendgrid):
    """Section 7 in the repository's folder: a send at a set time (moved to two hours from now,
    so that it is ahead), its cancel, then the figures (unknown: no event has come)."""
    for name in ("newsletter.toml", "subscribers.csv.example"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copy(REPO / "subscribers.csv.example", tmp_path / "subscribers.csv")
    (tmp_path / "issues").mkdir()
    issue = "issues/2026-12-winter-hours-and-flu-shots.md"
    (tmp_path / issue).write_text("---\nsubject: Winter hours\npreheader: Flu shots\n---\nOpen till 5.\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEWSLETTER_SECRET", "a-test-secret-of-enough-length")
    section = GUIDE.split("## 7. ", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in code_lines(section) if line.startswith("newsletter ")]
    assert [shlex.split(line)[1] for line in lines] == ["send", "cancel", "stats"]
    ahead = (dt.datetime.now() + dt.timedelta(hours=2)).replace(microsecond=0).isoformat()
    runner = CliRunner()
    for line in lines:
        words = [ahead if re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d", w) else w for w in shlex.split(line)[1:]]
        result = runner.invoke(cli, [*words, "--yes", "--force"] if words[0] == "send" else words)
        assert result.exit_code == 0, f"{line}\n{result.output}"
    assert sendgrid.mail_batches and set(sendgrid.mail_batches.values()) == {"cancel"}
    assert (tmp_path / "build" / "2026-12-winter-hours-and-flu-shots-stats.html").is_file()
