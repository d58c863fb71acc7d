import http.client
import re
import statistics
import threading
import time
import urllib.parse

import pytest

from newsletter_cli.config import load_config
from newsletter_cli.sending.test_copy import send_test
from newsletter_cli.unsubscribe import read_token
from newsletter_cli.web import livereload, preview
from newsletter_cli.web.server import make_server


def test_the_preview_site_has_the_page_the_parts_and_a_dark_variant(example):
    site = preview.preview_site(example / "newsletter.toml", example / "issues" / "2022-12-baby-botox.md")
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
    site = preview.live_preview(config, issue)
    server = make_server("127.0.0.1", 0, site)
    watcher = livereload.Watcher(lambda: [issue, config, example / "subscribers.csv"], site.rebuild)
    watcher.start()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/", issue
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
def test_the_send_test_button_sends_one_copy_for_the_chosen_subscriber(browser, served, sendgrid, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", "a-test-secret-of-enough-length")  # signs the copy's unsubscribe link
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
    path = write_issue("![](https://testnews.ca/a.png)\n")
    page = preview.preview_site(folder / "newsletter.toml", path)["/"][1].decode()
    assert "<summary>Check: 1 error, 0 warnings</summary>" in page
    assert '<li class="error">line 5: error: an image without alt text [image-alt]</li>' in page


# --- other pages in the browser must not drive it --------------------------------------------


def raw_request(url: str, method: str = "GET", headers: dict[str, str] | None = None, body: bytes = b""):
    """A request with the headers a hostile page (or DNS rebinding) would send, Host included."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.putrequest(method, parts.path or "/", skip_host="Host" in (headers or {}))
    for name, value in (headers or {}).items():
        connection.putheader(name, value)
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    return response.status, response.read()


def test_a_foreign_host_is_refused_so_dns_rebinding_reads_nothing(served):
    url, _ = served
    assert raw_request(url)[0] == 200
    status, body = raw_request(
        url + "email.txt", headers={"Host": f"rebind.attacker.example:{urllib.parse.urlsplit(url).port}"}
    )
    assert status == 403 and b"ana@example.com" not in body


def test_a_cross_origin_or_tokenless_post_sends_nothing(served, sendgrid, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", "a-test-secret-of-enough-length")
    url, _ = served
    form = b"to=victim%40example.com&sample=0"
    kind = {"Content-Type": "application/x-www-form-urlencoded"}
    assert raw_request(url + "send-test", "POST", {**kind, "Origin": "https://attacker.example"}, form)[0] == 403
    assert raw_request(url + "send-test", "POST", kind, form)[0] == 403
    page = raw_request(url)[1].decode()
    token = re.search(r'<meta name="preview-token" content="([^"]+)">', page).group(1)
    status, body = raw_request(
        url + "send-test", "POST", {**kind, "X-Preview-Token": token}, b"to=me%40example.net&sample=x"
    )
    assert (status, body) == (400, b"sample must be a whole number")
    status, _ = raw_request(url + "send-test", "POST", {**kind, "X-Preview-Token": token}, b"to=me%40example.net")
    assert status == 200
    assert [d.email for d in sendgrid.deliveries] == ["me@example.net"]


def test_a_test_copy_carries_a_working_unsubscribe_link_for_the_test_address(example, sendgrid, monkeypatch):
    secret = "a-test-secret-of-enough-length"
    monkeypatch.setenv("NEWSLETTER_SECRET", secret)
    config = load_config(example / "newsletter.toml")
    send_test(config, example / "issues" / "2022-12-baby-botox.md", "Me@Example.net")
    [copy] = sendgrid.deliveries
    header = copy.headers["List-Unsubscribe"]
    link = header[1 : header.index(">")]
    assert link in copy.html and link in copy.text
    assert read_token(secret.encode(), config.list_id, link.split("token=", 1)[1]) == "me@example.net"
    assert copy.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
