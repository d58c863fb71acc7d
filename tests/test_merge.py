from pathlib import Path

import pytest

from newsletter_cli.errors import RenderError
from newsletter_cli.merge import HTML_CONTEXT, TEXT_CONTEXT, MergeField, fill, render_fields, to_context

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
    ("source", "message", "line"),
    [
        ("ok\n{{ unknown_thing }}", "unknown variable: 'unknown_thing' is undefined", 6),
        ("ok\n\n{% if %}", "Expected an expression, got 'end of statement block'", 7),
        ("{{ subscriber.name | upper }}", "only | default(...) works on merge fields, not | upper", 5),
        ("a\n{% if subscriber.vip %}x{% endif %}", "subscriber.vip cannot decide an {% if %}", 6),
    ],
)
def test_jinja_errors_name_the_issue_file_line(source, message, line):
    with pytest.raises(RenderError) as error:
        render_fields(source, PATH, 5)
    assert error.value.message.startswith(f"{PATH}:{line}: {message}")
