"""Markdown -> MJML sections and a plain-text twin, both from one markdown-it token stream.

The plain text is written from the Markdown, not scraped from the HTML, so headings, lists and
link URLs read naturally in a text-only client.
"""

from __future__ import annotations

import html
import re
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import lxml.etree
import lxml.html
from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.footnote import footnote_plugin

BUTTON_MARK = "{.button}"
WIDTH = 72


@dataclass(frozen=True)
class Document:
    """An issue body converted once: MJML per section (split at ``---``) and plain text."""

    sections: list[str]
    text: str


def markdown_parser(typographer: bool = False) -> MarkdownIt:
    """CommonMark, GitHub's tables and strikethrough, and footnotes ([^1]), which many
    newsletters written for the web use; with ``typographer``, "curly" quotes and dashes."""
    md = MarkdownIt("commonmark", {"html": True, "typographer": typographer}).enable(["table", "strikethrough"])
    if typographer:
        md.enable(["replacements", "smartquotes"])
    return md.use(footnote_plugin)


def convert(
    source: str, website: str, typographer: bool = False, images: Callable[[str], str | None] | None = None
) -> Document:
    """``images``: the published URL of a picture on this computer (the archive's), or None."""
    md = markdown_parser(typographer)
    tokens = md.parse(source)
    _absolutize(tokens, website, images)
    for token, slug in heading_ids(tokens):
        token.attrSet("id", slug)
    blocks = list(_blocks(tokens))
    return Document(sections=_mjml_sections(md, blocks), text=_plain_text(blocks))


# --- headings --------------------------------------------------------------------------------


def slug(text: str) -> str:
    """A heading's anchor as GitHub and most Markdown sites make it: lower case, spaces to
    hyphens, punctuation dropped; so a table of contents of `#anchor` links works."""
    kept = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return re.sub(r" ", "-", kept)


def heading_ids(tokens: Sequence[Token]) -> list[tuple[Token, str]]:
    """Each heading's opening token and its id, unique within the issue (-1, -2 for repeats)."""
    seen: dict[str, int] = {}
    found = []
    for index, token in enumerate(tokens):
        if token.type != "heading_open" or index + 1 >= len(tokens):
            continue
        base = slug(inline_text(tokens[index + 1])) or "section"
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.append((token, base if count == 0 else f"{base}-{count}"))
    return found


# --- links -----------------------------------------------------------------------------------


def absolute_url(url: str, website: str) -> str:
    """Relative links and images are made absolute against the website; tel:, mailto: kept."""
    url = url.strip()
    if not url or url.startswith("#") or urlsplit(url).scheme:
        return url
    if url.startswith("//"):
        return "https:" + url
    return urljoin(website, url)


def _absolutize(tokens: Sequence[Token], website: str, images: Callable[[str], str | None] | None) -> None:
    for token in tokens:
        for child in token.children or ():
            published = images(str(child.attrs["src"])) if images and child.type == "image" else None
            if published:
                child.attrs["src"] = published
            for attr in ("href", "src"):
                if child.attrs.get(attr) is not None and not (attr == "src" and published):
                    child.attrs[attr] = absolute_url(str(child.attrs[attr]), website)
            if child.type == "link_open" and str(child.attrs.get("href", "")).startswith("tel:"):
                child.attrSet("class", "nl-nowrap")  # a phone number never wraps at its hyphen


# --- blocks ----------------------------------------------------------------------------------


def block_end(tokens: Sequence[Token], start: int) -> int:
    """Index of the token that closes the block opened at ``start`` (itself for a leaf)."""
    if tokens[start].nesting != 1:
        return start
    depth = 0
    for end in range(start, len(tokens)):
        depth += tokens[end].nesting
        if depth == 0:
            return end
    return len(tokens) - 1


@dataclass(frozen=True)
class Block:
    kind: str  # "html", "image", "button" or "divider"
    tokens: list[Token]
    attrs: dict[str, str]


# raw HTML elements that may hold Markdown, and so a `---`, between their tags
CONTAINERS = r"details|div|section|aside|figure|table|blockquote|center|article"
OPENS = re.compile(rf"<({CONTAINERS})\b", re.I)
CLOSES = re.compile(rf"</({CONTAINERS})\s*>", re.I)


def _blocks(tokens: Sequence[Token]) -> Iterator[Block]:
    """Split top-level tokens into blocks and recognise images, buttons and dividers. A `---`
    inside a raw HTML element (a <details> with a rule in it) is a rule there, not a new
    section, which would leave the element's closing tag behind."""
    i = 0
    open_html = 0
    while i < len(tokens):
        token = tokens[i]
        end = block_end(tokens, i)
        chunk = list(tokens[i : end + 1])
        i = end + 1
        if token.type == "html_block":
            open_html = max(0, open_html + len(OPENS.findall(token.content)) - len(CLOSES.findall(token.content)))
        if token.type == "hr" and not open_html:
            yield Block("divider", chunk, {})
        elif token.type == "paragraph_open" and (special := _special_paragraph(chunk[1])):
            yield special
        else:
            yield Block("html", chunk, {})


def _special_paragraph(inline: Token) -> Block | None:
    children = [c for c in inline.children or () if not (c.type == "text" and not c.content.strip())]
    kinds = [c.type for c in children]
    if kinds == ["image"]:
        return _image(inline, children[0], None)
    if kinds == ["link_open", "image", "link_close"]:
        return _image(inline, children[1], str(children[0].attrs.get("href", "")))
    if (
        kinds[:3] == ["link_open", "text", "link_close"]
        and len(children) == 4
        and children[3].type == "text"
        and children[3].content.strip() == BUTTON_MARK
    ):
        label = "".join(c.content for c in children[1:2])
        return Block("button", [inline], {"href": str(children[0].attrs.get("href", "")), "label": label})
    return None


def _image(inline: Token, image: Token, href: str | None) -> Block:
    attrs = {
        "src": str(image.attrs.get("src", "")),
        "alt": image.content,
        "title": str(image.attrs.get("title") or ""),
    }
    if href:
        attrs["href"] = href
    return Block("image", [inline], attrs)


# --- MJML ------------------------------------------------------------------------------------


def _mjml_sections(md: MarkdownIt, blocks: Sequence[Block]) -> list[str]:
    sections: list[list[str]] = [[]]
    pending: list[Token] = []

    def flush() -> None:
        if pending:
            body = _well_formed(_render_html(md, pending))
            sections[-1].append(f'<mj-text css-class="nl-content"><div class="nl-content">{body}</div></mj-text>')
            pending.clear()

    for block in blocks:
        if block.kind == "html":
            pending.extend(block.tokens)
            continue
        flush()
        if block.kind == "divider":
            sections.append([])
        elif block.kind == "image":
            sections[-1].append(_mj_element("mj-image", block.attrs, ("src", "alt", "title", "href")))
        elif block.kind == "button":
            label = html.escape(block.attrs["label"], quote=False)
            sections[-1].append(f'<mj-button href="{_attr(block.attrs["href"])}">{label}</mj-button>')
    flush()
    return ["\n".join(parts) for parts in sections if parts]


def _mj_element(tag: str, attrs: dict[str, str], order: Sequence[str]) -> str:
    rendered = " ".join(
        f'{key}="{_attr(attrs[key])}"' for key in order if key in attrs and (attrs[key] or key == "alt")
    )
    return f"<{tag} {rendered} />"


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


# every table, a pasted one too, sits in a box that scrolls rather than widen the email
TABLE_OPEN = re.compile(r"<table\b[^>]*>", re.I)
TABLE_CLOSE = re.compile(r"</table\s*>", re.I)


def _render_html(md: MarkdownIt, tokens: list[Token]) -> str:
    out = md.renderer.render(tokens, md.options, {})
    return TABLE_CLOSE.sub(r"\g<0></div>", TABLE_OPEN.sub(r'<div class="nl-table">\g<0>', out))


# Void elements that libxml2's HTML parser does not know to be void: it would wrap all that
# follows inside them (<wbr>word</wbr>), which MJML refuses. Closed at once, they stay empty.
UNKNOWN_VOID = re.compile(r"<(embed|source|track|wbr|keygen)\b([^>]*?)/?>", re.I)
COMMENT = re.compile(r"<!--(.*?)-->", re.S)


def _comment(match: re.Match[str]) -> str:
    """HTML allows "--" inside a comment and "--->" as its end; MJML's parser refuses both."""
    inside = match.group(1).replace("--", "- -")
    return f"<!--{inside} -->" if inside.endswith("-") else f"<!--{inside}-->"


def _well_formed(fragment: str) -> str:
    """Raw HTML in Markdown may be sloppy; MJML's parser is not. Let lxml close what is open."""
    if "<" not in fragment:
        return fragment
    fragment = UNKNOWN_VOID.sub(r"<\1\2></\1>", fragment)
    fragment = COMMENT.sub(_comment, fragment)
    parts = lxml.html.fragments_fromstring(fragment)
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(html.escape(part, quote=False))
        else:
            out.append(lxml.html.tostring(part, encoding="unicode", method="xml"))
    return "".join(out)


# --- plain text ------------------------------------------------------------------------------


def _plain_text(blocks: Sequence[Block]) -> str:
    paragraphs: list[str] = []
    for block in blocks:
        if block.kind == "divider":
            paragraphs.append("-" * 20)
        elif block.kind == "image":
            alt = block.attrs["alt"] or "image"
            paragraphs.append(f"[{alt}]" + (f" ({block.attrs['href']})" if block.attrs.get("href") else ""))
        elif block.kind == "button":
            paragraphs.append(f"{block.attrs['label']}: {block.attrs['href']}")
        else:
            paragraphs.extend(_TextWriter().blocks(block.tokens))
    return "\n\n".join(p for p in paragraphs if p.strip()) + "\n"


class _TextWriter:
    """Walks block tokens and writes each block as wrapped plain text."""

    def blocks(self, tokens: Sequence[Token]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(tokens):
            end = block_end(tokens, i)
            out.append(self._block(tokens[i : end + 1]))
            i = end + 1
        return out

    def _block(self, tokens: Sequence[Token]) -> str:
        first = tokens[0]
        kind = first.type
        if kind == "heading_open":
            text = inline_text(tokens[1])
            if first.tag == "h1":
                return f"{text}\n{'=' * min(len(text), WIDTH)}"
            if first.tag == "h2":
                return f"{text}\n{'-' * min(len(text), WIDTH)}"
            return text
        if kind == "paragraph_open":
            return _wrap(inline_text(tokens[1]))
        if kind in ("bullet_list_open", "ordered_list_open"):
            return self._list(tokens)
        if kind == "blockquote_open":
            inner = "\n\n".join(self.blocks(tokens[1:-1]))
            return "\n".join(("> " + line).rstrip() for line in inner.splitlines())
        if kind in ("fence", "code_block"):
            return "\n".join("    " + line for line in first.content.rstrip("\n").splitlines())
        if kind == "table_open":
            return self._table(tokens)
        if kind == "html_block":
            return _wrap(_strip_tags(first.content))
        if kind == "footnote_block_open":
            return self._footnotes(tokens)
        return ""

    def _footnotes(self, tokens: Sequence[Token]) -> str:
        """The notes at the end, numbered as their references in the text: [1] ..."""
        notes: list[str] = []
        i = 1
        while i < len(tokens) - 1:
            end = block_end(tokens, i)
            if tokens[i].type == "footnote_open":
                number = int(tokens[i].meta.get("id", len(notes))) + 1
                body = " ".join(self.blocks(tokens[i + 1 : end]))
                notes.append(_wrap(f"[{number}] {body}"))
            i = end + 1
        return "-" * 20 + "\n" + "\n".join(notes)

    def _list(self, tokens: Sequence[Token]) -> str:
        ordered = tokens[0].type == "ordered_list_open"
        number = int(tokens[0].attrs.get("start", 1) or 1)
        items: list[str] = []
        i = 1
        while i < len(tokens) - 1:
            end = block_end(tokens, i)
            marker = f"{number}. " if ordered else "- "
            body = "\n".join(self.blocks(tokens[i + 1 : end])) if tokens[i].type == "list_item_open" else ""
            lines = body.splitlines() or [""]
            pad = " " * len(marker)
            items.append("\n".join([marker + lines[0]] + [(pad + line).rstrip() for line in lines[1:]]))
            number += 1
            i = end + 1
        return "\n".join(items)

    def _table(self, tokens: Sequence[Token]) -> str:
        rows: list[list[str]] = []
        header_rows = 0
        in_head = False
        for token in tokens:
            if token.type == "thead_open":
                in_head = True
            elif token.type == "thead_close":
                in_head = False
            elif token.type == "tr_open":
                rows.append([])
                header_rows += in_head
            elif token.type == "inline":
                rows[-1].append(inline_text(token))
        lines = [" | ".join(row) for row in rows]
        if header_rows:
            lines.insert(header_rows, "-" * min(max(len(line) for line in lines), WIDTH))
        return "\n".join(lines)


def inline_text(inline: Token) -> str:
    """An inline run as plain text: link targets written out, emphasis dropped."""
    out: list[str] = []
    links: list[tuple[str, int]] = []
    for child in inline.children or ():
        kind = child.type
        if kind in ("text", "code_inline"):
            out.append(child.content)
        elif kind == "softbreak":
            out.append(" ")
        elif kind == "hardbreak":
            out.append("\n")
        elif kind in ("s_open", "s_close"):
            out.append("~~")
        elif kind == "image":
            out.append(f"[{child.content or 'image'}]")
        elif kind == "footnote_ref":
            out.append(f"[{int(child.meta.get('id', 0)) + 1}]")
        elif kind == "html_inline":
            out.append("\n" if re.match(r"<br\b", child.content, re.I) else "")
        elif kind == "link_open":
            links.append((str(child.attrs.get("href", "")), len(out)))
        elif kind == "link_close" and links:
            href, start = links.pop()
            label = "".join(out[start:]).strip()
            if href and _shows_target(label, href):
                out.append(f" ({href})")
    return "".join(out).strip()


def _shows_target(label: str, href: str) -> bool:
    """True when the reader cannot see the link target in its label, so it must be written out."""
    scheme, _, rest = href.partition(":")
    if scheme in ("tel", "mailto"):
        return False
    return label.rstrip("/") not in (href.rstrip("/"), rest.lstrip("/").rstrip("/"))


def _strip_tags(fragment: str) -> str:
    """The text a reader sees in raw HTML: not the source of its <style> or <script> blocks."""
    try:
        root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    except lxml.etree.ParserError:  # a fragment with no element in it, such as a comment
        return ""
    for hidden in root.xpath(".//style | .//script"):
        hidden.drop_tree()
    return root.text_content().strip()


def _wrap(text: str) -> str:
    return "\n".join(
        textwrap.fill(line, WIDTH, break_long_words=False, break_on_hyphens=False) if line else ""
        for line in text.split("\n")
    )
