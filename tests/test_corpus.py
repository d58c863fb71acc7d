"""Real newsletter issues (tests/corpus/, sources and licences in its PROVENANCE.md) build
unedited, lose no word on the way to the html or the plain text unless `check` reports the line,
and never scroll sideways on a phone."""

from __future__ import annotations

import collections
import re
from pathlib import Path

import lxml.html
import pytest
from markdown_it import MarkdownIt

from newsletter_cli.check import findings
from newsletter_cli.config import Config, load_config
from newsletter_cli.issue import load_issue
from newsletter_cli.render import SAMPLE_EMAIL, Message, Rendered, render

from .conftest import MINIMAL_CONFIG

CORPUS = Path(__file__).parent / "corpus"
ISSUES = sorted(CORPUS.glob("*/*.md"))
WORD = re.compile(r"[^\W\d_]{2,}")


def test_the_corpus_is_at_least_30_issues_from_at_least_5_sources_each_recorded():
    provenance = (CORPUS / "PROVENANCE.md").read_text(encoding="utf-8")
    sources = {path.parent.name for path in ISSUES}
    assert len(ISSUES) >= 30 and len(sources) >= 5
    for source in sources:
        section = provenance.split(f"## {source}/")[1].split("\n## ")[0]
        assert re.search(r"at commit `[0-9a-f]{40}`", section) and "- licence: " in section
    for path in ISSUES:
        assert f"`{path.parent.name}/{path.name}`" in provenance


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "newsletter.toml").write_text(MINIMAL_CONFIG, encoding="utf-8")
    return load_config(folder / "newsletter.toml", environ={})


def built(path: Path, config: Config) -> tuple[Rendered, Message]:
    rendered = render(load_issue(path), config)
    return rendered, rendered.personalize({"email": SAMPLE_EMAIL, "unsubscribe_url": "https://testnews.ca/u?t=T"})


BLOCKS = {"p", "div", "li", "blockquote", "pre", "table", "tr", "td", "th", "br", "hr", "ul", "ol", "dd", "dt"}
BLOCKS |= {"h1", "h2", "h3", "h4", "h5", "h6", "details", "summary", "section", "figure", "figcaption"}


def visible_words(html: str) -> collections.Counter[str]:
    document = lxml.html.fromstring(html)
    for hidden in document.xpath("//style|//script|//head|//*[contains(@style, 'display:none')]"):
        hidden.drop_tree()
    for element in document.iter():
        if element.tag in BLOCKS:  # a block ends a word, as in a browser
            element.tail = " " + (element.tail or "")
            element.text = " " + (element.text or "")
    return collections.Counter(word.casefold() for word in WORD.findall(document.text_content()))


def source_words(body: str) -> collections.Counter[str]:
    """What a reader sees of the body, by CommonMark with tables, independent of our renderer."""
    return visible_words(f"<div>{MarkdownIt('commonmark').enable('table').render(body)}</div>")


@pytest.mark.parametrize("path", ISSUES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_it_builds_unedited_and_every_word_reaches_the_html_and_the_text_or_check_reports_its_line(path, config):
    issue = load_issue(path)
    rendered, message = built(path, config)
    found, _ = findings(issue, rendered, config)
    reported = {f.line for f in found if f.file == str(path)}
    lines = issue.body.splitlines()
    for part, words in (
        ("html", visible_words(message.html)),
        ("text", collections.Counter(word.casefold() for word in WORD.findall(message.text))),
    ):
        missing = source_words(issue.body) - words
        unreported = [
            word
            for word in missing
            if not any(
                word in line.casefold() and issue.file_line(number) in reported
                for number, line in enumerate(lines, start=1)
            )
        ]
        assert not unreported, f"words of the body missing from the {part} part: {sorted(unreported)[:20]}"


SCROLL = "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"


@pytest.mark.browser
def test_no_issue_scrolls_sideways_at_375_px(config, browser):
    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.route("**/*", lambda route: route.abort())  # nothing leaves the machine
    wide = {}
    for path in ISSUES:
        page.set_content(built(path, config)[1].html, wait_until="domcontentloaded")
        scroll, client = page.evaluate(SCROLL)
        if scroll > client:
            wide[f"{path.parent.name}/{path.name}"] = scroll
    page.close()
    assert wide == {}


CLINIC_TABLE = (
    "| Clinic | City | Phone | Hours |\n| --- | --- | --- | --- |\n"
    "| Square One Dermatology | Mississauga | [(905) 273-3045](tel:+19052733045) | Monday to Friday, 9 to 5 |\n"
)
FOURTEEN_COLUMNS = "| " + " | ".join(f"column{i}" for i in range(14)) + " |\n|" + "---|" * 14 + "\n"
PRICES = "| Service | Price |\n|---|---|\n| Consultation | $150 |\n| Follow-up visit | $90 |\n"
LONG_URL = "| Name | Link |\n|---|---|\n| Docs | https://testnews.ca/a/very/long/path/that/never/breaks/at/all |\n"


@pytest.mark.browser
def test_table_wide_warns_of_exactly_the_tables_that_scroll_at_375_px(config, browser, tmp_path):
    """Checked against Chromium: the corpus's tables and a few of our own."""
    ours = []
    for number, body in enumerate((CLINIC_TABLE, FOURTEEN_COLUMNS, LONG_URL, PRICES)):
        ours.append(tmp_path / f"table{number}.md")
        ours[-1].write_text(f"---\nsubject: Tables\n---\n{body}", encoding="utf-8")
    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.route("**/*", lambda route: route.abort())
    scrolling = []
    for path in [*ISSUES, *ours]:
        rendered, message = built(path, config)
        page.set_content(message.html, wait_until="domcontentloaded")
        boxes = page.evaluate("[...document.querySelectorAll('.nl-table')].map(b => b.scrollWidth > b.clientWidth)")
        warned = [f for f in findings(load_issue(path), rendered, config)[0] if f.code == "table-wide"]
        assert len(warned) == sum(boxes), path.name
        scrolling += [path.name] * sum(boxes)
    page.close()
    assert scrolling.count("table1.md") == scrolling.count("table2.md") == 1 and "table3.md" not in scrolling
