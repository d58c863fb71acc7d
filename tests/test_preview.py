import json
import statistics
import threading
import time

import pytest

from newsletter_cli import build, preview
from newsletter_cli.config import load_config
from newsletter_cli.errors import IssueError
from newsletter_cli.send import send_test

# --- the server's logic, in memory -----------------------------------------------------------


def test_it_serves_exactly_the_built_paths_and_nothing_else():
    site = preview.LiveSite(lambda: {"/": ("text/html", b"home"), "/a.txt": ("text/plain", b"a")})
    assert site.get("/").body == b"home"
    assert site.get("/a.txt?x=1").body == b"a"
    for path in ("/b.txt", "/../etc/passwd", "/%2e%2e/etc/passwd", "/a.txt/"):
        assert site.get(path).status == 404


def test_a_failed_rebuild_keeps_the_last_good_site_and_reports_the_error():
    results = [{"/": ("text/html", b"good")}]

    def build_once():
        result = results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    site = preview.LiveSite(build_once)
    results.append(IssueError("invalid front matter: oops", "issues/x.md", 3))
    site.rebuild()
    assert site.get("/").body == b"good"
    assert json.loads(site.get("/_livereload?since=0").body) == {
        "version": 2,
        "error": "issues/x.md:3: invalid front matter: oops",
    }
    results.append({"/": ("text/html", b"fixed")})
    site.rebuild()
    assert (site.error, site.get("/").body) == (None, b"fixed")


def test_before_any_good_build_the_home_page_waits_for_one():
    def broken():
        raise IssueError("missing front matter", "issues/x.md", 1)

    site = preview.LiveSite(broken)
    assert site.get("/").status == 200
    assert b"Fix the error and save" in site.get("/").body


def test_a_long_poll_returns_as_soon_as_a_new_version_exists():
    site = preview.LiveSite(lambda: {"/": ("text/html", b"x")})
    threading.Timer(0.2, site.rebuild).start()
    started = time.monotonic()
    assert site.wait(since=1, timeout=10)["version"] == 2
    assert time.monotonic() - started < 5


def test_the_watcher_rebuilds_once_per_save(tmp_path):
    watched = tmp_path / "issue.md"
    watched.write_text("one")
    calls = []
    watcher = preview.Watcher(lambda: [watched], lambda: calls.append(1), interval=0.02)
    watcher.start()
    try:
        time.sleep(0.1)
        watched.write_text("two")
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
    finally:
        watcher.stopped.set()
    assert calls == [1]


def test_post_actions_answer_with_their_text_or_the_error():
    def action(form):
        if not form.get("to"):
            raise IssueError("no address")
        return 200, f"sent to {form['to']}"

    site = preview.LiveSite(lambda: {}, actions={"/send-test": action})
    assert site.post("/send-test", {"to": "a@example.com"}).body == b"sent to a@example.com"
    assert site.post("/send-test", {}).status == 400
    assert site.post("/other", {}).status == 404


def test_the_preview_site_has_the_page_the_parts_and_a_dark_variant(example):
    site = build.preview_site(example / "newsletter.toml", example / "issues" / "2022-12-baby-botox.md")
    assert {"/", "/email.html", "/email.txt", "/email/0.html", "/email/0.dark.html", "/email/0.txt"} <= set(site)
    dark = site["/email/0.dark.html"][1].decode()
    assert "prefers-color-scheme" not in dark and "@media all" in dark
    assert b"Baby BOTOX: prevention, smoother skin and more" in site["/"][1]


# --- in Chromium -----------------------------------------------------------------------------


@pytest.fixture
def served(example):
    """`newsletter preview` on the example folder, on a free port of 127.0.0.1."""
    (example / "subscribers.csv").write_text("email,first_name\nana@example.com,Ana\nlee@example.org,\n")
    issue = example / "issues" / "2022-12-baby-botox.md"
    config = example / "newsletter.toml"

    def send_test_action(form):
        to = send_test(load_config(config), issue, form.get("to", ""), sample=int(form.get("sample", "0")))
        return 200, f"Sent a [TEST] copy to {to}."

    site = preview.LiveSite(
        lambda: build.preview_site(config, issue, can_send_test=True), actions={"/send-test": send_test_action}
    )
    server = preview.make_server(site, "127.0.0.1", 0)
    watcher = preview.Watcher(lambda: [issue, config, example / "subscribers.csv"], site.rebuild)
    watcher.start()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", issue
    watcher.stopped.set()
    server.shutdown()
    server.server_close()


@pytest.mark.browser
def test_the_page_shows_the_inbox_line_and_the_email_filled_for_a_subscriber(browser, served):
    url, _ = served
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(url)
    assert page.locator("#from").inner_text() == "MCSC Newsletter"
    assert page.locator("#subject").inner_text() == "Baby BOTOX: prevention, smoother skin and more"
    assert "What “baby BOTOX” means" in page.locator("#preheader").inner_text()
    page.wait_for_function("document.querySelector('#frame').contentDocument?.body?.innerText.includes('Hi Ana,')")
    page.select_option("#sample", "1")
    page.wait_for_function("document.querySelector('#frame').contentDocument?.body?.innerText.includes('Hi there,')")
    assert page.locator("#size").inner_text().startswith("HTML ")


@pytest.mark.browser
def test_at_phone_width_nothing_scrolls_sideways_and_plain_text_is_a_tab(browser, served):
    url, _ = served
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(url)
    page.click("text=Phone 375")
    page.wait_for_function("document.querySelector('#frame').getBoundingClientRect().width === 375")
    page.wait_for_function("document.querySelector('#frame').contentDocument.readyState === 'complete'")
    width = page.evaluate("document.querySelector('#frame').contentDocument.documentElement.scrollWidth")
    assert width <= 375
    page.click("text=Plain text")
    page.wait_for_function("document.querySelector('#text').textContent.includes('Baby BOTOX\\n==========')")
    assert page.locator("#frame").is_hidden()


@pytest.mark.browser
def test_dark_mode_is_emulated(browser, served):
    url, _ = served
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(url + "#s=dark")
    page.wait_for_function("document.querySelector('#frame').getAttribute('src').endsWith('.dark.html')")
    page.wait_for_function(
        "getComputedStyle(document.querySelector('#frame').contentDocument.querySelector('.nl-card'))"
        ".backgroundColor === 'rgb(27, 32, 38)'"
    )


@pytest.mark.browser
def test_saving_updates_the_open_page_by_itself_and_errors_show_then_recover(browser, served):
    url, issue = served
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(url + "#w=phone&t=html")
    page.wait_for_function("document.querySelector('#frame').contentDocument?.body?.innerText.includes('Baby BOTOX')")
    original = issue.read_text()
    delays = []
    for n in range(5):
        marker = f"Edited paragraph number {n}"
        started = time.monotonic()
        issue.write_text(original + f"\n{marker}\n")
        page.wait_for_function(
            f"document.querySelector('#frame').contentDocument?.body?.innerText.includes('{marker}')", timeout=10_000
        )
        delays.append(time.monotonic() - started)
    assert page.evaluate("location.hash").startswith("#w=phone")
    # a figure for the record (the README quotes it), not a timed assertion
    print(f"\nsave-to-page delays: {[round(d, 3) for d in delays]}, median {statistics.median(delays):.3f} s")

    issue.write_text(original.replace("subject:", "subject: [unclosed", 1))
    page.wait_for_selector("#error:not([hidden])", timeout=10_000)
    assert page.locator("#error pre").inner_text() == (
        "issues/2022-12-baby-botox.md:3: invalid front matter: expected ',' or ']', but got ':'"
    )
    issue.write_text(original)
    page.wait_for_selector("#error", state="hidden", timeout=10_000)
    page.wait_for_function(
        "document.querySelector('#frame').contentDocument?.body?.innerText.includes('Baby BOTOX')", timeout=10_000
    )
    assert page.locator("#frame").is_visible()


@pytest.mark.browser
def test_the_send_test_button_sends_one_copy_for_the_chosen_subscriber(browser, served, sendgrid):
    url, _ = served
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(url + "#i=1")
    page.fill("input[name=to]", "me@example.net")
    page.click("text=Send test")
    page.wait_for_function("document.querySelector('#send-status').textContent.startsWith('Sent')")
    [copy] = sendgrid.deliveries
    assert (copy.email, copy.subject) == ("me@example.net", "[TEST] Baby BOTOX: prevention, smoother skin and more")
    assert "Hi there," in copy.text


def test_the_page_lists_what_newsletter_check_finds(folder, write_issue):
    path = write_issue("![](https://test.example/a.png)\n")
    page = build.preview_site(folder / "newsletter.toml", path)["/"][1].decode()
    assert "<summary>Check: 1 error, 0 warnings</summary>" in page
    assert '<li class="error">line 5: error: an image without alt text [image-alt]</li>' in page
