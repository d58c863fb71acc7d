import datetime as dt

import pytest

from newsletter_cli.errors import IssueError
from newsletter_cli.issue import load_issue, new_issue, parse_issue, slugify

from .conftest import EXAMPLE_ISSUE


def test_front_matter_and_body_with_line_numbers(tmp_path):
    text = '---\nsubject: "Hi"\npreheader: Pre\ndate: 2022-12-01\n---\nBody line\n'
    issue = parse_issue(text, tmp_path / "2022-12-x.md")
    assert (issue.subject, issue.preheader, issue.date) == ("Hi", "Pre", dt.date(2022, 12, 1))
    assert issue.template == "newsletter.mjml.j2"
    assert issue.body == "Body line\n"
    assert issue.body_line == 6
    assert issue.key_lines == {"subject": 2, "preheader": 3, "date": 4}
    assert issue.slug == "2022-12-x"


def test_the_example_issue_has_no_web_page_debris_and_tel_links():
    issue = load_issue(EXAMPLE_ISSUE)
    for debris in ("Leave a Reply", "Fields marked with", "Contact Contact"):
        assert debris not in issue.body
    assert "[(905) 273-3045](tel:+19052733045)" in issue.body
    assert "[(416) 207-9090](tel:+14162079090)" in issue.body


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("no front matter\n", "missing front matter: the file must start with a line '---'", 1),
        ("---\nsubject: x\n", "front matter is not closed: add a line '---' after it", 1),
        (
            "---\nsubject: [unclosed\n---\n",
            "invalid front matter: expected ',' or ']', but got '<stream end>'",
            3,
        ),
        ("---\npreheader: x\n---\n", "front matter: 'subject' is required", 2),
        (
            "---\nsubject: x\nsubjet: y\n---\n",
            "front matter 'subjet': unknown key (expected one of subject, preheader, date, template, archive)",
            3,
        ),
        (
            "---\nsubject: x\ndate: next week\n---\n",
            "front matter 'date': expected a date like 2022-12-01, got 'next week'",
            3,
        ),
        (
            "---\nsubject: x\ntemplate: ../evil.j2\n---\n",
            "front matter 'template': expected a file name in templates/, such as newsletter.mjml.j2",
            3,
        ),
        ("---\n- a list\n---\n", "front matter must be 'key: value' lines", 2),
    ],
)
def test_broken_front_matter_is_one_line_with_file_and_line(tmp_path, text, message, line):
    path = tmp_path / "bad.md"
    with pytest.raises(IssueError) as error:
        parse_issue(text, path)
    assert error.value.message == f"{path}:{line}: {message}"


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(IssueError, match="issue file not found"):
        load_issue(tmp_path / "nope.md")
    latin = tmp_path / "latin.md"
    latin.write_bytes("---\nsubject: café\n---\n".encode("latin-1"))
    with pytest.raises(IssueError, match=r"not UTF-8 text \(byte 16\)"):
        load_issue(latin)


def test_new_issue_writes_front_matter_and_never_overwrites(tmp_path):
    path = new_issue(tmp_path / "issues", "Winter skin: a guide", dt.date(2023, 1, 5))
    assert path.name == "2023-01-winter-skin-a-guide.md"
    issue = load_issue(path)
    assert issue.subject == "Winter skin: a guide"
    assert issue.date == dt.date(2023, 1, 5)
    with pytest.raises(IssueError, match="already exists"):
        new_issue(tmp_path / "issues", "Winter skin: a guide", dt.date(2023, 1, 5))


def test_slugify_keeps_ascii_letters_and_digits():
    assert slugify("Café & Crème 2023!") == "cafe-creme-2023"
    assert slugify("🎉") == "issue"
