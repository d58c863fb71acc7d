import json
import threading

import pytest

from newsletter_cli.sendgrid_api import SendGrid, SendGridError, Stopped

from .conftest import REPO
from .sendgrid_fake import API_KEY, CONTRACT, Fault, rate_limited

SHARED_CONTRACT = REPO.parent / "shared" / "sendgrid" / "sendgrid_v3_contract.json"


@pytest.mark.skipif(not SHARED_CONTRACT.exists(), reason="no ../shared/sendgrid beside this clone")
def test_the_vendored_contract_matches_the_shared_one():
    assert json.loads(CONTRACT.read_text()) == json.loads(SHARED_CONTRACT.read_text())


class RecordingStop(threading.Event):
    """Records each retry wait and waits at most 50 ms of it."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return super().wait(min(timeout or 0.0, 0.05))


def client(fake, **kwargs) -> SendGrid:
    stop = RecordingStop()
    api = SendGrid(API_KEY, fake.url, backoff=0.01, stop=stop, **kwargs)
    api.waits = stop.waits  # type: ignore[attr-defined]
    return api


def test_a_missing_key_is_a_clear_error():
    with pytest.raises(SendGridError, match="SENDGRID_API_KEY is not set"):
        SendGrid("", "http://127.0.0.1:9")


def test_5xx_and_dropped_connections_are_retried(sendgrid):
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
        SendGrid("SG.wrong-key", sendgrid.url, backoff=0.01).group_suppressions(5)
    assert error.value.message == "SendGrid rejected the API key (401): check SENDGRID_API_KEY"
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
        SendGrid(API_KEY, sendgrid.url, backoff=30, stop=stop).group_suppressions(5)


def test_an_unreachable_host_is_one_line():
    api = SendGrid(API_KEY, "http://127.0.0.1:9", attempts=2, backoff=0.001)
    with pytest.raises(
        SendGridError, match=r"^cannot reach SendGrid at http://127.0.0.1:9: .* \(gave up after 2 attempts\)$"
    ):
        api.group_suppressions(5)


def test_the_stand_in_rejects_requests_that_break_the_contract(sendgrid):
    api = client(sendgrid)
    with pytest.raises(SendGridError):
        api.request("GET", "suppression/bounces", query={"limit": 501})
    assert sendgrid.violations == [
        "GET /v3/suppression/bounces: query limit=501: 501 is greater than the maximum of 500"
    ]
    sendgrid.violations.clear()
