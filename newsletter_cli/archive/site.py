"""The archive's static site: one page per sent issue (rendered for nobody), an index newest
first, ``latest/``, the pictures the issues show, and an Atom feed (feedgenerator).

An issue's web version has every merge field at its default: an issue with a field that has no
default is refused, since the page would show a blank where each reader saw their own value.
No list is read, so nothing of any subscriber can reach the site. Feed entries have ``tag:``
ids made of the sender's domain, the issue's date and its slug, which a move of the site
does not change. Every file is written whole (a temporary name, then renamed) and readable
by the web server.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from newsletter_cli import store as state
from newsletter_cli.build import write_files
from newsletter_cli.config import Config
from newsletter_cli.errors import NewsletterError, RenderError, display_path
from newsletter_cli.issue import Issue, load_issue
from newsletter_cli.render import Rendered, render, web_url
from newsletter_cli.store import Store
from newsletter_cli.store.journal import sent_issues

FILE_MODE = 0o644


class ArchiveError(NewsletterError):
    pass


@dataclass(frozen=True)
class Page:
    issue: Issue
    rendered: Rendered
    html: str
    day: dt.date


@dataclass(frozen=True)
class Written:
    out_dir: Path
    issues: list[str]  # slugs, newest first
    left_out: list[str]  # why each issue found was not published
    files: list[Path]


def write_site(config: Config, out_dir: Path, include_all: bool = False) -> Written:
    if config.archive_url is None:
        raise ArchiveError(f"set [archive] url in {display_path(config.path)} first: where the site will be")
    pages, left_out = [], []
    sent = _sent_issues(config)
    for path in sorted((config.root / "issues").glob("*.md")):
        issue = load_issue(path)
        if not issue.archive:
            left_out.append(f"{issue.slug}: archive: false")
            continue
        if not include_all and issue.slug not in sent:
            left_out.append(f"{issue.slug}: not sent yet (--all to include it)")
            continue
        pages.append(_page(config, issue))
    pages.sort(key=lambda page: (page.day, page.issue.slug), reverse=True)
    texts = {out_dir / page.issue.slug / "index.html": page.html for page in pages}
    if pages:
        refresh = f'<meta http-equiv="refresh" content="0; url={web_url(config, pages[0].issue.slug)}">'
        texts[out_dir / "latest" / "index.html"] = pages[0].html.replace("<head>", f"<head>{refresh}", 1)
    texts[out_dir / "index.html"] = _index(config, pages)
    texts[out_dir / "feed.xml"] = _feed(config, pages)
    pictures = {out_dir / name: source for page in pages for name, source in page.rendered.images.items()}
    for target, source in pictures.items():
        _copy(source, target)
    write_files(texts)  # all pages or none, each world-readable
    return Written(out_dir, [page.issue.slug for page in pages], left_out, [*texts, *pictures])


def _sent_issues(config: Config) -> set[str]:
    """The issues the journal records as sent to someone."""
    if not state.exists(config):
        return set()
    with Store.for_config(config) as store:
        return sent_issues(store)


def _page(config: Config, issue: Issue) -> Page:
    rendered = render(issue, config, web=True)
    for field in rendered.issue_fields:
        if field.default is None:
            raise RenderError(
                f'subscriber.{field.name} has no | default("...") for the web version, which is for nobody: '
                "add one, or archive: false in the front matter",
                issue.path,
                field.line,
            )
    message = rendered.personalize({"email": "", "unsubscribe_url": ""})
    url = web_url(config, issue.slug)
    head = (
        f'<link rel="canonical" href="{html.escape(url)}">'
        f'<link rel="alternate" type="application/atom+xml" title="{html.escape(config.name)}" '
        f'href="{html.escape(config.archive_url or "")}/feed.xml">'
    )
    page = re.sub(r"</head>", head + "</head>", message.html, count=1)
    return Page(issue, rendered, page, issue.date or _modified(issue.path))


def _modified(path: Path) -> dt.date:
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).date()


def _index(config: Config, pages: list[Page]) -> str:
    e = html.escape
    items = "\n".join(
        f'<li><a href="{e(page.issue.slug)}/">{e(page.rendered.personalize({}).subject)}</a> '
        f'<time datetime="{page.day.isoformat()}">{page.day:%B} {page.day.day}, {page.day.year}</time></li>'
        for page in pages
    )
    signup = f'<p><a href="{e(config.signup_url)}">Subscribe</a></p>' if config.signup_url else ""
    return (
        f'<!doctype html>\n<html lang="{e(config.language)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(config.name)}: past issues</title>"
        f'<link rel="alternate" type="application/atom+xml" title="{e(config.name)}" href="feed.xml">'
        "<style>body{margin:0;font:16px/1.6 -apple-system,BlinkMacSystemFont,'Segoe UI',Helvetica,Arial,sans-serif;"
        "color:#1f2933;background:#eef1f4}main{max-width:600px;margin:32px auto;padding:24px;background:#fff;"
        "border-radius:8px}a{color:#0a5c63}time{color:#4b5563;font-size:14px;margin-left:8px}"
        "@media (prefers-color-scheme:dark){body{background:#111418;color:#e5e9ee}main{background:#1b2026}"
        "a{color:#7fd3d9}time{color:#aab4be}}</style></head>"
        f"<body><main><h1>{e(config.name)}: past issues</h1><ul>\n{items}\n</ul>{signup}"
        f'<p><a href="feed.xml">Atom feed</a></p></main></body></html>\n'
    )


def _feed(config: Config, pages: list[Page]) -> str:
    import feedgenerator

    assert config.archive_url is not None
    domain = config.from_email.rsplit("@", 1)[1].lower()
    feed = feedgenerator.Atom1Feed(
        title=config.name,
        link=f"{config.archive_url}/",
        description=f"Past issues of the {config.name} newsletter",
        language=config.language,
        feed_url=f"{config.archive_url}/feed.xml",
        feed_guid=f"tag:{domain},2000:newsletter",
    )
    for page in pages:
        when = dt.datetime.combine(page.day, dt.time(), dt.UTC)
        feed.add_item(
            title=page.rendered.personalize({}).subject,
            link=web_url(config, page.issue.slug),
            description=page.rendered.personalize({}).preheader,
            unique_id=f"tag:{domain},{page.day.isoformat()}:{page.issue.slug}",
            pubdate=when,
            updateddate=when,
            content=page.html,
        )
    return feed.writeString("utf-8")


def _copy(source: Path, target: Path) -> None:
    """A picture into the site: under a temporary name, made world-readable, then renamed, so
    a web server never serves half of one. Its name is its content's hash: one already there
    is the same picture."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(handle)
    draft = Path(name)
    try:
        shutil.copyfile(source, draft)
        os.chmod(draft, FILE_MODE)
        os.replace(draft, target)
    except BaseException:
        draft.unlink(missing_ok=True)
        raise
