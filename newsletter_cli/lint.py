"""What `newsletter check` finds: the things that break an email before anyone receives it.

Findings come from the Markdown source (with the line of the issue file, front matter counted:
the renderer drops some things, such as `javascript:` links, that must still be reported) and
from the email as it would be sent. Each has a stable code; the README lists them.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import lxml.etree
import lxml.html
from markdown_it import MarkdownIt
from markdown_it.token import Token

from newsletter_cli import merge, mime, subscribers, unsubscribe
from newsletter_cli.config import Config
from newsletter_cli.errors import IssueError, RenderError, display_path
from newsletter_cli.issue import Issue, load_issue
from newsletter_cli.render import GMAIL_CLIP_BYTES, SAMPLE_EMAIL, WARN_BYTES, Rendered, render

ERROR, WARNING = "error", "warning"
SUBJECT_MAX, SUBJECT_GOOD = 150, (10, 78)
PREHEADER_MAX = 100
LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
FORBIDDEN_TAGS = ("script", "form", "iframe", "video")
VAGUE_LINK_TEXT = {"click here", "here", "read more", "this link", "link", "more"}
PLACEHOLDER = re.compile(r"\bTODO\b|\bTK\b|lorem ipsum", re.IGNORECASE)
EXAMPLE_HOSTS = re.compile(r"(^|\.)example\.(com|org|net)$", re.IGNORECASE)


@dataclass(frozen=True, order=True)
class Finding:
    file: str
    line: int
    level: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.level}: {self.message}"

    def sort_key(self) -> tuple[int, bool, str, str]:
        return (self.line, self.level != ERROR, self.code, self.message)

    def as_json(self) -> dict[str, object]:
        return {key: asdict(self)[key] for key in ("level", "code", "message", "file", "line")}


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
    found = [
        *_front_matter(issue, file),
        *_source(issue, file),
        *_css(issue.body, issue.body_line, file),
        *_templates(issue, config),
        *_rendered(rendered, config, file, issue.body, issue.body_line),
        *(_merge_fields(rendered, config, path, columns, file, read_list) if columns is not None else ()),
    ]
    return sorted(set(found), key=Finding.sort_key), notes


# --- front matter ----------------------------------------------------------------------------


def _front_matter(issue: Issue, file: str) -> Iterator[Finding]:
    subject_line = issue.key_lines.get("subject", 2)
    length = len(issue.subject)
    if length > SUBJECT_MAX:
        yield Finding(
            file, subject_line, ERROR, "subject-too-long", f"the subject is {length} characters (at most {SUBJECT_MAX})"
        )
    elif not SUBJECT_GOOD[0] <= length <= SUBJECT_GOOD[1]:
        yield Finding(
            file,
            subject_line,
            WARNING,
            "subject-length",
            f"the subject is {length} characters; {SUBJECT_GOOD[0]}-{SUBJECT_GOOD[1]} show in full in most inboxes",
        )
    if not issue.preheader:
        yield Finding(
            file, 1, WARNING, "preheader-missing", "no preheader: inboxes will show the first words of the body instead"
        )
    elif len(issue.preheader) > PREHEADER_MAX:
        yield Finding(
            file,
            issue.key_lines.get("preheader", 2),
            WARNING,
            "preheader-too-long",
            f"the preheader is {len(issue.preheader)} characters (inboxes show about {PREHEADER_MAX})",
        )


# --- the Markdown source ---------------------------------------------------------------------


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    md.validateLink = lambda url: True  # see every link, including the ones the renderer drops
    return md


def _source(issue: Issue, file: str) -> Iterator[Finding]:
    body = issue.body
    for token in _parser().parse(body):
        first = issue.file_line((token.map or [0])[0] + 1)
        if token.type == "inline":
            yield from _inline(token, first, file)
        elif token.type == "html_block":
            yield from _html(token.content, first, file)
    for number, text in enumerate(body.splitlines(), start=issue.body_line):
        for match in PLACEHOLDER.finditer(text):
            yield Finding(file, number, WARNING, "placeholder", f"placeholder text {match.group(0)!r} left in")


def _inline(token: Token, line: int, file: str) -> Iterator[Finding]:
    """Links and images of one inline run; soft and hard breaks tell which line each is on."""
    text: list[str] | None = None
    href_line = line
    for child in token.children or ():
        if child.type in ("softbreak", "hardbreak"):
            line += 1
        elif child.type == "link_open":
            href_line, text = line, []
            yield from _url(str(child.attrs.get("href", "")), line, file, "link", relative_ok=True)
        elif child.type == "link_close" and text is not None:
            label = "".join(text).strip()
            if label.lower().rstrip(".!") in VAGUE_LINK_TEXT:
                yield Finding(file, href_line, WARNING, "link-text", f"link text {label!r} says nothing out of context")
            text = None
        elif child.type == "text" and text is not None:
            text.append(child.content)
        elif child.type == "image":
            yield from _url(str(child.attrs.get("src", "")), line, file, "image", relative_ok=True)
            if not child.content.strip():
                yield Finding(file, line, ERROR, "image-alt", "an image without alt text")
        elif child.type == "html_inline":
            yield from _html(child.content, line, file)


def _html(fragment: str, line: int, file: str) -> Iterator[Finding]:
    try:
        elements = lxml.html.fragments_fromstring(fragment)
    except (lxml.etree.ParserError, ValueError):
        return
    for root in elements:
        if isinstance(root, str):
            continue
        for element in root.iter():
            if not isinstance(element.tag, str):
                continue
            at = line + (element.sourceline or 1) - 1
            tag = element.tag.lower()
            if tag in FORBIDDEN_TAGS:
                yield Finding(file, at, ERROR, "forbidden-tag", f"<{tag}> is stripped or blocked by email clients")
            if tag == "a" and element.get("href") is not None:
                yield from _url(element.get("href", ""), at, file, "link")
            if tag == "img":
                yield from _url(element.get("src", ""), at, file, "image")
                if not (element.get("alt") or "").strip():
                    yield Finding(file, at, ERROR, "image-alt", "an image without alt text")


def _url(url: str, line: int, file: str, what: str, relative_ok: bool = False) -> Iterator[Finding]:
    """Markdown links and images are made absolute against `website` (``relative_ok``); raw
    HTML ones are sent as written."""
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if not url:
        yield Finding(file, line, ERROR, f"{what}-empty", f"an empty {what}")
    elif scheme == "javascript":
        yield Finding(file, line, ERROR, f"{what}-javascript", f"a javascript: {what} ({url[:60]})")
    elif scheme == "data":
        if what == "image":
            yield Finding(file, line, WARNING, "image-data-uri", "a data: image (Gmail blocks them); host it instead")
    elif url.startswith("#") or scheme in ("tel", "mailto"):
        return
    elif not scheme and not url.startswith("//"):
        if not relative_ok:
            yield Finding(
                file, line, ERROR, f"{what}-relative", f"relative {what} {url!r} in raw HTML: write the full URL"
            )
    else:
        host = (parts.hostname or "").lower()
        if host in LOOPBACK or host.endswith(".localhost"):
            yield Finding(file, line, ERROR, f"{what}-localhost", f"{_a(what)} to {host}, which no recipient can reach")
        elif scheme == "http":
            yield Finding(file, line, WARNING, f"{what}-http", f"an http:// {what} ({url[:60]}): use https")
        if EXAMPLE_HOSTS.search(host):
            yield Finding(file, line, WARNING, "placeholder", f"{_a(what)} to {host}, a placeholder domain")


# --- CSS the major email clients ignore (caniemail's data) ----------------------------------

CSS_SUPPORT = json.loads((Path(__file__).parent / "data" / "css_support.json").read_text())["features"]
CSS_RULES = (
    ("css-display-flex", re.compile(r"display\s*:\s*(inline-)?flex\b", re.I)),
    ("css-display-grid", re.compile(r"display\s*:\s*(inline-)?grid\b", re.I)),
    ("css-position", re.compile(r"position\s*:\s*(absolute|relative|fixed|sticky)\b", re.I)),
    ("css-background-image", re.compile(r"background(-image)?\s*:[^;\"]*url\(", re.I)),
)
GENERIC_FONTS = {"serif", "sans-serif", "monospace", "cursive", "fantasy", "system-ui", "ui-sans-serif", "ui-serif"}
FONT_FAMILY = re.compile(r"font-family\s*[:=]\s*[\"']?([^;\"}>]+)", re.I)
STYLE_ATTRIBUTE = re.compile(r"""style\s*=\s*("[^"]*"|'[^']*')""", re.I)


def _css(text: str, first_line: int, file: str) -> Iterator[Finding]:
    """CSS in <style>/<mj-style> blocks and style attributes, line by line."""
    in_style = False
    for number, line in enumerate(text.splitlines(), start=first_line):
        opened = re.search(r"<(mj-)?style\b", line, re.I)
        closed = re.search(r"</(mj-)?style>", line, re.I)
        css = line if in_style or opened else " ".join(m.group(1) for m in STYLE_ATTRIBUTE.finditer(line))
        in_style = (in_style or bool(opened)) and not closed
        for slug, pattern in CSS_RULES:
            if css and pattern.search(css):
                feature = CSS_SUPPORT[slug]
                clients = ", ".join(feature["unsupported"]) or "no major client"
                yield Finding(
                    file,
                    number,
                    WARNING,
                    "css-unsupported",
                    f"{feature['title']} is not supported in {clients} (caniemail: {feature['url']})",
                )
        for match in FONT_FAMILY.finditer(line if css or "font-family=" in line else ""):
            if "{{" in match.group(1) or "{%" in match.group(1):
                continue  # a template expression, not CSS yet
            families = [f.strip().strip("'\"") for f in match.group(1).split(",")]
            if families and families[-1].lower() not in GENERIC_FONTS:
                yield Finding(
                    file,
                    number,
                    WARNING,
                    "css-font-fallback",
                    f"font-family {', '.join(families)} ends without a generic family such as sans-serif; web fonts "
                    f"fail in {', '.join(CSS_SUPPORT['css-at-font-face']['unsupported'][:4])} and more (caniemail)",
                )


def _templates(issue: Issue, config: Config) -> Iterator[Finding]:
    own = config.templates_dir / issue.template
    if own.is_file():  # the packaged default is known good; a folder's own template is checked
        yield from _css(own.read_text(encoding="utf-8"), 1, display_path(own))


# --- the email as sent -----------------------------------------------------------------------


def _rendered(rendered: Rendered, config: Config, file: str, body: str, body_line: int) -> Iterator[Finding]:
    link = unsubscribe.sample_link(config)
    message = rendered.personalize({"email": SAMPLE_EMAIL, "unsubscribe_url": link})
    size = len(message.html.encode())
    if size > GMAIL_CLIP_BYTES:
        yield Finding(
            file, 1, ERROR, "size-clipped", f"the html is {size / 1024:.1f} KB: Gmail clips emails over 102 KB"
        )
    elif size > WARN_BYTES:
        yield Finding(
            file, 1, WARNING, "size-near-clip", f"the html is {size / 1024:.1f} KB, close to Gmail's 102 KB clip"
        )
    document = lxml.html.fromstring(message.html)
    if " ".join(config.postal_address.split()) not in " ".join(document.text_content().split()):
        yield Finding(
            file, 1, ERROR, "postal-address-missing", "the email does not show the postal address (CAN-SPAM, CASL)"
        )
    if link not in {a.get("href") for a in document.iter("a")} or link not in message.text:
        yield Finding(
            file, 1, ERROR, "unsubscribe-missing", "the email lacks the unsubscribe link in its html or text part"
        )
    yield from _contrast(document, body, body_line, file)


CONTRAST_MIN = 4.5
NAMED_COLOURS = {
    "white": "#ffffff",
    "black": "#000000",
    "red": "#ff0000",
    "gray": "#808080",
    "grey": "#808080",
    "silver": "#c0c0c0",
    "yellow": "#ffff00",
    "blue": "#0000ff",
    "green": "#008000",
    "orange": "#ffa500",
}


def _colour(value: str | None) -> tuple[float, float, float] | None:
    """#rgb, #rrggbb, rgb(r, g, b) or a basic colour name as 0..1 channels; None otherwise."""
    if not value:
        return None
    value = NAMED_COLOURS.get(value.strip().lower(), value.strip().lower())
    if match := re.fullmatch(r"#([0-9a-f]{3})", value):
        return tuple(int(c * 2, 16) / 255 for c in match.group(1))  # type: ignore[return-value]
    if match := re.fullmatch(r"#([0-9a-f]{6})", value):
        return tuple(int(match.group(1)[i : i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]
    if match := re.fullmatch(r"rgba?\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*(,\s*1(\.0*)?\s*)?\)", value):
        return tuple(int(match.group(i)) / 255 for i in (1, 2, 3))  # type: ignore[return-value]
    return None


def contrast(first: tuple[float, float, float], second: tuple[float, float, float]) -> float:
    """WCAG 2 contrast ratio of two colours."""

    def luminance(rgb: tuple[float, float, float]) -> float:
        r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def _styles(element: lxml.html.HtmlElement) -> dict[str, str]:
    declarations = (d.split(":", 1) for d in (element.get("style") or "").split(";") if ":" in d)
    return {name.strip().lower(): value.strip() for name, value in declarations}


def _contrast(document: lxml.html.HtmlElement, body: str, body_line: int, file: str) -> Iterator[Finding]:
    """Text whose inline colour is too close to the background it sits on (WCAG 2, 4.5:1)."""
    seen = set()
    for element in document.iter():
        if not isinstance(element.tag, str) or not (element.text or "").strip():
            continue
        colour = background = None
        hidden = False
        for node in (element, *element.iterancestors()):
            styles = _styles(node)
            hidden = hidden or styles.get("display") == "none"
            colour = colour or _colour(styles.get("color"))
            background = background or _colour(styles.get("background-color") or node.get("bgcolor"))
            if not background and (match := re.search(r"#[0-9a-fA-F]{3,6}\b", styles.get("background", ""))):
                background = _colour(match.group(0))
        if hidden:
            continue
        ratio = contrast(colour or (0, 0, 0), background or (1, 1, 1))
        text = " ".join(element.text.split())
        if ratio >= CONTRAST_MIN or (colour, background) in seen:
            continue
        seen.add((colour, background))
        line = next((n for n, source in enumerate(body.splitlines(), start=body_line) if text[:30] in source), 1)
        yield Finding(
            file,
            line,
            WARNING,
            "contrast",
            f"text {text[:40]!r} has a contrast of {ratio:.1f}:1 with its background (WCAG asks at least 4.5:1)",
        )


def _merge_fields(
    rendered: Rendered, config: Config, path: Path, columns: frozenset[str], file: str, read_list: bool
) -> Iterator[Finding]:
    fields = rendered.issue_fields
    for field in fields:
        if field.default is None and field.name not in columns:
            yield Finding(
                file,
                field.line,
                ERROR,
                "merge-field-unknown",
                f"subscriber.{field.name} is not a column of {path.name} and has no | default(...)",
            )
    if not read_list:
        return
    watched = [f for f in fields if f.default is None and f.name in columns]
    empty = dict.fromkeys(watched, 0)
    total = 0
    budget = merge.Budget(rendered.fields, unsubscribe.measuring_linker(config))
    for row in subscribers.scan(path):
        if row.status != subscribers.VALID:
            continue
        total += 1
        for field in watched:
            if not row.fields.get(field.name):
                empty[field] += 1
        size = budget.over(row.email, row.fields)
        if size is not None:
            yield Finding(
                str(path), row.line, ERROR, "merge-value-too-long", budget.reason(size, row.fields) + ": not sent"
            )
    for field, count in empty.items():
        if count:
            yield Finding(
                file,
                field.line,
                WARNING,
                "merge-field-empty",
                f"subscriber.{field.name} renders empty for {count} of {total} subscribers; add | default(...)",
            )


# --- spam score ------------------------------------------------------------------------------

SPAM_ERROR, SPAM_WARNING = 5.0, 1.0
SPAM_SCORE = re.compile(r"Content analysis details:\s*\((-?[\d.]+) points")
SPAM_RULE = re.compile(r"^\s*(-?\d+\.\d+)\s+([A-Z0-9_]+)\s", re.M)


def spam(issue_path: Path, config: Config) -> tuple[list[Finding], list[str]]:
    """Score the email, as a real MIME message with the send's headers, with a local
    SpamAssassin using its offline rules (``spamassassin -L -t``)."""
    rendered = render(load_issue(issue_path), config, None)
    link = unsubscribe.sample_link(config)
    message = rendered.personalize({"email": SAMPLE_EMAIL, "unsubscribe_url": link})
    headers = unsubscribe.headers(config, link) if config.unsubscribe_mode == "endpoint" else {}
    raw = mime.to_bytes(mime.build_message(config, message, SAMPLE_EMAIL, "", headers))
    try:
        done = subprocess.run(["spamassassin", "-L", "-t"], input=raw, capture_output=True, timeout=300, check=False)
    except FileNotFoundError:
        return [], ["SpamAssassin is not installed, so --spam could not score the email: apt-get install spamassassin"]
    report = done.stdout.decode("utf-8", "replace")
    found = SPAM_SCORE.search(report)
    if found is None:
        return [], [
            f"SpamAssassin gave no score (exit {done.returncode}): {done.stderr.decode(errors='replace')[:200]}"
        ]
    score = float(found.group(1))
    details = report[found.end() :]
    blocks = details.replace("\r\n", "\n").split("\n\n")
    table = blocks[1] if len(blocks) > 1 else blocks[0]  # the report's first table, not its copy
    rules = dict.fromkeys(
        f"{name} ({float(points):+.1f})" for points, name in SPAM_RULE.findall(table) if float(points)
    )
    fired = ", ".join(rules) or "no rule with points"
    file = str(issue_path)
    if score > SPAM_ERROR:
        return [
            Finding(file, 1, ERROR, "spam-score", f"SpamAssassin scores {score:.1f} (over {SPAM_ERROR}): {fired}")
        ], []
    if score > SPAM_WARNING:
        return [
            Finding(file, 1, WARNING, "spam-score", f"SpamAssassin scores {score:.1f} (over {SPAM_WARNING}): {fired}")
        ], []
    return [], [f"SpamAssassin scores {score:.1f}: {fired}"]


def findings_json(findings: Iterable[Finding]) -> list[dict[str, object]]:
    return [finding.as_json() for finding in findings]


def _a(what: str) -> str:
    return f"an {what}" if what[0] in "aeiou" else f"a {what}"
