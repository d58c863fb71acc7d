"""HTML and CSS the major email clients drop or ignore, from caniemail's data (distilled into
``data/client_support.json`` by scripts/distil_caniemail.py), in the issue and a folder's own
template."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from newsletter_cli.check.finding import WARNING, Finding
from newsletter_cli.check.source import outside_code
from newsletter_cli.config import Config
from newsletter_cli.errors import display_path
from newsletter_cli.issue import Issue

SUPPORT = json.loads((Path(__file__).parent.parent / "data" / "client_support.json").read_text())["features"]
CSS_RULES = (
    ("css-display-flex", re.compile(r"display\s*:\s*(inline-)?flex\b", re.I)),
    ("css-display-grid", re.compile(r"display\s*:\s*(inline-)?grid\b", re.I)),
    ("css-position", re.compile(r"position\s*:\s*(absolute|relative|fixed|sticky)\b", re.I)),
    ("css-background-image", re.compile(r"background(-image)?\s*:[^;\"]*url\(", re.I)),
    ("css-transform", re.compile(r"(?<![\w-])transform\s*:", re.I)),
    ("css-box-shadow", re.compile(r"box-shadow\s*:", re.I)),
)
ELEMENTS = {"progress": "html-progress", "meter": "html-meter", "dialog": "html-dialog"}
ELEMENT = re.compile(r"<(progress|meter|dialog|details)\b", re.I)
# not in caniemail's data: no email client makes a section collapsible
COLLAPSIBLE = (
    "<details> and its <summary> make no collapsible section in email: Gmail rewrites them and may hide "
    "the text inside (caniemail has no data on it); write that text out"
)
GENERIC_FONTS = {"serif", "sans-serif", "monospace", "cursive", "fantasy", "system-ui", "ui-sans-serif", "ui-serif"}
FONT_FAMILY = re.compile(r"font-family\s*[:=]\s*[\"']?([^;\"}>]+)", re.I)
STYLE_ATTRIBUTE = re.compile(r"""style\s*=\s*("[^"]*"|'[^']*')""", re.I)


def elements(text: str, first_line: int, file: str) -> Iterator[Finding]:
    """HTML elements that major clients drop, outside code, with their line."""
    for match in ELEMENT.finditer(outside_code(text)):
        tag = match.group(1).lower()
        line = first_line + text.count("\n", 0, match.start())
        if tag in ELEMENTS:
            feature = SUPPORT[ELEMENTS[tag]]
            clients = ", ".join(feature["unsupported"]) or "no major client"
            message = f"{feature['title']} is not supported in {clients} (caniemail: {feature['url']})"
        else:
            message = COLLAPSIBLE
        yield Finding(file, line, WARNING, "html-unsupported", message)


def css(text: str, first_line: int, file: str) -> Iterator[Finding]:
    """CSS in <style>/<mj-style> blocks and style attributes, line by line."""
    in_style = False
    for number, line in enumerate(text.splitlines(), start=first_line):
        opened = re.search(r"<(mj-)?style\b", line, re.I)
        closed = re.search(r"</(mj-)?style>", line, re.I)
        css = line if in_style or opened else " ".join(m.group(1) for m in STYLE_ATTRIBUTE.finditer(line))
        in_style = (in_style or bool(opened)) and not closed
        for slug, pattern in CSS_RULES:
            if css and pattern.search(css):
                feature = SUPPORT[slug]
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
                    f"fail in {', '.join(SUPPORT['css-at-font-face']['unsupported'][:4])} and more (caniemail)",
                )


def templates(issue: Issue, config: Config) -> Iterator[Finding]:
    own = config.templates_dir / issue.template
    if own.is_file():  # the packaged default is known good; a folder's own template is checked
        text = own.read_text(encoding="utf-8")
        yield from css(text, 1, display_path(own))
        yield from elements(text, 1, display_path(own))
