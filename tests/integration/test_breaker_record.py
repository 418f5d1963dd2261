"""Breaker transitions recorded for operators: the consumer writes them, the admin API and CLI read them.

Real parts: the consumer and its breaker, the HTTP client posting to a fake Slack on a real
socket, moto's DynamoDB, the admin logic and CLI. Simulated: the breaker's clock (a
virtual one, started at the real time), so a cool-down passes without waiting.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

import boto3
import pytest

from devtools import admin_cli, samples
from mx_webhooks import breaker
from mx_webhooks.admin import Admin, AdminConfig
from mx_webhooks.integrations.http import JsonHttp, RetryPolicy
from mx_webhooks.store import EventStore, iso
from tests.conftest import REGION, LambdaContext, sqs_record
from tests.fakes.fake_slack import HOOK_PATH, FakeSlack


class VirtualClock:
    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def admin(stack) -> Admin:
    config = AdminConfig(TABLE_NAME=stack.table_name, QUEUE_URL=stack.queue_url, DLQ_URL=stack.dlq_url)
    return Admin(config, boto3.client("dynamodb", region_name=REGION), boto3.client("sqs", region_name=REGION))


@pytest.fixture
def slack(aws: None) -> Any:
    with FakeSlack() as server:
        yield server


def _slack_handler(registry, slack: FakeSlack) -> None:
    http = JsonHttp("Slack", RetryPolicy(max_attempts=1, budget_seconds=5))

    @registry.on("workorder.created", name="notify")
    def notify(event: Any) -> None:
        http.request("POST", slack.webhook_url, label="post", json_body={"text": event.event_id})


def _deliver(consumer, event_id: str) -> dict[str, Any]:
    """One delivery of a new event; the backoff the consumer sets on its message is not kept."""
    consumer.queues.back_off = lambda receipt, delay: None
    body = samples.encode(samples.generic_payload("workorder.created", event_id=event_id, work_order_id=event_id))
    return consumer.process_batch({"Records": [sqs_record(body.decode(), event_id=event_id)]}, LambdaContext())


def _by_name(admin: Admin) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in admin.integrations()["items"]}


def test_slack_down_shows_open_until_then_expired_then_closed_one_write_per_transition(
    consumer, registry, admin, slack, monkeypatch
):
    # Given the consumer's breakers on a virtual clock, recording through the consumer, and a
    # Slack handler; the admin reads with the same clock
    clock = VirtualClock()
    admin.clock = clock
    breaker.configure(breaker.BreakerSettings(cool_down_seconds=60), clock=clock, recorder=consumer.record_breaker)
    _slack_handler(registry, slack)
    writes: list[tuple[str, str]] = []
    record = consumer.store.record_breaker
    monkeypatch.setattr(
        consumer.store,
        "record_breaker",
        lambda name, state, **kw: writes.append((name, state)) or record(name, state, **kw),
    )
    assert {i["name"]: (i["state"], i["since"]) for i in admin.integrations()["items"]} == {
        "Slack": ("CLOSED", None),
        "MaintainX": ("CLOSED", None),
        "EventBridge": ("CLOSED", None),
    }

    # When Slack answers 503 with Retry-After: 120, then a second event comes while it is open
    slack.script(503, method="POST", path=HOOK_PATH, headers={"Retry-After": "120"}, body=b"down")
    assert _deliver(consumer, "evt_br_1")["batchItemFailures"]
    opened_at = clock.now
    clock.now += 10
    assert _deliver(consumer, "evt_br_2")["batchItemFailures"]  # deferred: Slack not called

    # Then the admin API shows Slack OPEN since then, until 120 s later, with the reason
    shown = _by_name(admin)
    assert shown["Slack"]["state"] == "OPEN" and not shown["Slack"]["expired"]
    assert shown["Slack"]["since"] == iso(opened_at) and shown["Slack"]["until"] == iso(opened_at + 120)
    assert shown["Slack"]["retryAfterSeconds"] == 120 and "503" in shown["Slack"]["reason"]
    assert shown["MaintainX"]["state"] == "CLOSED"
    assert len(slack.calls) == 1 and writes == [("Slack", "OPEN")]  # one write for the transition, none per call

    # When the open time has passed with no call yet: still OPEN, shown as expired
    clock.now = opened_at + 121
    assert _by_name(admin)["Slack"]["expired"] is True

    # When Slack is back and the next event probes it
    assert not _deliver(consumer, "evt_br_3")["batchItemFailures"]

    # Then CLOSED since the probe, no "until"; a write per transition (probing, closed)
    shown = _by_name(admin)
    assert shown["Slack"]["state"] == "CLOSED" and shown["Slack"]["until"] is None
    assert shown["Slack"]["since"] == iso(clock.now) and not shown["Slack"]["expired"]
    assert writes == [("Slack", "OPEN"), ("Slack", "HALF_OPEN"), ("Slack", "CLOSED")]
    # and the records stay out of every listing and count: only the three events
    assert sorted(i["eventId"] for i in admin.list_events(limit=50)["items"]) == ["evt_br_1", "evt_br_2", "evt_br_3"]
    assert admin.stats()["total"] == 3


def test_a_transition_recorded_twice_is_the_same_and_an_older_one_never_overwrites_a_newer(store, admin):
    now = time.time()
    # Given an OPEN recorded at t (a lost reply: the same write again)
    first = store.record_breaker("Slack", "OPEN", at=now, open_until=now + 60, reason="Slack post answered 503")
    before = store.get(EventStore.breaker_key("Slack"))
    again = store.record_breaker("Slack", "OPEN", at=now, open_until=now + 60, reason="Slack post answered 503")
    # When another container's CLOSED of one second earlier arrives late
    late = store.record_breaker("Slack", "CLOSED", at=now - 1, reason="the downstream answered")

    # Then the repeat rewrote the same item, the late one was refused, OPEN stands
    assert (first, again, late) == (True, True, False)
    assert store.get(EventStore.breaker_key("Slack")) == before
    assert _by_name(admin)["Slack"]["state"] == "OPEN"


def test_a_failed_record_write_is_logged_and_the_event_is_processed_as_usual(
    consumer, registry, admin, slack, monkeypatch, caplog
):
    # Given a record write that fails (its table is missing), and Slack down
    broken = EventStore(boto3.client("dynamodb", region_name=REGION), "no-such-table")
    monkeypatch.setattr(consumer.store, "record_breaker", broken.record_breaker)
    breaker.configure(breaker.BreakerSettings(failure_threshold=1), recorder=consumer.record_breaker)
    _slack_handler(registry, slack)
    slack.script(503, method="POST", path=HOOK_PATH, body=b"down")

    # When an event's Slack call fails and opens the breaker
    result = _deliver(consumer, "evt_br_x")

    # Then the event is recorded and back on its backoff as usual, the breaker is open, nothing recorded
    assert result["batchItemFailures"]
    assert consumer.store.get("evt_br_x")["status"] == "FAILED"
    assert breaker.breaker_for("Slack").state == breaker.BreakerState.OPEN
    assert _by_name(admin)["Slack"]["since"] is None
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("breaker")] == [
        "breaker transition not recorded"
    ]


def test_the_cli_prints_each_integration_s_breaker(stack, store):
    now = time.time()
    store.record_breaker(
        "MaintainX", "OPEN", at=now, open_until=now + 900, reason="MaintainX answered 429", retry_after=900
    )
    out = io.StringIO()
    where = ["--table", stack.table_name, "--queue-url", stack.queue_url, "--dlq-url", stack.dlq_url]

    code = admin_cli.main([*where, "integrations"], out=out)

    rows = {line.split()[0]: line for line in out.getvalue().splitlines()[2:]}
    assert code == 0 and set(rows) == {"Slack", "MaintainX", "EventBridge"}
    assert "OPEN" in rows["MaintainX"] and iso(now + 900) in rows["MaintainX"] and "429" in rows["MaintainX"]
    assert "CLOSED" in rows["Slack"] and "never opened" in rows["Slack"]
    out = io.StringIO()
    assert admin_cli.main([*where, "--json", "integrations"], out=out) == 0
    assert json.loads(out.getvalue())["items"][1]["retryAfterSeconds"] == 900
