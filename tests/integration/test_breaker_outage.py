"""Slack down for two hours: the circuit breaker keeps the consumer off it, and nothing parks.

Real parts: the consumer with its default retry schedule (base 30 s, cap 900 s, jitter,
125 attempts) and breaker (3 failures in a row, cool-down 60 s doubling to an hour), the
built-in Slack handler and its HTTP client (default retry policy), a fake Slack on a real
socket, moto's DynamoDB. Simulated: time. A virtual clock drives the breaker and the
fake Slack's outage; a small queue in the test hands the consumer each event when the
visibility delay the consumer set on it has passed, with its receive count, as SQS would.
"""

from __future__ import annotations

import email.utils
import itertools
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from devtools import samples
from mx_webhooks import breaker
from mx_webhooks.breaker import BreakerState
from mx_webhooks.handlers.integrations import build, register
from mx_webhooks.integrations.settings import IntegrationsConfig
from tests.conftest import REGION, LambdaContext, receive_all, sqs_record
from tests.fakes import fixtures
from tests.fakes.fake_slack import FakeSlack
from tests.fakes.server import Answer, Call

integrations_table = fixtures.integrations_table
OUTAGE_SECONDS = 2 * 3600


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now


class SlackWithOutage(FakeSlack):
    """Answers 503 until the virtual clock reaches ``back_at``; logs each call at virtual time."""

    def __init__(self, clock: VirtualClock, back_at: float) -> None:
        super().__init__()
        self.clock = clock
        self.back_at = back_at
        self.at: list[tuple[float, int, str]] = []  # (virtual time, status, message text) per call

    def route(self, call: Call) -> Answer:
        down = self.clock.now < self.back_at
        answer = Answer(503, b"service_unavailable") if down else super().route(call)
        with self._lock:
            self.at.append((self.clock.now, answer.status, (call.json() or {}).get("text", "")))
        return answer


@dataclass
class Queued:
    body: str
    event_id: str
    visible_at: float
    receives: int = 0


def _register_slack(registry: Any, webhook_url: str, integrations_table: str) -> None:
    """The built-in integrations with Slack on ``webhook_url`` (generic payloads carry the details)."""
    env = {
        "SLACK_NOTIFY_ENABLED": "true",
        "LOCAL_SLACK_WEBHOOK_URL": webhook_url,
        "LOCAL_MAINTAINX_API_KEY": "unused: generic payloads carry the details",
        "INTEGRATIONS_TABLE_NAME": integrations_table,
    }
    register(
        registry, build(IntegrationsConfig.from_env(env), dynamodb_client=boto3.client("dynamodb", region_name=REGION))
    )


@pytest.fixture
def slack_down(aws: None) -> Any:
    clock = VirtualClock()
    with SlackWithOutage(clock, OUTAGE_SECONDS) as server:
        yield clock, server


def test_slack_down_for_two_hours_opens_the_breaker_parks_nothing_and_posts_each_message_once(
    consumer, registry, integrations_table, slack_down, monkeypatch
):
    clock, slack = slack_down
    # Given the deployed retry schedule and breaker, and the Slack integration switched on
    consumer.config = consumer.config.model_copy(
        update={"retry_attempts": 125, "max_receive_count": 140, "backoff_jitter": 0.2}
    )
    recorded: list[breaker.Transition] = []  # what the consumer records for operators, one write each

    def record(transition: breaker.Transition) -> None:
        recorded.append(transition)
        consumer.record_breaker(transition)

    breaker.configure(consumer.config.breaker_settings, clock=clock.time, recorder=record)
    _register_slack(registry, slack.webhook_url, integrations_table)
    delays: dict[str, int] = {}
    monkeypatch.setattr(consumer.queues, "back_off", lambda receipt, delay: delays.__setitem__(receipt, delay))

    # When six work orders are created over the outage's first 100 minutes (Slack answers 503
    # from t=0 to t=2 h) and the queue delivers each whenever the consumer's backoff says
    queue = [
        Queued(
            samples.encode(
                samples.generic_payload("workorder.created", event_id=f"evt_out_{n}", work_order_id=f"wo_{n}")
            ).decode(),
            f"evt_out_{n}",
            visible_at=n * 1200.0,
        )
        for n in range(6)
    ]
    states_seen: list[BreakerState] = []
    waits: list[tuple[str, str | None, int]] = []  # each retried event's record: status, waitingFor, deferrals
    for _ in itertools.count():
        waiting = [q for q in queue if q.visible_at != float("inf")]
        if not waiting:
            break
        clock.now = min(q.visible_at for q in waiting)
        assert clock.now < 6 * 3600, "still not delivered six hours in"
        due = [q for q in waiting if q.visible_at <= clock.now]
        records = {}
        for q in due:
            q.receives += 1
            records[q.event_id] = sqs_record(q.body, event_id=q.event_id, receive_count=q.receives)
        result = consumer.process_batch({"Records": list(records.values())}, LambdaContext())
        failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
        for q in due:
            record = records[q.event_id]
            if record["messageId"] in failed:
                q.visible_at = clock.now + delays.pop(record["receiptHandle"])
                item = consumer.store.get(q.event_id)
                waits.append((item["status"], item.get("waitingFor"), len(item.get("deferredClaims") or ())))
            else:
                q.visible_at = float("inf")
        states_seen.append(breaker.breaker_for("Slack").state)

    # Then nothing was parked: every event completed, its message posted exactly once
    items = {q.event_id: consumer.store.get(q.event_id) for q in queue}
    assert {i["status"] for i in items.values()} == {"COMPLETED"}
    assert not any(i.get("parked") for i in items.values())
    accepted = [(t, text) for t, status, text in slack.at if status == 200]
    posted = Counter(text.split(":")[0] for _, text in accepted)
    assert len(accepted) == 6 and all(t >= OUTAGE_SECONDS for t, _ in accepted)
    assert sorted(posted) == sorted(f"New work order #wo_{n}" for n in range(6)) and set(posted.values()) == {1}
    # ...the breaker opened during the outage and closed after it
    assert BreakerState.OPEN in states_seen and states_seen[-1] == BreakerState.CLOSED
    # ...and Slack was called fewer than 10 times while it was down
    during = [t for t, _, _ in slack.at if t < OUTAGE_SECONDS]
    print(  # the figures for docs/reliability.md
        f"calls to Slack while down: {len(during)} at t={[round(t) for t in during]}; "
        f"deliveries: {sum(q.receives for q in queue)}; "
        f"attempts recorded: {[int(i['attempts']) for i in items.values()]}; "
        f"deferrals: {[len(i.get('deferredClaims') or ()) for i in items.values()]}"
    )
    assert len(during) < 10
    # ...the operators' record took one write per transition (a handful in 2 h), and ends CLOSED
    record_item = consumer.store.get("breaker~Slack")
    print(f"breaker record writes over the outage: {len(recorded)} ({[t.state.name for t in recorded]})")
    assert len(recorded) <= 2 * len(during) + 1
    assert record_item["breakerState"] == "CLOSED" and recorded[-1].state == BreakerState.CLOSED
    # ...the events it held back were listed WAITING for the circuit, those receives not counted
    # as attempts; the others (that called Slack and failed) FAILED
    assert ("WAITING", "Slack (circuit open)") in {(status, why) for status, why, _ in waits}
    assert {status for status, _, _ in waits} == {"WAITING", "FAILED"}
    assert max(deferrals for _, _, deferrals in waits) >= 3


fake_slack = fixtures.fake_slack


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_a_retry_after_from_slack_sets_how_long_the_next_events_are_deferred(
    consumer, registry, integrations_table, fake_slack, monkeypatch, form
):
    # Given Slack answers 503 with Retry-After: ten minutes, in either form RFC 9110 allows
    when = datetime.now(UTC) + timedelta(seconds=600)
    header = "600" if form == "seconds" else email.utils.format_datetime(when, usegmt=True)
    fake_slack.script(503, method="POST", headers={"Retry-After": header})
    _register_slack(registry, fake_slack.webhook_url, integrations_table)
    delays: dict[str, int] = {}
    monkeypatch.setattr(consumer.queues, "back_off", lambda receipt, delay: delays.__setitem__(receipt, delay))

    # When one new work order meets that answer, and another one comes a moment later
    def deliver(n: int) -> dict[str, Any]:
        body = samples.encode(
            samples.generic_payload("workorder.created", event_id=f"evt_ra_{n}", work_order_id=f"wo_ra_{n}")
        )
        record = sqs_record(body.decode(), event_id=f"evt_ra_{n}")
        consumer.process_batch({"Records": [record]}, LambdaContext())
        return {"delay": delays[record["receiptHandle"]], **consumer.store.get(f"evt_ra_{n}")}

    first, second = deliver(1), deliver(2)

    # Then Slack was called once: the first event FAILED (it called), back on its backoff; the
    # second was not called at all, recorded WAITING for the circuit, and deferred for the
    # ten minutes Slack asked for
    assert len(fake_slack.calls) == 1
    assert first["status"] == "FAILED" and first["delay"] == 30
    assert second["status"] == "WAITING" and second["waitingFor"] == "Slack (circuit open)"
    assert 590 <= second["delay"] <= 601 and "circuit open" in second["lastError"]
    assert second["handlers"]["integrations.slack_new_work_order"]["status"] == "FAILED"


def test_an_event_deferred_for_days_is_parked_before_the_queue_would_drop_it(consumer, registry, store, stack):
    # Given an integration whose circuit is open, and a message of it sent 73 hours ago (the
    # queue keeps messages 4 days; deferred tries do not count towards RetryAttempts)
    slack = breaker.breaker_for("Slack")
    slack.failed(retry_after=3600)
    registry.on("workorder.created", name="notify")(lambda event: slack.before_call())
    body = samples.encode(samples.generic_payload("workorder.created", event_id="evt_days")).decode()
    fresh, old = sqs_record(body, event_id="evt_days"), sqs_record(body, event_id="evt_days", receive_count=2)
    old["attributes"]["SentTimestamp"] = str(int((time.time() - 73 * 3600) * 1000))

    # When it is deferred once while young, then comes back that old
    assert len(consumer.process_batch({"Records": [fresh]}, LambdaContext())["batchItemFailures"]) == 1
    young = store.get("evt_days")
    result = consumer.process_batch({"Records": [old]}, LambdaContext())

    # Then the young one waited (WAITING, not counted), the old one is parked: DLQ, record, reason
    assert young["status"] == "WAITING" and len(young["deferredClaims"]) == 1
    assert result == {"batchItemFailures": []}
    item = store.get("evt_days")
    assert item["status"] == "PARKED" and "circuit open" in item["lastError"]
    assert item["handlers"]["notify"]["status"] == "PARKED"
    assert len(receive_all(stack.dlq_url)) == 1
