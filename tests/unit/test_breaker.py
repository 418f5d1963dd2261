"""The circuit breaker on its own: opening, one probe at a time, growing cool-down, Retry-After."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from mx_webhooks.breaker import INTEGRATIONS, BreakerSettings, BreakerState, CircuitBreaker, CircuitOpen
from mx_webhooks.integrations import eventbridge


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock, **settings: float) -> CircuitBreaker:
    return CircuitBreaker("Slack", BreakerSettings(**settings), clock)  # type: ignore[arg-type]


def test_it_opens_after_the_threshold_of_failures_in_a_row_and_says_for_how_long():
    clock = Clock()
    breaker = _breaker(clock, failure_threshold=3, cool_down_seconds=60)
    breaker.failed()
    breaker.failed()
    breaker.succeeded()  # a success in between: the count starts again
    breaker.failed()
    breaker.failed()
    breaker.before_call()  # still closed: two in a row
    breaker.failed()

    clock.now += 10
    with pytest.raises(CircuitOpen) as raised:
        breaker.before_call()
    assert breaker.state == BreakerState.OPEN
    assert raised.value.integration == "Slack" and raised.value.retry_in == pytest.approx(50)


def test_after_the_cool_down_one_caller_probes_a_failed_probe_doubles_it_a_success_closes():
    clock = Clock()
    breaker = _breaker(clock, failure_threshold=1, cool_down_seconds=60, max_cool_down_seconds=200)
    breaker.failed()
    for expected in (120, 200, 200):  # doubled, then capped
        clock.now += 1_000
        breaker.before_call()  # the probe
        assert breaker.state == BreakerState.HALF_OPEN
        with pytest.raises(CircuitOpen, match="probe"):
            breaker.before_call()  # anyone else meanwhile is deferred
        breaker.failed()
        with pytest.raises(CircuitOpen) as raised:
            breaker.before_call()
        assert raised.value.retry_in == pytest.approx(expected)
    clock.now += 1_000
    breaker.before_call()
    breaker.succeeded()
    assert breaker.state == BreakerState.CLOSED
    breaker.failed()  # closed again with the first cool-down
    with pytest.raises(CircuitOpen) as raised:
        breaker.before_call()
    assert raised.value.retry_in == pytest.approx(60)


def test_a_retry_after_opens_it_at_once_for_that_long_when_longer_than_the_cool_down():
    clock = Clock()
    breaker = _breaker(clock, failure_threshold=5, cool_down_seconds=60)
    breaker.failed(retry_after=900)
    with pytest.raises(CircuitOpen) as raised:
        breaker.before_call()
    assert raised.value.retry_in == pytest.approx(900)
    clock.now += 899
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    clock.now += 1
    breaker.before_call()  # the probe


def test_threads_share_one_breaker_and_only_one_of_them_probes():
    clock = Clock()
    breaker = _breaker(clock, failure_threshold=1, cool_down_seconds=60)
    breaker.failed()
    clock.now += 61
    start = threading.Barrier(16)
    admitted: list[int] = []

    def caller(n: int) -> None:
        start.wait()
        try:
            breaker.before_call()
        except CircuitOpen:
            return
        admitted.append(n)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(admitted) == 1


def test_a_probe_that_never_reports_frees_the_next_caller_after_a_while():
    clock = Clock()
    breaker = _breaker(clock, failure_threshold=1, cool_down_seconds=60)
    breaker.failed()
    clock.now += 61
    breaker.before_call()  # the probe's thread is then cut off (a Lambda timeout): no report
    clock.now += 60
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    clock.now += 61
    breaker.before_call()  # a new probe


def test_each_transition_is_handed_to_the_recorder_once_and_no_call_in_between_is():
    # Given a breaker that records its transitions
    clock, seen = Clock(), []
    breaker = CircuitBreaker("Slack", BreakerSettings(failure_threshold=2, cool_down_seconds=60), clock, seen.append)

    # When it opens on a Retry-After, defers calls, probes after the open time and closes
    breaker.failed(retry_after=120, reason="Slack post answered 429")
    for _ in range(5):
        with pytest.raises(CircuitOpen):
            breaker.before_call()
    clock.now += 120
    breaker.before_call()  # the probe
    breaker.succeeded()
    breaker.succeeded()  # closed already: no transition
    breaker.failed()  # one failure below the threshold: none either

    # Then three transitions, each with its time; the opening with until, reason and Retry-After
    assert [(t.state, t.at) for t in seen] == [
        (BreakerState.OPEN, 1_000.0),
        (BreakerState.HALF_OPEN, 1_120.0),
        (BreakerState.CLOSED, 1_120.0),
    ]
    opened = seen[0]
    assert opened.open_until == 1_120.0 and opened.retry_after == 120
    assert opened.reason == "open for 120 s: Slack post answered 429"
    assert seen[2].open_until is None


def test_a_recorder_that_raises_never_reaches_the_caller():
    # Given a recorder that fails (its table is unreachable)
    def broken(transition: object) -> None:
        raise ConnectionError("no route to DynamoDB")

    clock = Clock()
    breaker = CircuitBreaker("Slack", BreakerSettings(failure_threshold=1), clock, broken)

    # When the breaker opens, probes and closes
    breaker.failed()
    clock.now += 61
    breaker.before_call()
    breaker.succeeded()

    # Then nothing was raised and the breaker kept its own state
    assert breaker.state == BreakerState.CLOSED


def test_the_admin_reads_the_breaker_of_every_integration_the_layer_calls():
    # Given the names the layer's integrations give their breakers (JsonHttp("...") and EventBridge's)
    root = Path(__file__).resolve().parents[2] / "layers" / "common" / "mx_webhooks"
    sources = "\n".join(p.read_text() for p in root.rglob("*.py"))
    used = set(re.findall(r'JsonHttp\(\s*"([^"]+)"', sources)) | {eventbridge.BREAKER}

    # Then INTEGRATIONS (what GET /admin/integrations reads) names each of them
    assert used and used <= set(INTEGRATIONS)
