"""Each handler on its own: one failing or parked integration never blocks another."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import boto3

from devtools import samples
from mx_webhooks.admin import Admin, AdminConfig
from mx_webhooks.normalize import derive_event_id
from mx_webhooks.registry import PermanentError
from tests.conftest import REGION, LambdaContext, receive_all, sqs_record


def _body(event_id: str) -> str:
    return samples.encode(samples.generic_payload("workorder.created", event_id=event_id)).decode()


def test_a_failing_handler_does_not_stop_the_other_which_runs_once(consumer, registry, store):
    consumer.config = consumer.config.model_copy(update={"max_receive_count": 10})  # this stack's 3 parks on try 3
    # Given two handlers on one type, one failing its first three attempts
    runs: Counter[str] = Counter()

    @registry.on("workorder.created", name="notify")
    def notify(event: Any) -> None:
        runs["notify"] += 1

    @registry.on("workorder.created", name="sync")
    def sync(event: Any) -> None:
        runs["sync"] += 1
        if runs["sync"] <= 3:
            time.sleep(0.2)  # a downstream timing out: notify, beside it, finishes first
            raise ConnectionError("CRM is down")

    # When the event is delivered four times (the first three fail)
    dynamodb_calls: list[str] = []
    consumer.store.client.meta.events.register(
        "before-call.dynamodb", lambda model, **_: dynamodb_calls.append(model.name)
    )
    body = _body("evt_iso")
    results = [
        consumer.process_batch({"Records": [sqs_record(body, event_id="evt_iso", receive_count=n)]}, None)
        for n in (1, 2, 3, 4)
    ]
    calls = Counter(dynamodb_calls)

    # Then notify ran once, on the first attempt (registered first, it did not wait for
    # sync); sync succeeded on its fourth; the event is complete
    assert [len(r["batchItemFailures"]) for r in results] == [1, 1, 1, 0]
    assert runs == Counter({"notify": 1, "sync": 4})
    item = store.get("evt_iso")
    assert item["status"] == "COMPLETED" and item["attempts"] == 4
    assert {n: h["status"] for n, h in item["handlers"].items()} == {"notify": "SUCCEEDED", "sync": "SUCCEEDED"}
    # DynamoDB writes for the event with one failing handler: claim, checkpoint (notify, not
    # idempotent, finished while sync, not idempotent either, still ran), finish on the first
    # attempt; claim + finish per retry. Nothing else: no read, no query.
    assert calls == Counter({"UpdateItem": 3 + 2 * 3})
    print(f"DynamoDB calls, new event with one failing handler: {dict(calls)} over 4 attempts")


def test_dynamodb_calls_of_a_new_event_on_the_happy_path(consumer, registry, store):
    # Given one handler on workorder.created, and two on workorder.updated (one idempotent)
    registry.on("workorder.created", name="notify")(lambda event: None)
    registry.on("workorder.updated", name="index", idempotent=True)(lambda event: None)
    registry.on("workorder.updated", name="mirror")(lambda event: None)
    dynamodb_calls: list[str] = []
    consumer.store.client.meta.events.register(
        "before-call.dynamodb", lambda model, **_: dynamodb_calls.append(model.name)
    )

    # When a new event of each is consumed
    consumer.process_batch({"Records": [sqs_record(_body("evt_happy"), event_id="evt_happy")]}, None)
    created = Counter(dynamodb_calls)
    dynamodb_calls.clear()
    updated = samples.encode(samples.generic_payload("workorder.updated", event_id="evt_happy_2")).decode()
    consumer.process_batch(
        {"Records": [sqs_record(updated, event_id="evt_happy_2", event_type="workorder.updated")]}, None
    )
    both = Counter(dynamodb_calls)

    # Then each costs a claim and a finish: an idempotent handler beside the other needs no
    # checkpoint, whichever finishes first
    assert store.get("evt_happy")["status"] == store.get("evt_happy_2")["status"] == "COMPLETED"
    assert created == Counter({"UpdateItem": 2})
    assert both == Counter({"UpdateItem": 2})
    print(f"DynamoDB calls, happy path: one handler {dict(created)}, two handlers {dict(both)}")


def test_a_permanent_error_parks_that_handler_alone_and_retry_handler_runs_only_it(
    consumer, registry, store, stack, lambda_context
):
    # Given three handlers, one of which raises PermanentError (a bad mapping)
    runs: Counter[str] = Counter()
    broken = {"on": True}

    @registry.on("workorder.created", name="notify")
    def notify(event: Any) -> None:
        runs["notify"] += 1

    @registry.on("workorder.created", name="mapping")
    def mapping(event: Any) -> None:
        runs["mapping"] += 1
        if broken["on"]:
            raise PermanentError("no such asset in the CRM")

    @registry.on("workorder.created", name="history")
    def history(event: Any) -> None:
        runs["history"] += 1

    # When the event is consumed
    result = consumer.process_batch({"Records": [sqs_record(_body("evt_perm_one"), event_id="evt_perm_one")]}, None)

    # Then the others ran and succeeded, only mapping is parked; the event is parked (DLQ, listed)
    assert result == {"batchItemFailures": []}
    item = store.get("evt_perm_one")
    assert {n: h["status"] for n, h in item["handlers"].items()} == {
        "notify": "SUCCEEDED",
        "mapping": "PARKED",
        "history": "SUCCEEDED",
    }
    assert item["status"] == "PARKED" and item["parked"] is True
    assert len(receive_all(stack.dlq_url)) == 1
    config = AdminConfig(TABLE_NAME=stack.table_name, QUEUE_URL=stack.queue_url, DLQ_URL=stack.dlq_url)
    admin = Admin(config, boto3.client("dynamodb", region_name=REGION), boto3.client("sqs", region_name=REGION))
    listed = admin.list_events(status="PARKED")["items"]
    assert [(i["eventId"], i.get("parked")) for i in listed] == [("evt_perm_one", True)]

    # When the mapping is fixed and the operator retries that handler alone
    broken["on"] = False
    answer = admin.retry("evt_perm_one", handler="mapping")
    (message,) = receive_all(stack.queue_url)
    consumer.process_batch(
        {"Records": [sqs_record(message["Body"], event_id="evt_perm_one", receive_count=1)]}, lambda_context
    )

    # Then only mapping ran again, and the event is complete and no longer parked
    assert answer["handler"] == "mapping"
    assert runs == Counter({"notify": 1, "mapping": 2, "history": 1})
    item = store.get("evt_perm_one")
    assert item["status"] == "COMPLETED" and "parked" not in item


def test_a_latest_only_handler_never_sees_an_older_state_across_batches(consumer, registry, store):
    # Given a handler that wants only a work order's newest state, and one that wants every event
    newest: list[str] = []
    every: list[str] = []
    registry.on("workorder.updated", name="mirror", latest_only=True)(lambda event: newest.append(event.new_status))
    registry.on("workorder.updated", name="audit")(lambda event: every.append(event.new_status))

    def change(second: int, new: str) -> dict[str, Any]:
        return {
            "eventType": "WORK_ORDER_STATUS_CHANGE",
            "occurredAt": f"2026-09-14T13:00:0{second}Z",
            "orgId": 1,
            "workOrderId": 4242,
            "newStatus": new,
        }

    # When the newest change arrives in one batch, and the two older ones in a later batch
    consumer.process_batch({"Records": [sqs_record(json.dumps(change(3, "DONE")))]}, None)
    later = [sqs_record(json.dumps(change(1, "IN_PROGRESS"))), sqs_record(json.dumps(change(2, "ON_HOLD")))]
    result = consumer.process_batch({"Records": later}, None)

    # Then the latest-only handler saw only the newest; the older ones are SKIPPED (stale) for
    # it, while the other handler saw all three; every event is complete
    assert result == {"batchItemFailures": []}
    assert newest == ["DONE"] and sorted(every) == ["DONE", "IN_PROGRESS", "ON_HOLD"]
    for record in later:
        item = store.get(derive_event_id(json.loads(record["body"])))
        assert item["status"] == "COMPLETED"
        assert item["handlers"]["mirror"]["status"] == "SKIPPED" and "stale" in item["handlers"]["mirror"]["error"]
        assert item["handlers"]["audit"]["status"] == "SUCCEEDED"


def test_the_handlers_of_an_event_run_side_by_side(consumer, registry, store, lambda_context):
    # Given two handlers that each wait for the other to have started (run one after the
    # other, the first would wait in vain)
    started = {name: threading.Event() for name in ("crm", "slack")}

    def handler(me: str, other: str) -> Any:
        def run(event: Any) -> None:
            started[me].set()
            if not started[other].wait(5):
                raise TimeoutError(f"{other} did not start while {me} ran")

        return run

    registry.on("workorder.created", name="crm")(handler("crm", "slack"))
    registry.on("workorder.created", name="slack")(handler("slack", "crm"))

    # When the event is consumed
    result = consumer.process_batch({"Records": [sqs_record(_body("evt_side"), event_id="evt_side")]}, lambda_context)

    # Then both ran at once and succeeded
    assert result == {"batchItemFailures": []}
    item = store.get("evt_side")
    assert item["status"] == "COMPLETED"
    assert {n: h["status"] for n, h in item["handlers"].items()} == {"crm": "SUCCEEDED", "slack": "SUCCEEDED"}


def test_a_handler_still_running_at_the_invocations_deadline_is_recorded_failed_the_others_kept(
    consumer, registry, store
):
    # Given a quick handler and one that hangs, and an invocation with 4 s left (3 s margin)
    release = threading.Event()
    registry.on("workorder.created", name="quick")(lambda event: None)
    registry.on("workorder.created", name="hangs")(lambda event: release.wait(30))

    # When the event is consumed
    started = time.monotonic()
    result = consumer.process_batch(
        {"Records": [sqs_record(_body("evt_late"), event_id="evt_late")]}, LambdaContext(remaining_ms=4_000)
    )
    waited = time.monotonic() - started
    release.set()

    # Then the consumer stopped waiting at its deadline: the quick handler's success is kept,
    # the hanging one is FAILED (retried), and the record goes back to the queue
    assert len(result["batchItemFailures"]) == 1 and waited < 3
    item = store.get("evt_late")
    assert item["status"] == "FAILED"
    assert item["handlers"]["quick"]["status"] == "SUCCEEDED"
    assert item["handlers"]["hangs"] == {
        **item["handlers"]["hangs"],
        "status": "FAILED",
        "error": "still running at the deadline",
    }
