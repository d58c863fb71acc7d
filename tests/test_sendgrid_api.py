import json
import threading

import pytest

from newsletter_cli.sendgrid_api import (
    NotSendGrid,
    SendGrid,
    SendGridError,
    Stopped,
    Timing,
    Uncertain,
    Unreachable,
)

from .conftest import REPO
from .sendgrid_fake import API_KEY, CONTRACTS, Fault, accepted_then_dropped, html_page, rate_limited, slow_answer

SHARED_CONTRACT = REPO.parent / "shared" / "sendgrid" / "sendgrid_v3_contract.json"
SHARED = SHARED_CONTRACT.parent


@pytest.mark.skipif(not SHARED_CONTRACT.exists(), reason="no ../shared/sendgrid beside this clone")
def test_the_vendored_contract_matches_the_shared_one():
    for contract in CONTRACTS:
        assert json.loads(contract.read_text()) == json.loads((SHARED / contract.name).read_text()), contract.name


class RecordingStop(threading.Event):
    """Records each retry wait and waits at most 50 ms of it."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return super().wait(min(timeout or 0.0, 0.05))


def client(fake, attempts: int = 6, timeout: float = 30.0) -> SendGrid:
    stop = RecordingStop()
    api = SendGrid(API_KEY, fake.url, timing=Timing(timeout=timeout, attempts=attempts, backoff=0.01), stop=stop)
    api.waits = stop.waits  # type: ignore[attr-defined]
    return api


def test_a_missing_key_is_a_clear_error():
    with pytest.raises(SendGridError, match="SENDGRID_API_KEY is not set"):
        SendGrid("", "http://127.0.0.1:9")


def test_5xx_and_dropped_connections_are_retried_for_reads(sendgrid):
    sendgrid.fail_next(Fault(503), Fault(0), Fault(500, body={"errors": [{"message": "oops"}]}))
    api = client(sendgrid)
    assert api.group_suppressions(5) == []
    assert len(api.waits) == 3
    assert len(sendgrid.seen) == 4


def test_429_waits_until_the_rate_limit_resets(sendgrid):
    sendgrid.fail_next(rate_limited(seconds_from_now=2))
    api = client(sendgrid)
    api.group_suppressions(5)
    assert 0.9 <= api.waits[0] <= 2.5


def test_giving_up_says_how_often_it_tried(sendgrid):
    sendgrid.fail_next(*[Fault(502)] * 3)
    with pytest.raises(SendGridError) as error:
        client(sendgrid, attempts=3).group_suppressions(5)
    assert (
        error.value.message == "SendGrid answered 502 to GET /v3/asm/groups/5/suppressions (gave up after 3 attempts)"
    )


def test_401_stops_at_once_and_never_shows_the_key(sendgrid):
    with pytest.raises(SendGridError) as error:
        SendGrid("SG.wrong-key", sendgrid.url, timing=Timing(backoff=0.01)).group_suppressions(5)
    assert error.value.message == (
        "SendGrid rejected the API key (401): check SENDGRID_API_KEY; "
        "SendGrid said: The provided authorization grant is invalid"
    )
    assert "SG." not in error.value.message
    assert len(sendgrid.seen) == 1


def test_400_carries_sendgrids_messages(sendgrid):
    sendgrid.fail_next(Fault(400, body={"errors": [{"message": "bad thing", "field": "x.y"}]}))
    with pytest.raises(SendGridError, match=r"answered 400 to GET /v3/asm/groups/5/suppressions: x.y: bad thing$"):
        client(sendgrid).group_suppressions(5)


def test_a_stop_cuts_a_retry_wait_short(sendgrid):
    sendgrid.fail_next(Fault(503))
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped, match="stopped before retrying"):
        SendGrid(API_KEY, sendgrid.url, timing=Timing(backoff=30), stop=stop).group_suppressions(5)


def test_an_unreachable_host_is_one_line():
    api = SendGrid(API_KEY, "http://127.0.0.1:9", timing=Timing(attempts=2, backoff=0.001))
    with pytest.raises(
        Unreachable, match=r"^cannot reach SendGrid at http://127.0.0.1:9: .* \(gave up after 2 attempts\)$"
    ):
        api.group_suppressions(5)


def test_a_refused_connection_is_retried_even_for_a_send_since_nothing_left(sendgrid):
    api = SendGrid(API_KEY, "http://127.0.0.1:9", timing=Timing(attempts=3, backoff=0.001))
    with pytest.raises(Unreachable, match=r"\(gave up after 3 attempts\)$"):
        api.send_mail(MAIL)


MAIL = {
    "from": {"email": "news@testnews.ca"},
    "subject": "Hello",
    "content": [{"type": "text/plain", "value": "Hi"}],
    "personalizations": [{"to": [{"email": "ana@example.com"}]}],
}


def test_a_send_whose_connection_drops_after_the_request_is_uncertain_and_never_repeated(sendgrid):
    sendgrid.fail_next(accepted_then_dropped())
    api = client(sendgrid)
    with pytest.raises(Uncertain, match=r"^the connection to http://127.0.0.1:\d+ broke before POST /v3/mail/send"):
        api.send_mail(MAIL)
    assert [d.email for d in sendgrid.deliveries] == ["ana@example.com"]
    assert len(sendgrid.seen) == 1, "not sent a second time"
    assert api.waits == []


def test_a_send_whose_answer_comes_too_late_is_uncertain_and_never_repeated(sendgrid):
    sendgrid.fail_next(slow_answer(1.5))
    api = client(sendgrid, timeout=0.5)
    with pytest.raises(Uncertain, match=r"no answer from http://127.0.0.1:\d+ to POST /v3/mail/send within 0.5 s$"):
        api.send_mail(MAIL)
    assert len(sendgrid.deliveries) == 1 and len(sendgrid.seen) == 1


def test_a_read_whose_answer_is_lost_is_simply_asked_again(sendgrid):
    sendgrid.fail_next(slow_answer(1.5, path="/suppressions"), Fault(0, path="/suppressions"))
    api = client(sendgrid, timeout=0.5)
    assert api.group_suppressions(5) == []
    assert len(sendgrid.seen) == 3


def test_a_200_html_page_is_not_sendgrid_and_names_the_host(sendgrid):
    sendgrid.fail_next(html_page(200))
    with pytest.raises(NotSendGrid) as error:
        client(sendgrid).send_mail(MAIL)
    assert error.value.message == (
        f"{sendgrid.url} answered POST /v3/mail/send with 200 (text/html; charset=utf-8), not SendGrid's 202: "
        "is SENDGRID_API_HOST right, or is a proxy or a captive portal in the way?"
    )
    assert len(sendgrid.seen) == 1


def test_a_202_without_sendgrids_message_id_is_uncertain(sendgrid):
    sendgrid.fail_next(Fault(202, path="/mail/send"))
    with pytest.raises(Uncertain, match="without SendGrid's X-Message-Id"):
        client(sendgrid).send_mail(MAIL)


def test_a_403_shows_sendgrids_own_reason(sendgrid):
    reason = "The from address does not match a verified Sender Identity."
    sendgrid.fail_next(Fault(403, body={"errors": [{"message": reason, "field": "from"}]}, path="/mail/send"))
    with pytest.raises(SendGridError) as error:
        client(sendgrid).send_mail(MAIL)
    assert error.value.message == f"SendGrid refused POST /v3/mail/send (403); SendGrid said: from: {reason}"


def test_a_suppression_list_that_is_not_json_is_one_line_naming_the_host(sendgrid):
    sendgrid.fail_next(html_page(200, path="/suppression/bounces"))
    with pytest.raises(NotSendGrid) as error:
        list(client(sendgrid).suppression_list("suppression/bounces"))
    assert error.value.message == (
        f"{sendgrid.url} answered GET /v3/suppression/bounces with 200 text/html; charset=utf-8, "
        "not SendGrid's JSON: is SENDGRID_API_HOST right, or is a proxy in the way?"
    )


def test_timing_comes_from_the_environment_and_refuses_nonsense():
    assert Timing.from_environ({}) == Timing()
    assert Timing.from_environ({"NEWSLETTER_HTTP_TIMEOUT": "2", "NEWSLETTER_RETRY_BACKOFF": "0.5"}) == Timing(
        timeout=2.0, backoff=0.5, max_wait=30.0
    )
    with pytest.raises(SendGridError, match="NEWSLETTER_HTTP_TIMEOUT='soon': expected a number of seconds"):
        Timing.from_environ({"NEWSLETTER_HTTP_TIMEOUT": "soon"})


def test_the_stand_in_rejects_requests_that_break_the_contract(sendgrid):
    api = client(sendgrid)
    with pytest.raises(SendGridError):
        api.request("GET", "suppression/bounces", query={"limit": 501})
    assert sendgrid.violations == [
        "GET /v3/suppression/bounces: query limit=501: 501 is greater than the maximum of 500"
    ]
    sendgrid.violations.clear()
