"""The `newsletter` command: parse options, call the core, print what happened. Nothing else."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from newsletter_cli import __version__, scaffold
from newsletter_cli import build as build_core
from newsletter_cli.config import Config, load_config
from newsletter_cli.errors import display_path
from newsletter_cli.issue import new_issue

ISSUE_PATH = click.Path(exists=False, dir_okay=False, path_type=Path)


def config_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--config PATH`, shared by every command that works inside a newsletter folder."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="newsletter.toml to use (default: found in this folder or a parent).",
    )(command)


def _config(config_path: Path | None) -> Config:
    return load_config(config_path)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="newsletter")
def cli() -> None:
    """Write an email newsletter in Markdown, preview it, and send it through SendGrid.

    \b
    Example:
        newsletter build issues/2022-12-baby-botox.md
    """


@cli.command()
@click.argument("issue", type=ISSUE_PATH)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the output (default: build/).",
)
@click.option(
    "--list",
    "list_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Subscriber list for merge fields (default: subscribers.csv).",
)
@click.option("--as", "as_email", metavar="EMAIL", help="Fill merge fields from this subscriber's row.")
@click.option("--open", "open_after", is_flag=True, help="Open the html in the default browser.")
@config_option
def build(
    issue: Path,
    out_dir: Path | None,
    list_path: Path | None,
    as_email: str | None,
    open_after: bool,
    config_path: Path | None,
) -> None:
    """Render an issue to build/<slug>.html and build/<slug>.txt.

    Merge fields are filled from the first subscriber of the list (or --as EMAIL) so the
    output reads as a recipient would see it; unsubscribe links carry a placeholder token.

    \b
    Example:
        newsletter build issues/2022-12-baby-botox.md
        newsletter build issues/2022-12-baby-botox.md --as ana@example.com --open
    """
    result = build_core.build(issue, _config(config_path), out_dir=out_dir, list_path=list_path, as_email=as_email)
    click.echo(
        f"Wrote {display_path(result.html_path)} ({result.html_bytes / 1024:.1f} KB) "
        f"and {display_path(result.text_path)}"
    )
    if result.size_warning:
        click.echo(f"Warning: {result.size_warning}", err=True)
    if open_after:
        click.launch(str(result.html_path))


@cli.command()
@click.argument("title")
@config_option
def new(title: str, config_path: Path | None) -> None:
    """Start a new issue: issues/YYYY-MM-<slug>.md with front matter filled in.

    \b
    Example:
        newsletter new "January 2023: winter skin care"
    """
    config = _config(config_path)
    path = new_issue(config.root / "issues", title, dt.date.today())
    click.echo(f"Wrote {display_path(path)}")


@cli.command()
@click.argument("folder", default=".", type=click.Path(file_okay=False, path_type=Path))
def init(folder: Path) -> None:
    """Create a newsletter folder: newsletter.toml, templates/, issues/ and an example list.

    \b
    Example:
        newsletter init my-newsletter
    """
    created = scaffold.init(folder, dt.date.today())
    for path in created:
        click.echo(f"Created {display_path(path)}")
    click.echo("Next: edit newsletter.toml, then run 'newsletter build' on the issue in issues/.")
