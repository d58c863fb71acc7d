"""Hermetic tests: no secrets from the caller's environment, no network but loopback."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PORTABLE = Path(__file__).resolve().parent / "portable"
if os.environ.get("NEWSLETTER_PORTABLE"):
    # as on Windows: no fcntl, no os.fork, processes spawned; for every process started from here too
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PORTABLE), os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, str(PORTABLE))
    import sitecustomize  # noqa: F401
EXAMPLE_ISSUE = REPO / "issues" / "2022-12-baby-botox.md"
CHROMIUM = "/usr/bin/chromium"
# removed from every test's environment: a developer's own key, secret or team database (which
# a test would otherwise write into) never reaches a test
SECRET_VARS = (
    "SENDGRID_API_KEY",
    "SENDGRID_API_HOST",
    "NEWSLETTER_SECRET",
    "NEWSLETTER_DATABASE_URL",
    "NEWSLETTER_SEND_LEASE",
    "PGPASSWORD",
    "PGSERVICE",
)

MINIMAL_CONFIG = """\
[newsletter]
name = "Test News"
from_email = "news@testnews.ca"
postal_address = "1 Test Street, Testville"
website = "https://testnews.ca/"

[unsubscribe]
url = "https://testnews.ca/unsubscribe"
"""


@pytest.fixture(autouse=True)
def hermetic(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRET_VARS:
        monkeypatch.delenv(name, raising=False)
    # DNS lookups (the doctor's) go to a loopback port nothing listens on: refused at once
    monkeypatch.setenv("NEWSLETTER_DNS_SERVERS", "127.0.0.1:9")
    monkeypatch.setenv("NEWSLETTER_DNS_TIMEOUT", "0.05")


@pytest.fixture(autouse=True)
def no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection or lookup outside 127.0.0.1/localhost fails the test that made it."""
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"test tried to reach the network: {address!r}")
        return real_connect(self, address)

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host not in ("127.0.0.1", "::1", "localhost", None):
            raise AssertionError(f"test tried to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A minimal newsletter folder as the current directory."""
    (tmp_path / "newsletter.toml").write_text(MINIMAL_CONFIG, encoding="utf-8")
    (tmp_path / "issues").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def write_issue(folder: Path):
    """Write issues/test.md with the given body (and front matter) and return its path."""

    def write(body: str, front: str = 'subject: "Hello there, friends"\npreheader: "A short preheader"') -> Path:
        path = folder / "issues" / "test.md"
        path.write_text(f"---\n{front}\n---\n{body}", encoding="utf-8")
        return path

    return write


def _require(tool: str) -> None:
    """Skip for a missing tool, except where .ci/run installed it (NEWSLETTER_REQUIRE_TOOLS)."""
    if os.environ.get("NEWSLETTER_REQUIRE_TOOLS"):
        pytest.fail(f"{tool} is missing and NEWSLETTER_REQUIRE_TOOLS is set")
    pytest.skip(f"{tool} not installed")


@pytest.fixture
def spamassassin() -> None:
    """A local SpamAssassin (Debian's package); .ci/run installs it, so there a skip fails."""
    if shutil.which("spamassassin") is None:
        _require("spamassassin")


@pytest.fixture(scope="session")
def postgres_cluster():
    """One throwaway PostgreSQL cluster for the session (tests/postgres_cluster.py)."""
    from .postgres_cluster import Cluster, programs

    found = programs()
    if found is None:
        _require("PostgreSQL (initdb)")
    cluster = Cluster(found).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(postgres_cluster) -> str:
    """A new database of the throwaway cluster, at this newsletter's schema."""
    from newsletter_cli.store import migrate

    url = postgres_cluster.database()
    migrate(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request, tmp_path: Path):
    """Where a store lives, once for each back end: the SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "db"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def browser():
    """Real headless Chromium through Playwright (never a downloaded browser)."""
    if not Path(CHROMIUM).exists():
        _require(CHROMIUM)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The repository's own newsletter folder, copied so tests may write into it."""
    for name in ("newsletter.toml", "subscribers.csv.example"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "issues", tmp_path / "issues")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def sendgrid(monkeypatch: pytest.MonkeyPatch):
    """The loopback SendGrid stand-in, with SENDGRID_API_KEY and SENDGRID_API_HOST pointing at it.

    The test fails if any request broke SendGrid's contract, even one our code then tolerated.
    """
    from .sendgrid_fake import API_KEY, FakeSendGrid

    fake = FakeSendGrid().start()
    monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
    monkeypatch.setenv("SENDGRID_API_HOST", fake.url)
    yield fake
    fake.stop()
    assert fake.violations == [], "requests that break SendGrid's contract"


def newsletter_process(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`newsletter ARGS...` as a real process (for Ctrl-C and kill -9), output captured as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter_cli", *args],
        cwd=cwd,
        env=env or dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def interrupt(process: subprocess.Popen) -> tuple[str, str]:
    """Press Ctrl-C and collect what the process printed."""
    process.send_signal(signal.SIGINT)
    return process.communicate(timeout=30)


SEND_SECRET = "a-test-secret-of-enough-length"


@pytest.fixture
def runner():
    from click.testing import CliRunner

    return CliRunner()


@pytest.fixture
def newsletter(folder, write_issue, sendgrid, monkeypatch):
    """A folder with an issue that uses a merge field, and the loopback SendGrid (retries after
    10 ms, a lost answer noticed after 2 s)."""
    monkeypatch.setenv("NEWSLETTER_SECRET", SEND_SECRET)
    monkeypatch.setenv("NEWSLETTER_RETRY_BACKOFF", "0.01")
    monkeypatch.setenv("NEWSLETTER_HTTP_TIMEOUT", "2")
    write_issue(
        'Hi {{ subscriber.first_name | default("friend") }}!\n',
        front='subject: "News for {{ subscriber.first_name | default(\\"you\\") }}"',
    )
    return folder


# --- SendGrid's Event Webhook, as SendGrid signs it ---------------------------------------------


class Signer:
    """SendGrid's side: a P-256 key, its public half shown as SendGrid shows it."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        self.public = base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: str | None = None) -> dict[str, str]:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        timestamp = timestamp or str(int(time.time()))
        signature = self.key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        }


def sendgrid_events(*events: dict) -> bytes:
    """A POST body as SendGrid writes one: compact JSON, then CRLF."""
    return json.dumps(list(events), separators=(",", ":")).encode() + b"\r\n"


def sg(name: str, email: str, number: int, **fields: object) -> dict:
    return {"email": email, "event": name, "sg_event_id": f"ev-{number}", "timestamp": 1764580000 + number, **fields}


@pytest.fixture
def webhook(newsletter):
    """The newsletter folder's own `newsletter serve` app, called in process, with a webhook key."""
    signer = Signer()
    toml = newsletter / "newsletter.toml"
    toml.write_text(toml.read_text() + f'\n[events]\npublic_key = "{signer.public}"\n')
    from newsletter_cli.config import load_config
    from newsletter_cli.web.site import Site
    from newsletter_cli.web.unsubscribe import Endpoint

    site = Site(Endpoint(load_config(toml, environ={}), SEND_SECRET.encode()), log=io.StringIO())

    def post(*events: dict) -> dict:
        body = sendgrid_events(*events)
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/sendgrid/events", "CONTENT_LENGTH": str(len(body))}
        for name, value in signer.headers(body).items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        statuses: list[str] = []
        answer = site({**environ, "wsgi.input": io.BytesIO(body)}, lambda s, h: statuses.append(s))
        assert statuses == ["200 OK"]
        return json.loads(b"".join(answer))

    return post
