import re
from pathlib import Path

import pytest

from newsletter_cli.build import preview_message
from newsletter_cli.config import load_config
from newsletter_cli.errors import RenderError
from newsletter_cli.issue import load_issue
from newsletter_cli.render import GMAIL_CLIP_BYTES, SENDGRID_UNSUBSCRIBE_TAG, render

from .conftest import EXAMPLE_ISSUE, REPO

ROW = {"email": "ana@example.com", "first_name": "Ana", "unsubscribe_url": "https://testnews.ca/u?token=T"}


def rendered_for(folder: Path, issue_path: Path, columns=None):
    return render(load_issue(issue_path), load_config(folder / "newsletter.toml", environ={}), columns)


@pytest.fixture
def example_message():
    config = load_config(REPO / "newsletter.toml", environ={})
    rendered = render(load_issue(EXAMPLE_ISSUE), config)
    return rendered, rendered.personalize(ROW)


def test_the_example_is_a_complete_email(example_message):
    _, message = example_message
    html = message.html
    assert html.startswith("<!doctype html>")
    assert '<html lang="en"' in html
    assert "<title>Baby BOTOX: prevention, smoother skin and more</title>" in html
    assert len(html.encode()) < GMAIL_CLIP_BYTES / 2
    assert 'href="tel:+19052733045"' in html and 'href="tel:+14162079090"' in html
    assert 'href="https://mcsc.example/contact"' in html
    assert "REPLACE: MCSC postal address, Mississauga, Ontario" in html
    assert 'href="https://testnews.ca/u?token=T"' in html
    assert "Hi Ana," in html
    assert "You are receiving this because you subscribed to the MCSC newsletter." in html
    assert not re.search(r"NL[FHT][0-9a-f]{10}", html + message.text + message.subject)


def test_the_preheader_comes_right_after_body_and_is_hidden_in_outlook_too(example_message):
    _, message = example_message
    after_body = re.split(r"<body[^>]*>", message.html, maxsplit=1)[1]
    assert after_body.startswith('<div class="nl-preheader" style="display:none;')
    assert "mso-hide:all" in after_body[:300]
    assert message.preheader.startswith("What “baby BOTOX” means")


def test_premailer_keeps_important_media_queries_mso_comments_and_adds_no_attributes(example_message):
    html = example_message[1].html
    style = "".join(re.findall(r"<style[^>]*>(.*?)</style>", html, re.S))
    assert "@media (prefers-color-scheme: dark)" in style
    assert "background-color: #111418 !important" in style.replace("#111418!important", "#111418 !important")
    assert "<!--[if mso | IE]>" in html and "<!--[if mso]>" in html
    assert re.search(r'<h1 id="[^"]*" style="font-size:28px;line-height:1.25;', html), "inlined, written short"
    assert re.search(r'<a href="tel:[^"]*" class="nl-nowrap" style="white-space:nowrap;color:#0a5c63">', html)
    assert re.search(r"<p>", html) and ".nl-content p { margin: 0 0 16px; }" in style, "spacing stays in <style>"
    assert not re.search(r'<(p|h1|a|div)\b[^>]*\b(width|bgcolor|align)="', html)
    assert '<meta name="color-scheme" content="light dark"' in html


def test_the_plain_text_twin_has_the_body_links_and_footer(example_message):
    text = example_message[1].text
    assert text.startswith("MCSC - December 1, 2022\n\nHi Ana,\n\nBaby BOTOX\n==========\n")
    assert "Book your consultation: https://mcsc.example/contact" in text
    assert "Unsubscribe: https://testnews.ca/u?token=T" in text
    assert "REPLACE: MCSC postal address, Mississauga, Ontario" in text
    assert "<" not in text.replace("<b>", "")


def test_merge_tokens_survive_inlining_inside_href(folder, write_issue):
    path = write_issue('[Your page](https://testnews.ca/p?who={{ subscriber.first_name | default("x y") }})\n')
    message = rendered_for(folder, path).personalize({**ROW, "first_name": "Ana"})
    assert 'href="https://testnews.ca/p?who=Ana"' in message.html


def test_names_with_markup_are_escaped_in_html_and_plain_in_text(folder, write_issue):
    path = write_issue("Hi {{ subscriber.first_name }}!\n", front='subject: "For {{ subscriber.first_name }}"')
    message = rendered_for(folder, path).personalize({**ROW, "first_name": "<script>O'Neil & Co"})
    assert "Hi &lt;script&gt;O&#x27;Neil &amp; Co!" in message.html
    assert "<title>For &lt;script&gt;O&#x27;Neil &amp; Co</title>" in message.html
    assert "Hi <script>O'Neil & Co!" in message.text
    assert message.subject == "For <script>O'Neil & Co"


def test_an_unknown_merge_field_is_an_error_when_the_list_columns_are_known(folder, write_issue):
    path = write_issue("Hello\n\nHi {{ subscriber.nickname }}\n")
    with pytest.raises(RenderError) as error:
        rendered_for(folder, path, columns=frozenset({"email", "first_name"}))
    assert error.value.message == (
        "issues/test.md:7: unknown merge field subscriber.nickname: the list has no such column "
        '(columns: email, first_name); add the column or a | default("...")'
    )
    rendered_for(folder, write_issue('Hi {{ subscriber.nickname | default("you") }}\n'), frozenset({"email"}))


def test_an_empty_body_still_renders_a_valid_email_with_footer(folder, write_issue):
    message = rendered_for(folder, write_issue("")).personalize(ROW)
    assert "1 Test Street, Testville" in message.html and "Unsubscribe" in message.html
    assert "Unsubscribe: https://testnews.ca/u?token=T" in message.text


def test_non_ascii_emoji_and_raw_html(folder, write_issue):
    body = 'Café crème 🎉 — naïve «quotes»\n\n<div class="note"><b>Raw</b> <i>html\n\nafter\n'
    path = write_issue(body, front='subject: "Über 🎉 news"')
    message = rendered_for(folder, path).personalize(ROW)
    assert "Café crème 🎉 — naïve «quotes»" in message.html
    assert "<title>Über 🎉 news</title>" in message.html
    assert "<b>Raw</b>" in message.html
    assert "Café crème 🎉" in message.text


def test_a_huge_table_renders_and_reports_its_size(folder, write_issue):
    rows = "".join(f"| row {i} | {'value ' * 8} | {i * 3} |\n" for i in range(400))
    path = write_issue("| name | description | n |\n|---|---|---|\n" + rows)
    message = rendered_for(folder, path).personalize(ROW)
    assert message.html.count("<tr") > 400
    assert len(message.html.encode()) > GMAIL_CLIP_BYTES


def test_sendgrid_mode_uses_sendgrids_unsubscribe_tag(folder, write_issue):
    config = (
        (folder / "newsletter.toml")
        .read_text()
        .replace('url = "https://testnews.ca/unsubscribe"', "sendgrid_group_id = 7")
    )
    (folder / "newsletter.toml").write_text(config)
    rendered = rendered_for(folder, write_issue("Hi\n"))
    assert f'href="{SENDGRID_UNSUBSCRIBE_TAG}"' in rendered.html
    assert f"Unsubscribe: {SENDGRID_UNSUBSCRIBE_TAG}" in rendered.text
    assert "unsubscribe_url" not in {f.name for f in rendered.fields}


def test_a_web_font_in_a_template_is_kept_but_never_fetched(folder, write_issue):
    """The autouse no_internet fixture fails this test if cssutils tries to fetch the font."""
    templates = folder / "templates"
    templates.mkdir()
    source = (REPO / "templates" / "newsletter.mjml.j2").read_text()
    font = '<mj-font name="Lato" href="https://fonts.googleapis.com/css?family=Lato" />'
    source = source.replace("<mj-head>", "<mj-head>" + font).replace('{%- set fonts = "', '{%- set fonts = "Lato, ')
    (templates / "newsletter.mjml.j2").write_text(source)
    html = rendered_for(folder, write_issue("Hi\n")).html
    assert "@import url(https://fonts.googleapis.com/css?family=Lato)" in html


def test_a_template_from_front_matter_and_a_missing_one(folder, write_issue):
    path = write_issue("Hi\n", front='subject: "Hello there"\ntemplate: special.mjml.j2')
    with pytest.raises(RenderError) as error:
        rendered_for(folder, path)
    assert error.value.message == (
        "issues/test.md:3: template 'special.mjml.j2' not found in templates/ or the packaged defaults"
    )


def test_a_template_syntax_error_names_the_template_and_line(folder, write_issue):
    (folder / "templates").mkdir()
    (folder / "templates" / "newsletter.mjml.j2").write_text("<mjml>\n{% for %}\n</mjml>")
    with pytest.raises(RenderError) as error:
        rendered_for(folder, write_issue("Hi\n"))
    assert error.value.message.startswith("templates/newsletter.mjml.j2:2: ")


def test_build_fills_from_the_first_subscriber_or_as_email(example):
    config = load_config(example / "newsletter.toml", environ={})
    (example / "subscribers.csv").write_text("Email Address,First Name\nlee@example.org,Lee\nana@example.com,\n")
    _, first = preview_message(example / "issues" / "2022-12-baby-botox.md", config)
    assert "Hi Lee," in first.html
    _, ana = preview_message(example / "issues" / "2022-12-baby-botox.md", config, as_email="ANA@example.com")
    assert "Hi there," in ana.html, "an empty cell takes the default"


# --- in a real browser: the rules above only count if Chromium applies them ------------------


def open_email(browser, html_path: Path, width: int, scheme: str = "light"):
    page = browser.new_page(viewport={"width": width, "height": 800}, color_scheme=scheme)
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
    page.goto(html_path.as_uri())
    return page


@pytest.fixture
def example_html(tmp_path, example_message) -> Path:
    path = tmp_path / "example.html"
    path.write_text(example_message[1].html, encoding="utf-8")
    return path


@pytest.mark.browser
def test_at_375px_nothing_scrolls_sideways_and_the_mobile_rules_apply(browser, example_html):
    page = open_email(browser, example_html, 375)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.evaluate("getComputedStyle(document.querySelector('h1')).fontSize") == "24px"
    assert page.evaluate("getComputedStyle(document.querySelector('.nl-preheader')).display") == "none"


@pytest.mark.browser
def test_at_600px_and_wider_the_column_is_600px_and_centred(browser, example_html):
    page = open_email(browser, example_html, 1000)
    box = page.evaluate(
        "(() => { const r = document.querySelector('.nl-card').getBoundingClientRect(); return [r.left, r.width]; })()"
    )
    assert box == [200, 600]
    assert page.evaluate("getComputedStyle(document.querySelector('h1')).fontSize") == "28px"


@pytest.mark.browser
def test_dark_mode_rules_apply_when_the_client_prefers_dark(browser, example_html):
    card = "getComputedStyle(document.querySelector('.nl-card')).backgroundColor"
    text = "getComputedStyle(document.querySelector('.nl-content p')).color"
    light = open_email(browser, example_html, 600, "light")
    dark = open_email(browser, example_html, 600, "dark")
    assert light.evaluate(card) == "rgb(255, 255, 255)"
    assert dark.evaluate(card) == "rgb(27, 32, 38)"
    assert dark.evaluate(text) == "rgb(229, 233, 238)"


@pytest.mark.browser
def test_a_huge_table_does_not_widen_the_page_on_a_phone(browser, folder, write_issue, tmp_path):
    cells = " | ".join(f"column{i}" for i in range(14))
    rows = "".join(f"| {cells} |\n" for _ in range(50))
    path = write_issue(f"| {cells} |\n|{'---|' * 14}\n{rows}")
    html = tmp_path / "table.html"
    html.write_text(rendered_for(folder, path).personalize(ROW).html)
    page = open_email(browser, html, 375)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375


def test_an_undefined_name_in_a_template_names_the_template_and_line(folder, write_issue):
    (folder / "templates").mkdir()
    (folder / "templates" / "newsletter.mjml.j2").write_text(
        "<mjml>\n<mj-body>\n{{ newsletter.nmae }}</mj-body></mjml>"
    )
    with pytest.raises(RenderError) as error:
        rendered_for(folder, write_issue("Hi\n"))
    assert (
        error.value.message == "templates/newsletter.mjml.j2:3: template error: 'dict object' has no attribute 'nmae'"
    )


def test_only_the_fields_the_email_contains_are_substituted(folder, write_issue):
    rendered = rendered_for(folder, write_issue("Hi\n"))
    assert {f.name for f in rendered.fields} == {"unsubscribe_url"}
    (folder / "templates").mkdir()
    source = (REPO / "templates" / "newsletter.txt.j2").read_text().replace("because you", "because {{ email }}")
    (folder / "templates" / "newsletter.txt.j2").write_text(source)
    rendered = rendered_for(folder, write_issue("Hi\n"))
    assert {f.name for f in rendered.fields} == {"unsubscribe_url", "email"}
    assert "because ana@example.com subscribed" in rendered.personalize(ROW).text


def test_template_code_in_an_issue_is_never_run(folder, write_issue, tmp_path):
    """A payload in an issue once ran a shell command during build, check and send."""
    marker = tmp_path / "pwned"
    payload = f"{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}}"
    rendered = render(
        load_issue(write_issue(f"Hello\n\n{payload}\n\n{{# kept #}}\n")), load_config(folder / "newsletter.toml")
    )
    assert not marker.exists()
    assert "{{ cycler." in rendered.text and "os.popen" in rendered.text, (
        "shown as written (Markdown takes __x__ as bold)"
    )
    assert "{# kept #}" in rendered.text, "a {# ... #} is text, not a comment that deletes it"


def test_a_folders_template_runs_in_jinjas_sandbox(folder, write_issue, tmp_path):
    marker = tmp_path / "pwned"
    (folder / "templates").mkdir()
    template = (REPO / "newsletter_cli" / "templates" / "newsletter.mjml.j2").read_text()
    payload = f"{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}}"
    (folder / "templates" / "newsletter.mjml.j2").write_text(template.replace("<mj-body", payload + "<mj-body", 1))
    with pytest.raises(RenderError) as error:
        render(load_issue(write_issue("Hi\n")), load_config(folder / "newsletter.toml"))
    assert not marker.exists()
    assert error.value.message.startswith("templates/newsletter.mjml.j2")


WORD_LINES = """
(words) => words.map(word => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const at = walker.currentNode.textContent.indexOf(word);
    if (at < 0) continue;
    const range = document.createRange();
    range.setStart(walker.currentNode, at);
    range.setEnd(walker.currentNode, at + word.length);
    return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;
  }
  return -1;
})
"""


@pytest.mark.browser
def test_at_375_px_table_words_and_phone_numbers_never_break_in_the_middle(folder, write_issue, browser):
    """Tables once broke 'Missis/sauga' and '#40/936' at phone width; a phone number wrapped at its hyphen."""
    table = (
        "| Clinic | City | Phone | Hours |\n| --- | --- | --- | --- |\n"
        "| Square One Dermatology | Mississauga | [(905) 273-3045](tel:+19052733045) | Monday to Friday, 9 to 5 |\n"
        "| Yonge and Eglinton | Toronto | [(416) 207-9090](tel:+14162079090) | Saturdays by appointment |\n"
    )
    body = f"{table}\nCall us at [(905) 273-3045](tel:+19052733045) any weekday, or visit the Mississauga clinic.\n"
    rendered = render(load_issue(write_issue(body)), load_config(folder / "newsletter.toml"))
    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.route("**/*", lambda route: route.abort())  # nothing leaves the machine
    page.set_content(rendered.html)
    words = ["Mississauga", "Toronto", "Dermatology", "(905) 273-3045", "(416) 207-9090"]
    assert page.evaluate(WORD_LINES, words) == [1] * len(words)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375


LINK_HEAVY = REPO / "tests" / "corpus" / "twir" / "2024-11-20-this-week-in-rust.md"


def test_a_40_kb_link_heavy_issue_comes_out_under_90_kb(folder):
    """Each of its 370 links carried the same colour and underline rule: 104 KB, clipped by Gmail."""
    assert LINK_HEAVY.stat().st_size > 40_000
    html = rendered_for(folder, LINK_HEAVY).personalize(ROW).html
    assert len(html.encode()) < 90 * 1024
    assert html.count('style="color:#0a5c63"') > 300


def inlined_everything(html: str) -> str:
    """The same email with every rule of its <style> blocks inlined, as emails were before."""
    from premailer import Premailer

    fat = Premailer(html, allow_network=False, keep_style_tags=True, strip_important=False).transform()
    return fat if fat.startswith("<!doctype") else "<!doctype html>\n" + fat  # not in quirks mode


@pytest.mark.browser
@pytest.mark.parametrize("issue", [EXAMPLE_ISSUE, LINK_HEAVY], ids=["example", "link-heavy"])
def test_what_stays_in_style_blocks_looks_exactly_as_when_all_of_it_was_inlined(browser, folder, tmp_path, issue):
    config = REPO / "newsletter.toml" if issue == EXAMPLE_ISSUE else folder / "newsletter.toml"
    html = render(load_issue(issue), load_config(config, environ={})).personalize(ROW).html
    lean, fat = tmp_path / "lean.html", tmp_path / "fat.html"
    lean.write_text(html, encoding="utf-8")
    fat.write_text(inlined_everything(html), encoding="utf-8")
    assert fat.stat().st_size > lean.stat().st_size
    for width in (375, 600):
        for scheme in ("light", "dark"):
            shots = [open_email(browser, path, width, scheme).screenshot(full_page=True) for path in (lean, fat)]
            assert shots[0] == shots[1], f"{width} px, {scheme}"


@pytest.mark.browser
def test_a_client_that_drops_style_blocks_still_shows_link_colours_headings_and_quotes(browser, folder, tmp_path):
    html = rendered_for(folder, LINK_HEAVY).personalize(ROW).html
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r"<style[^>]*>.*?</style>", "", html, flags=re.S), encoding="utf-8")
    page = open_email(browser, bare, 375)
    style = "(css) => { const s = getComputedStyle(document.querySelector(css)); return [s.color, s.fontSize]; }"
    assert page.evaluate(style, ".nl-content a") == ["rgb(10, 92, 99)", "16px"]
    assert page.evaluate(style, ".nl-content h2") == ["rgb(31, 41, 51)", "22px"]
    assert page.evaluate("getComputedStyle(document.querySelector('.nl-content a')).textDecorationLine") == "underline"
