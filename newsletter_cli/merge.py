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
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes

from newsletter_cli.errors import RenderError

SUBSCRIBER = "subscriber"
UNSUBSCRIBE_FIELD = "unsubscribe_url"
DEFAULT_FILTERS = ("default", "d")
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


class _Field:
    """What ``subscriber.<name>`` evaluates to while the issue is rendered once for everyone."""

    def __init__(self, name: str, default: str | None = None):
        self.name = name
        self.default = default

    def __str__(self) -> str:
        return MergeField(self.name, self.default, 0).token()

    def __bool__(self) -> bool:
        raise RenderError(
            f"subscriber.{self.name} cannot decide an {{% if %}}: the issue is rendered once "
            'for every recipient; use | default("...") for a fallback instead'
        )


class _Subscriber:
    def __getattr__(self, name: str) -> _Field:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Field(name)

    def __getitem__(self, name: str) -> _Field:
        return _Field(str(name))


def _default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    if isinstance(value, _Field):
        return _Field(value.name, str(default_value))
    if isinstance(value, jinja2.Undefined) or (boolean and not value):
        return default_value
    return value


def environment() -> jinja2.Environment:
    """The sandbox an issue body and subject are rendered in: strict, and only `subscriber`."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.filters["default"] = env.filters["d"] = _default
    env.globals = {SUBSCRIBER: _Subscriber()}
    return env


def render_fields(
    source: str, path: Path, first_line: int, env: jinja2.Environment | None = None
) -> tuple[str, list[MergeField]]:
    """Render a piece of an issue (body or subject) into text with neutral merge tokens.

    ``first_line`` is the line of the issue file on which ``source`` starts, so every error
    names the line the user sees in their editor.
    """
    env = env or environment()
    name = str(path)
    try:
        ast = env.parse(source, name=name)
        fields = list(_fields_in(ast, path, first_line))
        code = env.compile(source, name=name, filename=name)
        template = env.template_class.from_code(env, code, env.make_globals(None))
        return template.render(), fields
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(exc.message or "template syntax error", path, first_line + (exc.lineno or 1) - 1) from None
    except jinja2.UndefinedError as exc:
        raise RenderError(
            f"unknown variable: {exc.message}; merge fields are written subscriber.<column>",
            path,
            _error_line(name, first_line),
        ) from None
    except RenderError as exc:
        if exc.line is not None:
            raise
        raise RenderError(exc.detail, path, _error_line(name, first_line)) from None
    except jinja2.TemplateError as exc:
        raise RenderError(str(exc), path, _error_line(name, first_line)) from None


def _fields_in(ast: nodes.Template, path: Path, first_line: int) -> Iterable[MergeField]:
    """Find every subscriber.<name> in the template, with its default, by reading the AST."""
    defaulted: set[int] = set()
    for flt in ast.find_all(nodes.Filter):
        target = flt.node
        if target is None or _subscriber_attr(target) is None:
            continue
        line = first_line + flt.lineno - 1
        if flt.name not in DEFAULT_FILTERS:
            raise RenderError(f"only | default(...) works on merge fields, not | {flt.name}", path, line)
        default = flt.args[0].value if flt.args and isinstance(flt.args[0], nodes.Const) else ""
        defaulted.add(id(target))
        yield MergeField(_subscriber_attr(target) or "", str(default), line)
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        name = _subscriber_attr(node)
        if name is not None and id(node) not in defaulted:
            yield MergeField(name, None, first_line + node.lineno - 1)


def _subscriber_attr(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name == SUBSCRIBER:
        return node.attr
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.node, nodes.Name)
        and node.node.name == SUBSCRIBER
        and isinstance(node.arg, nodes.Const)
    ):
        return str(node.arg.value)
    return None


def _error_line(template_name: str, first_line: int) -> int | None:
    line = template_error_line(template_name)
    return first_line + line - 1 if line else None


def template_error_line(filename: str | None) -> int | None:
    """The template line of the exception being handled: Jinja rewrites tracebacks so that
    template frames carry the template's file name and line."""
    tb = sys.exc_info()[2]
    line = None
    while tb is not None:
        if filename is not None and tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


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
