"""Ingest -> queue -> consumer against moto: the pipeline's promises."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import boto3

from devtools import samples
from mx_webhooks.registry import PermanentError
from tests.conftest import REGION, LambdaContext, receive_all, sqs_record
from tests.reliability.conftest import message_to_record


def _deliver(
    ingestor: Any, event_type: str = "workorder.created", fmt: str = "maintainx", **kwargs: Any
) -> dict[str, Any]:
    response = ingestor.handle(samples.signed_api_event(event_type, fmt, **kwargs))
    assert response["statusCode"] == 202, response
    return json.loads(response["body"])


def test_ingest_queues_the_raw_body_with_id_and_type(ingestor, stack):
    # Given a genuine real-format delivery
    body = samples.encode(samples.maintainx_payload("workorder.updated"))
    event = samples.api_event(body, samples.signed_headers(body, samples.LOCAL_SECRET, "maintainx"))

    # When ingest handles it
    response = ingestor.handle(event)

    # Then it answers 202 and the queue holds the exact bytes with the derived attributes
    assert response["statusCode"] == 202
    answer = json.loads(response["body"])
    assert answer["received"] is True and answer["eventId"].startswith("mx_")
    (message,) = receive_all(stack.queue_url)
    assert message["Body"].encode() == body
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes["eventId"] == answer["eventId"]
    assert attributes["eventType"] == "workorder.updated"
    assert attributes["source"] == "default"
    assert set(attributes) == {"eventId", "eventType", "source"}


def test_bad_signature_is_401_and_nothing_is_queued(ingestor, stack):
    event = samples.signed_api_event("workorder.created", "maintainx", secret="wrong-secret")

    response = ingestor.handle(event)

    assert response["statusCode"] == 401
    assert json.loads(response["body"]) == {"error": "unauthorized"}
    assert receive_all(stack.queue_url) == []


def test_a_named_source_uses_its_own_secrets_including_the_older_one(ingestor, stack):
    # Given the "requests" source with a new and an old secret
    old = samples.signed_api_event("request.created", "maintainx", secret="requests-old", source="requests")
    default_secret = samples.signed_api_event("request.created", "maintainx", source="requests")

    # Then the old secret still verifies, and the default source's secret does not
    assert ingestor.handle(old)["statusCode"] == 202
    assert ingestor.handle(default_secret)["statusCode"] == 401
    (message,) = receive_all(stack.queue_url)
    assert message["MessageAttributes"]["source"]["StringValue"] == "requests"


def test_queue_unavailable_is_503_so_maintainx_retries(ingestor, stack):
    boto3.client("sqs", region_name=REGION).delete_queue(QueueUrl=stack.queue_url)

    response = ingestor.handle(samples.signed_api_event("workorder.created", "maintainx"))

    assert response["statusCode"] == 503
    assert response["headers"]["retry-after"]


def test_a_batch_with_one_failing_record_reports_only_that_record(
    ingestor, consumer, registry, drain_to_records, store
):
    # Given a handler that fails for one work order only
    @registry.on("workorder.created")
    def notify(event):
        if event.work_order_id == 2:
            raise RuntimeError("downstream said no")

    for wo in (1, 2, 3):
        _deliver(ingestor, work_order_id=wo)
    records = drain_to_records()

    # When the consumer gets the batch
    result = consumer.process_batch({"Records": records}, LambdaContext())

    # Then only work order 2's record is reported, and the table says why
    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    bad = next(r for r in records if json.loads(r["body"])["workOrderId"] == 2)
    assert failed == {bad["messageId"]}
    item = store.get(bad["messageAttributes"]["eventId"]["stringValue"])
    assert item["status"] == "FAILED"
    assert "downstream said no" in item["lastError"]
    assert item["handlers"]["test_pipeline.notify"]["status"] == "FAILED"
    for record in records:
        if record is not bad:
            assert store.get(record["messageAttributes"]["eventId"]["stringValue"])["status"] == "COMPLETED"


def test_the_same_delivery_twice_with_new_signature_timestamps_is_processed_once(
    ingestor, consumer, registry, drain_to_records, calls
):
    # Given a handler that counts its runs
    registry.on("workorder.created")(lambda event: calls.append(event.event_id))
    body = samples.encode(samples.maintainx_payload("workorder.created"))
    now = int(time.time())

    # When MaintainX delivers the same body twice, signed at different times
    for ts in (now - 30, now):
        response = ingestor.handle(
            samples.api_event(body, samples.signed_headers(body, samples.LOCAL_SECRET, "maintainx", ts))
        )
        assert response["statusCode"] == 202
    records = drain_to_records()
    assert len(records) == 2
    result = consumer.process_batch({"Records": records}, LambdaContext())

    # Then the handler ran once and both messages are acknowledged
    assert result == {"batchItemFailures": []}
    assert len(calls) == 1


def test_two_threads_claiming_the_same_event_run_the_handler_once_and_the_busy_copy_is_kept(
    consumer, registry, calls, atomic_dynamodb
):
    # Given a slow handler and the same event in two messages, consumed by two invocations at once
    registry.on("workorder.created")(lambda event: (time.sleep(0.2), calls.append(event.event_id)))
    body = samples.encode(samples.generic_payload("workorder.created", event_id="evt_race"))
    barrier = threading.Barrier(2)
    results: list[dict[str, Any]] = []

    def invoke() -> None:
        barrier.wait()
        results.append(consumer.process_batch({"Records": [sqs_record(body, event_id="evt_race")]}, LambdaContext()))

    threads = [threading.Thread(target=invoke) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Then the handler ran once; the copy that found the event busy went back to the queue
    # (not deleted: its holder had not finished), and once retried it is a duplicate
    assert calls == ["evt_race"]
    assert sorted(len(r["batchItemFailures"]) for r in results) == [0, 1]
    retried = consumer.process_batch({"Records": [sqs_record(body, event_id="evt_race")]}, LambdaContext())
    assert retried == {"batchItemFailures": []} and calls == ["evt_race"]


def test_an_expired_lease_is_taken_over_and_finished_handlers_are_not_rerun(consumer, registry, store, calls):
    # Given an invocation that finished "first" and then died inside "second"
    @registry.on("workorder.created")
    def first(event):
        calls.append("first")

    @registry.on("workorder.created")
    def second(event):
        calls.append("second")

    body = samples.encode(samples.generic_payload("workorder.created", event_id="evt_crash"))
    meta = {"eventId": "evt_crash", "eventType": "workorder.created", "payload": body.decode()}
    dead = store.claim(meta, now=time.time() - 120)  # lease (60 s) long expired
    store.checkpoint("evt_crash", dead.token, "test_pipeline.first", _succeeded())

    # When SQS redelivers the message
    result = consumer.process_batch(
        {"Records": [sqs_record(body.decode(), event_id="evt_crash", receive_count=2)]}, LambdaContext()
    )

    # Then the new invocation takes the claim over and runs only the unfinished handler
    assert result == {"batchItemFailures": []}
    assert calls == ["second"]
    item = store.get("evt_crash")
    assert item["status"] == "COMPLETED" and item["attempts"] == 2
    assert set(item["handlers"]) == {"test_pipeline.first", "test_pipeline.second"}


def test_a_live_lease_is_not_taken_over(consumer, registry, store, calls):
    registry.on("workorder.created")(lambda event: calls.append("ran"))
    body = samples.encode(samples.generic_payload("workorder.created", event_id="evt_live"))
    store.claim({"eventId": "evt_live", "eventType": "workorder.created"})

    result = consumer.process_batch({"Records": [sqs_record(body.decode(), event_id="evt_live")]}, LambdaContext())

    # The copy goes back to the queue (deleting it could lose the holder's retry); nothing ran
    assert len(result["batchItemFailures"]) == 1
    assert calls == []


def test_a_retry_reruns_only_the_handlers_that_failed(consumer, registry, store, calls):
    flaky = {"fail": True}

    @registry.on("workorder.completed")
    def sync(event):
        calls.append("sync")

    @registry.on("workorder.completed")
    def follow_up(event):
        calls.append("follow_up")
        if flaky["fail"]:
            raise TimeoutError("MaintainX API timed out")

    body = samples.encode(samples.generic_payload("workorder.completed", event_id="evt_retry"))
    first = consumer.process_batch({"Records": [sqs_record(body.decode(), event_id="evt_retry")]}, LambdaContext())
    flaky["fail"] = False
    second = consumer.process_batch(
        {"Records": [sqs_record(body.decode(), event_id="evt_retry", receive_count=2)]}, LambdaContext()
    )

    assert len(first["batchItemFailures"]) == 1 and second == {"batchItemFailures": []}
    assert sorted(calls) == ["follow_up", "follow_up", "sync"]  # side by side: counted, not ordered
    item = store.get("evt_retry")
    assert item["status"] == "COMPLETED" and item["attempts"] == 2
    assert "lastError" not in item


def test_an_unparseable_message_is_recorded_failed_and_parked_at_once(consumer, stack, store, calls, registry):
    registry.on("*")(lambda event: calls.append("ran"))
    record = sqs_record("{not json", event_id="evt_broken")

    result = consumer.process_batch({"Records": [record]}, LambdaContext())

    assert result == {"batchItemFailures": []}  # not retried
    # recorded under its own key, naming the id it carried; that id's record is untouched
    item = store.get(store.invalid_key("default", "{not json"))
    assert item["status"] == "PARKED" and item["parked"] is True and item["claimedEventId"] == "evt_broken"
    assert store.get("evt_broken") is None
    assert "not JSON" in item["lastError"]
    (parked,) = receive_all(stack.dlq_url)
    assert parked["Body"] == "{not json"
    assert "not JSON" in parked["MessageAttributes"]["parkedReason"]["StringValue"]
    assert calls == []


def test_an_event_without_a_type_is_parked_at_once(consumer, stack, store):
    record = sqs_record('{"id": "evt_typeless", "data": {}}', event_id="evt_typeless")

    assert consumer.process_batch({"Records": [record]}, LambdaContext()) == {"batchItemFailures": []}

    assert store.get(store.invalid_key("default", record["body"]))["status"] == "PARKED"
    assert len(receive_all(stack.dlq_url)) == 1


def test_a_permanent_handler_error_is_parked_at_once(consumer, registry, stack, store):
    @registry.on("request.created")
    def reject(event):
        raise PermanentError("request has no asset")

    body = samples.encode(samples.generic_payload("request.created", event_id="evt_perm"))
    result = consumer.process_batch({"Records": [sqs_record(body.decode(), event_id="evt_perm")]}, LambdaContext())

    assert result == {"batchItemFailures": []}
    item = store.get("evt_perm")
    assert item["status"] == "PARKED" and item["parked"] is True
    assert "request has no asset" in item["lastError"]
    assert len(receive_all(stack.dlq_url)) == 1


def test_an_unknown_event_type_is_recorded_ignored_and_acknowledged(consumer, registry, store, stack):
    registry.on("workorder.created")(lambda event: None)
    body = json.dumps(
        {"eventType": "PART_QUANTITY_CHANGE", "occurredAt": "2026-09-14T13:03:19.905Z", "orgId": 4711, "partId": 5}
    )

    result = consumer.process_batch({"Records": [sqs_record(body, event_id="mx_part")]}, LambdaContext())

    assert result == {"batchItemFailures": []}
    assert store.get("mx_part")["status"] == "IGNORED"
    assert receive_all(stack.dlq_url) == []


def test_a_failed_record_backs_off_exponentially_by_receive_count(consumer, registry, stack):
    registry.on("workorder.created")(lambda event: 1 / 0)
    sqs = boto3.client("sqs", region_name=REGION)
    body = samples.encode(samples.generic_payload("workorder.created", event_id="evt_backoff")).decode()
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)
    message = sqs.receive_message(QueueUrl=stack.queue_url, VisibilityTimeout=0)["Messages"][0]
    seen: list[int] = []
    consumer.sqs.meta.events.register(
        "provide-client-params.sqs.ChangeMessageVisibility",
        lambda params, **_: seen.append(params["VisibilityTimeout"]),
    )

    for receive_count in (1, 2):
        record = sqs_record(
            body, event_id="evt_backoff", receive_count=receive_count, receipt_handle=message["ReceiptHandle"]
        )
        consumer.process_batch({"Records": [record]}, LambdaContext())

    assert seen == [30, 60]  # base 30 s, doubled, no jitter in this config


def test_the_last_allowed_attempt_parks_the_event_and_publishes_an_alert(consumer, registry, stack, store):
    registry.on("workorder.created")(lambda event: (_ for _ in ()).throw(ConnectionError("Slack is down")))
    body = samples.encode(samples.generic_payload("workorder.created", event_id="evt_alert")).decode()

    # receive counts below the limit (3 in this stack) do not alert; the last one does
    consumer.process_batch({"Records": [sqs_record(body, event_id="evt_alert", receive_count=2)]}, LambdaContext())
    assert receive_all(stack.alerts_queue_url) == []
    result = consumer.process_batch(
        {"Records": [sqs_record(body, event_id="evt_alert", receive_count=3)]}, LambdaContext()
    )

    # the consumer parks it itself: in the DLQ with its reason, acknowledged, alerted
    assert result == {"batchItemFailures": []}
    (parked,) = receive_all(stack.dlq_url)
    assert "out of retries after 3 attempts" in parked["MessageAttributes"]["parkedReason"]["StringValue"]
    (alert,) = receive_all(stack.alerts_queue_url)
    message = json.loads(alert["Body"])
    assert message["eventId"] == "evt_alert"
    assert message["eventType"] == "workorder.created"
    assert "Slack is down" in message["error"]
    assert store.get("evt_alert")["parked"] is True


def test_events_of_one_work_order_run_in_occurred_at_order(consumer, registry):
    seen: list[str] = []
    registry.on("workorder.updated")(lambda event: seen.append(event.new_status))
    transitions = [
        ("2026-09-14T13:00:03Z", "OPEN", "DONE"),
        ("2026-09-14T13:00:01Z", "OPEN", "IN_PROGRESS"),
        ("2026-09-14T13:00:02Z", "IN_PROGRESS", "ON_HOLD"),
    ]
    records = []
    for occurred, old, new in transitions:  # delivered out of order
        payload = {
            "eventType": "WORK_ORDER_STATUS_CHANGE",
            "occurredAt": occurred,
            "orgId": 1,
            "workOrderId": 42,
            "oldStatus": old,
            "newStatus": new,
        }
        records.append(sqs_record(json.dumps(payload)))

    consumer.process_batch({"Records": records}, LambdaContext())

    assert seen == ["IN_PROGRESS", "ON_HOLD", "DONE"]


def _two_transitions(registry, work_order_id: int) -> tuple[list[str], dict, dict]:
    """A handler failing on IN_PROGRESS (recording what it saw), and OPEN->IN_PROGRESS->DONE payloads."""
    seen: list[str] = []

    @registry.on("workorder.updated")
    def track(event):
        if event.new_status == "IN_PROGRESS":
            raise RuntimeError("history store down")
        seen.append(event.new_status)

    first = {
        "eventType": "WORK_ORDER_STATUS_CHANGE",
        "occurredAt": "2026-09-14T13:00:01Z",
        "orgId": 1,
        "workOrderId": work_order_id,
        "oldStatus": "OPEN",
        "newStatus": "IN_PROGRESS",
    }
    later = {**first, "occurredAt": "2026-09-14T13:00:02Z", "oldStatus": "IN_PROGRESS", "newStatus": "DONE"}
    return seen, first, later


def test_a_failure_holds_back_later_events_of_the_same_work_order(consumer, registry):
    seen, first, later = _two_transitions(registry, 7)
    other = {**later, "workOrderId": 8}
    records = [sqs_record(json.dumps(p)) for p in (later, first, other)]

    result = consumer.process_batch({"Records": records}, LambdaContext())

    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    assert failed == {records[0]["messageId"], records[1]["messageId"]}
    assert seen == ["DONE"]  # only work order 8's


def _succeeded():
    from mx_webhooks.store import HandlerResult

    return HandlerResult(status="SUCCEEDED", duration_ms=1)


def test_a_held_event_runs_on_its_last_allowed_receive_instead_of_being_parked_untried(
    consumer, registry, store, stack
):
    seen, first, later = _two_transitions(registry, 9)
    records = [sqs_record(json.dumps(first), receive_count=3), sqs_record(json.dumps(later), receive_count=3)]

    result = consumer.process_batch({"Records": records}, LambdaContext())

    # the first fails its last attempt and is parked; the held one ran anyway, out of order
    assert result == {"batchItemFailures": []}
    assert seen == ["DONE"]
    assert len(receive_all(stack.dlq_url)) == 1


def _count_dynamodb_calls(store) -> list[str]:
    calls: list[str] = []
    store.client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    return calls


def test_a_new_event_costs_two_dynamodb_writes_and_a_duplicate_one(consumer, registry, store):
    # Given one handler with side effects and two that are safe to rerun
    registry.on("workorder.created", name="create_follow_up")(lambda event: None)
    registry.on("workorder.created", name="log", idempotent=True)(lambda event: None)
    registry.on("workorder.created", name="count", idempotent=True)(lambda event: None)
    calls = _count_dynamodb_calls(store)
    body = samples.encode(samples.generic_payload("workorder.created", event_id="evt_cost")).decode()

    consumer.process_batch({"Records": [sqs_record(body, event_id="evt_cost")]}, LambdaContext())
    new_event = list(calls)
    calls.clear()
    consumer.process_batch({"Records": [sqs_record(body, event_id="evt_cost")]}, LambdaContext())

    assert new_event == ["UpdateItem", "UpdateItem"]  # claim, finish
    assert calls == ["UpdateItem"]  # the failed claim returns the old item


def test_two_handlers_with_side_effects_are_separated_by_a_checkpoint(consumer, registry, store):
    registry.on("workorder.created", name="create_follow_up")(lambda event: None)
    registry.on("workorder.created", name="notify_slack")(lambda event: None)
    calls = _count_dynamodb_calls(store)
    body = samples.encode(samples.generic_payload("workorder.created", event_id="evt_cp")).decode()

    consumer.process_batch({"Records": [sqs_record(body, event_id="evt_cp")]}, LambdaContext())

    assert calls == ["UpdateItem"] * 3  # claim, checkpoint after the first, finish
    assert set(store.get("evt_cp")["handlers"]) == {"create_follow_up", "notify_slack"}


def test_a_held_event_is_recorded_waiting_and_comes_back_on_the_backoff_schedule(
    consumer, registry, stack, store, output
):
    # Given a later event of a work order held behind its failing earlier one
    seen: list[str] = []
    down = {"on": True}

    @registry.on("workorder.updated")
    def track(event):
        if event.new_status == "IN_PROGRESS" and down["on"]:
            raise RuntimeError("history store down")
        seen.append(event.new_status)

    first = {
        "eventType": "WORK_ORDER_STATUS_CHANGE",
        "occurredAt": "2026-09-14T13:00:01Z",
        "orgId": 1,
        "workOrderId": 17,
        "oldStatus": "OPEN",
        "newStatus": "IN_PROGRESS",
    }
    later = {**first, "occurredAt": "2026-09-14T13:00:02Z", "oldStatus": "IN_PROGRESS", "newStatus": "DONE"}
    sqs = boto3.client("sqs", region_name=REGION)
    for payload in (first, later):
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody=json.dumps(payload))
    records = [message_to_record(m) for m in receive_all(stack.queue_url)]
    delays: list[int] = []
    consumer.sqs.meta.events.register(
        "provide-client-params.sqs.ChangeMessageVisibility",
        lambda params, **_: delays.append(params["VisibilityTimeout"]),
    )

    # When the batch runs
    consumer.process_batch({"Records": records}, LambdaContext())

    # Then both come back after the first backoff (30 s), not the queue's 360 s, the hold is
    # logged, and the held event is recorded WAITING with the id it waits for
    assert delays == [30, 30]
    (held,) = [line for line in output() if line.get("message") == "event held"]
    waiting = store.get(held["event_id"])
    assert waiting["status"] == "WAITING" and waiting["waitingFor"] == held["waiting_for"]
    assert store.get(held["waiting_for"])["status"] == "FAILED"

    # And once the earlier one succeeds, the held one runs after it and is no longer waiting
    down["on"] = False
    for record in records:
        record["attributes"]["ApproximateReceiveCount"] = "2"
    consumer.process_batch({"Records": records}, LambdaContext())
    assert seen == ["IN_PROGRESS", "DONE"]
    done = store.get(held["event_id"])
    assert done["status"] == "COMPLETED" and "waitingFor" not in done
