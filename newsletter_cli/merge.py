"""Merge fields: ``{{ subscriber.first_name | default("friend") }}`` in an issue's body and subject.

An issue is rendered once for the whole list, so each merge field becomes a placeholder token
that survives Markdown, MJML and CSS inlining untouched (letters and digits only: nothing to
escape or URL-encode). The html part and the plain-text part get different tokens because their
values are escaped differently; the send step (or ``fill`` for a preview) puts the values in.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from newsletter_cli.errors import RenderError

SUBSCRIBER = "subscriber"
UNSUBSCRIBE_FIELD = "unsubscribe_url"
NEUTRAL, HTML_CONTEXT, TEXT_CONTEXT = "NLF", "NLH", "NLT"
TOKEN_RE = re.compile(r"NL([FHT])([0-9a-f]{10})")
TOKEN_LENGTH = 13
SUBSTITUTION_LIMIT = 10_000  # SendGrid: bytes of substitutions (keys and values) per recipient


@dataclass(frozen=True)
class MergeField:
    """One use of a subscriber column (with its fallback), as the issue file spells it."""

    name: str
    default: str | None
    line: int
    # True for values that never need html escaping (our own unsubscribe link): one token then
    # serves both parts, which saves a substitution per recipient in every request.
    safe: bool = False

    @property
    def key(self) -> str:
        return hashlib.sha1(f"{self.name}\0{self.default}".encode()).hexdigest()[:10]

    def token(self, context: str = NEUTRAL) -> str:
        return f"{context}{self.key}"

    def value(self, row: Mapping[str, str]) -> str:
        """An empty cell counts as missing, so the default applies to it."""
        return row.get(self.name) or self.default or ""


# What every template may show besides the issue's own fields: the address, and the link
# (escape-free, config.py makes sure), which one token then serves in both parts.
FOOTER_FIELDS = (MergeField("email", None, 0), MergeField(UNSUBSCRIBE_FIELD, None, 0, safe=True))


# {% raw %}...{% endraw %}: shown exactly as written
RAW = re.compile(r"\{%-?\s*raw\s*-?%\}(.*?)\{%-?\s*endraw\s*-?%\}", re.S)
EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.S)
# anything else that looks like template code (Jinja, Liquid, Hugo shortcodes, a {#id} anchor)
TEMPLATE_LIKE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_QUOTED = r"""(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')"""
FIELD = re.compile(
    rf"""\s*{SUBSCRIBER}\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*{_QUOTED}\s*\])"""
    rf"""\s*(?:\|\s*(default|d)\s*(?:\(\s*(?:{_QUOTED})?\s*\))?\s*)?""",
    re.S,
)


def render_fields(source: str, path: Path, first_line: int) -> tuple[str, list[MergeField]]:
    """A piece of an issue (body, subject, preheader) with its merge fields turned into
    neutral tokens, and those fields.

    Only what the README promises is interpreted: ``{{ subscriber.<column> }}``, with an
    optional ``| default("...")``, and ``{% raw %}``. Nothing is ever evaluated: everything else
    that looks like template code stays as written (``check`` warns of it outside code). An
    expression about ``subscriber`` that is not one of those is an error naming its line
    (``first_line`` is the line of the issue file on which ``source`` starts).
    """
    out: list[str] = []
    fields: list[MergeField] = []
    position = 0
    for raw in RAW.finditer(source):
        out.append(_fields_of(source[position : raw.start()], source, position, path, first_line, fields))
        out.append(raw.group(1))
        position = raw.end()
    out.append(_fields_of(source[position:], source, position, path, first_line, fields))
    return "".join(out), fields


def _fields_of(text: str, source: str, offset: int, path: Path, first_line: int, fields: list[MergeField]) -> str:
    def replace(match: re.Match[str]) -> str:
        inside = match.group(1)
        if not inside.strip().startswith(SUBSCRIBER):
            return match.group(0)  # not ours: shown as written
        line = first_line + source.count("\n", 0, offset + match.start())
        found = FIELD.fullmatch(inside)
        if found is None:
            raise RenderError(
                f"{{{{{inside}}}}} is not a merge field: write {{{{ subscriber.<column> }}}} or "
                '{{ subscriber.<column> | default("...") }}; nothing else is filled in',
                path,
                line,
            )
        name = found.group(1) or _unquote(found.group(2), found.group(3))
        default = None if found.group(4) is None else _unquote(found.group(5), found.group(6))
        field = MergeField(name, default, line)
        fields.append(field)
        return field.token()

    return EXPRESSION.sub(replace, text)


def _unquote(double: str | None, single: str | None) -> str:
    text = double if double is not None else single or ""
    return re.sub(r"\\(.)", r"\1", text)


def template_like(text: str) -> list[tuple[int, str]]:
    """(offset, text) of what looks like template code but is not a merge field: shown as
    written, which ``check`` warns of."""
    found = []
    for match in TEMPLATE_LIKE.finditer(text):
        snippet = match.group(0)
        if snippet.startswith("{{") and FIELD.fullmatch(snippet[2:-2]):
            continue
        if RAW.fullmatch(snippet) or re.fullmatch(r"\{%-?\s*(end)?raw\s*-?%\}", snippet):
            continue
        found.append((match.start(), snippet))
    return found


def to_context(text: str, context: str, safe: Iterable[MergeField] = ()) -> str:
    """Turn neutral tokens into the html (``NLH``) or plain-text (``NLT``) ones."""
    safe_keys = {field.key for field in safe}

    def token(m: re.Match[str]) -> str:
        if m.group(1) != "F":
            return m.group(0)
        return f"{TEXT_CONTEXT if m.group(2) in safe_keys else context}{m.group(2)}"

    return TOKEN_RE.sub(token, text)


def substitutions(context: str, fields: Iterable[MergeField], row: Mapping[str, str]) -> dict[str, str]:
    """Token -> value for one part of one subscriber's email."""
    values = {}
    for field in fields:
        value = field.value(row)
        if context == TEXT_CONTEXT or field.safe:
            values[field.token(TEXT_CONTEXT)] = value
        else:
            values[field.token(HTML_CONTEXT)] = html.escape(value)
    return values


def fill(text: str, context: str, fields: Iterable[MergeField], row: Mapping[str, str]) -> str:
    """Put one subscriber's values in: html-escaped in the html part, as they are elsewhere."""
    values = substitutions(context, fields, row)
    return TOKEN_RE.sub(lambda m: values.get(m.group(0), m.group(0)), text)


class Budget:
    """Whether one recipient's substitutions fit SendGrid's 10,000 bytes: one over it fails its
    whole batch, every time, so such a row is refused up front instead.

    ``link`` makes a recipient's unsubscribe link (only its length matters). Most rows are far
    below the limit, which a bound on their length shows without escaping anything."""

    def __init__(self, fields: Iterable[MergeField], link: Callable[[str], str]):
        self.fields = tuple(fields)
        self.link = link
        fixed = sum(2 * TOKEN_LENGTH + 10 * len(f.default or "") for f in self.fields)
        # a character is at most 4 bytes, 6 once html-escaped; an address also sits in its link:
        # a row whose address (twice) and values have fewer characters than this fits for sure
        self.surely_fits = (SUBSTITUTION_LIMIT - fixed - len(link("")) - 64) // 12

    def weigh(self, email: str, values: Mapping[str, str]) -> int:
        """The size as SendGrid counts it (UTF-8 keys and values) of these fields: exact, or a
        little more when a footer field is counted that the template turns out not to show."""
        row = {**values, "email": email, UNSUBSCRIBE_FIELD: self.link(email)}
        return sum(len(k.encode()) + len(v.encode()) for k, v in _pairs(self.fields, row))

    def over(self, email: str, values: Mapping[str, str]) -> int | None:
        """The size when it is over the limit, else None."""
        if 2 * len(email) + sum(map(len, values.values())) < self.surely_fits:
            return None
        size = self.weigh(email, values)
        return size if size > SUBSTITUTION_LIMIT else None

    def reason(self, size: int, values: Mapping[str, str]) -> str:
        longest = max(values, key=lambda k: len(values[k]), default="email")
        return (
            f"merge values too long: {size:,} bytes for this subscriber, SendGrid takes at most "
            f"{SUBSTITUTION_LIMIT:,} (the longest is the {longest} column)"
        )


def _pairs(fields: Iterable[MergeField], row: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    for field in fields:
        value = field.value(row)
        yield field.token(TEXT_CONTEXT), value
        if not field.safe:
            yield field.token(HTML_CONTEXT), html.escape(value)
