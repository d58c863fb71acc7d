"""What `newsletter check` finds: the things that break an email before anyone receives it.

Each rule module yields findings (``finding.Finding``) with a stable code; the README lists them:
``source`` (the Markdown and front matter), ``clients`` (HTML and CSS clients drop), ``email`` (the email
as sent), ``lists`` (the subscriber list), ``spam`` (SpamAssassin, on request).
"""

from __future__ import annotations

from pathlib import Path

from newsletter_cli import subscribers
from newsletter_cli.check import clients, email, lists, placeholders, source
from newsletter_cli.check.finding import ERROR, WARNING, Finding, findings_json
from newsletter_cli.check.spam import spam
from newsletter_cli.config import Config
from newsletter_cli.errors import IssueError, RenderError, display_path
from newsletter_cli.issue import Issue, load_issue
from newsletter_cli.render import SAMPLE_EMAIL, Rendered, render

__all__ = ["ERROR", "WARNING", "Finding", "check", "findings", "findings_json", "spam"]


def check(
    issue_path: Path, config: Config, list_path: Path | None = None, read_list: bool = True
) -> tuple[list[Finding], list[str]]:
    """Every finding, sorted by line; and notes on checks that could not run (no list, say).

    ``read_list=False`` skips the one rule that reads every row (merge-field-empty, a warning):
    `send` checks before every send and must stay fast on a million rows.
    """
    try:
        issue = load_issue(issue_path)
        rendered = render(issue, config, None)
    except (IssueError, RenderError) as exc:  # reported like any other finding
        return [Finding(str(issue_path), exc.line or 1, ERROR, exc.code or "unreadable", exc.detail)], []
    return findings(issue, rendered, config, list_path, read_list)


def findings(
    issue: Issue, rendered: Rendered, config: Config, list_path: Path | None = None, read_list: bool = True
) -> tuple[list[Finding], list[str]]:
    """The check of an issue a caller has already rendered (send and preview have)."""
    file = str(issue.path)
    path = list_path or config.subscribers_path
    columns = subscribers.columns_if_listed(path)
    notes = []
    if columns is None:
        notes.append(f"no subscriber list at {display_path(path)}: merge fields were not checked against it")
    else:
        notes += subscribers.notices(path)
    sample = {"email": SAMPLE_EMAIL}
    if columns is not None and read_list:
        sample = next((row.fields for row in subscribers.scan(path) if row.status == subscribers.VALID), sample)
    seen_subject = rendered.personalize(sample).subject
    found = [
        *source.front_matter(issue, file, seen_subject),
        *placeholders.issue(issue, file),
        *placeholders.config(config),
        *source.source(issue, file, config.archive_url is not None),
        *clients.css(issue.body, issue.body_line, file),
        *clients.elements(issue.body, issue.body_line, file),
        *clients.templates(issue, config),
        *email.rendered(rendered, config, file, issue.body, issue.body_line),
        *email.tracking(config),
        *(lists.merge_fields(rendered, config, path, columns, file, read_list) if columns is not None else ()),
        *(lists.consent(config, path, file) if columns is not None and read_list else ()),
    ]
    return grouped(sorted(set(found), key=Finding.sort_key)), notes


GROUPED_FROM = 4  # a few repeats keep their own lines; more become one


def grouped(found: list[Finding]) -> list[Finding]:
    """A finding repeated word for word, many times, is one line: 'N times, first at line L'."""
    seen: dict[tuple[str, str, str, str], list[Finding]] = {}
    for finding in found:
        seen.setdefault((finding.file, finding.level, finding.code, finding.message), []).append(finding)
    out = []
    for same in seen.values():
        first = same[0]
        if len(same) < GROUPED_FROM:
            out.extend(same)
        else:
            message = f"{first.message} ({len(same)} times, first at line {first.line})"
            out.append(Finding(first.file, first.line, first.level, first.code, message))
    return sorted(out, key=Finding.sort_key)
