import json
import threading
import time

import pytest

from newsletter_cli.errors import IssueError
from newsletter_cli.web import livereload

# --- the server's logic, in memory -----------------------------------------------------------


def test_it_serves_exactly_the_built_paths_and_nothing_else():
    site = livereload.LiveSite(lambda: {"/": ("text/html", b"home"), "/a.txt": ("text/plain", b"a")})
    assert site.get("/").body == b"home"
    assert site.get("/a.txt?x=1").body == b"a"
    for path in ("/b.txt", "/../etc/passwd", "/%2e%2e/etc/passwd", "/a.txt/"):
        assert site.get(path).status == 404


def builds(results: list):
    """A build that returns (or raises) the next of ``results`` each time it is called."""

    def build_once():
        result = results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    return build_once


def test_a_failed_rebuild_keeps_the_last_good_site_and_reports_the_error():
    results: list = [{"/": ("text/html", b"good")}]
    site = livereload.LiveSite(builds(results))
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

    site = livereload.LiveSite(broken)
    assert site.get("/").status == 200
    assert b"Fix the error and save" in site.get("/").body


def test_a_long_poll_returns_as_soon_as_a_new_version_exists():
    site = livereload.LiveSite(lambda: {"/": ("text/html", b"x")})
    threading.Timer(0.2, site.rebuild).start()
    started = time.monotonic()
    assert site.wait(since=1, timeout=10)["version"] == 2
    assert time.monotonic() - started < 5


def test_the_watcher_rebuilds_once_per_save(tmp_path):
    watched = tmp_path / "issue.md"
    watched.write_text("one")
    calls = []
    watcher = livereload.Watcher(lambda: [watched], lambda: calls.append(1), interval=0.02)
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

    site = livereload.LiveSite(lambda: {}, actions={"/send-test": action})
    assert site.post("/send-test", {"to": "a@example.com"}, site.token).body == b"sent to a@example.com"
    assert site.post("/send-test", {}, site.token).status == 400
    assert site.post("/other", {}, site.token).status == 404


def test_a_post_without_the_pages_token_does_nothing():
    sent = []
    site = livereload.LiveSite(lambda: {}, actions={"/send-test": lambda form: (200, sent.append(form) or "sent")})
    for token in ("", "guess", site.token[:-1]):
        response = site.post("/send-test", {"to": "victim@example.com"}, token)
        assert response.status == 403
    assert sent == []


def test_posts_are_limited_to_five_a_minute():
    now = [0.0]
    site = livereload.LiveSite(lambda: {}, actions={"/send-test": lambda form: (200, "sent")}, clock=lambda: now[0])
    assert [site.post("/send-test", {}, site.token).status for _ in range(6)] == [200] * 5 + [429]
    now[0] = 60.0
    assert site.post("/send-test", {}, site.token).status == 200


def test_odd_query_values_are_a_400_not_a_crash():
    site = livereload.LiveSite(lambda: {"/": ("text/html", b"x")})
    assert site.get("/_livereload?since=abc").status == 400


def test_any_exception_in_a_rebuild_is_shown_and_the_next_save_still_builds():
    results = [{"/": ("text/html", b"good")}, TypeError("unsupported operand"), {"/": ("text/html", b"again")}]
    site = livereload.LiveSite(builds(results))
    site.rebuild()
    assert site.error == "the preview failed unexpectedly (TypeError: unsupported operand); save again to retry"
    assert site.get("/").body == b"good"
    site.rebuild()
    assert (site.error, site.get("/").body) == (None, b"again")


def test_the_watcher_survives_a_failing_rebuild(tmp_path):
    watched = tmp_path / "issue.md"
    watched.write_text("one")
    calls = []

    def on_change():
        calls.append(1)
        if len(calls) == 1:
            raise TypeError("a bug")

    watcher = livereload.Watcher(lambda: [watched], on_change, interval=0.02)
    watcher.start()
    try:
        for text in ("two", "three"):
            time.sleep(0.1)
            watched.write_text(text)
            count = len(calls)
            deadline = time.monotonic() + 5
            while len(calls) == count and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        watcher.stopped.set()
    assert calls == [1, 1]


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:8025", True),
        ("localhost:8025", True),
        ("[::1]:8025", True),
        ("192.168.1.20:8025", True),
        ("attacker.example:8025", False),
        ("127.0.0.1.nip.io:8025", False),
        ("127.0.0.1:8026", False),
        ("127.0.0.1", False),
        ("", False),
    ],
)
def test_only_localhost_and_ip_addresses_are_hosts_it_answers(host, allowed):
    assert livereload.allowed_host(host, 8025) is allowed
