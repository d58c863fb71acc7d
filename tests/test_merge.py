from pathlib import Path

import pytest

from newsletter_cli.errors import RenderError
from newsletter_cli.merge import (
    HTML_CONTEXT,
    TEXT_CONTEXT,
    MergeField,
    fill,
    render_fields,
    template_like,
    to_context,
)

PATH = Path("issues/x.md")


def test_a_merge_field_becomes_a_token_and_is_recorded_with_its_line():
    text, fields = render_fields('line one\nHi {{ subscriber.first_name | default("friend") }}!\n', PATH, 10)
    field = MergeField("first_name", "friend", 11)
    assert fields == [field]
    assert text == f"line one\nHi {field.token()}!\n"
    assert field.token().isalnum()


def test_fill_escapes_for_html_only_and_an_empty_cell_takes_the_default():
    text, fields = render_fields("{{ subscriber.first_name | default('friend') }} {{ subscriber.city }}", PATH, 1)
    html, plain = to_context(text, HTML_CONTEXT), to_context(text, TEXT_CONTEXT)
    row = {"first_name": "<b>Ann & Bo</b>", "city": "Toronto"}
    assert fill(html, HTML_CONTEXT, fields, row) == "&lt;b&gt;Ann &amp; Bo&lt;/b&gt; Toronto"
    assert fill(plain, TEXT_CONTEXT, fields, row) == "<b>Ann & Bo</b> Toronto"
    assert fill(plain, TEXT_CONTEXT, fields, {"first_name": "", "city": ""}) == "friend "


def test_html_and_text_tokens_do_not_fill_each_other():
    text, fields = render_fields("{{ subscriber.first_name }}", PATH, 1)
    html = to_context(text, HTML_CONTEXT)
    assert fill(html, TEXT_CONTEXT, fields, {"first_name": "Ann"}) == html


@pytest.mark.parametrize(
    "source",
    [
        "## Contents {#contents}",  # a heading anchor
        '{{< youtube id="abc" >}}',  # a Hugo shortcode
        "{{ page.url | url }}",  # Liquid
        "run: echo ${{ steps.build.outputs.version }}",  # GitHub Actions, in a code block
        "{# not a comment any more: this text stays #}",
        "{% if member %}Members only{% endif %}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",  # once rendered, and ran code
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    ],
)
def test_only_merge_fields_are_template_code_everything_else_stays_as_written(source):
    assert render_fields(source, PATH, 1) == (source, [])


def test_raw_shows_template_syntax_literally_and_a_default_may_hold_quotes():
    text, fields = render_fields('{% raw %}{{{% endraw %} {{ subscriber["first name"] | d("the \\"you\\"") }}', PATH, 1)
    assert fields == [MergeField("first name", 'the "you"', 1)]
    assert text == "{{ " + fields[0].token()


@pytest.mark.parametrize(
    ("source", "line"),
    [("a\n{{ subscriber.name | upper }}", 6), ("{{ subscriber.first_name | default(x) }}", 5)],
)
def test_an_expression_about_subscriber_that_is_no_merge_field_is_an_error_naming_its_line(source, line):
    with pytest.raises(RenderError) as error:
        render_fields(source, PATH, 5)
    assert error.value.message.startswith(f"{PATH}:{line}: {{{{")
    assert "is not a merge field" in error.value.message


def test_template_like_text_is_found_for_check_but_not_merge_fields():
    text = 'Hi {{ subscriber.first_name | default("there") }} {#top} {{< x >}}'
    assert template_like(text) == [(text.index("{{<"), "{{< x >}}")]
