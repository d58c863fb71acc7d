"""The `newsletter` command: parse options, call the core, print what happened. Nothing else.

Each command imports the core it needs when it runs, so that `newsletter --help` starts about
as fast as Click itself (benchmarks/startup.py) and no command pays for another's libraries
(mjml, premailer and lxml cost half a second)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import signal
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from newsletter_cli import __version__
from newsletter_cli.errors import NewsletterError, display_path

if TYPE_CHECKING:
    from newsletter_cli.config import Config
    from newsletter_cli.sending import Outcome, Plan, Sender

# the suppression reasons (store.database.REASONS), spelled here for --reason's choices: the
# store is not imported for --help (a test holds the two together)
REASONS = ("unsubscribed", "bounced", "spam_report", "invalid", "manual")

ISSUE_PATH = click.Path(exists=False, dir_okay=False, path_type=Path)


def config_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--config PATH`, shared by every command that works inside a newsletter folder."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="newsletter.toml to use (default: found in this folder or a parent).",
    )(command)


def list_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--list CSV`, the subscriber list, shared by the commands that read it."""
    return click.option(
        "--list",
        "list_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Subscriber list (default: subscribers.csv beside newsletter.toml).",
    )(command)


def _config(config_path: Path | None) -> Config:
    from newsletter_cli.config import load_config

    return load_config(config_path)


class _Commands(click.Group):
    """The group every command runs in: the core's errors become Click's one-line ``Error:``,
    and a disk or database failure the core did not foresee is one line too, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            raise click.ClickException(exc.message) from None
        except sqlite3.Error as exc:
            raise click.ClickException(f"the state database failed: {exc}") from None
        except OSError as exc:
            if exc.strerror is None:
                raise
            where = f"{display_path(Path(exc.filename))}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror}") from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
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
@list_option
@click.option("--as", "as_email", metavar="EMAIL", help="Fill merge fields from this subscriber's row.")
@click.option("--open", "open_after", is_flag=True, help="Open the html in the default browser.")
@click.option("--mjml", "write_mjml", is_flag=True, help="Also write build/<slug>.mjml, for finding what MJML refuses.")
@config_option
def build(
    issue: Path,
    out_dir: Path | None,
    list_path: Path | None,
    as_email: str | None,
    open_after: bool,
    write_mjml: bool,
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
    from newsletter_cli import build as build_core

    result = build_core.build(
        issue, _config(config_path), out_dir=out_dir, list_path=list_path, as_email=as_email, write_mjml=write_mjml
    )
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
    from newsletter_cli.issue import new_issue

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
    from newsletter_cli import scaffold

    created = scaffold.init(folder, dt.date.today())
    for path in created:
        click.echo(f"Created {display_path(path)}")
    click.echo("Next: edit newsletter.toml, then run 'newsletter build' on the issue in issues/.")


@cli.group("store")
def store_group() -> None:
    """Where the folder's state lives: its schema, and moving it to a shared database.

    The state (suppressions, the send journal, events, consents, signups) is in
    .newsletter/newsletter.db unless [store] url in newsletter.toml, or the
    NEWSLETTER_DATABASE_URL environment variable, names a PostgreSQL database.

    \b
    Example:
        newsletter store copy --to postgresql://newsletter@db.clinic.ca/newsletter
        newsletter store migrate
    """


@store_group.command("migrate")
@config_option
def store_migrate(config_path: Path | None) -> None:
    """Bring the store to this version's schema (a shared database is never migrated unasked).

    \b
    Example:
        newsletter store migrate
    """
    from newsletter_cli import store

    config = _config(config_path)
    where = store.location(config)
    before, after = store.migrate(where)
    shown = _store_name(where)
    if before == after:
        click.echo(f"{shown}: schema version {after}, already current.")
    else:
        click.echo(f"{shown}: schema version {before} -> {after}.")


@store_group.command("copy")
@click.option(
    "--to",
    "target",
    required=True,
    metavar="URL|FILE",
    help="An empty PostgreSQL database, postgresql://user@host/db (its password from PGPASSWORD or ~/.pgpass).",
)
@config_option
def store_copy(target: str, config_path: Path | None) -> None:
    """Copy this folder's state into an empty store, verified by counts; then point [store] url at it.

    \b
    Example:
        newsletter store copy --to postgresql://newsletter@db.clinic.ca/newsletter
    """
    from newsletter_cli.store import Store, postgres
    from newsletter_cli.store.copy import copy

    config = _config(config_path)
    where: Path | str = target if postgres.is_url(target) else Path(target)
    with Store.for_config(config) as source:
        result = copy(source, where)
    shown = _store_name(where)
    total = sum(result.tables.values())
    click.echo(f"Copied {total:,} rows into {shown}, and checked them: the same on both sides.")
    for table, count in result.tables.items():
        if count:
            click.echo(f"  {table}: {count:,}")
    if isinstance(where, str):
        click.echo(
            f'Next: add [store] url = "{shown}" to newsletter.toml on every machine (the password stays in '
            "PGPASSWORD or ~/.pgpass), then run 'newsletter status' to see the same journal."
        )


def _store_name(where: Path | str) -> str:
    from newsletter_cli.store import postgres

    return postgres.display(where) if isinstance(where, str) else display_path(where)


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
    from newsletter_cli import unsubscribe
    from newsletter_cli.store import Store
    from newsletter_cli.subscribers import DUPLICATE, INVALID, UNSUBSCRIBED, Counts, any_issue_budget, notices, scan

    config = _config(config_path)
    path = csv_path or config.subscribers_path
    shown = display_path(path)
    counts = Counts()
    for note in notices(path):
        click.echo(f"Note: {note}")
    budget = any_issue_budget(path, unsubscribe.measuring_linker(config))
    with Store.for_config(config) as store:
        for row in scan(path, store.suppressed_among, budget):
            counts.add(row)
            if row.status in (INVALID, DUPLICATE, UNSUBSCRIBED):
                click.echo(f"{shown}:{row.line}: {row.reason}")
    click.echo(f"{shown}: {counts}")
    if counts.rejected:
        raise SystemExit(1)


@subscribers.command("export")
@list_option
@click.option(
    "--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not to the screen."
)
@config_option
def subscribers_export(list_path: Path | None, out_path: Path | None, config_path: Path | None) -> None:
    """The whole audience as CSV: the list's valid rows and the confirmed signups, with where each
    came from and whether their consent is live; suppressed addresses are left out.

    \b
    Example:
        newsletter subscribers export --out audience.csv
    """
    from newsletter_cli.consent.audience import export

    config = _config(config_path)
    path = list_path or config.subscribers_path
    if out_path is None:
        export(config, path, click.get_text_stream("stdout"))
        return
    with out_path.open("w", encoding="utf-8", newline="") as handle:
        count = export(config, path, handle)
    click.echo(f"Wrote {count:,} subscriber{'s' * (count != 1)} to {display_path(out_path)}")


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
    from newsletter_cli import suppressions
    from newsletter_cli.store import Store

    with Store.for_config(_config(config_path)) as store:
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
    from newsletter_cli.store import Store

    with Store.for_config(_config(config_path)) as store:
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
    from newsletter_cli import suppressions
    from newsletter_cli.store import Store

    with Store.for_config(_config(config_path)) as store:
        result = suppressions.import_csv(store, csv_path, reason)
    skipped = f", {result.invalid} invalid address{'es' * (result.invalid != 1)} skipped" if result.invalid else ""
    click.echo(f"Imported {result.added} from {display_path(csv_path)}" + _already(result.already, skipped))
    if result.kept:
        click.echo(f"Left out {result.kept} row{'s' * (result.kept != 1)} the file marks as still subscribed.")


@unsubscribes.command("remove")
@click.argument("email")
@click.option("--kind", type=click.Choice(("express", "implied")), required=True, help="The new consent.")
@click.option("--basis", help="Implied consent's basis: purchase, inquiry, published, disclosed, non-business.")
@click.option("--method", required=True, help="How it was given: web double opt-in, paper form, verbal, staff.")
@click.option("--evidence", help="Where the proof is: a file path or a URI.")
@config_option
def unsubscribes_remove(
    email: str, kind: str, basis: str | None, method: str, evidence: str | None, config_path: Path | None
) -> None:
    """Lift a suppression (someone unsubscribed by mistake); their new consent is recorded with it.

    \b
    Example:
        newsletter unsubscribes remove ana@example.com --kind express --method verbal
    """
    from newsletter_cli.consent.records import resubscribe
    from newsletter_cli.store import Store

    with Store.for_config(_config(config_path)) as store:
        reason = resubscribe(store, email, kind, basis, method, _who(), evidence)
    click.echo(f"{email} is no longer suppressed (was: {reason}); their new {kind} consent is recorded.")


def _who() -> str:
    """Who is recording: the computer's user name."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown user"


@cli.command()
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Default: site/ in the folder."
)
@click.option("--all", "include_all", is_flag=True, help="Also issues not sent yet.")
@config_option
def archive(out_dir: Path | None, include_all: bool, config_path: Path | None) -> None:
    """Write the web archive of sent issues: a page each, an index, latest/ and an Atom feed,
    with the pictures they show; upload the folder to [archive] url.

    \b
    Example:
        newsletter archive --out site/
    """
    from newsletter_cli.archive.site import write_site

    config = _config(config_path)
    written = write_site(config, out_dir or config.root / "site", include_all)
    for reason in written.left_out:
        click.echo(f"Left out {reason}")
    count = len(written.issues)
    click.echo(
        f"Wrote {display_path(written.out_dir)}/: {count} issue{'s' * (count != 1)}, index.html, latest/ and "
        f"feed.xml ({len(written.files)} files); publish it at {config.archive_url}/"
    )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="A JSON list of {level, code, message}.")
@click.option("--http", "probe", is_flag=True, help="Also send the unsubscribe endpoint a HEAD request.")
@config_option
def doctor(as_json: bool, probe: bool, config_path: Path | None) -> None:
    """Check, before the first send, that mail from this folder will arrive: SendGrid's domain
    authentication and key scopes, SPF, DMARC and DKIM in the DNS, the unsubscribe endpoint.

    Exit status 1 on any error. A check that cannot be made (no network, no key) is a warning.

    \b
    Example:
        SENDGRID_API_KEY=... newsletter doctor
    """
    from newsletter_cli.doctor.finding import ERROR
    from newsletter_cli.doctor.run import examine

    found = examine(_config(config_path), probe=probe)
    if as_json:
        click.echo(json.dumps([{"level": f.level, "code": f.code, "message": f.message} for f in found]))
    else:
        for finding in found:
            click.echo(str(finding))
        errors = sum(f.level == ERROR for f in found)
        warnings = sum(f.level == "warning" for f in found)
        click.echo(f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}")
    if any(f.level == ERROR for f in found):
        raise SystemExit(1)


@cli.command("signup-form")
@click.option("--form", "form_id", default="signup", show_default=True, help="Names the form in consent records.")
@config_option
def signup_form(form_id: str, config_path: Path | None) -> None:
    """Print the HTML sign-up form to paste into your website; it posts to [signup] url.

    \b
    Example:
        newsletter signup-form --form homepage > signup-form.html
    """
    from newsletter_cli.consent.signup import FORM_ID, SignupError, form_snippet

    config = _config(config_path)
    if config.signup_url is None or config.signup_wording is None:
        raise SignupError("set [signup] url and wording in newsletter.toml first")
    if not FORM_ID.match(form_id):
        raise SignupError(f"--form {form_id!r}: use letters, digits, - and _ (at most 40)")
    click.echo(form_snippet(config, form_id))


@cli.group()
def consent() -> None:
    """The consent ledger: who agreed to be mailed, how, when, and until when (CASL).

    \b
    Example:
        newsletter consent import signups-2024.csv --kind express --method "paper form" --date-column signed
        newsletter consent show ana@example.com
    """


@consent.command("import")
@click.argument("csv_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--kind", type=click.Choice(("express", "implied")), required=True)
@click.option("--basis", help="Implied consent's basis: purchase, inquiry, published, disclosed, non-business.")
@click.option("--method", required=True, help="web double opt-in, paper form, verbal, import or staff.")
@click.option("--date-column", metavar="COLUMN", help="The column with each row's date of consent.")
@click.option("--date", "date_text", metavar="DATE", help="One date of consent for every row, like 2024-03-05.")
@click.option("--wording-file", type=click.Path(dir_okay=False, path_type=Path), help="The words consented to.")
@click.option("--source", help="Where the consent came from (default: import:FILE).")
@click.option("--evidence", help="Where the proof is: a file path or a URI.")
@config_option
def consent_import(
    csv_path: Path,
    kind: str,
    basis: str | None,
    method: str,
    date_column: str | None,
    date_text: str | None,
    wording_file: Path | None,
    source: str | None,
    evidence: str | None,
    config_path: Path | None,
) -> None:
    """Record the consent of every address in a CSV; any bad row stops the import, naming its line.

    \b
    Example:
        newsletter consent import clinic-signups.csv --kind express --method "paper form" --date-column date
    """
    from newsletter_cli.consent.importer import ConsentError, import_csv, parse_when
    from newsletter_cli.store import Store

    try:
        date = parse_when(date_text) if date_text else None
    except ValueError as exc:
        raise ConsentError(f"--date: {exc}") from None
    wording = _read_text(wording_file) if wording_file else None
    with Store.for_config(_config(config_path)) as store:
        done = import_csv(
            store,
            csv_path,
            kind=kind,
            basis=basis,
            method=method,
            recorded_by=_who(),
            date_column=date_column,
            date=date,
            wording=wording,
            source=source,
            evidence=evidence,
        )
    click.echo(f"Recorded the {kind} consent of {done.added:,} address{'es' * (done.added != 1)}.")
    if done.unsubscribed:
        click.echo(
            f"Left out {done.unsubscribed:,} row{'s' * (done.unsubscribed != 1)} the file marks as unsubscribed."
        )
    if done.lapsed:
        click.echo(f"{done.lapsed:,} of these implied consents have lapsed already: they are history, not consent.")


def _read_text(path: Path) -> str:
    from newsletter_cli.consent.importer import ConsentError

    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConsentError(f"{display_path(path)}: cannot read the wording: {exc}") from None


@consent.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of the records.")
@config_option
def consent_show(email: str, as_json: bool, config_path: Path | None) -> None:
    """One person's consent history, and whether they may be mailed today.

    \b
    Example:
        newsletter consent show ana@example.com
    """
    from newsletter_cli.consent.records import history_json, summary
    from newsletter_cli.store import Store

    with Store.for_config(_config(config_path)) as store:
        if as_json:
            click.echo(json.dumps(history_json(store, email)))
            return
        for line in summary(store, email):
            click.echo(line)


@consent.command("export")
@click.option(
    "--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not to the screen."
)
@config_option
def consent_export(out_path: Path | None, config_path: Path | None) -> None:
    """The whole ledger as CSV, oldest record first (for a regulator's request, say).

    \b
    Example:
        newsletter consent export --out consent-ledger.csv
    """
    from newsletter_cli.consent.records import export_csv
    from newsletter_cli.store import Store

    with Store.for_config(_config(config_path)) as store:
        if out_path is None:
            export_csv(store, click.get_text_stream("stdout"))
            return
        with out_path.open("w", encoding="utf-8", newline="") as handle:
            count = export_csv(store, handle)
    click.echo(f"Wrote {count:,} record{'s' * (count != 1)} to {display_path(out_path)}")


@consent.command("expiring")
@click.option("--within", default="60d", show_default=True, help="How far ahead: days, like 60d.")
@config_option
def consent_expiring(within: str, config_path: Path | None) -> None:
    """People whose implied consent lapses soon: ask them for express consent before then.

    \b
    Example:
        newsletter consent expiring --within 90d
    """
    from newsletter_cli.consent.records import expiring
    from newsletter_cli.store import Store

    with Store.for_config(_config(config_path)) as store:
        found = expiring(store, within)
    for email, until, basis in found:
        click.echo(f"{email}\tlapses {until.date().isoformat()}\timplied by {basis}")
    click.echo(f"{len(found):,} implied consent{'s' * (len(found) != 1)} lapse within {within}.")


@unsubscribes.command("sync")
@config_option
def unsubscribes_sync(config_path: Path | None) -> None:
    """Pull SendGrid's suppressions (unsubscribes, group, bounces, spam reports, invalid) into the store.

    Needs SENDGRID_API_KEY.

    \b
    Example:
        SENDGRID_API_KEY=... newsletter unsubscribes sync
    """
    from newsletter_cli import suppressions
    from newsletter_cli.sendgrid_api import KEY_ENV, SendGrid, Timing
    from newsletter_cli.store import Store

    config = _config(config_path)
    api = SendGrid(os.environ.get(KEY_ENV, ""), config.sendgrid_host, timing=Timing.from_environ())
    with Store.for_config(config) as store:
        told = suppressions.push_pending(store, api)
        learned = suppressions.sync(store, api, config.unsubscribe_group_id)
    if told:
        click.echo(f"Told SendGrid of {told} unsubscribe{'s' * (told != 1)} the endpoint had recorded")
    total = sum(learned.values())
    detail = ", ".join(f"{count} {name}" for name, count in learned.items())
    click.echo(f"Learned {total} new suppression{'s' * (total != 1)} from SendGrid ({detail})")


def _serve(host: str, port: int, config_path: Path | None) -> None:
    from newsletter_cli.web.server import make_server
    from newsletter_cli.web.site import app_from_environment

    environ = dict(os.environ)
    if config_path:
        environ["NEWSLETTER_CONFIG"] = str(config_path)
    site = app_from_environment(environ)
    server = make_server(host, port, site)
    base = f"http://{host}:{server.server_port}"
    click.echo(f"Serving unsubscribes on {base}/ (Ctrl-C to stop)")
    if site.events.verifier is not None:
        click.echo(f"SendGrid's Event Webhook: POST {base}{site.events_path}")
    else:
        click.echo("SendGrid's events are refused: set [events] public_key or SENDGRID_WEBHOOK_PUBLIC_KEY to take them")
    if site.signup.open:
        click.echo(f"Signup form: {base}/subscribe (published as {site.config.signup_url})")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("Stopped.")
    finally:
        site.close()
        server.server_close()


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8026, show_default=True, type=int)
@config_option
def serve(host: str, port: int, config_path: Path | None) -> None:
    """Run the one-click unsubscribe endpoint for [unsubscribe] url (needs NEWSLETTER_SECRET) and
    SendGrid's signed Event Webhook at [events] path (default /sendgrid/events).

    For production, point any WSGI server at newsletter_cli.web.site:app instead (settings from
    NEWSLETTER_CONFIG, NEWSLETTER_SECRET, SENDGRID_API_KEY and SENDGRID_WEBHOOK_PUBLIC_KEY).

    \b
    Example:
        NEWSLETTER_SECRET=... newsletter serve --port 8026
    """
    _serve(host, port, config_path)


@cli.command("serve-unsubscribe")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8026, show_default=True, type=int)
@config_option
def serve_unsubscribe(host: str, port: int, config_path: Path | None) -> None:
    """The same as `newsletter serve` (its older name).

    \b
    Example:
        NEWSLETTER_SECRET=... newsletter serve-unsubscribe --port 8026
    """
    _serve(host, port, config_path)


def _already(count: int, extra: str = "") -> str:
    return f" ({count} already suppressed{extra})" if count else (f" ({extra.lstrip(', ')})" if extra else "")


@cli.command()
@click.argument("issue", type=ISSUE_PATH)
@list_option
@click.option(
    "--dry-run", is_flag=True, help="Write the payloads and a sample .eml to build/<slug>-dry-run/; send nothing."
)
@click.option("--yes", is_flag=True, help="Send without asking for confirmation.")
@click.option("--limit", type=click.IntRange(min=1), help="Send to the first N eligible recipients only.")
@click.option(
    "--at", "at", metavar="TIME", help="Schedule: ISO 8601, local time or with an offset, at most 72 h ahead."
)
@click.option("--no-sync", is_flag=True, help="Do not pull SendGrid's suppressions first.")
@click.option("--batch-size", type=click.IntRange(1, 1000), default=1000, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 64), default=8, show_default=True, help="Requests in flight.")
@click.option("--retry-failed", is_flag=True, help="Send again to recipients whose batch failed.")
@click.option("--resend-uncertain", is_flag=True, help="Send again to batches a crash left uncertain.")
@click.option("--force", is_flag=True, help="Send even when 'newsletter check' finds errors.")
@click.option(
    "--drop-pending", is_flag=True, help="Drop pending recipients of an earlier run that this list does not have."
)
@config_option
def send(
    issue: Path,
    list_path: Path | None,
    dry_run: bool,
    yes: bool,
    limit: int | None,
    at: str | None,
    no_sync: bool,
    batch_size: int,
    concurrency: int,
    retry_failed: bool,
    resend_uncertain: bool,
    force: bool,
    drop_pending: bool,
    config_path: Path | None,
) -> None:
    """Send an issue to the list through SendGrid, exactly once, resumably.

    Shows a summary and asks before anything leaves. Running it again resumes: nobody who
    already has the issue is mailed again.

    \b
    Example:
        newsletter send issues/2022-12-baby-botox.md --dry-run
        newsletter send issues/2022-12-baby-botox.md --limit 50
        newsletter send issues/2022-12-baby-botox.md --yes
    """
    from newsletter_cli.sending import Outcome, Sender, SendError, SendOptions, parse_send_at

    config = _config(config_path)
    options = SendOptions(
        list_path=list_path,
        limit=limit,
        send_at=parse_send_at(at) if at else None,
        sync=not no_sync and not dry_run,
        batch_size=batch_size,
        concurrency=concurrency,
        retry_failed=retry_failed,
        resend_uncertain=resend_uncertain,
        force=force,
        drop_pending=drop_pending,
        dry_run=dry_run,
    )
    again = _again(issue, list_path, config_path)
    with Sender(config, issue, options) as sender:
        if dry_run:
            out_dir = config.root / "build" / f"{sender.slug}-dry-run"
            from newsletter_cli.sending.dry_run import dry_run as write_dry_run

            plan, files = write_dry_run(sender, out_dir)
            _show_plan(plan, sender)
            if sender.stand_in_secret:
                click.echo(
                    "Note: NEWSLETTER_SECRET is not set, so these unsubscribe links are signed with a throwaway "
                    "secret and would not work; set it to see the links a real send carries."
                )
            if plan.to_send:
                click.echo(f"Open {display_path(out_dir / 'sample.eml')} in any mail client to see the email as sent.")
            click.echo(
                f"Dry run: wrote {files} batch payload{'s' * (files != 1)}"
                f"{' and sample.eml' if plan.to_send else ''} to {display_path(out_dir)}/; nothing was sent."
            )
            return
        plan = sender.prepare()
        _show_plan(plan, sender)
        from newsletter_cli.doctor.run import quick

        for finding in quick(config):
            click.echo(f"{'Doctor:':<13}{finding.message} (a warning: see 'newsletter doctor')")
        if plan.to_send == 0:
            sender.confirm(plan)
            line, code = _report(Outcome(counts=sender.outcome_counts(plan)), issue, again)
            click.echo(line)
            raise SystemExit(code)
        if not yes:
            if not sys.stdin.isatty():
                sender.decline(plan)
                raise SendError("no terminal to confirm on: add --yes to send without asking. Nothing was sent.")
            if not click.confirm(f"Send to {plan.to_send:,} recipient{'s' * (plan.to_send != 1)}?"):
                sender.decline(plan)
                click.echo("Nothing was sent.")
                raise SystemExit(1)
        outcome = _run_with_progress(sender, plan)
    line, code = _report(outcome, issue, again)
    if config.archive_url and outcome.sent:
        from newsletter_cli.render import web_url

        click.echo(f"Its web version is {web_url(config, issue.stem)}: publish it with 'newsletter archive'.")
    if plan.send_at and outcome.sent and code == 0:
        from newsletter_cli.sending.cancel import deadline

        until = deadline(plan.send_at).astimezone().isoformat(timespec="minutes")
        line = (
            f"Scheduled {outcome.sent:,} recipients for {plan.send_at.isoformat(timespec='minutes')}: nothing goes "
            f"out before then, and 'newsletter cancel {issue}' calls it off until {until}."
        )
    if outcome.error is not None:
        raise SendError(f"{outcome.error.message}. Sending stopped; {line}")
    click.echo(line)
    raise SystemExit(code)


def _show_plan(plan: Plan, sender: Sender) -> None:
    from newsletter_cli.config import UnsubscribeMode

    assert sender.rendered is not None
    sample = sender.rendered.personalize({"email": ""}).subject
    skipped = [f"{plan.invalid:,} invalid", f"{plan.duplicate:,} duplicate", f"{plan.suppressed:,} suppressed"]
    if plan.unsubscribed:
        skipped.append(f"{plan.unsubscribed:,} unsubscribed (the list says so)")
    if sender.config.consent_require:
        skipped.append(f"no consent: {plan.no_consent:,}, implied expired: {plan.consent_lapsed:,}")
    skipped.append(f"{plan.already_sent:,} already sent")
    if plan.dropped:
        skipped.append(f"{plan.dropped:,} pending no longer on the list (dropped)")
    if plan.failed_left:
        skipped.append(f"{plan.failed_left:,} failed earlier (--retry-failed)")
    if plan.uncertain_left:
        skipped.append(f"{plan.uncertain_left:,} uncertain (--resend-uncertain)")
    if plan.in_flight_left:
        skipped.append(f"{plan.in_flight_left:,} in flight in a send that stopped or lost the database")
    config = sender.config
    mode = (
        f"SendGrid group {config.unsubscribe_group_id}"
        if plan.mode is UnsubscribeMode.SENDGRID
        else f"own endpoint ({config.unsubscribe_url})"
    )
    new = f" ({plan.new:,} new since the last send of this issue)" if plan.already_sent and plan.new else ""
    lines = [
        ("Issue", plan.slug),
        ("Subject", sample),
        ("From", plan.sender),
        ("Recipients", f"{plan.to_send:,}{new}"),
        ("Skipped", ", ".join(skipped)),
        ("Batches", f"{plan.batches:,} of up to {sender.options.batch_size}, {sender.options.concurrency} at a time"),
        ("Unsubscribe", mode),
    ]
    if plan.send_at:
        lines.append(("Scheduled", plan.send_at.isoformat(timespec="minutes")))
    if plan.learned is not None:
        lines.append(("Synced", f"learned {sum(plan.learned.values()):,} new suppressions from SendGrid"))
    if sender.check_errors:
        count = len(sender.check_errors)
        errors = f"{count} error{'s' * (count != 1)}"
        if sender.options.force:
            lines.append(("Check", f"{errors} ignored (--force); see 'newsletter check'"))
        else:  # a dry run: a real send refuses them
            lines.append(("Check", f"{errors}, which a real send refuses (first: {sender.check_errors[0]})"))
    for label, value in lines:
        click.echo(f"{label + ':':<13}{value}")
    shown = display_path(sender.list_path)
    for refused in sender.refused:
        click.echo(f"{shown}:{refused.line}: skipped: {refused.reason}")
    more = plan.invalid + plan.unsubscribed - len(sender.refused)
    if more > 0:
        click.echo(f"{shown}: and {more:,} more skipped rows: see 'newsletter subscribers check'")


def _run_with_progress(sender: Sender, plan: Plan) -> Outcome:
    """Ctrl-C lets the requests in flight finish and be recorded; a second one quits at once."""
    from newsletter_cli.sending import Progress

    def first_interrupt(signum: int, frame: object) -> None:
        click.echo(
            "\nStopping after the requests in flight (Ctrl-C again to quit now; they become uncertain)", err=True
        )
        sender.stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, first_interrupt)
    try:
        if sys.stdout.isatty():
            with click.progressbar(length=plan.to_send, label="Sending", show_eta=True, show_pos=True) as bar:
                return sender.run(plan, lambda p: bar.update(p.size))

        def line(progress: Progress) -> None:
            what = f"{progress.status}: {progress.error}" if progress.error else progress.status
            done = progress.sent + progress.failed + progress.uncertain
            click.echo(f"batch {progress.batch}: {progress.size:,} {what} ({done:,}/{progress.total:,})")

        return sender.run(plan, line)
    finally:
        signal.signal(signal.SIGINT, previous)


def _again(issue: Path, list_path: Path | None, config_path: Path | None) -> str:
    """The command that resumes this send: every option that decides who is mailed."""
    words = ["newsletter", "send", str(issue)]
    if list_path is not None:
        words += ["--list", str(list_path)]
    if config_path is not None:
        words += ["--config", str(config_path)]
    return " ".join(shlex.quote(word) for word in words)


def _report(outcome: Outcome, issue: Path, again: str) -> tuple[str, int]:
    """The last line of a send: what happened and what to run next, with the exit code."""
    counts = outcome.counts
    if outcome.stopped or outcome.error is not None:
        unknown = (
            f", {counts['uncertain'] + counts.get('in_flight', 0):,} uncertain or in flight "
            f"(perhaps delivered: see 'newsletter status {issue}')"
            if counts["uncertain"] or counts.get("in_flight")
            else ""
        )
        return (
            f"{outcome.sent:,} sent in this run{unknown}, {counts['pending']:,} still pending: "
            f"run '{again}' to resume.",
            1,
        )
    problems = []
    if counts["failed"]:
        problems.append(f"{counts['failed']:,} failed (see 'newsletter status {issue}', then '{again} --retry-failed')")
    if counts["uncertain"]:
        problems.append(
            f"{counts['uncertain']:,} uncertain: SendGrid may or may not have accepted them (see "
            f"'newsletter status {issue}'; '{again} --resend-uncertain' mails them again, perhaps twice)"
        )
    if counts.get("in_flight"):
        problems.append(
            f"{counts['in_flight']:,} in flight in a send that stopped or lost the database: not known yet, "
            f"and uncertain once its lease ends unless it records SendGrid's answer (see 'newsletter status {issue}')"
        )
    if problems:
        return f"Sent to {outcome.sent:,} in this run; " + "; ".join(problems) + ".", 1
    if counts["pending"]:
        return f"Sent to {outcome.sent:,} (--limit); {counts['pending']:,} still pending: run '{again}' to continue.", 0
    listed = counts["sent"] - counts["sent_elsewhere"]
    elsewhere = f" ({counts['sent_elsewhere']:,} more from an earlier list)" if counts["sent_elsewhere"] else ""
    if outcome.sent == 0:
        return f"Nothing to send: all {listed:,} eligible recipients already have this issue{elsewhere}.", 0
    return f"Sent to {outcome.sent:,} recipients; all {listed:,} eligible recipients have this issue{elsewhere}.", 0


@cli.command()
@click.argument("issue", type=ISSUE_PATH)
@click.option("--json", "as_json", is_flag=True, help="One JSON object with the counts and failed batches.")
@click.option(
    "--addresses",
    "state",
    type=click.Choice(["sent", "pending", "failed", "uncertain"]),
    help="Print the addresses in this state instead, one a line.",
)
@config_option
def status(issue: Path, as_json: bool, state: str | None, config_path: Path | None) -> None:
    """Where the send of an issue stands: sent, pending, failed, uncertain and skipped.

    \b
    Example:
        newsletter status issues/2022-12-baby-botox.md
        newsletter status issues/2022-12-baby-botox.md --json
        newsletter status issues/2022-12-baby-botox.md --addresses uncertain
    """
    from newsletter_cli.sending.status import addresses as send_addresses
    from newsletter_cli.sending.status import status as send_status

    if state is not None:
        for address in send_addresses(_config(config_path), issue.stem, state):
            click.echo(address)
        return
    result = send_status(_config(config_path), issue.stem)
    if as_json:
        click.echo(json.dumps(result))
        return
    rows = f" of {result['rows']:,} rows in the list" if result["rows"] is not None else ""
    scheduled = f"{result['scheduled']:,} scheduled, " if result["scheduled"] else ""
    click.echo(
        f"{issue.stem}: {scheduled}{result['sent']:,} sent, {result['pending']:,} pending, "
        f"{result['failed']:,} failed, "
        f"{result['uncertain']:,} uncertain; skipped {result['suppressed']:,} suppressed, "
        f"{result['invalid']:,} invalid, {result['duplicate']:,} duplicate"
        + (f", {result['unsubscribed']:,} unsubscribed (the list says so)" if result["unsubscribed"] else "")
        + (
            f", no consent: {result['no_consent']:,}, implied expired: {result['consent_lapsed']:,}"
            if result["no_consent"] or result["consent_lapsed"]
            else ""
        )
        + rows
    )
    if result["not_on_list"]:
        click.echo(f"{result['not_on_list']:,} of those are not on the list the last send read (an earlier list).")
    if result["running"]:
        click.echo(f"A send is running: {result['in_flight']:,} in flight.")
    elif result["in_flight"]:
        on = f" on {', '.join(result['in_flight_holders'])}" if result["in_flight_holders"] else ""
        click.echo(
            f"{result['in_flight']:,} in flight in a send{on} that no longer holds the lock (stopped, or cut off "
            f"from the database): uncertain from {result['lease_ends']} unless it records their answer first."
        )
    if result["scheduled_at"]:
        click.echo(
            f"Scheduled for {result['scheduled_at']}: SendGrid sends it then; 'newsletter cancel {issue}' calls it "
            f"off until {result['cancel_until']}."
        )
    elif result["cancelled_at"]:
        click.echo(f"A scheduled send was cancelled at {result['cancelled_at']}.")
    if result["last_batch_at"]:
        click.echo(f"Last batch: {result['last_batch_at']}")
    for batch in result["failed_batches"]:
        click.echo(f"Failed batch {batch['batch']} ({batch['recipients']:,} recipients): {batch['error']}")
    for batch in result["uncertain_batches"]:
        click.echo(
            f"Uncertain batch {batch['batch']} ({batch['recipients']:,} recipients): perhaps delivered, "
            f"perhaps not ({batch['error']}); {batch['advice']}"
        )
    for batch in result["settled_batches"]:
        click.echo(
            f"Batch {batch['batch']} ({batch['recipients']:,} recipients) was uncertain; SendGrid took it: "
            f"{batch['settled_by']} came"
        )


@cli.command()
@click.argument("issue", type=ISSUE_PATH)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--html", "as_html", is_flag=True, help="Also write build/<slug>-stats.html, with a chart.")
@config_option
def stats(issue: Path, as_json: bool, as_html: bool, config_path: Path | None) -> None:
    """What became of an issue after SendGrid took it: delivered, bounced, opened, clicked...

    From the events SendGrid's Event Webhook posted to `newsletter serve`; each figure counts
    recipients, with its share of those delivered.

    \b
    Example:
        newsletter stats issues/2022-12-baby-botox.md --html
    """
    from newsletter_cli.events.stats import lines, stats, write_page

    config = _config(config_path)
    result = stats(config, issue.stem)
    if as_json:
        click.echo(json.dumps(result.as_json()))
    else:
        for line in lines(result):
            click.echo(line)
    if as_html:
        path = write_page(result, config, config.root / "build")
        click.echo(f"Wrote {display_path(path)}", err=as_json)


@cli.command()
@click.argument("issue", type=ISSUE_PATH)
@click.option("--force", is_flag=True, help="Try even within 10 minutes of the send time.")
@config_option
def cancel(issue: Path, force: bool, config_path: Path | None) -> None:
    """Call off a send scheduled with --at, before SendGrid sends it.

    Everyone it would have reached is pending again: send again, now or with a new --at.

    \b
    Example:
        SENDGRID_API_KEY=... newsletter cancel issues/2022-12-baby-botox.md
    """
    from newsletter_cli.sending.cancel import cancel as cancel_send

    done = cancel_send(_config(config_path), issue.stem, force)
    shown = done.send_at.astimezone().isoformat(timespec="minutes")
    click.echo(
        f"Cancelled the send scheduled for {shown}; {done.pending:,} recipients are pending again: "
        f"'newsletter send {issue}' sends them (add --at to schedule again)."
    )


@cli.command("preview")
@click.argument("issue", type=ISSUE_PATH)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8025, show_default=True, type=int)
@click.option("--no-open", is_flag=True, help="Do not open a browser.")
@click.option("--as", "as_email", metavar="EMAIL", help="Preview as this subscriber first.")
@list_option
@click.option("--send-test", "send_test_to", metavar="EMAIL", help="Send one [TEST] copy to EMAIL and exit.")
@config_option
def preview_command(
    issue: Path,
    host: str,
    port: int,
    no_open: bool,
    as_email: str | None,
    list_path: Path | None,
    send_test_to: str | None,
    config_path: Path | None,
) -> None:
    """Preview an issue live in the browser: desktop and phone widths, dark mode, plain text.

    Saving the issue, newsletter.toml, the list or a template refreshes the page by itself.

    \b
    Example:
        newsletter preview issues/2022-12-baby-botox.md
        newsletter preview issues/2022-12-baby-botox.md --send-test you@example.com
    """
    from newsletter_cli.web import livereload
    from newsletter_cli.web.preview import live_preview

    config = _config(config_path)
    if send_test_to:
        from newsletter_cli.sending.test_copy import send_test

        address = send_test(config, issue, send_test_to, list_path, as_email)
        click.echo(f"Sent a [TEST] copy of {issue.stem} to {address}.")
        return

    def watched() -> list[Path]:
        templates = sorted(config.templates_dir.glob("*")) if config.templates_dir.is_dir() else []
        return [issue, config.path, list_path or config.subscribers_path, *templates]

    def ready(url: str) -> None:
        click.echo(f"Previewing {issue} at {url} (Ctrl-C to stop)")
        if not no_open:
            click.launch(url)

    site = live_preview(config_path, issue, list_path, as_email)
    try:
        livereload.serve(site, host, port, watched, ready)
    except KeyboardInterrupt:
        click.echo("Stopped.")


@cli.command()
@click.argument("issue", type=ISSUE_PATH)
@list_option
@click.option("--json", "as_json", is_flag=True, help="A JSON list of {level, code, message, file, line}.")
@click.option("--spam", "spam", is_flag=True, help="Also score the email with a local SpamAssassin.")
@click.option("--sendgrid", "ask_sendgrid", is_flag=True, help="Also have SendGrid validate the first batch (sandbox).")
@config_option
def check(
    issue: Path, list_path: Path | None, as_json: bool, spam: bool, ask_sendgrid: bool, config_path: Path | None
) -> None:
    """Find what would break the email: clipping, missing alt text, bad links, unknown fields...

    Prints FILE:LINE: error|warning: message, then a summary; exits 1 on any error. Each
    finding's code (in --json) is explained in the README.

    \b
    Example:
        newsletter check issues/2022-12-baby-botox.md
        newsletter check issues/2022-12-baby-botox.md --json
        newsletter check issues/2022-12-baby-botox.md --spam
    """
    from newsletter_cli import check as checks

    config = _config(config_path)
    findings, notes = checks.check(issue, config, list_path)
    if spam:
        spam_findings, spam_notes = checks.spam(issue, config)
        findings, notes = sorted([*findings, *spam_findings], key=checks.Finding.sort_key), [*notes, *spam_notes]
    if ask_sendgrid:
        from newsletter_cli.check.sandbox import sandbox

        sandbox_findings, sandbox_notes = sandbox(issue, config, list_path)
        findings, notes = sorted([*findings, *sandbox_findings], key=checks.Finding.sort_key), [*notes, *sandbox_notes]
    for note in notes:
        click.echo(f"Note: {note}", err=True)
    errors = sum(f.level == checks.ERROR for f in findings)
    if as_json:
        click.echo(json.dumps(checks.findings_json(findings), indent=2))
    else:
        for finding in findings:
            click.echo(str(finding))
        warnings = len(findings) - errors
        click.echo(
            f"{issue}: {errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
            if findings
            else f"{issue}: no problems found"
        )
    if errors:
        raise SystemExit(1)
