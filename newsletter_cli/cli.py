"""The `newsletter` command: parse options, call the core, print what happened. Nothing else."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from newsletter_cli import __version__, scaffold, suppressions, unsubscribe
from newsletter_cli import build as build_core
from newsletter_cli.config import Config, load_config
from newsletter_cli.errors import display_path
from newsletter_cli.issue import new_issue
from newsletter_cli.sendgrid_api import KEY_ENV, SendGrid
from newsletter_cli.store import REASONS, Store
from newsletter_cli.subscribers import DUPLICATE, INVALID, Counts, scan

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


@cli.group()
def subscribers() -> None:
    """Check the subscriber list.

    \b
    Example:
        newsletter subscribers check subscribers.csv
    """


@subscribers.command("check")
@click.argument("csv_path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@config_option
def subscribers_check(csv_path: Path | None, config_path: Path | None) -> None:
    """Validate a list: print every rejected row with its line and reason, then the counts.

    Exits 1 when any row is rejected (an invalid address or a duplicate).

    \b
    Example:
        newsletter subscribers check
        newsletter subscribers check exports/mailchimp.csv
    """
    config = _config(config_path)
    path = csv_path or config.root / "subscribers.csv"
    shown = display_path(path)
    counts = Counts()
    with Store.for_folder(config.state_dir) as store:
        for row in scan(path, store.suppressed_among):
            counts.add(row)
            if row.status in (INVALID, DUPLICATE):
                click.echo(f"{shown}:{row.line}: {row.reason}")
    click.echo(f"{shown}: {counts}")
    if counts.rejected:
        raise SystemExit(1)


@cli.group()
def unsubscribes() -> None:
    """Manage suppressed addresses: nobody on this list is ever sent to.

    \b
    Example:
        newsletter unsubscribes add someone@example.com
        newsletter unsubscribes list --json
    """


@unsubscribes.command("add")
@click.argument("emails", nargs=-1, required=True, metavar="EMAIL...")
@click.option("--reason", type=click.Choice(REASONS), default="manual", show_default=True)
@config_option
def unsubscribes_add(emails: tuple[str, ...], reason: str, config_path: Path | None) -> None:
    """Suppress addresses by hand.

    \b
    Example:
        newsletter unsubscribes add ana@example.com lee@example.org --reason unsubscribed
    """
    with Store.for_folder(_config(config_path).state_dir) as store:
        result = suppressions.add(store, emails, reason, "cli")
    click.echo(f"Suppressed {result.added} address{'es' * (result.added != 1)}" + _already(result.already))


@unsubscribes.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of {email, reason, source, created_at}.")
@config_option
def unsubscribes_list(as_json: bool, config_path: Path | None) -> None:
    """List suppressed addresses, oldest first.

    \b
    Example:
        newsletter unsubscribes list
        newsletter unsubscribes list --json > suppressions.json
    """
    with Store.for_folder(_config(config_path).state_dir) as store:
        rows = store.suppressions()
        if as_json:
            click.echo("[", nl=False)
            for index, entry in enumerate(rows):
                click.echo(("," if index else "") + json.dumps(asdict(entry)), nl=False)
            click.echo("]")
            return
        for entry in rows:
            click.echo(f"{entry.email}\t{entry.reason}\t{entry.source}\t{entry.created_at}")


@unsubscribes.command("import")
@click.argument("csv_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--reason", type=click.Choice(REASONS), default="unsubscribed", show_default=True)
@config_option
def unsubscribes_import(csv_path: Path, reason: str, config_path: Path | None) -> None:
    """Suppress every address in a CSV that has an email column (an export of unsubscribes).

    \b
    Example:
        newsletter unsubscribes import mailchimp-unsubscribed.csv
    """
    with Store.for_folder(_config(config_path).state_dir) as store:
        result = suppressions.import_csv(store, csv_path, reason)
    skipped = f", {result.invalid} invalid address{'es' * (result.invalid != 1)} skipped" if result.invalid else ""
    click.echo(f"Imported {result.added} from {display_path(csv_path)}" + _already(result.already, skipped))


@unsubscribes.command("sync")
@config_option
def unsubscribes_sync(config_path: Path | None) -> None:
    """Pull SendGrid's suppressions (unsubscribes, group, bounces, spam reports, invalid) into the store.

    Needs SENDGRID_API_KEY.

    \b
    Example:
        SENDGRID_API_KEY=... newsletter unsubscribes sync
    """
    config = _config(config_path)
    api = SendGrid(os.environ.get(KEY_ENV, ""), config.sendgrid_host)
    with Store.for_folder(config.state_dir) as store:
        learned = suppressions.sync(store, api, config.unsubscribe_group_id)
    total = sum(learned.values())
    detail = ", ".join(f"{count} {name}" for name, count in learned.items())
    click.echo(f"Learned {total} new suppression{'s' * (total != 1)} from SendGrid ({detail})")


@cli.command("serve-unsubscribe")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8026, show_default=True, type=int)
@config_option
def serve_unsubscribe(host: str, port: int, config_path: Path | None) -> None:
    """Run the one-click unsubscribe endpoint for [unsubscribe] url (needs NEWSLETTER_SECRET).

    For production, point any WSGI server at newsletter_cli.unsubscribe:app instead
    (settings from NEWSLETTER_CONFIG, NEWSLETTER_SECRET and SENDGRID_API_KEY).

    \b
    Example:
        NEWSLETTER_SECRET=... newsletter serve-unsubscribe --port 8026
    """
    environ = dict(os.environ)
    if config_path:
        environ["NEWSLETTER_CONFIG"] = str(config_path)
    endpoint = unsubscribe.app_from_environment(environ)
    server = unsubscribe.make_server(host, port, endpoint)
    click.echo(f"Serving unsubscribes on http://{host}:{server.server_port}/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("Stopped.")
    finally:
        server.server_close()


def _already(count: int, extra: str = "") -> str:
    return f" ({count} already suppressed{extra})" if count else (f" ({extra.lstrip(', ')})" if extra else "")
