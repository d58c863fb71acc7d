"""`newsletter archive`: the web version of sent issues for nobody in particular, an Atom feed
with stable ids, and pictures from the coordinator's computer published at one URL for the
email and the site."""

from __future__ import annotations

import re
import shutil
import stat

import feedparser
import pytest

from newsletter_cli.cli import cli

from .conftest import REPO

ARCHIVE = "https://mcsc.example/newsletter"
ISSUE = "issues/2022-12-baby-botox.md"


@pytest.fixture
def clinic(tmp_path, monkeypatch, sendgrid):
    """The repository's folder with [archive] url, a list whose first subscriber is Ana, and the
    stand-in SendGrid."""
    for name in ("newsletter.toml",):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "issues", tmp_path / "issues")
    with (tmp_path / "newsletter.toml").open("a") as toml:
        toml.write(f'\n[archive]\nurl = "{ARCHIVE}"\n')
    (tmp_path / "subscribers.csv").write_text(
        "email,first_name\nana.lopez@clinic-patients.ca,Ana\nlee@testnews.ca,Lee\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEWSLETTER_SECRET", "a-test-secret-of-enough-length")
    return tmp_path


def sent(runner) -> None:
    result = runner.invoke(cli, ["send", ISSUE, "--yes", "--force"])  # --force: the example's placeholders
    assert result.exit_code == 0, result.output
    assert f"Its web version is {ARCHIVE}/2022-12-baby-botox/: publish it with 'newsletter archive'." in result.output


def every_file(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_the_archive_of_a_sent_issue_is_a_site_and_a_feed(runner, clinic, sendgrid):
    result = runner.invoke(cli, ["archive"])
    assert result.output.startswith("Left out 2022-12-baby-botox: not sent yet (--all to include it)\n")
    sent(runner)
    result = runner.invoke(cli, ["archive"])
    assert result.exit_code == 0, result.output
    site = clinic / "site"
    assert [p.relative_to(site).as_posix() for p in every_file(site)] == [
        "2022-12-baby-botox/index.html",
        "feed.xml",
        "index.html",
        "latest/index.html",
    ]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in every_file(site))
    page = (site / "2022-12-baby-botox" / "index.html").read_text()
    assert f'<link rel="canonical" href="{ARCHIVE}/2022-12-baby-botox/">' in page
    assert f'type="application/atom+xml" title="MCSC" href="{ARCHIVE}/feed.xml"' in page
    assert ">Subscribe</a>" in page and "Unsubscribe" not in page and "token=" not in page
    feed = feedparser.parse((site / "feed.xml").read_bytes())
    assert not feed.bozo and feed.feed.title == "MCSC"
    [entry] = feed.entries
    assert entry.id == "tag:mcsc.example,2022-12-01:2022-12-baby-botox"
    assert entry.link == f"{ARCHIVE}/2022-12-baby-botox/"
    first = (site / "feed.xml").read_bytes()
    assert runner.invoke(cli, ["archive"]).exit_code == 0
    assert (site / "feed.xml").read_bytes() == first, "the same site twice: ids and all"
    index = (site / "index.html").read_text()
    assert '<a href="2022-12-baby-botox/">Baby BOTOX: prevention, smoother skin and more</a>' in index


def test_nothing_of_any_subscriber_reaches_the_site(runner, clinic, sendgrid):
    sent(runner)
    assert any("Ana" in d.html for d in sendgrid.deliveries), "the email itself greets Ana"
    runner.invoke(cli, ["archive"])
    for path in every_file(clinic / "site"):
        text = path.read_text(encoding="utf-8")
        assert "Ana" not in text and "ana.lopez" not in text and "Lee" not in text, path


def test_the_email_links_to_its_web_version(runner, clinic, sendgrid):
    sent(runner)
    mail = sendgrid.deliveries[0]
    assert f'<a href="{ARCHIVE}/2022-12-baby-botox/"' in mail.html and ">View in browser</a>" in mail.html
    assert f"View in browser: {ARCHIVE}/2022-12-baby-botox/" in mail.text


def test_an_issue_kept_out_and_one_not_sent(runner, clinic, sendgrid):
    (clinic / "issues" / "2023-01-private.md").write_text("---\nsubject: Staff only\narchive: false\n---\nHello\n")
    (clinic / "issues" / "2023-02-draft.md").write_text("---\nsubject: Draft\n---\nHello\n")
    sent(runner)
    result = runner.invoke(cli, ["archive"])
    assert "Left out 2023-01-private: archive: false\n" in result.output
    assert "Left out 2023-02-draft: not sent yet (--all to include it)\n" in result.output
    assert not (clinic / "site" / "2023-02-draft").exists()
    assert runner.invoke(cli, ["archive", "--all"]).exit_code == 0
    assert (clinic / "site" / "2023-02-draft" / "index.html").is_file()
    assert not (clinic / "site" / "2023-01-private").exists()


def test_a_merge_field_without_a_default_cannot_be_archived(runner, clinic):
    (clinic / "issues" / "2023-03-named.md").write_text("---\nsubject: Hi\n---\nDear {{ subscriber.first_name }},\n")
    result = runner.invoke(cli, ["archive", "--all"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: issues/2023-03-named.md:4: subscriber.first_name has no | default(")


def write_picture(path, width: int = 400):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, 100), (10, 92, 99)).save(path)


def test_a_picture_beside_the_issue_is_published_at_the_url_the_email_uses(runner, clinic, sendgrid):
    write_picture(clinic / "issues" / "images" / "hero.png")
    issue = clinic / ISSUE
    issue.write_text(issue.read_text() + "\n![Our Mississauga clinic](images/hero.png)\n")
    assert [line for line in runner.invoke(cli, ["check", ISSUE]).output.splitlines() if "image-local" in line] == []
    sent(runner)
    [url] = set(re.findall(rf"{ARCHIVE}/images/hero-[0-9a-f]{{12}}\.png", sendgrid.deliveries[0].html))
    runner.invoke(cli, ["archive"])
    published = clinic / "site" / url.removeprefix(ARCHIVE + "/")
    assert published.read_bytes() == (clinic / "issues" / "images" / "hero.png").read_bytes()
    assert url in (clinic / "site" / "2022-12-baby-botox" / "index.html").read_text()
    write_picture(clinic / "issues" / "images" / "hero.png", width=500)  # changed: a new name
    assert runner.invoke(cli, ["build", ISSUE]).exit_code == 0
    rebuilt = (clinic / "build" / "2022-12-baby-botox.html").read_text()
    assert url not in rebuilt and f"{ARCHIVE}/images/hero-" in rebuilt


def test_without_an_archive_a_local_picture_is_an_error_that_says_how_to_publish_it(runner, folder, write_issue):
    write_picture(folder / "issues" / "images" / "hero.png")
    write_issue("![Our clinic](images/hero.png)\n")
    output = runner.invoke(cli, ["check", "issues/test.md"]).output
    assert "error: 'images/hero.png' is a picture on this computer: set [archive] url and 'newsletter archive'" in (
        output
    )


def test_a_picture_too_large_for_email_clients_is_a_warning(runner, folder, write_issue):
    with (folder / "newsletter.toml").open("a") as toml:
        toml.write(f'\n[archive]\nurl = "{ARCHIVE}"\n')
    write_picture(folder / "issues" / "images" / "wide.png", width=2400)
    write_issue("![A wide picture](images/wide.png)\n")
    output = runner.invoke(cli, ["check", "issues/test.md"]).output
    assert "warning: wide.png is 0.0 MB, 2400 px wide: email clients show pictures over 1 MB or 1200 px" in output


@pytest.mark.browser
def test_the_web_version_reads_on_a_phone_and_a_desktop(runner, clinic, sendgrid, browser):
    sent(runner)
    runner.invoke(cli, ["archive"])
    for width in (375, 1024):
        page = browser.new_page(viewport={"width": width, "height": 800})
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
        page.goto((clinic / "site" / "2022-12-baby-botox" / "index.html").as_uri())
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert page.locator("a", has_text="Subscribe").count() == 1
        assert "token=" not in page.content()
        page.close()
