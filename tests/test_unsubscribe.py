import base64
import hmac
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from newsletter_cli.cli import cli
from newsletter_cli.config import load_config
from newsletter_cli.errors import ConfigError
from newsletter_cli.store import Store
from newsletter_cli.unsubscribe import ONE_CLICK, Signer, headers, link, load_secret, make_token, read_token
from newsletter_cli.web.server import make_server
from newsletter_cli.web.unsubscribe import Endpoint, app_from_environment

from .conftest import interrupt, newsletter_process

SECRET = b"a-test-secret-of-enough-length"
LIST = "news@testnews.ca"


def test_a_token_names_its_address_and_nothing_else_verifies():
    token = make_token(SECRET, LIST, " Ana@Example.com ")
    assert read_token(SECRET, LIST, token) == "ana@example.com"
    assert read_token(b"another-secret-of-some-length", LIST, token) is None
    assert read_token(SECRET, "other@list.example", token) is None
    for broken in ("", ".", "abc", token + "x", token.split(".")[0], "." + token.split(".")[1]):
        assert read_token(SECRET, LIST, broken) is None


@given(st.binary(min_size=16, max_size=200), st.text(max_size=40), st.emails())
def test_a_token_is_the_address_and_its_standard_hmac_sha256_truncated_to_128_bits(secret, list_id, email):
    address = email.strip().lower()
    mac = hmac.digest(secret, f"{list_id}\n{address}".encode(), "sha256")[:16]
    expected = ".".join(base64.urlsafe_b64encode(part).rstrip(b"=").decode() for part in (address.encode(), mac))
    assert make_token(secret, list_id, email) == expected


@given(st.emails(), st.data())
def test_any_change_to_a_token_is_rejected(email, data):
    token = make_token(SECRET, LIST, email)
    index = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="))
    changed = token[:index] + replacement + token[index + 1 :]
    if changed != token:
        assert read_token(SECRET, LIST, changed) is None
    assert read_token(SECRET, LIST, token[:index] + token[index + 1 :]) is None


def test_links_and_one_click_headers(folder):
    text = (
        (folder / "newsletter.toml").read_text().replace("[unsubscribe]\n", '[unsubscribe]\nmailto = "u@testnews.ca"\n')
    )
    (folder / "newsletter.toml").write_text(text)
    config = load_config(folder / "newsletter.toml", environ={})
    url = link(config, SECRET, "ana@example.com")
    assert url == f"https://testnews.ca/unsubscribe?token={make_token(SECRET, config.list_id, 'ana@example.com')}"
    assert headers(config, url) == {
        "List-Unsubscribe": f"<{url}>, <mailto:u@testnews.ca?subject=unsubscribe>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def test_the_secret_is_required_long_enough_and_never_echoed():
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET is not set"):
        load_secret({})
    with pytest.raises(ConfigError) as error:
        load_secret({"NEWSLETTER_SECRET": "short-secret"})
    assert "short-secret" not in error.value.message


# --- the endpoint, over real HTTP on 127.0.0.1 ----------------------------------------------


@pytest.fixture
def endpoint(folder):
    config = load_config(folder / "newsletter.toml", environ={})
    server = make_server("127.0.0.1", 0, Endpoint(config, SECRET))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}/unsubscribe"
    yield base, config
    server.shutdown()
    server.server_close()


def http(url: str, data: bytes | None = None, content_type: str | None = None, method: str | None = None):
    request = urllib.request.Request(url, data=data, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), dict(error.headers)


def suppressed(config) -> list[tuple[str, str, str]]:
    with Store.for_folder(config.state_dir) as store:
        return [(s.email, s.reason, s.source) for s in store.suppressions()]


def test_get_shows_a_confirmation_page_and_changes_nothing(endpoint):
    base, config = endpoint
    token = make_token(SECRET, config.list_id, "ana@example.com")
    status, page, response_headers = http(f"{base}?token={token}")
    assert status == 200
    assert "Stop sending the Test News newsletter to <strong>ana@example.com</strong>?" in page
    assert '<form method="post"' in page
    assert response_headers["Cache-Control"] == "no-store"
    assert response_headers["Referrer-Policy"] == "no-referrer"
    assert suppressed(config) == []


def test_one_click_post_suppresses_and_repeating_is_harmless(endpoint):
    base, config = endpoint
    token = make_token(SECRET, config.list_id, "ana@example.com")
    for _ in range(2):
        status, page, _ = http(f"{base}?token={token}", ONE_CLICK.encode(), "application/x-www-form-urlencoded")
        assert status == 200
        assert "You are unsubscribed" in page
    assert suppressed(config) == [("ana@example.com", "unsubscribed", "endpoint")]


def test_a_multipart_one_click_post_also_works(endpoint):
    base, config = endpoint
    token = make_token(SECRET, config.list_id, "lee@example.org")
    body = b'--XyZ\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--XyZ--\r\n'
    status, _, _ = http(f"{base}?token={token}", body, "multipart/form-data; boundary=XyZ")
    assert status == 200
    assert suppressed(config) == [("lee@example.org", "unsubscribed", "endpoint")]


def test_the_pages_button_posts_the_token_in_the_form_too(endpoint):
    base, config = endpoint
    token = make_token(SECRET, config.list_id, "bo@example.net")
    status, _, _ = http(base, f"token={token}".encode(), "application/x-www-form-urlencoded")
    assert status == 200
    assert suppressed(config) == [("bo@example.net", "unsubscribed", "endpoint")]


@pytest.mark.parametrize("token", ["", "garbage", "YW5hQGV4YW1wbGUuY29t.AAAA"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_missing_altered_or_foreign_token_gets_400_and_changes_nothing(endpoint, token, method):
    base, config = endpoint
    data = ONE_CLICK.encode() if method == "POST" else None
    status, page, _ = http(f"{base}?token={token}", data, "application/x-www-form-urlencoded" if data else None)
    assert status == 400
    assert "This unsubscribe link is not valid" in page
    assert "@" not in page.split("<main>")[1]
    assert suppressed(config) == []


def test_a_token_for_another_list_is_foreign(endpoint):
    base, config = endpoint
    token = make_token(SECRET, "another@list.example", "ana@example.com")
    assert http(f"{base}?token={token}", ONE_CLICK.encode())[0] == 400
    assert suppressed(config) == []


def test_other_methods_are_refused(endpoint):
    base, _ = endpoint
    status, _, response_headers = http(f"{base}?token=x", method="DELETE")
    assert status == 405
    assert response_headers["Allow"] == "GET, HEAD, POST"


def test_an_unsubscribe_reaches_sendgrid_when_a_key_is_set(folder, sendgrid, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET.decode())
    app = app_from_environment()
    token = make_token(SECRET, app.config.list_id, "ana@example.com")
    server, base = serve(app)
    try:
        status, _, _ = http(f"{base}?token={token}", ONE_CLICK.encode())
        wait_for(lambda: sendgrid.global_added == ["ana@example.com"])  # told in the background
    finally:
        app.close()
        server.shutdown()
        server.server_close()
    assert status == 200
    assert suppressed(app.config) == [("ana@example.com", "unsubscribed", "endpoint")]


def test_the_wsgi_app_reads_its_settings_from_the_environment(folder, tmp_path):
    environ = {"NEWSLETTER_CONFIG": str(folder / "newsletter.toml"), "NEWSLETTER_SECRET": SECRET.decode()}
    endpoint = app_from_environment(environ)
    assert endpoint.api is None
    assert endpoint.config.path == Path(folder / "newsletter.toml").resolve()
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET is not set"):
        app_from_environment({"NEWSLETTER_CONFIG": str(folder / "newsletter.toml")})


def serve(app):
    server = make_server("127.0.0.1", 0, app)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/"


def wait_for(condition, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_an_unreachable_sendgrid_holds_no_request_up_and_the_push_is_never_lost(folder, sendgrid, monkeypatch):
    """Six attempts inline once took a one-click POST 24 s; with 30 s between attempts here, a
    POST that waited on SendGrid would not be answered within the client's 10 s."""
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET.decode())
    monkeypatch.setenv("NEWSLETTER_RETRY_BACKOFF", "30")
    monkeypatch.setenv("SENDGRID_API_HOST", "http://127.0.0.1:9")
    app = app_from_environment()
    server, base = serve(app)
    try:
        token = make_token(SECRET, app.config.list_id, "ana@example.com")
        assert http(f"{base}?token={token}", ONE_CLICK.encode())[0] == 200
    finally:
        app.close()
        server.shutdown()
        server.server_close()
    assert suppressed(app.config) == [("ana@example.com", "unsubscribed", "endpoint")]
    with Store.for_folder(app.config.state_dir) as store:
        assert store.pushes() == ["ana@example.com"]
    monkeypatch.setenv("SENDGRID_API_HOST", sendgrid.url)
    result = CliRunner().invoke(cli, ["unsubscribes", "sync"])
    assert result.output.splitlines()[0] == "Told SendGrid of 1 unsubscribe the endpoint had recorded"
    assert sendgrid.global_added == ["ana@example.com"]
    with Store.for_folder(app.config.state_dir) as store:
        assert store.pushes() == []


def test_a_multipart_body_in_an_unknown_charset_is_a_400(endpoint):
    base, config = endpoint
    token = make_token(SECRET, config.list_id, "lee@example.org")
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n'
        b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\nOne-Click\r\n--XyZ--\r\n"
    )
    status, page, _ = http(f"{base}?token={token}", body, "multipart/form-data; boundary=XyZ")
    assert status == 400
    assert "This request could not be read" in page
    assert suppressed(config) == []


def test_a_store_that_cannot_be_opened_gets_our_own_503_page(endpoint):
    base, config = endpoint
    config.state_dir.mkdir(exist_ok=True)
    (config.state_dir / "newsletter.db").write_bytes(b"")
    token = make_token(SECRET, config.list_id, "lee@example.org")
    status, page, response_headers = http(f"{base}?token={token}", ONE_CLICK.encode())
    assert status == 503
    assert "Please try again in a few minutes" in page
    assert response_headers["Retry-After"] == "120"
    assert "lee@example.org" not in page


def test_a_real_server_stores_every_one_of_5000_concurrent_one_click_posts(folder, monkeypatch):
    """With a listen backlog of 5 the kernel once dropped 30-58 of them."""
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET.decode())
    config = load_config(folder / "newsletter.toml", environ={})
    port = free_port()
    process = newsletter_process(folder, "serve-unsubscribe", "--port", str(port))
    try:
        wait_for(lambda: port_open(port))
        emails = [f"u{i}@example.com" for i in range(5000)]
        signer = Signer(SECRET, config.list_id)

        def post(email: str) -> int | str:
            url = f"http://127.0.0.1:{port}/unsubscribe?token={signer.token(email)}"
            try:
                return http(url, ONE_CLICK.encode(), "application/x-www-form-urlencoded")[0]
            except OSError as exc:  # a connection the server dropped
                return exc.__class__.__name__

        with ThreadPoolExecutor(50) as pool:
            statuses = Counter(pool.map(post, emails))
    finally:
        interrupt(process)
    assert statuses == Counter({200: 5000})
    with Store.for_folder(config.state_dir) as store:
        assert store.count_suppressions() == 5000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
