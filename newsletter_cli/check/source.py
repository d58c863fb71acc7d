"""Rules on the issue's Markdown source and front matter, with the line of the issue file (front
matter counted): the renderer drops some things, such as `javascript:` links, that must still be
reported."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import lxml.etree
import lxml.html
from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.footnote import footnote_plugin

from newsletter_cli import merge
from newsletter_cli.archive import images
from newsletter_cli.check.finding import ERROR, WARNING, Finding, article
from newsletter_cli.issue import Issue
from newsletter_cli.markup import heading_ids

SUBJECT_MAX, SUBJECT_GOOD = 150, (10, 78)
PREHEADER_MAX = 100
LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
FORBIDDEN_TAGS = ("script", "form", "iframe", "video")
VAGUE_LINK_TEXT = {"click here", "here", "read more", "this link", "link", "more"}
# a TODO, TBD or TK that marks a gap ("TODO: photo", "[TK]", "Price: TK"), not one in prose ("my TODO list")
PLACEHOLDER = re.compile(r"\b(?:TODO|TBD|FIXME)\b(?=\s*[:\]\)]|\s*$)|\[(?:TODO|TBD|TK)\b|\bTK\b|(?i:lorem ipsum)")
EXAMPLE_HOSTS = re.compile(r"(^|\.)example\.(com|org|net)$", re.IGNORECASE)


def front_matter(issue: Issue, file: str, subject: str | None = None) -> Iterator[Finding]:
    """``subject``: as a reader sees it, merge fields filled for a sample subscriber (the
    template source is longer or shorter than what inboxes show)."""
    subject_line = issue.key_lines.get("subject", 2)
    length = len(subject if subject is not None else issue.subject)
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


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).use(footnote_plugin)
    md.validateLink = _every_link  # type: ignore[method-assign]  # see the links the renderer drops too
    return md


def _every_link(url: str) -> bool:
    return True


def source(issue: Issue, file: str, archive: bool = False) -> Iterator[Finding]:
    """``archive``: [archive] url is set, so pictures beside the issue are published with it."""
    body = issue.body
    tokens = _parser().parse(body)
    yield from _fragments(tokens, issue, file)
    for token in tokens:
        first = issue.file_line((token.map or [0])[0] + 1)
        if token.type == "inline":
            yield from _inline(token, first, file, issue.path.parent, archive)
            yield from _template_syntax(token.content, first, file)
            yield from _spaced_images(token.content, first, file)
        elif token.type == "html_block":
            yield from _html(token.content, first, file)
            yield from _template_syntax(token.content, first, file)
    for number, text in enumerate(body.splitlines(), start=issue.body_line):
        for match in PLACEHOLDER.finditer(text):
            yield Finding(file, number, WARNING, "placeholder", f"placeholder text {match.group(0)!r} left in")


HTML_ID = re.compile(r"""\b(?:id|name)\s*=\s*["']([^"']+)["']""", re.I)


def _fragments(tokens: list[Token], issue: Issue, file: str) -> Iterator[Finding]:
    """A `#anchor` link with nothing of that id in the issue goes nowhere (headings get ids)."""
    ids = {slug for _, slug in heading_ids(tokens)}
    for token in tokens:
        if token.type in ("html_block", "inline"):
            ids.update(HTML_ID.findall(token.content))
    for token in tokens:
        if token.type != "inline":
            continue
        line = issue.file_line((token.map or [0])[0] + 1)
        for child in token.children or ():
            if child.type in ("softbreak", "hardbreak"):
                line += 1
            href = str(child.attrs.get("href", "")) if child.type == "link_open" else ""
            if href.startswith("#") and len(href) > 1 and unquote(href[1:]) not in ids:
                yield Finding(
                    file,
                    line,
                    WARNING,
                    "link-fragment",
                    f"the link {href} goes nowhere: no heading or id is {href[1:]!r}",
                )


CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def outside_code(text: str) -> str:
    """The text with its code spans and fenced blocks blanked out, at the same length and on
    the same lines, so that offsets found in it are offsets in the text."""
    return CODE_SPAN.sub(_blank, FENCE.sub(_blank, text))


def _blank(match: re.Match[str]) -> str:
    return re.sub(r"[^\n]", " ", match.group(0))


LOCAL_PATH = re.compile(r"^(?:\.{1,2}[\\/]|~[\\/]|[A-Za-z]:[\\/]|file:|\\\\)|\\", re.I)
# ![alt](my photo.jpg): Markdown takes no space in a link, so it reaches the email as text
SPACED_IMAGE = re.compile(r"!\[[^\]\n]*\]\(([^)\n]*\s[^)\n]*)\)")
IMAGE_HOME = (
    "set [archive] url and 'newsletter archive' publishes it (or upload it to your website and use its address "
    "there; the guide, section 5: where images go)"
)


def _local_image(src: str, line: int, file: str, base: Path | None, archive: bool = False) -> Iterator[Finding]:
    """A picture on the writer's computer: no recipient can see it, unless the archive publishes
    it (a picture beside the issue, with [archive] url set)."""
    if archive and base is not None and (path := images.local_file(src, base)) is not None:
        yield from _large_image(path, line, file)
        return
    src = unquote(src.strip())  # Markdown percent-encodes a backslash
    if not src or ("://" in src.split("?")[0] and not src.lower().startswith("file:")):
        return
    exists = base is not None and not src.startswith("/") and ":" not in src and (base / src).is_file()
    if LOCAL_PATH.search(src) or exists:
        yield Finding(file, line, ERROR, "image-local", f"{src[:60]!r} is a picture on this computer: {IMAGE_HOME}")


def _large_image(path: Path, line: int, file: str) -> Iterator[Finding]:
    size, width = path.stat().st_size, images.width_of(path)
    if size > images.LARGE_BYTES or (width or 0) > images.WIDE_PX:
        yield Finding(
            file,
            line,
            WARNING,
            "image-large",
            f"{path.name} is {size / 1024 / 1024:.1f} MB"
            + (f", {width} px wide" if width else "")
            + f": email clients show pictures over 1 MB or {images.WIDE_PX} px wide slowly or not at all; "
            "make it smaller",
        )


def _spaced_images(text: str, line: int, file: str) -> Iterator[Finding]:
    prose = outside_code(text)
    for match in SPACED_IMAGE.finditer(prose):
        inside = match.group(1).strip()
        if re.fullmatch(r"\S+\s+([\"'(]).*[\"')]", inside) or (inside.startswith("<") and inside.endswith(">")):
            continue  # (url "title") or (<url with spaces>): a real image
        yield Finding(
            file,
            line + prose.count("\n", 0, match.start()),
            ERROR,
            "image-local",
            f"the image {inside[:60]!r} has a space in its path, so it shows as text; and if it is on this "
            f"computer, {IMAGE_HOME}",
        )


def _template_syntax(text: str, line: int, file: str) -> Iterator[Finding]:
    """Template code of another kind outside code: it reaches the email as written. (In code
    spans and fenced blocks it is clearly meant literally, and passes in silence.)"""
    prose = outside_code(text)
    for offset, snippet in merge.template_like(prose):
        shown = " ".join(snippet.split())
        yield Finding(
            file,
            line + prose.count("\n", 0, offset),
            WARNING,
            "template-syntax",
            f"{shown[:60]!r} is shown as written: only {{{{ subscriber.<column> }}}} is filled in "
            "(put literal template code in `backticks`)",
        )


def _inline(token: Token, line: int, file: str, base: Path | None = None, archive: bool = False) -> Iterator[Finding]:
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
            yield from _local_image(str(child.attrs.get("src", "")), line, file, base, archive)
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
                yield from _local_image(element.get("src", ""), at, file, None)
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
            yield Finding(
                file, line, ERROR, f"{what}-localhost", f"{article(what)} to {host}, which no recipient can reach"
            )
        elif scheme == "http":
            yield Finding(file, line, WARNING, f"{what}-http", f"an http:// {what} ({url[:60]}): use https")
        if EXAMPLE_HOSTS.search(host):
            yield Finding(file, line, WARNING, "placeholder", f"{article(what)} to {host}, a placeholder domain")
