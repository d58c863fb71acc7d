import pytest

from newsletter_cli.config import load_config
from newsletter_cli.issue import load_issue
from newsletter_cli.markup import absolute_url, convert
from newsletter_cli.render import render

SITE = "https://clinic.example/"


def test_relative_links_and_images_are_made_absolute_tel_and_mailto_kept():
    assert absolute_url("/contact", SITE) == "https://clinic.example/contact"
    assert absolute_url("img/a.png", "https://clinic.example/news/") == "https://clinic.example/news/img/a.png"
    assert absolute_url("//cdn.example/a.png", SITE) == "https://cdn.example/a.png"
    for kept in ("tel:+19052733045", "mailto:a@b.example", "https://other.example/x", "#top"):
        assert absolute_url(kept, SITE) == kept


def test_an_image_alone_in_its_paragraph_becomes_a_full_width_mj_image():
    doc = convert('Text\n\n![Our new clinic](/img/clinic.jpg "Front door")\n', SITE)
    assert (
        '<mj-image src="https://clinic.example/img/clinic.jpg" alt="Our new clinic" title="Front door" />'
        in (doc.sections[0])
    )
    assert "[Our new clinic]" in doc.text


def test_a_linked_image_keeps_its_link():
    doc = convert("[![Map](map.png)](https://maps.example/x)\n", SITE)
    assert doc.sections == ['<mj-image src="https://clinic.example/map.png" alt="Map" href="https://maps.example/x" />']


def test_a_link_followed_by_button_mark_becomes_an_mj_button():
    doc = convert("[Book now](/book?a=1&b=2){.button}\n", SITE)
    assert doc.sections == ['<mj-button href="https://clinic.example/book?a=1&amp;b=2">Book now</mj-button>']
    assert doc.text == "Book now: https://clinic.example/book?a=1&b=2\n"


def test_an_inline_image_or_button_mark_inside_text_stays_text():
    doc = convert("See ![x](a.png) here and [Book](/b){.button} too\n", SITE)
    assert "mj-image" not in doc.sections[0] and "mj-button" not in doc.sections[0]
    assert "{.button}" in doc.sections[0]


def test_a_thematic_break_starts_a_new_section():
    doc = convert("One\n\n---\n\nTwo\n\n---\n\nThree\n", SITE)
    assert len(doc.sections) == 3
    assert "One" in doc.sections[0] and "Three" in doc.sections[2]


def test_tables_and_strikethrough_are_enabled_and_tables_scroll_in_their_own_box():
    doc = convert("| a | b |\n|---|---|\n| 1 | ~~2~~ |\n", SITE)
    assert '<div class="nl-table"><table>' in doc.sections[0]
    assert "<s>2</s>" in doc.sections[0]
    assert doc.text == "a | b\n---------\n1 | ~~2~~\n"


def test_sloppy_raw_html_is_made_well_formed_for_mjml():
    doc = convert("<div><b>unclosed\n\nafter\n", SITE)
    assert "</b>" in doc.sections[0] and "</div>" in doc.sections[0]


def test_plain_text_is_written_from_the_markdown():
    source = (
        "# Title\n\n## Sub\n\nA [link](https://x.example/a) and [https://x.example](https://x.example) "
        "and [call](tel:+1555) and **bold**.\n\n"
        "- one\n- two\n  continued\n\n1. first\n2. second\n\n> quoted\n\n```\ncode  kept\n```\n"
    )
    assert convert(source, SITE).text == (
        "Title\n=====\n\nSub\n---\n\n"
        "A link (https://x.example/a) and https://x.example and call and bold.\n\n"
        "- one\n- two continued\n\n1. first\n2. second\n\n> quoted\n\n    code  kept\n"
    )


def test_long_paragraphs_wrap_at_72_without_breaking_urls():
    url = "https://clinic.example/" + "a" * 80
    text = convert("word " * 30 + url + "\n", SITE).text
    assert all(len(line) <= 72 for line in text.splitlines() if url not in line)
    assert url in text


@pytest.mark.parametrize("tag", ["<wbr>", "<source src='a.mp4'>", "<track src='a.vtt'>", "<embed src='x.svg'>"])
def test_void_elements_people_paste_build(folder, write_issue, tag):
    """lxml wrapped what followed inside them (<wbr>word</wbr>) and MJML refused the email."""
    rendered = render(load_issue(write_issue(f"<p>super{tag}califragilistic and more</p>\n")), config(folder))
    assert "califragilistic and more" in rendered.html


def test_a_rule_inside_a_raw_html_element_does_not_split_it_into_sections():
    document = convert("<details>\n<summary>More</summary>\n\nText\n\n---\n\nMore\n</details>\n\n---\n\nNext\n", SITE)
    assert len(document.sections) == 2
    assert "<hr/>" in document.sections[0] and "</details>" in document.sections[0]


def test_the_plain_text_never_holds_style_or_script_source():
    text = convert(
        "Hi\n\n<style>\n.x { color: red }\n</style>\n\n<div>Seen <script>alert(1)</script>too</div>\n", SITE
    ).text
    assert text == "Hi\n\nSeen too\n"


def config(folder):
    return load_config(folder / "newsletter.toml", environ={})


def test_a_comment_with_a_double_hyphen_inside_builds(folder, write_issue):
    """MJML's parser refused '--' inside an HTML comment, and '--->' as its end; HTML allows both."""
    rendered = render(
        load_issue(write_issue("Before <!-- a -- b --> after\n\n<!-- note -- here -->\n\n<!--- hidden - --->\n")),
        config(folder),
    )
    assert "Before" in rendered.html and "after" in rendered.html


def test_footnotes_render_in_both_parts():
    document = convert("As the study showed[^1], it works.\n\n[^1]: Smith, 2024. *Journal*.\n", SITE)
    assert 'href="#fn1"' in document.sections[0] and 'id="fn1"' in document.sections[0]
    assert document.text == "As the study showed[1], it works.\n\n--------------------\n[1] Smith, 2024. Journal.\n"


def test_typographic_quotes_and_dashes_are_a_config_option(folder, write_issue):
    path = write_issue('He said "hello" -- then left.\n')
    assert 'He said "hello" -- then left.' in render(load_issue(path), config(folder)).text
    toml = folder / "newsletter.toml"
    toml.write_text(toml.read_text().replace('website = "', 'typographer = true\nwebsite = "', 1))
    assert "He said “hello” – then left." in render(load_issue(path), config(folder)).text


def test_a_pasted_table_sits_in_the_scrolling_box_as_a_markdown_one_does():
    document = convert('<TABLE style="width:900px"><tr><td>Wide</td></tr></TABLE>\n\n| a |\n|---|\n| 1 |\n', SITE)
    html = document.sections[0]
    assert html.count('<div class="nl-table"><table') == 2 and html.count("</table></div>") == 2
