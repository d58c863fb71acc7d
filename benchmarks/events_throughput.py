"""How many of SendGrid's events per second `newsletter serve` commits, beside a reference in
the same run: the same stdlib WSGI server running an app that only reads the body and answers
200 (the HTTP ceiling), and the official verifier alone (the signature's share).

Each POST is a signed batch, as SendGrid sends them; every event is new (distinct sg_event_id),
and one in twenty is a bounce that suppresses its address.

    python benchmarks/events_throughput.py [EVENTS] [--batch 1000] [--concurrency 1]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

CONFIG = """\
[newsletter]
name = "Bench News"
from_email = "news@benchnews.ca"
postal_address = "1 Bench Street, Toronto, Ontario"
website = "https://benchnews.ca/"

[unsubscribe]
url = "https://benchnews.ca/unsubscribe"

[events]
public_key = "{key}"
"""
REFERENCE_APP = textwrap.dedent(
    """
    import sys
    from newsletter_cli.web.server import make_server

    def app(environ, start_response):
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
        return [b"{}"]

    make_server("127.0.0.1", int(sys.argv[1]), app).serve_forever()
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batches(total: int, size: int) -> list[bytes]:
    bodies = []
    for start in range(0, total, size):
        events = []
        for n in range(start, min(start + size, total)):
            event = {"email": f"reader{n}@benchnews.ca", "sg_event_id": f"ev{n}", "timestamp": 1764580000 + n}
            event |= {"newsletter_issue": "2026-12-bench", "sg_message_id": f"msg{n // 1000}.filter"}
            if n % 20 == 0:
                event |= {"event": "bounce", "type": "bounce", "bounce_classification": "Invalid Address"}
            else:
                event |= {"event": ("processed", "delivered", "open")[n % 3]}
            events.append(event)
        bodies.append(json.dumps(events, separators=(",", ":")).encode() + b"\r\n")
    return bodies


def post_all(url: str, bodies: list[bytes], key: ec.EllipticCurvePrivateKey, concurrency: int) -> float:
    signed = []
    for body in bodies:
        stamp = str(int(time.time()))
        signature = base64.b64encode(key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
        headers = {"X-Twilio-Email-Event-Webhook-Signature": signature, "X-Twilio-Email-Event-Webhook-Timestamp": stamp}
        signed.append((body, headers))

    def post(item: tuple[bytes, dict[str, str]]) -> None:
        request = urllib.request.Request(url, data=item[0], headers=item[1], method="POST")
        with urllib.request.urlopen(request, timeout=120) as answer:
            assert answer.status == 200, answer.status
            answer.read()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(post, signed))
    return time.perf_counter() - started


def wait_until_listening(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def serve(command: list[str], cwd: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NEWSLETTER_SECRET": "a-benchmark-secret-of-enough-length"}
    env.pop("SENDGRID_API_KEY", None)  # nothing is passed on to SendGrid
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until_listening(port)
    return process


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("events", type=int, nargs="?", default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1)
    options = parser.parse_args()
    key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
    bodies = batches(options.events, options.batch)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "newsletter.toml").write_text(CONFIG.format(key=public.decode()))
        env_serve = [sys.executable, "-m", "newsletter_cli", "serve", "--port"]
        for label, command in (
            ("reference: read the body, answer 200", [sys.executable, "-c", REFERENCE_APP]),
            ("newsletter serve: verify, store, suppress", env_serve),
        ):
            port = free_port()
            process = serve([*command, str(port)], folder, port)
            try:
                results[label] = post_all(f"http://127.0.0.1:{port}/sendgrid/events", bodies, key, options.concurrency)
            finally:
                process.terminate()
                process.wait(timeout=30)
        from newsletter_cli.store import Store

        with Store.for_folder(folder / ".newsletter") as store:
            stored = (
                store.db.execute("SELECT count(*) FROM events").fetchone()[0],
                store.count_suppressions(),
            )
        assert stored == (options.events, -(-options.events // 20)), stored
        from sendgrid.helpers.eventwebhook import EventWebhook

        webhook = EventWebhook(public.decode())
        started = time.perf_counter()
        for body in bodies:
            stamp = "1764580000"
            signature = base64.b64encode(key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
            assert webhook.verify_signature(body.decode(), signature, stamp)
        signing = time.perf_counter() - started
    print(f"{options.events:,} events in batches of {options.batch:,}, {options.concurrency} POST(s) at a time")
    for label, seconds in results.items():
        print(f"  {label:44} {options.events / seconds:10,.0f} events/s  ({seconds:.2f} s)")
    label = "sign and verify every batch, no HTTP"
    print(f"  {label:44} {options.events / signing:10,.0f} events/s  ({signing:.2f} s)")
    print(f"Stored: {stored[0]:,} events, {stored[1]:,} suppressions (each committed before its POST was answered).")


if __name__ == "__main__":
    main()
