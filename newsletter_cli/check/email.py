"""Rules on the email as it would be sent: its size against Gmail's clipping, the postal
address and unsubscribe link the law asks for, and the contrast of its text."""

from __future__ import annotations

import re
from collections.abc import Iterator

import lxml.html

from newsletter_cli import unsubscribe
from newsletter_cli.check.finding import ERROR, WARNING, Finding
from newsletter_cli.check.source import outside_code
from newsletter_cli.config import Config, key_line
from newsletter_cli.errors import display_path
from newsletter_cli.render import GMAIL_CLIP_BYTES, SAMPLE_EMAIL, WARN_BYTES, Rendered


def rendered(rendered: Rendered, config: Config, file: str, body: str, body_line: int) -> Iterator[Finding]:
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
    yield from _markup_leaks(document, body, body_line, file)
    yield from _wide_tables(document, body, body_line, file)


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


# markup of other dialects that Markdown here does not know, so it shows as text
_ATTR = r"(?:[#.][\w-]+|[\w-]+=(?:\"[^\"]*\"|'[^']*'|[^\s}]+))"
LEAKS = (
    (re.compile(rf"\{{:?\s*{_ATTR}(?:\s+{_ATTR})*\s*\}}"), "an attribute list such as {#id} or {.class}"),
    (re.compile(r"\[\^[^\]\s]+\]"), "a footnote reference"),
    (re.compile(r"^\s*import\s+[\w{}\s,*]+\s+from\s+[\"'][^\"']+[\"'];?", re.M), "an MDX import"),
)
# Markdown reads *|FNAME|* as emphasis, so the tag is looked for in the source
MAILCHIMP_TAG = re.compile(r"\*\|[A-Z0-9_:]+\|\*")


def _markup_leaks(document: lxml.html.HtmlElement, body: str, body_line: int, file: str) -> Iterator[Finding]:
    """Text outside code that is markup of another dialect: it reaches readers as written."""
    for match in MAILCHIMP_TAG.finditer(outside_code(body)):
        yield Finding(
            file,
            body_line + body.count("\n", 0, match.start()),
            WARNING,
            "markup-leak",
            f"{match.group(0)!r} reaches the email as text: a Mailchimp merge tag is markup of another kind; "
            "here it is {{ subscriber.<column> }}",
        )
    for element in document.iter():
        if not isinstance(element.tag, str) or element.tag in ("code", "pre", "style", "script", "head", "title"):
            continue
        for text in (element.text, element.tail if element.getparent() is not None else None):
            if not text or (text is element.tail and element.getparent().tag in ("code", "pre")):
                continue
            for pattern, what in LEAKS:
                for match in pattern.finditer(text):
                    leak = match.group(0).strip()
                    yield Finding(
                        file,
                        _line_in(body, leak, body_line),
                        WARNING,
                        "markup-leak",
                        f"{leak[:50]!r} reaches the email as text: {what} is markup of another kind",
                    )


def _line_in(body: str, snippet: str, body_line: int) -> int:
    index = body.find(snippet)
    return body_line + body.count("\n", 0, index) if index >= 0 else 1


# A phone's 375 px less the card's padding; the table's text is 14 px, its cells padded 3 px a side
PHONE_CONTENT_PX = 375 - 2 * 32
CHAR_PX = 7.5
CELL_PAD_PX = 6
PIXELS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(px)?\s*$")


def table_width(table: lxml.html.HtmlElement) -> int:
    """The narrowest a table can be, in px: its set width, or each column's longest word."""
    for value in (_styles(table).get("width"), table.get("width")):
        if value and (match := PIXELS.match(value)):
            return int(float(match.group(1)))
    widest: dict[int, int] = {}
    for row in table.iter("tr"):
        for column, cell in enumerate(c for c in row if c.tag in ("td", "th")):
            words = [*cell.text_content().split(), *(n.text_content() for n in cell.find_class("nl-nowrap"))]
            longest = max((len(word) for word in words), default=0)
            widest[column] = max(widest.get(column, 0), round(longest * CHAR_PX) + CELL_PAD_PX)
    return sum(widest.values())


def _wide_tables(document: lxml.html.HtmlElement, body: str, body_line: int, file: str) -> Iterator[Finding]:
    """A table wider than a phone: readers scroll it sideways inside its box."""
    for box in document.find_class("nl-table"):
        table = next(box.iter("table"), None)
        if table is None or (width := table_width(table)) <= PHONE_CONTENT_PX:
            continue
        first = next((c.text_content().strip() for c in table.iter("td", "th") if c.text_content().strip()), "")
        yield Finding(
            file,
            _line_in(body, first[:30], body_line) if first else 1,
            WARNING,
            "table-wide",
            f"this table needs about {width} px; a phone shows {PHONE_CONTENT_PX}: readers scroll it sideways "
            "inside its box (fewer columns, or a list, read better)",
        )


def tracking(config: Config) -> Iterator[Finding]:
    """What SendGrid is told to track; off unless the config says so."""
    if not config.track_clicks:
        return
    try:
        line = key_line(config.path.read_text(encoding="utf-8"), "tracking", "clicks") or 1
    except OSError:
        line = 1
    yield Finding(
        display_path(config.path),
        line,
        WARNING,
        "tracking-clicks",
        "click tracking is on: SendGrid rewrites every link, the unsubscribe link too, through its own "
        "domain and records who clicked which link (for a clinic, health topics per patient)",
    )
