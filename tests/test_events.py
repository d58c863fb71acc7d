"""SendGrid's Event Webhook: signatures checked on the raw body by the official verifier, each
event stored once, the suppressions it calls for, and the uncertain batches it settles."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter_cli.cli import cli
from newsletter_cli.config import Config, load_config
from newsletter_cli.events.rules import Event, suppression
from newsletter_cli.events.webhook import Refused, Verifier, parse
from newsletter_cli.sending.status import status as send_status
from newsletter_cli.store import Store
from newsletter_cli.web.server import make_server
from newsletter_cli.web.site import Site
from newsletter_cli.web.unsubscribe import Endpoint

from .conftest import Signer, sendgrid_events, sg
from .sendgrid_fake import accepted_then_dropped
from .test_send import ISSUE, send, start_send, status, wait_for, write_list

FIXTURES = Path(__file__).parent / "fixtures"
VECTOR = json.loads((FIXTURES / "sendgrid_event_webhook_vector.json").read_text())
SECRET = b"a-test-secret-of-enough-length"


def test_sendgrids_own_test_vector_verifies_on_the_raw_body_and_nowhere_else():
    body = (FIXTURES / VECTOR["body_file"]).read_bytes()
    assert body.endswith(b"\r\n")
    verifier = Verifier(VECTOR["public_key"])
    text = verifier.verify(body, VECTOR["signature"], VECTOR["timestamp"])
    [event] = parse(text).events
    assert (event.email, event.event, event.kind) == ("hello@world.com", "dropped", "Bounced Address")
    reserialised = json.dumps(json.loads(body)).encode()
    for wrong in [
        (reserialised, VECTOR["signature"], VECTOR["timestamp"]),
        (body.rstrip(), VECTOR["signature"], VECTOR["timestamp"]),
        (body, VECTOR["signature"], str(int(VECTOR["timestamp"]) + 1)),
    ]:
        with pytest.raises(Refused) as refused:
            verifier.verify(*wrong)
        assert refused.value.status == 403
    with pytest.raises(Refused) as refused:
        Verifier(VECTOR["other_public_key"]).verify(body, VECTOR["signature"], VECTOR["timestamp"])
    assert refused.value.status == 403


def event(name: str, **fields: object) -> Event:
    return Event(id="e1", email="ann@testnews.ca", event=name, at=1, issue="test", **fields)  # type: ignore[arg-type]


# (event, fields, suppression reason or None) -- one row per rule of events/rules.py
RULES = [
    ("bounce", {"kind": "bounce", "classification": "Invalid Address"}, "bounced"),
    ("bounce", {"kind": "bounce", "classification": "Mailbox Unavailable"}, "bounced"),
    ("bounce", {"kind": "bounce"}, "bounced"),
    ("bounce", {"kind": "blocked", "classification": "Reputation"}, None),
    ("bounce", {"kind": "bounce", "classification": "Reputation"}, None),
    ("bounce", {"kind": "bounce", "classification": "Content"}, None),
    ("bounce", {"kind": "bounce", "classification": "Technical Failure"}, None),
    ("bounce", {"kind": "bounce", "classification": "Frequency or Volume Too High"}, None),
    ("dropped", {"kind": "Bounced Address"}, "bounced"),
    ("dropped", {"kind": "Spam Reporting Address"}, "spam_report"),
    ("dropped", {"kind": "Unsubscribed Address"}, "unsubscribed"),
    ("dropped", {"kind": "Invalid"}, "invalid"),
    ("dropped", {"kind": "Spam Content (if spam checker app enabled)"}, None),
    ("spamreport", {}, "spam_report"),
    ("unsubscribe", {}, "unsubscribed"),
    ("group_unsubscribe", {"group": 42}, "unsubscribed"),
    ("group_unsubscribe", {"group": 7}, None),
    ("group_resubscribe", {"group": 42}, None),
    ("deferred", {}, None),
    ("delivered", {}, None),
    ("open", {}, None),
    ("click", {"kind": "https://testnews.ca/"}, None),
]


@pytest.mark.parametrize(("name", "fields", "reason"), RULES, ids=[f"{r[0]}-{i}" for i, r in enumerate(RULES)])
def test_each_suppression_rule(name, fields, reason):
    assert suppression(event(name, **fields), group_id=42) == reason


def test_a_group_unsubscribe_counts_only_for_our_group():
    assert suppression(event("group_unsubscribe", group=42), group_id=None) is None


@pytest.fixture
def served(folder, monkeypatch):
    """`newsletter serve`'s app on a real loopback server, with a webhook key."""
    signer = Signer()
    toml = folder / "newsletter.toml"
    toml.write_text(toml.read_text() + f'\n[events]\npublic_key = "{signer.public}"\n')
    config = load_config(toml, environ={})
    log = io.StringIO()
    site = Site(Endpoint(config, SECRET), log=log)
    server = make_server("127.0.0.1", 0, site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Served(f"http://127.0.0.1:{server.server_port}", signer, config, log)
    server.shutdown()
    server.server_close()


class Served:
    def __init__(self, url: str, signer: Signer, config: Config, log: io.StringIO):
        self.url, self.signer, self.config, self._log = url, signer, config, log

    @property
    def log(self) -> str:
        return self._log.getvalue()

    def post(self, body: bytes, headers: dict[str, str] | None = None, path: str = "/sendgrid/events"):
        headers = self.signer.headers(body) if headers is None else headers
        request = urllib.request.Request(self.url + path, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def suppressions(self) -> dict[str, str]:
        with Store.for_folder(self.config.state_dir) as store:
            return {s.email: s.reason for s in store.suppressions()}


def test_signed_events_become_suppressions_and_a_replay_changes_nothing(served):
    body = sendgrid_events(
        sg("bounce", "Hard@Testnews.ca", 1, type="bounce", bounce_classification="Invalid Address"),
        sg("bounce", "soft@testnews.ca", 2, type="bounce", bounce_classification="Technical Failure"),
        sg("spamreport", "angry@testnews.ca", 3),
        sg("delivered", "fine@testnews.ca", 4),
    )
    assert served.post(body) == (
        200,
        {"stored": 4, "duplicates": 0, "skipped": 0, "suppressed": 2, "settled_batches": 0},
    )
    assert served.suppressions() == {"hard@testnews.ca": "bounced", "angry@testnews.ca": "spam_report"}
    assert served.post(body)[1] == {"stored": 0, "duplicates": 4, "skipped": 0, "suppressed": 0, "settled_batches": 0}


def test_bad_input_gets_a_4xx_and_changes_nothing(served):
    body = sendgrid_events(sg("spamreport", "angry@testnews.ca", 1))
    good = served.signer.headers(body)
    forged = Signer().headers(body)
    cases = [
        (body, {}, 401),
        (body, {**good, "X-Twilio-Email-Event-Webhook-Signature": "not base64!!"}, 400),
        (body, forged, 403),
        (body.replace(b"angry", b"happy"), good, 403),
        (b'{"event": "spamreport"}', None, 400),
        (b"not json", None, 400),
        (b"\xff\xfe", None, 400),
    ]
    for data, headers, expected in cases:
        assert served.post(data, headers)[0] == expected, (data, headers)
    assert served.suppressions() == {}
    assert "newsletter: refused a POST of events: the signature does not match the body\n" in served.log


def test_an_unreadable_event_is_skipped_with_its_reason_and_the_others_stored(served):
    body = sendgrid_events(sg("spamreport", "angry@testnews.ca", 1), {"event": "bounce", "email": "x@testnews.ca"})
    status, answer = served.post(body)
    assert status == 200 and answer["stored"] == 1 and answer["skipped"] == 1
    assert "newsletter: skipped one of SendGrid's events, event 2: no sg_event_id\n" in served.log


def test_no_ip_or_user_agent_is_kept_unless_configured(served):
    served.post(sendgrid_events(sg("open", "ann@testnews.ca", 1, ip="203.0.113.9", useragent="Mozilla/5.0")))
    with Store.for_folder(served.config.state_dir) as store:
        assert store.db.execute("SELECT client FROM events").fetchall() == [(None,)]
    assert parse(sendgrid_events(sg("open", "a@testnews.ca", 2, ip="203.0.113.9")).decode(), True).events[0].client


def test_a_resubscribe_never_lifts_a_suppression_and_is_logged(served):
    served.post(sendgrid_events(sg("unsubscribe", "ann@testnews.ca", 1)))
    served.post(sendgrid_events(sg("group_resubscribe", "ann@testnews.ca", 2, asm_group_id=5)))
    assert served.suppressions() == {"ann@testnews.ca": "unsubscribed"}
    assert "ann@testnews.ca resubscribed to SendGrid group 5; a suppression here is lifted only by hand" in served.log


def test_without_a_key_events_are_refused_and_unsubscribes_still_served(folder):
    config = load_config(folder / "newsletter.toml", environ={})
    site = Site(Endpoint(config, SECRET))
    statuses: list[str] = []
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/sendgrid/events", "CONTENT_LENGTH": "2"}
    site({**environ, "wsgi.input": io.BytesIO(b"[]")}, lambda status, headers: statuses.append(status))
    site(
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/unsubscribe", "QUERY_STRING": "token=x"},
        lambda s, h: statuses.append(s),
    )
    assert statuses == ["404 Not Found", "400 Bad Request"]


# --- events and the send journal ------------------------------------------------------------


def processed(delivery, number: int) -> dict:
    """The event SendGrid sends once it has taken a recipient's message, custom args included."""
    return sg("processed", delivery.email, number, sg_message_id=delivery.message_id, **delivery.custom_args)


def test_an_event_for_a_recipient_of_an_uncertain_batch_settles_it_as_sent(runner, newsletter, sendgrid, webhook):
    write_list(newsletter, 30)
    sendgrid.fail_next(accepted_then_dropped())
    assert send(runner, "--yes", "--batch-size", "10", "--concurrency", "1").exit_code == 1
    before = status(runner)
    assert before["uncertain"] == 10
    assert "no SendGrid events have arrived for this issue" in before["uncertain_batches"][0]["advice"]
    first_batch = [d for d in sendgrid.deliveries if d.message_id == "msg-1"]
    assert webhook(processed(first_batch[3], 1))["settled_batches"] == 1
    after = status(runner)
    assert (after["sent"], after["uncertain"], after["pending"]) == (30, 0, 0)
    assert after["settled_batches"] == [
        {"batch": 1, "recipients": 10, "settled_by": f"a processed event for {first_batch[3].email}"}
    ]
    printed = runner.invoke(cli, ["status", ISSUE]).output
    assert f"Batch 1 (10 recipients) was uncertain; SendGrid took it: a processed event for {first_batch[3].email}" in (
        printed
    )


def test_after_24_quiet_hours_while_other_batches_had_events_a_resend_is_probably_safe(
    runner, newsletter, sendgrid, webhook
):
    write_list(newsletter, 20)
    sendgrid.fail_next(accepted_then_dropped())
    assert send(runner, "--yes", "--batch-size", "10", "--concurrency", "1").exit_code == 1
    webhook(*[processed(d, n) for n, d in enumerate(sendgrid.deliveries) if d.message_id == "msg-2"])
    config = load_config(newsletter / "newsletter.toml", environ={})
    soon = send_status(config, "test")["uncertain_batches"][0]["advice"]
    later = send_status(config, "test", now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=25))
    assert soon.startswith("no event for its recipients yet; if none comes by ")
    assert later["uncertain_batches"][0]["advice"] == (
        "no event for any of its recipients in 24 hours, while events for the other batches arrived: SendGrid "
        "probably never took it, and --resend-uncertain is probably safe"
    )


def test_kill_9_mid_send_then_signed_events_settle_the_batch_it_left_uncertain(runner, newsletter, sendgrid, webhook):
    write_list(newsletter, 200)
    sendgrid.delay = 2.0  # the first request is taken, and answered too late for the killed process
    command = [
        sys.executable,
        "-m",
        "newsletter_cli",
        "send",
        ISSUE,
        "--yes",
        "--batch-size",
        "100",
        "--concurrency",
        "1",
    ]
    process = subprocess.Popen(command, cwd=newsletter, start_new_session=True, stdout=subprocess.DEVNULL)
    wait_for(lambda: any(s.path == "/v3/mail/send" for s in sendgrid.seen))
    os.killpg(process.pid, signal.SIGKILL)  # the send and the workers it started
    process.wait(timeout=10)
    sendgrid.delay = 0
    assert send(runner, "--yes").exit_code == 1, "the batch in flight at the kill is uncertain"
    wait_for(lambda: len(sendgrid.deliveries) == 200)  # SendGrid did take it
    assert status(runner)["uncertain"] == 100
    uncertain = set(runner.invoke(cli, ["status", ISSUE, "--addresses", "uncertain"]).output.split())
    taken = [d for d in sendgrid.deliveries if d.email in uncertain]
    assert len(taken) == 100
    assert webhook(*[processed(d, n) for n, d in enumerate(taken)])["settled_batches"] == 1
    after = status(runner)
    assert (after["sent"], after["uncertain"], after["pending"]) == (200, 0, 0)
    assert max(Counter(d.email for d in sendgrid.deliveries).values()) == 1


def test_bounces_and_spam_reports_posted_during_a_send_stop_its_later_batches(runner, newsletter, sendgrid, webhook):
    emails = write_list(newsletter, 2000)
    sendgrid.keep_content = False
    sendgrid.delay = 0.02
    process = start_send(newsletter, "--batch-size", "100", "--concurrency", "1", "--no-sync")
    wait_for(lambda: sendgrid.batches >= 3)
    bouncing, reporting = emails[-150:-50], emails[-50:]
    webhook(
        *[sg("bounce", e, n, type="bounce", bounce_classification="Invalid Address") for n, e in enumerate(bouncing)],
        *[sg("spamreport", e, 1000 + n) for n, e in enumerate(reporting)],
    )
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, out + err
    counts = status(runner)
    assert counts["suppressed"] == 150 and counts["sent"] == 1850
    assert not set(bouncing + reporting) & {d.email for d in sendgrid.deliveries}


def test_a_send_then_signed_events_posted_to_a_real_newsletter_serve_give_suppressions_and_stats(
    runner, newsletter, sendgrid
):
    """The whole loop, as in production: the send, SendGrid's events over HTTP, the figures."""
    emails = write_list(newsletter, 4)
    assert send(runner, "--yes").exit_code == 0
    signer = Signer()
    env = {**os.environ, "SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public}
    env.pop("SENDGRID_API_KEY")
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter_cli", "serve", "--port", "0"],
        cwd=newsletter,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base = process.stdout.readline().split()[3].rstrip("/")
        assert process.stdout.readline() == f"SendGrid's Event Webhook: POST {base}/sendgrid/events\n"
        served = Served(base, signer, load_config(newsletter / "newsletter.toml", environ={}), io.StringIO())
        issue = sendgrid.deliveries[0].custom_args
        events = [sg("delivered", e, n, **issue) for n, e in enumerate(emails[:3])]
        events += [sg("bounce", emails[3], 9, type="bounce", bounce_classification="Invalid Address", **issue)]
        events += [sg("open", emails[0], 10, **issue), sg("spamreport", emails[1], 11, **issue)]
        assert served.post(sendgrid_events(*events))[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert served.suppressions() == {emails[3]: "bounced", emails[1]: "spam_report"}
    figures = json.loads(runner.invoke(cli, ["stats", ISSUE, "--json"]).output)["figures"]
    counts = {name: figure["count"] for name, figure in figures.items() if figure["count"]}
    assert counts == {"requested": 4, "delivered": 3, "bounced": 1, "spam_reports": 1, "opens": 1}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
RULE_EVENTS = sorted({row[0] for row in RULES} | {"processed"})
FIELDS = ("email", "event", "sg_event_id", "timestamp", "type", "reason", "url", "asm_group_id", "ip", "useragent")
FIELDS += ("bounce_classification", "sg_message_id", "sg_machine_open", "newsletter_issue")
well_formed = st.fixed_dictionaries(
    {"email": st.emails() | json_values, "event": st.sampled_from(RULE_EVENTS) | json_values},
    optional={
        name: json_values | st.integers(min_value=-(2**70), max_value=2**70)
        for name in FIELDS
        if name not in ("email", "event")
    },
).map(lambda event: {**event, "sg_event_id": str(event.get("sg_event_id")), "timestamp": event.get("timestamp", 1)})
events_of_any_shape = st.lists(
    well_formed | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), json_values, max_size=8) | json_values,
    max_size=5,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=events_of_any_shape)
def test_signed_events_of_any_shape_get_200_or_400_never_a_5xx(folder, items):
    """SendGrid retries a 5xx for a day: a body it will send again must never cause one."""
    signer = Signer()
    toml = folder / "newsletter.toml"
    config = load_config(toml, environ={"SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public})
    site = Site(Endpoint(config, SECRET), log=io.StringIO())
    body = json.dumps(items).encode()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/sendgrid/events", "CONTENT_LENGTH": str(len(body))}
    for name, value in signer.headers(body).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    statuses: list[str] = []
    site({**environ, "wsgi.input": io.BytesIO(body)}, lambda status, headers: statuses.append(status))
    assert statuses in (["200 OK"], ["400 Bad Request"])


def test_an_event_settles_a_batch_whose_lease_ended_but_not_one_still_leased(where):
    """A batch left in flight by a send that died is uncertain once its lease ends: a delivery
    event then shows it accepted. One still leased belongs to a send that will record it."""
    import time

    from newsletter_cli.store import events as stored
    from newsletter_cli.store.journal import IN_FLIGHT, SENT, Journal, record

    with Store(where) as store:
        journal = Journal(store, "issue")
        run = journal.start_run("Subject")
        journal.add([[(a, record(a, "", {})) for a in ("a@example.com", "b@example.com")]], run)
        journal.settle(run)
        journal.lease = 0.01
        journal.next_batch(1)
        journal.lease = 60
        journal.next_batch(1)
        time.sleep(0.05)
        found = stored.record(
            store,
            [Event(f"e-{a}", a, "delivered", 1_700_000_000, issue="issue") for a in ("a@example.com", "b@example.com")],
            None,
        )
        assert found.settled == 1
        assert (journal.counts()[SENT], journal.counts()[IN_FLIGHT]) == (1, 1)
