"""The built-in integrations through the real consumer: moto for AWS, fake MaintainX and Slack on real sockets."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from devtools import samples
from mx_webhooks.handlers.integrations import FOLLOW_UP, FROM_REQUEST, build, register
from mx_webhooks.integrations.http import RetryPolicy
from mx_webhooks.integrations.settings import IntegrationsConfig
from mx_webhooks.integrations.status_history import StatusHistory
from mx_webhooks.integrations.work_orders import IntentStore, marker_for
from mx_webhooks.normalize import derive_event_id
from tests.conftest import REGION, LambdaContext, receive_all, sqs_record
from tests.fakes import fixtures
from tests.fakes.fake_maintainx import API_KEY

# The fake servers and the integrations table (tests/fakes/fixtures.py), as fixtures of this module.
fake_maintainx = fixtures.fake_maintainx
fake_slack = fixtures.fake_slack
integrations_table = fixtures.integrations_table

FAST = RetryPolicy(max_attempts=4, budget_seconds=5, base_delay=0.01, max_delay=0.05, read_timeout=3)


@pytest.fixture
def wire(registry, fake_maintainx, fake_slack, integrations_table):
    """Switch integrations on (like the template parameters do) and register them on the test registry."""

    def wire(retry: RetryPolicy = FAST, **switches: Any):
        env = {
            "MAINTAINX_API_BASE_URL": fake_maintainx.url,
            "MAINTAINX_APP_URL": "https://app.example.test",
            "LOCAL_MAINTAINX_API_KEY": API_KEY,
            "LOCAL_SLACK_WEBHOOK_URL": fake_slack.webhook_url,
            "INTEGRATIONS_TABLE_NAME": integrations_table,
            **switches,
        }
        integrations = build(
            IntegrationsConfig.from_env(env),
            dynamodb_client=boto3.client("dynamodb", region_name=REGION),
            events_client=boto3.client("events", region_name=REGION),
            retry=retry,
        )
        register(registry, integrations)
        return integrations

    return wire


def _run(consumer, *payloads: dict[str, Any], receive_count: int = 1) -> dict[str, Any]:
    records = [sqs_record(json.dumps(p), receive_count=receive_count) for p in payloads]
    return consumer.process_batch({"Records": records}, LambdaContext())


def _status_change(work_order_id: int, old: str, new: str, occurred_at: str) -> dict[str, Any]:
    return {
        "eventType": "WORK_ORDER_STATUS_CHANGE",
        "occurredAt": occurred_at,
        "orgId": 4711,
        "workOrderId": work_order_id,
        "oldStatus": old,
        "newStatus": new,
        "customerId": None,
        "userId": 501,
    }


# -- Slack -------------------------------------------------------------------------------------
def test_a_new_work_order_posts_a_slack_message_with_details_fetched_from_maintainx(
    ingestor, consumer, drain_to_records, wire, fake_maintainx, fake_slack, capsys
):
    # Given the Slack integration on, and work order 90001 in MaintainX
    wire(SLACK_NOTIFY_ENABLED="true")
    fake_maintainx.add_work_order(
        90001,
        title="Pump 3 leaking <urgent>",
        priority="HIGH",
        asset={"id": 3301, "name": "Pump 3"},
        location={"id": 12, "name": "Plant North"},
    )

    # When MaintainX delivers NEW_WORK_ORDER (ids only) and the consumer runs
    assert ingestor.handle(samples.signed_api_event("workorder.created", "maintainx"))["statusCode"] == 202
    result = consumer.process_batch({"Records": drain_to_records()}, LambdaContext())

    # Then the work order was fetched with the API key, and Slack got one message with its details
    assert result == {"batchItemFailures": []}
    (get,) = fake_maintainx.calls_to("GET", "/v1/workorders/90001")
    assert get.headers["authorization"] == f"Bearer {API_KEY}"
    (message,) = fake_slack.messages
    assert message["text"] == "New work order #90001: Pump 3 leaking &lt;urgent&gt; (priority HIGH)"
    blocks = json.dumps(message["blocks"])
    for expected in ("Pump 3", "Plant North", "HIGH", "https://app.example.test/workorders/90001"):
        assert expected in blocks
    # and neither credential reached the logs
    logs = capsys.readouterr()
    assert API_KEY not in logs.out + logs.err
    assert "fakeSecretToken" not in logs.out + logs.err


def test_a_generic_work_order_uses_the_payload_details_without_calling_the_api(
    consumer, wire, fake_maintainx, fake_slack
):
    wire(SLACK_NOTIFY_ENABLED="true")

    _run(consumer, samples.generic_payload("workorder.created", work_order_id="wo_test_001"))

    (message,) = fake_slack.messages
    assert "Test Work Order" in message["text"] and "HIGH" in message["text"]
    assert "Test Asset" in json.dumps(message["blocks"]) and "Test Location" in json.dumps(message["blocks"])
    assert fake_maintainx.calls == []


def test_a_429_with_retry_after_is_retried_after_that_delay(consumer, wire, fake_maintainx, fake_slack):
    # Given MaintainX rate-limits the first call with Retry-After: 1
    wire(SLACK_NOTIFY_ENABLED="true")
    fake_maintainx.add_work_order(90001, title="Replace filter", priority="LOW")
    fake_maintainx.script(429, method="GET", path="/v1/workorders/", headers={"Retry-After": "1"})

    # When the event is processed
    result = _run(consumer, samples.maintainx_payload("workorder.created"))

    # Then the call was repeated no sooner than a second later, and the message went out
    first, second = fake_maintainx.calls_to("GET", "/v1/workorders/90001")
    assert 1.0 <= second.at - first.at < 3.0
    assert result == {"batchItemFailures": []}
    assert len(fake_slack.messages) == 1


def test_slack_5xx_is_retried_and_a_retry_after_beyond_the_budget_fails_fast_for_the_queue(
    consumer, wire, fake_maintainx, fake_slack, store
):
    wire(SLACK_NOTIFY_ENABLED="true")
    fake_maintainx.add_work_order(90001, title="A")
    fake_maintainx.add_work_order(90002, title="B")
    # a 503 then success: retried inside the call
    fake_slack.script(503, method="POST")
    assert _run(consumer, samples.maintainx_payload("workorder.created", work_order_id=90001)) == {
        "batchItemFailures": []
    }
    assert len(fake_slack.messages) == 2 and "#90001" in fake_slack.messages[-1]["text"]

    # a Retry-After longer than the budget: no waiting, the event goes back to the queue
    fake_slack.script(429, method="POST", headers={"Retry-After": "3600"})
    started = time.monotonic()
    payload = samples.maintainx_payload("workorder.created", work_order_id=90002)
    result = _run(consumer, payload)
    assert time.monotonic() - started < 2
    assert len(result["batchItemFailures"]) == 1
    item = store.get(derive_event_id(payload))
    assert item["status"] == "FAILED" and "3600" in item["lastError"]
    assert "fakeSecretToken" not in item["lastError"]  # the webhook URL is a credential


def test_an_unknown_work_order_is_a_permanent_error_and_the_event_is_parked(
    consumer, wire, fake_maintainx, fake_slack, stack
):
    wire(SLACK_NOTIFY_ENABLED="true")  # work order 90001 does not exist: the API answers 404

    result = _run(consumer, samples.maintainx_payload("workorder.created"))

    assert result == {"batchItemFailures": []}  # not retried ...
    (parked,) = receive_all(stack.dlq_url)  # ... parked at once, with the reason
    assert "404" in parked["MessageAttributes"]["parkedReason"]["StringValue"]
    assert len(fake_maintainx.calls) == 1 and fake_slack.messages == []


def test_the_api_key_comes_from_secrets_manager_and_an_empty_secret_says_what_to_fill(
    registry, consumer, fake_maintainx, fake_slack, integrations_table, store
):
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    secrets = boto3.client("secretsmanager", region_name=REGION)
    key_arn = secrets.create_secret(Name="stack/maintainx-api-key", SecretString='{"apiKey": ""}')["ARN"]
    slack_arn = secrets.create_secret(
        Name="stack/slack-webhook-url", SecretString=json.dumps({"webhookUrl": fake_slack.webhook_url})
    )["ARN"]
    config = IntegrationsConfig.from_env(
        {
            "SLACK_NOTIFY_ENABLED": "true",
            "MAINTAINX_API_BASE_URL": fake_maintainx.url,
            "MAINTAINX_API_KEY_SECRET_ARN": key_arn,
            "SLACK_WEBHOOK_SECRET_ARN": slack_arn,
            "INTEGRATION_SECRET_MAX_AGE_SECONDS": "0",
        }
    )
    register(registry, build(config, retry=FAST))
    fake_maintainx.add_work_order(90001, title="From the secret")

    # Given the secret the stack created, still empty: the event fails, saying which secret to fill
    payload = samples.maintainx_payload("workorder.created")
    assert len(_run(consumer, payload)["batchItemFailures"]) == 1
    assert "maintainx-api-key" in store.get(derive_event_id(payload))["lastError"]

    # When the user fills it, the retry succeeds with that key
    secrets.put_secret_value(SecretId=key_arn, SecretString=json.dumps({"apiKey": API_KEY}))
    assert _run(consumer, payload, receive_count=2) == {"batchItemFailures": []}
    assert fake_slack.messages[0]["text"].startswith("New work order #90001: From the secret")
    parameters.clear_caches()


# -- status history ----------------------------------------------------------------------------
def test_status_changes_make_one_history_item_each_and_an_older_one_is_skipped_as_stale(
    consumer, wire, integrations_table, store
):
    wire(STATUS_HISTORY_ENABLED="true")
    history = StatusHistory(boto3.client("dynamodb", region_name=REGION), integrations_table)
    opened = _status_change(7, "OPEN", "IN_PROGRESS", "2026-09-14T13:00:00.000Z")
    held = _status_change(7, "IN_PROGRESS", "ON_HOLD", "2026-09-14T13:05:00.000Z")
    done = _status_change(7, "ON_HOLD", "DONE", "2026-09-14T13:10:00.000Z")

    # Given two transitions in order, then the newest
    _run(consumer, opened)
    _run(consumer, done)
    # When the middle one arrives late (older than the last recorded), and a duplicate of the first
    result = _run(consumer, held)
    _run(consumer, {**opened, "userId": 501})  # same body: same event id, already processed

    # Then the late one changed nothing: the handler (latest_only) was not run with it, its
    # event says SKIPPED (stale); each transition is recorded once
    assert result == {"batchItemFailures": []}
    assert [(t["fromStatus"], t["toStatus"]) for t in history.transitions(7)] == [
        ("OPEN", "IN_PROGRESS"),
        ("ON_HOLD", "DONE"),
    ]
    latest = history.latest(7)
    assert latest["status"] == "DONE" and latest["transitions"] == 2
    late = store.get(derive_event_id(held))
    assert late["status"] == "COMPLETED"
    assert late["handlers"]["integrations.status_history"]["status"] == "SKIPPED"
    assert history.stale(7) == []


def test_a_redelivered_transition_is_not_recorded_twice_even_when_its_handler_reruns(integrations_table):
    history = StatusHistory(boto3.client("dynamodb", region_name=REGION), integrations_table)
    from datetime import UTC, datetime

    at = datetime(2026, 9, 14, 13, tzinfo=UTC)
    kwargs = {"work_order_id": 8, "event_id": "evt_1", "occurred_at": at, "old_status": "OPEN", "new_status": "DONE"}

    assert history.record(**kwargs) == "recorded"
    assert history.record(**kwargs) == "duplicate"
    assert len(history.transitions(8)) == 1 and history.latest(8)["transitions"] == 1


# -- work orders, exactly once -----------------------------------------------------------------
def test_a_completed_work_order_that_asks_for_follow_up_gets_exactly_one(consumer, wire, fake_maintainx):
    wire(FOLLOW_UP_ENABLED="true")
    fake_maintainx.add_work_order(
        90001, title="Inspect boiler", priority="MEDIUM", requiresFollowUp=True, assetId=3301, locationId=12
    )
    fake_maintainx.add_work_order(90002, title="Oil change", priority="HIGH")  # does not ask

    _run(consumer, samples.maintainx_payload("workorder.completed", work_order_id=90001))
    _run(consumer, samples.maintainx_payload("workorder.completed", work_order_id=90002))

    (follow_up,) = fake_maintainx.created
    assert follow_up["title"] == "Follow-up: Inspect boiler"
    assert follow_up["priority"] == "MEDIUM" and follow_up["assetId"] == 3301 and follow_up["locationId"] == 12
    assert "#90001" in follow_up["description"] and "Ref: mxwh-" in follow_up["description"]


def test_the_follow_up_rule_can_ask_for_it_by_priority(consumer, wire, fake_maintainx):
    wire(FOLLOW_UP_ENABLED="true", FOLLOW_UP_RULE="priority:HIGH")
    fake_maintainx.add_work_order(90001, title="Low one", priority="LOW")
    fake_maintainx.add_work_order(90002, title="High one", priority="HIGH")

    _run(consumer, samples.maintainx_payload("workorder.completed", work_order_id=90001))
    _run(consumer, samples.maintainx_payload("workorder.completed", work_order_id=90002))

    assert [wo["title"] for wo in fake_maintainx.created] == ["Follow-up: High one"]


def test_a_crash_after_the_create_call_then_a_retry_leaves_exactly_one_work_order(
    consumer, wire, fake_maintainx, integrations_table, monkeypatch, store
):
    # Given the work order was created in MaintainX, but the process died before recording it
    wire(REQUEST_TO_WORK_ORDER_ENABLED="true")
    fake_maintainx.add_work_request(777, title="Door sticks", description="Back door", priority="LOW")
    original = IntentStore.complete

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("simulated crash after the create call")

    monkeypatch.setattr(IntentStore, "complete", crash)
    payload = samples.maintainx_payload("request.created")
    assert len(_run(consumer, payload)["batchItemFailures"]) == 1
    assert len(fake_maintainx.created) == 1

    # When the queue retries the event
    monkeypatch.setattr(IntentStore, "complete", original)
    assert _run(consumer, payload, receive_count=2) == {"batchItemFailures": []}

    # Then the retry found the first work order by its marker instead of creating a second
    (work_order,) = fake_maintainx.created
    assert work_order["title"] == "Door sticks" and "work request #777" in work_order["description"]
    assert len(fake_maintainx.calls_to("POST", "/v1/workorders")) == 1
    intent = IntentStore(boto3.client("dynamodb", region_name=REGION), integrations_table).get(
        derive_event_id(payload), FROM_REQUEST
    )
    assert intent["status"] == "DONE" and intent["workOrderId"] == str(work_order["id"])
    assert intent["recoveredByLookup"] is True
    assert store.get(derive_event_id(payload))["status"] == "COMPLETED"


def test_a_create_whose_answer_was_lost_is_not_sent_again(consumer, wire, fake_maintainx):
    # Given MaintainX creates the work order but the connection drops before it answers
    wire(FOLLOW_UP_ENABLED="true", FOLLOW_UP_RULE="always")
    fake_maintainx.add_work_order(90001, title="Belt")
    fake_maintainx.script(method="POST", path="/v1/workorders", action="commit_then_drop")
    payload = samples.maintainx_payload("workorder.completed")

    # When the first attempt fails and the queue retries
    first = _run(consumer, payload)
    second = _run(consumer, payload, receive_count=2)

    # Then the POST was sent once (never blindly resent), and one work order exists
    assert len(first["batchItemFailures"]) == 1 and second == {"batchItemFailures": []}
    assert len(fake_maintainx.calls_to("POST", "/v1/workorders")) == 1
    assert [wo["title"] for wo in fake_maintainx.created] == ["Follow-up: Belt"]


def test_a_process_killed_between_create_and_record_does_not_create_twice(
    wire, fake_maintainx, integrations_table, monkeypatch
):
    # Given the process dies (no except block runs) right after MaintainX answered the create
    integrations = wire(REQUEST_TO_WORK_ORDER_ENABLED="true")
    creator = integrations.creator
    from mx_webhooks.integrations.maintainx_api import NewWorkOrder

    def killed(*args: Any, **kwargs: Any) -> None:
        raise SystemExit("killed")

    monkeypatch.setattr(IntentStore, "complete", killed)
    with pytest.raises(SystemExit):
        creator.create_once(event_id="evt_kill", purpose=FROM_REQUEST, new=NewWorkOrder(title="X"))
    monkeypatch.undo()

    # When a new container retries, and then once more after success
    again = creator.create_once(event_id="evt_kill", purpose=FROM_REQUEST, new=NewWorkOrder(title="X"))
    third = creator.create_once(event_id="evt_kill", purpose=FROM_REQUEST, new=NewWorkOrder(title="X"))

    # Then there is one work order, with the deterministic marker, and both calls name it
    (work_order,) = fake_maintainx.created
    assert marker_for("evt_kill", FROM_REQUEST) in work_order["description"]
    assert again.work_order_id == third.work_order_id == work_order["id"]
    assert not again.created and not third.created
    assert len(fake_maintainx.calls_to("GET", "/v1/workorders")) == 1  # the lookup, only after the crash


def test_work_orders_for_different_purposes_of_one_event_are_distinct(wire, fake_maintainx):
    creator = wire(REQUEST_TO_WORK_ORDER_ENABLED="true").creator
    from mx_webhooks.integrations.maintainx_api import NewWorkOrder

    a = creator.create_once(event_id="evt_1", purpose=FROM_REQUEST, new=NewWorkOrder(title="A"))
    b = creator.create_once(event_id="evt_1", purpose=FOLLOW_UP, new=NewWorkOrder(title="B"))

    assert a.work_order_id != b.work_order_id and len(fake_maintainx.created) == 2


def test_a_generic_work_request_becomes_a_work_order_from_its_payload(consumer, wire, fake_maintainx):
    wire(REQUEST_TO_WORK_ORDER_ENABLED="true")

    _run(consumer, samples.generic_payload("request.created"))

    (work_order,) = fake_maintainx.created
    assert work_order["title"] == "Emergency Repair Request"
    assert work_order["description"].startswith("Machine making strange noise")
    assert fake_maintainx.calls_to("GET") == []


# -- EventBridge -------------------------------------------------------------------------------
def test_every_event_is_forwarded_to_the_event_bus(consumer, wire, stack):
    # Given a bus with a rule for source maintainx that targets a queue
    events = boto3.client("events", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    events.create_event_bus(Name="maintenance")
    inbox = sqs.create_queue(QueueName="bus-inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all-maintainx", EventBusName="maintenance", EventPattern='{"source": ["maintainx"]}')
    events.put_targets(Rule="all-maintainx", EventBusName="maintenance", Targets=[{"Id": "inbox", "Arn": inbox_arn}])
    wire(EVENT_BUS_NAME="maintenance")

    # When a completed work order and an unknown event are processed
    completed = samples.maintainx_payload("workorder.completed", work_order_id=4242)
    _run(consumer, completed, {"eventType": "METER_READING", "occurredAt": "2026-09-14T13:00:00Z", "orgId": 1})

    # Then both reached the bus with source maintainx, their type as detail-type, and the event as detail
    delivered = {json.loads(m["Body"])["detail-type"]: json.loads(m["Body"]) for m in receive_all(inbox)}
    assert set(delivered) == {"workorder.updated", "unknown"}
    envelope = delivered["workorder.updated"]
    assert envelope["source"] == "maintainx"
    assert envelope["detail"]["event_id"] == derive_event_id(completed)
    assert envelope["detail"]["types"] == ["workorder.updated", "workorder.completed"]
    assert envelope["detail"]["work_order_id"] == 4242 and envelope["detail"]["new_status"] == "DONE"
    assert envelope["detail"]["payload"] == completed


# -- switches ----------------------------------------------------------------------------------
def test_only_the_switched_on_integrations_are_registered(registry, integrations_table):
    config = IntegrationsConfig.from_env({"STATUS_HISTORY_ENABLED": "true", "INTEGRATIONS_TABLE_NAME": "t"})
    assert register(registry, build(config, dynamodb_client=object())) == ["integrations.status_history"]
    assert register(type(registry)(), build(IntegrationsConfig.from_env({}))) == []
    with pytest.raises(ValueError, match="INTEGRATIONS_TABLE_NAME"):
        IntegrationsConfig.from_env({"FOLLOW_UP_ENABLED": "true"})
    with pytest.raises(ValueError, match="FOLLOW_UP_RULE"):
        IntegrationsConfig.from_env({"FOLLOW_UP_RULE": "sometimes"})


def test_your_own_handler_can_reuse_the_maintainx_client(monkeypatch, fake_maintainx):
    # Given no built-in integration on, but the API configured (as the README's example assumes)
    import mx_webhooks.handlers.integrations as module

    config = IntegrationsConfig.from_env(
        {"MAINTAINX_API_BASE_URL": fake_maintainx.url, "LOCAL_MAINTAINX_API_KEY": API_KEY}
    )
    monkeypatch.setattr(module, "_STATE", {})
    module.use(build(config))
    module.maintainx_api.cache_clear()
    fake_maintainx.add_work_order(5, title="Chiller", priority="HIGH", location=12)

    # When a handler of one's own asks for a work order
    work_order = module.maintainx_api().get_work_order(5)

    # Then it gets it, read into the model
    assert (work_order.title, work_order.priority, work_order.location_name) == ("Chiller", "HIGH", "Location #12")
    module.maintainx_api.cache_clear()
