import json

import pytest
from click.testing import CliRunner

from newsletter_cli.check import check, spam
from newsletter_cli.check.email import contrast
from newsletter_cli.cli import cli
from newsletter_cli.config import load_config

from .conftest import EXAMPLE_ISSUE, REPO

FRONT = 'subject: "A good subject line"\npreheader: "A short preheader"'


def findings_for(folder, write_issue, body, front=FRONT, subscribers=None):
    if subscribers is not None:
        (folder / "subscribers.csv").write_text(subscribers)
    path = write_issue(body, front=front)
    found, _ = check(path, load_config(folder / "newsletter.toml", environ={}))
    return {(f.code, f.line, f.level) for f in found}


# (code, level, body or front matter that triggers it, line, a near miss that does not)
RULES = [
    (
        "contrast",
        "warning",
        '<p style="color: #cccccc">Light grey words</p>\n',
        5,
        '<p style="color: #333">Dark words</p>\n',
    ),
    ("css-unsupported", "warning", '<p style="display: flex">x</p>\n', 5, "Text about display: flex.\n"),
    ("css-unsupported", "warning", '<p style="display:grid">x</p>\n', 5, '<p style="display:block">x</p>\n'),
    ("css-unsupported", "warning", "<style>\n.a { position: absolute; }\n</style>\n", 6, "<style>\n.a { }\n</style>\n"),
    ("css-unsupported", "warning", '<p style="background: url(https://testnews.ca/a.png)">x</p>\n', 5, "<p>x</p>\n"),
    (
        "css-unsupported",
        "warning",
        '<p style="transform: rotate(3deg)">x</p>\n',
        5,
        '<p style="text-transform: uppercase">x</p>\n',
    ),
    (
        "css-unsupported",
        "warning",
        '<p style="box-shadow: 0 0 4px #000">x</p>\n',
        5,
        '<p style="border: 1px solid">x</p>\n',
    ),
    ("html-unsupported", "warning", "<details><summary>More</summary>\n\nThe rest\n\n</details>\n", 5, "`<details>`\n"),
    ("html-unsupported", "warning", "Done: <progress value='3' max='5'></progress>\n", 5, "Done: 3 of 5\n"),
    ("html-unsupported", "warning", "<meter value='0.6'>60%</meter>\n", 5, "```\n<meter>\n```\n"),
    ("html-unsupported", "warning", "<dialog open>Hello</dialog>\n", 5, "A dialog\n"),
    (
        "table-wide",
        "warning",
        '<table style="width:900px"><tr><td>Wide</td></tr></table>\n',
        5,
        "| A | B |\n|---|---|\n| 1 | 2 |\n",
    ),
    (
        "css-font-fallback",
        "warning",
        '<p style="font-family: Lato">x</p>\n',
        5,
        '<p style="font-family: Lato, sans-serif">x</p>\n',
    ),
    ("image-alt", "error", "![](https://testnews.ca/a.png)\n", 5, "![A chart](https://testnews.ca/a.png)\n"),
    (
        "image-alt",
        "error",
        '<p><img src="https://testnews.ca/a.png"></p>\n',
        5,
        '<p><img src="https://testnews.ca/a.png" alt="A"></p>\n',
    ),
    ("link-javascript", "error", "[x](javascript:alert(1))\n", 5, "[x](https://testnews.ca/)\n"),
    ("link-empty", "error", "[x]()\n", 5, "[x](#top)\n"),
    ("link-localhost", "error", "[x](http://localhost:8000/a)\n", 5, "[x](https://testnews.ca/a)\n"),
    ("image-localhost", "error", "![x](http://127.0.0.1/a.png)\n", 5, "![x](https://testnews.ca/a.png)\n"),
    ("link-relative", "error", '<a href="/a">x</a>\n', 5, "[x](/a)\n"),
    ("image-relative", "error", '<img src="a.png" alt="x">\n', 5, "![x](a.png)\n"),
    ("forbidden-tag", "error", "<div>\n<script>alert(1)</script>\n</div>\n", 6, "<div>\nscript\n</div>\n"),
    ("forbidden-tag", "error", "<form action='x'></form>\n", 5, "form\n"),
    ("forbidden-tag", "error", "<iframe src='https://x.testnews.ca'></iframe>\n", 5, "iframe\n"),
    ("forbidden-tag", "error", "<video src='https://testnews.ca/v.mp4'></video>\n", 5, "video\n"),
    ("link-http", "warning", "[x](http://testnews.ca/)\n", 5, "[x](https://testnews.ca/)\n"),
    ("image-data-uri", "warning", "![x](data:image/png;base64,AAAA)\n", 5, "![x](https://testnews.ca/a.png)\n"),
    ("placeholder", "warning", "Price: TK\n", 5, "Price: $10\n"),
    ("placeholder", "warning", "Lorem ipsum dolor\n", 5, "Dolor\n"),
    ("placeholder", "warning", "[x](https://www.example.com/)\n", 5, "[x](https://testnews.ca/)\n"),
    (
        "link-text",
        "warning",
        "Book [click here](https://testnews.ca/).\n",
        5,
        "[Book a visit](https://testnews.ca/).\n",
    ),
]


@pytest.mark.parametrize(
    ("code", "level", "body", "line", "fine"), RULES, ids=[f"{r[0]}-{i}" for i, r in enumerate(RULES)]
)
def test_each_body_rule_fires_on_its_line_and_not_on_a_near_miss(folder, write_issue, code, level, body, line, fine):
    assert (code, line, level) in findings_for(folder, write_issue, body)
    assert not any(found[0] == code for found in findings_for(folder, write_issue, fine))


def test_a_link_on_a_later_line_of_a_paragraph_gets_that_line(folder, write_issue):
    body = "First line\nsecond line\nthird [x](javascript:void(0)) line\n"
    assert ("link-javascript", 7, "error") in findings_for(folder, write_issue, body)


@pytest.mark.parametrize(
    ("front", "code", "level", "line"),
    [
        ('subject: "' + "x" * 151 + '"', "subject-too-long", "error", 2),
        ('subject: "Short"\npreheader: "A short preheader"', "subject-length", "warning", 2),
        ('subject: "' + "x" * 90 + '"\npreheader: "A short preheader"', "subject-length", "warning", 2),
        ('subject: "A good subject line"', "preheader-missing", "warning", 1),
        ('subject: "A good subject line"\npreheader: "' + "p" * 101 + '"', "preheader-too-long", "warning", 3),
        ('preheader: "No subject"', "subject-missing", "error", 2),
    ],
)
def test_front_matter_rules(folder, write_issue, front, code, level, line):
    assert (code, line, level) in findings_for(folder, write_issue, "Hello\n", front=front)
    assert not {c for c, _, _ in findings_for(folder, write_issue, "Hello\n")} & {code}


def test_merge_fields_against_the_list(folder, write_issue):
    body = "Hi {{ subscriber.nickname }}\n\nand {{ subscriber.first_name }}, {{ subscriber.city | default('') }}\n"
    found = findings_for(folder, write_issue, body, subscribers="email,first_name\na@testnews.ca,Ann\nb@testnews.ca,\n")
    assert ("merge-field-unknown", 5, "error") in found
    assert ("merge-field-empty", 7, "warning") in found
    good = findings_for(
        folder, write_issue, "Hi {{ subscriber.first_name }}\n", subscribers="email,first_name\na@testnews.ca,Ann\n"
    )
    assert not {c for c, _, _ in good} & {"merge-field-unknown", "merge-field-empty"}


def test_size_rules(folder, write_issue):
    rows = "".join(f"| row {i} | {'value ' * 10} |\n" for i in range(500))
    assert ("size-clipped", 1, "error") in findings_for(folder, write_issue, "| a | b |\n|---|---|\n" + rows)
    rows = "".join(f"| row {i} | {'value ' * 10} |\n" for i in range(220))  # about 95 KB
    assert ("size-near-clip", 1, "warning") in findings_for(folder, write_issue, "| a | b |\n|---|---|\n" + rows)
    assert not {c for c, _, _ in findings_for(folder, write_issue, "Hi\n")} & {"size-clipped", "size-near-clip"}


def test_a_template_without_postal_address_or_unsubscribe_link(folder, write_issue):
    (folder / "templates").mkdir()
    source = (REPO / "templates" / "newsletter.mjml.j2").read_text()
    source = source.replace("{{ newsletter.postal_address }}", "").replace('href="{{ unsubscribe_url }}"', 'href="#"')
    (folder / "templates" / "newsletter.mjml.j2").write_text(source)
    found = findings_for(folder, write_issue, "Hi\n")
    assert ("postal-address-missing", 1, "error") in found
    assert ("unsubscribe-missing", 1, "error") in found


def test_the_examples_only_error_is_the_postal_address_the_clinic_must_still_give():
    """The repository's newsletter.toml holds a placeholder postal address (CASL asks for a
    real one): check says so, and finds nothing else wrong with the example."""
    found, _ = check(EXAMPLE_ISSUE, load_config(REPO / "newsletter.toml", environ={}))
    assert [(f.file, f.code, f.message.split(" (")[0]) for f in found if f.level == "error"] == [
        ("newsletter.toml", "placeholder", "postal_address is still the scaffold's placeholder")
    ]
    assert {f.code for f in found if f.level == "warning"} == {"placeholder-domain"}


def test_the_cli_prints_findings_a_summary_and_exits_1_on_errors(folder, write_issue):
    write_issue("![](https://testnews.ca/a.png)\n\n[x](http://testnews.ca/)\n")
    result = CliRunner().invoke(cli, ["check", "issues/test.md"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "Note: no subscriber list at subscribers.csv: merge fields were not checked against it",
        "issues/test.md:5: error: an image without alt text",
        "issues/test.md:7: warning: an http:// link (http://testnews.ca/): use https",
        "issues/test.md: 1 error, 1 warning",
    ]


def test_the_json_format(folder, write_issue):
    (folder / "subscribers.csv").write_text("email\na@testnews.ca\n")
    write_issue("[x](http://testnews.ca/)\n")
    result = CliRunner().invoke(cli, ["check", "issues/test.md", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output) == [
        {
            "level": "warning",
            "code": "link-http",
            "message": "an http:// link (http://testnews.ca/): use https",
            "file": "issues/test.md",
            "line": 5,
        }
    ]


def test_a_clean_issue_says_so(folder, write_issue):
    (folder / "subscribers.csv").write_text("email\na@testnews.ca\n")
    write_issue("Hello\n")
    result = CliRunner().invoke(cli, ["check", "issues/test.md"])
    assert (result.exit_code, result.output) == (0, "issues/test.md: no problems found\n")


def test_the_example_scores_at_most_1_with_spamassassin(spamassassin):
    found, notes = spam(EXAMPLE_ISSUE, load_config(REPO / "newsletter.toml", environ={}))
    assert found == []
    score = float(notes[0].split("SpamAssassin scores ")[1].split(":")[0])
    assert score <= 1.0


def test_a_spammy_issue_is_an_error_that_lists_the_rules(spamassassin, folder, write_issue):
    body = (
        "DEAR FRIEND, CONGRATULATIONS!!! You have been SELECTED to receive $1,000,000 CASH. 100% FREE, "
        "NO RISK, GUARANTEED!!! Buy cheap viagra now! Lose weight fast! Act now! Limited time offer!!!\n"
    )
    path = write_issue(body, front='subject: "FREE MONEY!!! 100% GUARANTEED WINNER $$$ ACT NOW"\npreheader: "Win"')
    found, _ = spam(path, load_config(folder / "newsletter.toml", environ={}))
    [finding] = found
    assert (finding.level, finding.code, finding.line) == ("error", "spam-score", 1)
    assert "GUARANTEED_100_PERCENT (+" in finding.message


def test_without_spamassassin_it_says_how_to_install_it(folder, write_issue, monkeypatch):
    monkeypatch.setenv("PATH", str(folder))
    found, notes = spam(write_issue("Hi\n"), load_config(folder / "newsletter.toml", environ={}))
    assert found == []
    assert notes == ["SpamAssassin is not installed, so --spam could not score the email: apt-get install spamassassin"]


def test_a_folders_own_template_is_checked_for_fonts_without_fallback(folder, write_issue):
    (folder / "templates").mkdir()
    source = (REPO / "templates" / "newsletter.mjml.j2").read_text()
    (folder / "templates" / "newsletter.mjml.j2").write_text(
        source.replace('<mj-all font-family="{{ fonts }}" />', '<mj-all font-family="Lato" />')
    )
    found, _ = check(write_issue("Hi\n"), load_config(folder / "newsletter.toml", environ={}))
    line = source.splitlines().index('      <mj-all font-family="{{ fonts }}" />') + 1
    assert [(f.file, f.line, f.code) for f in found] == [("templates/newsletter.mjml.j2", line, "css-font-fallback")]


def test_contrast_is_wcags_ratio():
    assert round(contrast((0, 0, 0), (1, 1, 1)), 1) == 21.0
    assert round(contrast((1, 1, 1), (1, 1, 1)), 1) == 1.0


BROKEN = """\
---
subject: "%s"
---
Hi {{ subscriber.nickname }}!

![](https://testnews.ca/photo.png)

A [script link](javascript:alert(1)), an [empty one]() and [my laptop](http://127.0.0.1:8000/x).

<div>
<a href="/relative/page">relative</a>
<img src="https://testnews.ca/a.png">
<script>alert(1)</script>
<form action="https://testnews.ca/f"></form>
<iframe src="https://testnews.ca/i"></iframe>
<video src="https://testnews.ca/v.mp4"></video>
</div>
""" % ("S" * 151)


def test_a_deliberately_broken_issue_gets_every_error_on_its_line(folder):
    (folder / "subscribers.csv").write_text("email,first_name\na@testnews.ca,Ann\n")
    (folder / "templates").mkdir()
    source = (REPO / "templates" / "newsletter.mjml.j2").read_text()
    source = source.replace("{{ newsletter.postal_address }}", "").replace('href="{{ unsubscribe_url }}"', 'href="#"')
    (folder / "templates" / "newsletter.mjml.j2").write_text(source)
    rows = "".join(f"| row {i} | {'value ' * 10} |\n" for i in range(500))
    path = folder / "issues" / "broken.md"
    path.write_text(BROKEN + "\n| a | b |\n|---|---|\n" + rows)
    found, _ = check(path, load_config(folder / "newsletter.toml", environ={}))
    errors = sorted((f.line, f.code) for f in found if f.level == "error")
    assert errors == [
        (1, "postal-address-missing"),
        (1, "size-clipped"),
        (1, "unsubscribe-missing"),
        (2, "subject-too-long"),
        (4, "merge-field-unknown"),
        (6, "image-alt"),
        (8, "link-empty"),
        (8, "link-javascript"),
        (8, "link-localhost"),
        (11, "link-relative"),
        (12, "image-alt"),
        (13, "forbidden-tag"),
        (14, "forbidden-tag"),
        (15, "forbidden-tag"),
        (16, "forbidden-tag"),
    ]


def test_template_code_of_another_kind_is_a_warning_outside_code_and_silent_inside(folder, write_issue):
    path = write_issue(
        'Hi {{ subscriber.first_name | default("there") }},\n\n'
        "## Contents\n\n"
        "{{< youtube abc >}}\n\n"
        "In code it is fine: `{{ page.url }}`.\n\n"
        "```yaml\nrun: echo ${{ steps.x }}\n```\n"
    )
    findings, _ = check(path, load_config(folder / "newsletter.toml"))
    assert [(f.line, f.code) for f in findings if f.code == "template-syntax"] == [(9, "template-syntax")]


def test_a_fresh_init_folder_does_not_pass_check_until_its_placeholders_are_replaced(tmp_path, monkeypatch):
    """Once it passed, and a real send delivered 'REPLACE: your postal address'."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    runner.invoke(cli, ["init", "news"])
    [issue] = (tmp_path / "news" / "issues").glob("*.md")
    result = runner.invoke(cli, ["check", str(issue), "--config", str(tmp_path / "news" / "newsletter.toml")])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if ": error: " in line]
    assert any("postal_address is still the scaffold's placeholder" in line for line in errors)
    assert any("from_email is still the scaffold's placeholder" in line for line in errors)
    assert any("the preheader is the scaffold's sample" in line for line in errors)
    assert any(
        "the scaffold's placeholder is left in: 'Write your newsletter here in Markdown.'" in line for line in errors
    )


@pytest.mark.parametrize(
    ("body", "flagged"),
    [
        ("Check my TODO list app.\n", False),
        ("TODO: add the clinic photo\n", True),
        ("Price: TK\n", True),
        ("Dates [TBD later]\n", True),
        ("Opening hours TBD\n", True),
    ],
)
def test_todo_in_prose_is_no_placeholder_but_a_marked_gap_is(folder, write_issue, body, flagged):
    found, _ = check(write_issue(body), load_config(folder / "newsletter.toml"))
    assert any(f.code == "placeholder" and f.file.endswith("test.md") for f in found) is flagged


@pytest.mark.parametrize(
    ("body", "local"),
    [
        ("![Our clinic](./photo.jpg)\n", True),
        ("![Our clinic](C:\\Users\\ana\\Pictures\\clinic.jpg)\n", True),
        ("![Our clinic](file:///Users/ana/clinic.jpg)\n", True),
        ("![Our clinic](my photo.jpg)\n", True),
        ('![Our clinic](/img/clinic.jpg "The front desk")\n', False),
        ("![Our clinic](/img/clinic.jpg)\n", False),
        ("![Our clinic](https://cdn.testnews.ca/clinic.jpg)\n", False),
        ('<img src="C:\\clinic.jpg" alt="Our clinic">\n', True),
        ("`![not an image](./in-code.jpg)`\n", False),
    ],
)
def test_pictures_on_this_computer_are_errors_that_say_where_images_go(folder, write_issue, body, local):
    found, _ = check(write_issue(body), load_config(folder / "newsletter.toml"))
    hits = [f for f in found if f.code == "image-local"]
    assert bool(hits) is local
    if local:
        assert hits[0].line == 5 and hits[0].level == "error"
        assert "upload it to your website" in hits[0].message


def test_a_relative_image_is_local_when_the_file_sits_beside_the_issue(folder, write_issue):
    path = write_issue("![Our clinic](images/clinic.jpg)\n")
    assert not [f for f in check(path, load_config(folder / "newsletter.toml"))[0] if f.code == "image-local"]
    (folder / "issues" / "images").mkdir()
    (folder / "issues" / "images" / "clinic.jpg").write_bytes(b"\xff\xd8")
    assert [f.code for f in check(path, load_config(folder / "newsletter.toml"))[0] if f.code == "image-local"] == [
        "image-local"
    ]


def test_a_fragment_link_must_have_a_heading_or_an_id_to_go_to(folder, write_issue):
    body = '[Hours](#clinic-hours) [Map](#map) [Nowhere](#nowhere)\n\n## Clinic hours\n\n<a id="map"></a>\n'
    path = write_issue(body)
    found, _ = check(path, load_config(folder / "newsletter.toml"))
    assert [(f.line, f.message) for f in found if f.code == "link-fragment"] == [
        (5, "the link #nowhere goes nowhere: no heading or id is 'nowhere'")
    ]


def test_the_subject_is_measured_as_readers_see_it_with_merge_fields_filled(folder, write_issue):
    """'Hi {{ subscriber.first_name | default("there") }}' is 47 characters of source, 6 in Ana's inbox."""
    (folder / "subscribers.csv").write_text("email,first_name\nana@example.com,Ana\n")
    path = write_issue("Body\n", front='subject: "Hi {{ subscriber.first_name | default(\\"there\\") }}"')
    found, _ = check(path, load_config(folder / "newsletter.toml"))
    [finding] = [f for f in found if f.code == "subject-length"]
    assert finding.message.startswith("the subject is 6 characters")


def test_a_finding_repeated_word_for_word_is_one_line(folder, write_issue):
    body = "".join(f'<p style="display:flex">item {i}</p>\n\n' for i in range(26))
    found, _ = check(write_issue(body), load_config(folder / "newsletter.toml"))
    [flex] = [f for f in found if f.code == "css-unsupported"]
    assert flex.message.endswith("(26 times, first at line 5)")


@pytest.mark.parametrize(
    ("source", "leak"),
    [
        ('[Book now](https://testnews.ca/book){target="_blank"}\n', '{target="_blank"}'),
        ("## Our hours {#hours}\n", "{#hours}"),
        ("[Book now](https://testnews.ca/book){.buton}\n", "{.buton}"),
        ("As the study showed[^1], it works.\n", "[^1]"),
        ('import Chart from "../components/Chart"\n\nText\n', 'import Chart from "../components/Chart"'),
        ("Hi *|FNAME|*,\n", "*|FNAME|*"),
    ],
)
def test_markup_of_another_dialect_that_reaches_the_email_as_text_is_a_warning(folder, write_issue, source, leak):
    found, _ = check(write_issue(source), load_config(folder / "newsletter.toml"))
    leaks = [f for f in found if f.code == "markup-leak"]
    assert [f.message.split(" reaches")[0] for f in leaks] == [repr(leak)]
    assert leaks[0].line == 5


def test_a_button_mark_and_code_are_no_leaks(folder, write_issue):
    source = "[Book now](https://testnews.ca/book){.button}\n\nIn code: `{#id}` and\n\n```\n*|FNAME|* [^1]\n```\n"
    found, _ = check(write_issue(source), load_config(folder / "newsletter.toml"))
    assert [f for f in found if f.code == "markup-leak"] == []


def test_sendgrid_validates_the_first_batch_in_sandbox_mode_and_nothing_is_sent(runner, newsletter, sendgrid):
    (newsletter / "subscribers.csv").write_text("email,first_name\nana@testnews.ca,Ana\nlee@testnews.ca,Lee\n")
    result = runner.invoke(cli, ["check", "issues/test.md", "--sendgrid"])
    assert "Note: --sendgrid: SendGrid validated the first batch (2 recipients) in sandbox mode; none was mailed" in (
        result.output
    )
    [request] = sendgrid.sandboxed
    assert request["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert (sendgrid.deliveries == [] and not (newsletter / ".newsletter" / "newsletter.db").exists()) or (
        runner.invoke(cli, ["status", "issues/test.md"]).exit_code == 1
    )


def test_sendgrids_own_400_for_the_first_batch_is_a_check_error(runner, newsletter, sendgrid):
    from .sendgrid_fake import Fault

    (newsletter / "subscribers.csv").write_text("email\nana@testnews.ca\n")
    refusal = {"errors": [{"message": "The from address does not match a verified Sender Identity", "field": "from"}]}
    sendgrid.fail_next(Fault(400, body=refusal, path="/mail/send"))
    result = runner.invoke(cli, ["check", "issues/test.md", "--sendgrid"])
    assert result.exit_code == 1
    assert "error: SendGrid refused the first batch: SendGrid answered 400 to POST /v3/mail/send: from: The from" in (
        result.output
    )
