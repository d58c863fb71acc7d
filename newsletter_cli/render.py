"""Issue + Config -> Rendered: the email's html and plain text, rendered once for the whole list.

Markdown -> Jinja2 MJML template -> mjml-python -> premailer. Nothing here touches the network:
premailer is told not to, and any stylesheet import (a web font) is hidden from cssutils, which
would otherwise fetch it while parsing.

markup (lxml, markdown-it), mjml and premailer are imported where they are used: importing this
module stays cheap for `newsletter send`, which renders in a child process while it reads the
list, and for the worker processes it forks afterwards.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from newsletter_cli import merge
from newsletter_cli.config import Config, UnsubscribeMode
from newsletter_cli.errors import RenderError
from newsletter_cli.issue import Issue
from newsletter_cli.merge import HTML_CONTEXT, TEXT_CONTEXT, MergeField

PACKAGED_TEMPLATES = Path(__file__).parent / "templates"
SENDGRID_UNSUBSCRIBE_TAG = "<%asm_group_unsubscribe_raw_url%>"
GMAIL_CLIP_BYTES = 102 * 1024
WARN_BYTES = 90 * 1024
SAMPLE_EMAIL = "subscriber@example.com"  # who a preview is for when there is no list
EMAIL_FIELD, UNSUBSCRIBE_FIELD = merge.FOOTER_FIELDS
# premailer adds these presentational attributes from CSS; MJML already sets what Outlook needs.
BASIC_ATTRIBUTES = ["width", "height", "bgcolor", "align", "valign", "background", "border"]
PREHEADER_STYLE = (
    "display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;opacity:0;overflow:hidden;mso-hide:all;"
)
# Spacers after the preheader keep the body's first words out of the inbox preview line.
PREHEADER_PADDING = "&#847;&zwnj;&nbsp;" * 40


@dataclass(frozen=True)
class Message:
    """One recipient's email, placeholders filled."""

    subject: str
    preheader: str
    html: str
    text: str


@dataclass(frozen=True)
class Rendered:
    """An issue rendered once: html with NLH tokens, subject and text with NLT tokens."""

    slug: str
    subject: str
    preheader: str
    html: str
    text: str
    fields: tuple[MergeField, ...]
    mjml: str = ""  # what mjml-python was given, for `build --mjml`
    images: dict[str, Path] = field(default_factory=dict)  # pictures to publish: archive name -> file

    @property
    def issue_fields(self) -> tuple[MergeField, ...]:
        """The merge fields the issue itself uses (not the footer's email and unsubscribe)."""
        return tuple(f for f in self.fields if f not in (EMAIL_FIELD, UNSUBSCRIBE_FIELD))

    def personalize(self, row: Mapping[str, str]) -> Message:
        fields = self.fields
        return Message(
            subject=merge.fill(self.subject, TEXT_CONTEXT, fields, row),
            preheader=merge.fill(self.preheader, TEXT_CONTEXT, fields, row),
            html=merge.fill(self.html, HTML_CONTEXT, fields, row),
            text=merge.fill(self.text, TEXT_CONTEXT, fields, row),
        )


def template_environment(config: Config) -> jinja2.Environment:
    """Templates come from the folder's templates/ first, then the packaged defaults; they run
    in Jinja's sandbox, so a template (or a value in it) can reach no Python internals."""
    loader = jinja2.ChoiceLoader(
        [jinja2.FileSystemLoader(config.templates_dir), jinja2.FileSystemLoader(PACKAGED_TEMPLATES)]
    )
    return SandboxedEnvironment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)


def web_url(config: Config, slug: str) -> str:
    """An issue's page in the archive: the same for every recipient."""
    assert config.archive_url is not None
    return f"{config.archive_url}/{slug}/"


def render(issue: Issue, config: Config, columns: frozenset[str] | None = None, web: bool = False) -> Rendered:
    """Render an issue; with ``columns`` (the list's header), an unknown merge field is an error.
    ``web``: the archive's version, for nobody: a Subscribe link where the email unsubscribes."""
    from newsletter_cli import markup
    from newsletter_cli.archive.images import Publisher

    (subject, preheader, body), fields = _merge_parts(issue, columns)
    images = Publisher(issue.path.parent, config.archive_url) if config.archive_url else None
    document = markup.convert(body, config.website, config.typographer, images)
    env = template_environment(config)
    context = {
        "newsletter": {
            "name": config.name,
            "from_name": config.from_name,
            "website": config.website,
            "website_label": _website_label(config.website),
            "postal_address": config.postal_address,
            "language": config.language,
            "phones": [(label, number, _tel(number)) for label, number in config.phones],
        },
        "issue": {
            "subject": subject,
            "preheader": preheader,
            "date": issue.date,
            "date_text": f"{issue.date:%B} {issue.date.day}, {issue.date.year}" if issue.date else "",
            "slug": issue.slug,
        },
        "email": "" if web else EMAIL_FIELD.token(),  # for templates that show the address
        "unsubscribe_url": "" if web else UNSUBSCRIBE_FIELD.token(),
        "web": web,
        "web_url": web_url(config, issue.slug) if config.archive_url else "",
        "subscribe_url": config.signup_url or config.website,
    }
    mjml = _render_template(
        _template(env, issue, issue.template), context, sections=[Markup(s) for s in document.sections]
    )
    text = _render_template(
        _template(env, issue, _text_template_name(env, issue.template)),
        context,
        body=Markup(document.text.rstrip("\n")),
    )
    html = _inline_css(_mjml_to_html(mjml, issue))
    html = _insert_preheader(html, preheader)

    unsubscribe_value = SENDGRID_UNSUBSCRIBE_TAG if config.unsubscribe_mode is UnsubscribeMode.SENDGRID else None
    html, text = (_finish(part, unsubscribe_value) for part in (html, text))
    everything = subject + preheader + html + text
    # only the fields the email really contains: each costs substitutions in every request
    used = tuple(f for f in (*fields, EMAIL_FIELD, UNSUBSCRIBE_FIELD) if f.token() in everything)
    return Rendered(
        slug=issue.slug,
        subject=merge.to_context(subject, TEXT_CONTEXT),
        preheader=merge.to_context(preheader, TEXT_CONTEXT),
        html=merge.to_context(html, HTML_CONTEXT, safe=[UNSUBSCRIBE_FIELD]),
        text=merge.to_context(_tidy_text(text), TEXT_CONTEXT),
        fields=used,
        mjml=mjml,
        images=dict(images.files) if images else {},
    )


def issue_fields(issue: Issue, columns: frozenset[str] | None = None) -> tuple[MergeField, ...]:
    """The merge fields the issue itself uses, found (and checked against ``columns``) without
    rendering the email."""
    return _merge_parts(issue, columns)[1]


def _merge_parts(issue: Issue, columns: frozenset[str] | None) -> tuple[tuple[str, str, str], tuple[MergeField, ...]]:
    """Subject, preheader and body with their merge fields turned into tokens, and those fields."""
    path = issue.path
    subject, subject_fields = merge.render_fields(issue.subject, path, issue.key_lines.get("subject", 2))
    preheader, preheader_fields = merge.render_fields(issue.preheader or "", path, issue.key_lines.get("preheader", 2))
    body, body_fields = merge.render_fields(issue.body, path, issue.body_line)
    fields = tuple(dict.fromkeys([*subject_fields, *preheader_fields, *body_fields]))
    if columns is not None:
        _check_columns(fields, columns, path)
    return (subject, preheader, body), fields


def _check_columns(fields: tuple[MergeField, ...], columns: frozenset[str], path: Path) -> None:
    for used in fields:
        if used.default is None and used.name not in columns:
            known = ", ".join(sorted(columns)) or "none"
            raise RenderError(
                f"unknown merge field subscriber.{used.name}: the list has no such column "
                f'(columns: {known}); add the column or a | default("...")',
                path,
                used.line,
            )


def _template(env: jinja2.Environment, issue: Issue, name: str) -> jinja2.Template:
    try:
        return env.get_template(name)
    except jinja2.TemplateNotFound:
        raise RenderError(
            f"template {name!r} not found in templates/ or the packaged defaults",
            issue.path,
            issue.key_lines.get("template"),
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        where = Path(exc.filename) if exc.filename else name
        raise RenderError(exc.message or "template syntax error", where, exc.lineno) from None


def _render_template(template: jinja2.Template, context: dict[str, Any], **extra: Any) -> str:
    try:
        return template.render(**context, **extra)
    except jinja2.TemplateError as exc:
        filename = template.filename
        where = Path(filename) if filename else template.name
        raise RenderError(f"template error: {exc}", where, template_error_line(filename)) from None


def _text_template_name(env: jinja2.Environment, html_name: str) -> str:
    """`foo.mjml.j2` pairs with `foo.txt.j2` when there is one, else the default text template."""
    candidate = re.sub(r"(\.mjml)?(\.j2)?$", "", html_name) + ".txt.j2"
    return candidate if candidate in env.list_templates() else "newsletter.txt.j2"


class MJMLError(RenderError):
    """mjml-python refused the email; ``mjml`` is what it was given (`build --mjml` writes it)."""

    def __init__(self, message: str, path: Path | str, line: int | None, mjml: str):
        self.mjml = mjml
        super().__init__(message, path, line)


POSITION = re.compile(r"at position (\d+)(?::\d+)?")


def _mjml_to_html(mjml: str, issue: Issue) -> str:
    """The html, or an error that names the element MJML stopped at and, when it came from the
    issue, the issue's line (not a byte offset into MJML the user never sees)."""
    from mjml import mjml2html

    try:
        return mjml2html(mjml, fonts={})
    except ValueError as exc:
        found = POSITION.search(str(exc))
        at = int(found.group(1)) if found else -1
        if at < 0:
            raise MJMLError(f"MJML could not be rendered: {exc}", f"templates/{issue.template}", None, mjml) from None
        start = mjml.rfind("<", 0, at + 1)
        element = " ".join(mjml[max(start, 0) : at + 40].split())[:60]
        line = _issue_line_of(issue, mjml[max(start, 0) : at + 40])
        path: Path | str = issue.path if line else f"templates/{issue.template}"
        raise MJMLError(
            f"the email could not be built: MJML stops at {element!r} (run 'newsletter build --mjml' to see it whole)",
            path,
            line,
            mjml,
        ) from None


def _issue_line_of(issue: Issue, snippet: str) -> int | None:
    """The issue line whose words the MJML around an error holds, if any."""
    words = [w for w in re.sub(r"<[^>]*>", " ", snippet).split() if len(w) > 2][:3]
    if not words:
        return None
    for number, text in enumerate(issue.body.splitlines(), start=issue.body_line):
        if all(w in text for w in words):
            return number
    return None


# A template's <mj-style> that starts with this comment stays in <style> only; so does MJML's own
# paragraph rule then, which would otherwise be written into every <p>.
NOT_INLINED = "/* newsletter: not inlined */"
MJML_P_RESET = "p { display: block; margin: 13px 0; }"
STYLE_ATTRIBUTE = re.compile(r'(\sstyle=")([^"]*)"')
STYLE_GAP = re.compile(r"(?<=[;:])\s+|\s*;\s*$")


def _inline_css(html: str) -> str:
    """Inline the CSS, keeping @media rules, !important, MSO comments and the template's
    not-inlined block in <style> blocks; inline styles written as short as they can be."""
    from premailer import Premailer

    html = re.sub(
        r"<style([^>]*)>(\s*@import[^<]*)</style>",
        lambda m: f'<style{m.group(1)} data-premailer="ignore">{m.group(2)}</style>',
        html,
    )
    if (kept := html.find(NOT_INLINED)) >= 0:
        html = html[:kept].replace(MJML_P_RESET, "") + html[kept:].replace(NOT_INLINED, NOT_INLINED + MJML_P_RESET, 1)
        html = re.sub(r"<style([^>]*)>(\s*/\* newsletter: not inlined)", r'<style\1 data-premailer="ignore">\2', html)
    inlined = Premailer(
        html,
        allow_network=False,
        strip_important=False,
        keep_style_tags=True,
        disable_basic_attributes=BASIC_ATTRIBUTES,
        cssutils_logging_level=logging.CRITICAL,
        disable_validation=True,
    ).transform()
    inlined = inlined.replace(' data-premailer="ignore"', "")
    inlined = STYLE_ATTRIBUTE.sub(lambda m: m.group(1) + STYLE_GAP.sub("", m.group(2)) + '"', inlined)
    if not inlined.lstrip().lower().startswith("<!doctype"):
        inlined = "<!doctype html>\n" + inlined
    return inlined


def _insert_preheader(html: str, preheader: str) -> str:
    """MJML's mj-preview lacks mso-hide:all, so Outlook would show it; write our own."""
    if not preheader:
        return html
    text = Markup.escape(preheader)
    block = f'<div class="nl-preheader" style="{PREHEADER_STYLE}">{text}{PREHEADER_PADDING}</div>'
    return re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + block, html, count=1)


def _finish(part: str, unsubscribe_value: str | None) -> str:
    if unsubscribe_value:
        part = part.replace(UNSUBSCRIBE_FIELD.token(), unsubscribe_value)
    return part


def _tidy_text(text: str) -> str:
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _tel(number: str) -> str:
    digits = re.sub(r"[^\d+]", "", number)
    if not digits.startswith("+") and len(digits) == 10:
        digits = "+1" + digits  # a North American number written without its country code
    return f"tel:{digits}"


def _website_label(url: str) -> str:
    parts = urlsplit(url)
    return (parts.netloc + parts.path).rstrip("/")


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
