"""issues/<slug>.md -> Issue: YAML front matter plus a Markdown body, with line numbers kept.

Line numbers matter: every later error (Jinja, merge fields, check findings) points at the line
of the issue file itself, front matter counted.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from newsletter_cli.config import CONTROL
from newsletter_cli.errors import IssueError

DEFAULT_TEMPLATE = "newsletter.mjml.j2"
FRONT_MATTER_KEYS = ("subject", "preheader", "date", "template", "archive")
FENCE = re.compile(r"^(---|\.\.\.)\s*$")


@dataclass(frozen=True)
class Issue:
    path: Path
    subject: str
    body: str
    body_line: int
    preheader: str | None = None
    date: dt.date | None = None
    template: str = DEFAULT_TEMPLATE
    key_lines: dict[str, int] = field(default_factory=dict)
    archive: bool = True  # false: `newsletter archive` leaves this issue out

    @property
    def slug(self) -> str:
        return self.path.stem

    def file_line(self, body_line: int) -> int:
        """Map a 1-based line of the body to the line of the issue file."""
        return self.body_line + body_line - 1


def load_issue(path: Path) -> Issue:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise IssueError("issue file not found", path) from None
    except UnicodeDecodeError as exc:
        raise IssueError(f"not UTF-8 text (byte {exc.start})", path) from None
    except OSError as exc:
        raise IssueError(f"cannot read: {exc.strerror}", path) from None
    return parse_issue(text, path)


def parse_issue(text: str, path: Path) -> Issue:
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise IssueError("missing front matter: the file must start with a line '---'", path, 1)
    end = next((i for i in range(1, len(lines)) if FENCE.match(lines[i])), None)
    if end is None:
        raise IssueError("front matter is not closed: add a line '---' after it", path, 1)
    front = "".join(lines[1:end])
    try:
        node = yaml.compose(front, Loader=yaml.SafeLoader)
        data = yaml.safe_load(front) if node is not None else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise IssueError(f"invalid front matter: {problem}", path, line) from None
    if not isinstance(data, dict):
        raise IssueError("front matter must be 'key: value' lines", path, 2)
    key_lines = {
        str(key.value): key.start_mark.line + 2 for key, _ in (node.value if isinstance(node, yaml.MappingNode) else [])
    }

    def fail(key: str, message: str) -> IssueError:
        return IssueError(f"front matter '{key}': {message}", path, key_lines.get(key, 2))

    for key in data:
        if key not in FRONT_MATTER_KEYS:
            raise fail(str(key), f"unknown key (expected one of {', '.join(FRONT_MATTER_KEYS)})")
    if "subject" not in data:
        raise IssueError("front matter: 'subject' is required", path, 2, code="subject-missing")
    subject = _one_line(data["subject"], lambda m: fail("subject", m))
    preheader = (
        _one_line(data["preheader"], lambda m: fail("preheader", m)) if data.get("preheader") is not None else None
    )
    date = _date(data.get("date"), lambda m: fail("date", m))
    template = data.get("template") or DEFAULT_TEMPLATE
    if not isinstance(template, str) or "/" in template or "\\" in template or template.startswith("."):
        raise fail("template", "expected a file name in templates/, such as newsletter.mjml.j2")
    archive = data.get("archive", True)
    if not isinstance(archive, bool):
        raise fail("archive", "expected true or false")
    return Issue(
        archive=archive,
        path=path,
        subject=subject,
        preheader=preheader,
        date=date,
        template=template,
        body="".join(lines[end + 1 :]),
        body_line=end + 2,
        key_lines=key_lines,
    )


def _one_line(value: Any, fail: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise fail("expected non-empty text")
    if "\n" in value.strip():
        raise fail("expected a single line")
    value = " ".join(value.split())
    if CONTROL.search(value):  # the subject is a header
        raise fail("expected text without control characters")
    return value


def _date(value: Any, fail: Any) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value.date() if isinstance(value, dt.datetime) else value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise fail(f"expected a date like 2022-12-01, got {value!r}") from None


def slugify(title: str) -> str:
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-") or "issue"


def new_issue(issues_dir: Path, title: str, today: dt.date) -> Path:
    """Write issues/YYYY-MM-<slug>.md with front matter filled in; never overwrite."""
    path = issues_dir / f"{today:%Y-%m}-{slugify(title)}.md"
    if path.exists():
        raise IssueError("already exists; pick another title or edit it", path)
    subject = title.replace('"', '\\"')
    issues_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "---\n"
        f'subject: "{subject}"\n'
        'preheader: "One line that shows after the subject in the inbox"\n'
        f"date: {today.isoformat()}\n"
        "---\n\n"
        'Hi {{ subscriber.first_name | default("there") }},\n\n'
        "Write your newsletter here in Markdown.\n",
        encoding="utf-8",
        newline="\n",  # the same file on Windows
    )
    return path
