"""The admin operations against moto: list, show, retry, bulk retry, DLQ peek and redrive."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from devtools import samples
from mx_webhooks.admin import Admin, AdminConfig, BadRequest, Conflict, NotFound
from mx_webhooks.registry import PermanentError
from mx_webhooks.store import COMPLETED, FAILED, QUEUED
from tests.conftest import REGION, receive_all

DAY = 86_400
T0 = 1_789_394_400.0  # 2026-09-14T14:00:00Z


@pytest.fixture
def dynamodb_calls(aws: None) -> list[str]:
    """Every DynamoDB operation the admin's client makes."""
    return []


@pytest.fixture
def admin(stack, dynamodb_calls) -> Admin:
    client = boto3.client("dynamodb", region_name=REGION)
    client.meta.events.register("before-call.dynamodb.*", lambda model, **_: dynamodb_calls.append(model.name))
    config = AdminConfig(TABLE_NAME=stack.table_name, QUEUE_URL=stack.queue_url, DLQ_URL=stack.dlq_url)
    return Admin(config, client, boto3.client("sqs", region_name=REGION))


@pytest.fixture
def admin_at_t0(admin) -> Admin:
    """The admin with its clock a minute after T0, for events recorded at fixed times."""
    admin.clock = lambda: T0 + 60
    return admin


def _deliver_and_consume(ingestor, consumer, drain_to_records, *payloads: dict[str, Any]) -> list[str]:
    ids = []
    for payload in payloads:
        body = samples.encode(payload)
        response = ingestor.handle(
            samples.api_event(body, samples.signed_headers(body, samples.LOCAL_SECRET, "maintainx"))
        )
        assert response["statusCode"] == 202, response
        ids.append(json.loads(response["body"])["eventId"])
    consumer.process_batch({"Records": drain_to_records()})
    return ids


def _record(
    store,
    event_id: str,
    at: float,
    *,
    status: str = COMPLETED,
    event_type: str = "workorder.created",
    source: str = "default",
) -> None:
    """An event first seen at ``at`` and finished with ``status`` (the store's own writes)."""
    claim = store.claim(
        {
            "eventId": event_id,
            "eventType": event_type,
            "eventTypes": [event_type],
            "source": source,
            "payload": json.dumps({"id": event_id, "type": event_type, "data": {}}),
        },
        now=at,
    )
    store.finish(event_id, claim.token, status=status, results={}, error="boom" if status == FAILED else None, now=at)


# -- list -----------------------------------------------------------------------------------------
def test_a_failing_handler_shows_as_failed_with_its_error_newest_first(
    admin, ingestor, consumer, registry, drain_to_records, dynamodb_calls
):
    # Given three deliveries, one of which a handler fails on
    @registry.on("workorder.created")
    def sync(event):
        if event.work_order_id == 2:
            raise RuntimeError("CMMS sync timed out")

    ids = _deliver_and_consume(
        ingestor,
        consumer,
        drain_to_records,
        samples.maintainx_payload("workorder.created", work_order_id=1, occurred_at="2026-09-14T10:00:00.000Z"),
        samples.maintainx_payload("workorder.created", work_order_id=2, occurred_at="2026-09-14T10:02:00.000Z"),
        samples.maintainx_payload("request.created", occurred_at="2026-09-14T10:03:00.000Z"),
    )

    # When an operator lists everything, then only the failures
    everything = admin.list_events()
    failures = admin.list_events(status="failed")

    # Then all three are listed, and the failure carries its status and error
    assert {i["eventId"] for i in everything["items"]} == set(ids)
    first_seen = [i["firstSeenAt"] for i in everything["items"]]
    assert first_seen == sorted(first_seen, reverse=True)
    (failed,) = failures["items"]
    assert failed["eventId"] == ids[1] and failed["status"] == FAILED
    assert "CMMS sync timed out" in failed["lastError"]
    assert everything["nextCursor"] is None
    # and the listing came from the index, never a scan
    assert "Scan" not in dynamodb_calls and dynamodb_calls.count("Query") >= 2


def test_type_and_source_filters(admin_at_t0, store):
    admin = admin_at_t0
    # Given events of different types and sources
    _record(store, "a", T0, event_type="workorder.created", source="default")
    _record(store, "b", T0 + 1, event_type="request.created", source="requests")
    _record(store, "c", T0 + 2, event_type="workorder.created", source="requests")

    # Then each filter narrows the list, and filters combine
    assert [i["eventId"] for i in admin.list_events(event_type="workorder.created")["items"]] == ["c", "a"]
    assert [i["eventId"] for i in admin.list_events(source="requests")["items"]] == ["c", "b"]
    assert [i["eventId"] for i in admin.list_events(source="requests", event_type="request.created")["items"]] == ["b"]


def test_pages_walk_back_across_days_without_gaps_or_repeats(admin_at_t0, store):
    admin = admin_at_t0
    # Given 7 events spread over three days, and 2 of them failed
    times = [T0 - 2 * DAY, T0 - 2 * DAY + 5, T0 - DAY, T0 - 10, T0 - 5, T0, T0 + 30]
    for n, at in enumerate(times):
        _record(store, f"evt_{n}", at, status=FAILED if n in (1, 5) else COMPLETED)

    # When the operator pages through 3 at a time
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = admin.list_events(limit=3, cursor=cursor)
        pages += 1
        seen += [i["eventId"] for i in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break

    # Then every event comes exactly once, newest first
    assert seen == [f"evt_{n}" for n in reversed(range(7))]
    assert pages == 3
    # and "since" bounds the walk; the status filter pages too
    assert [i["eventId"] for i in admin.list_events(since="2026-09-14T00:00:00Z")["items"]] == [
        "evt_6",
        "evt_5",
        "evt_4",
        "evt_3",
    ]
    first = admin.list_events(status="FAILED", limit=1)
    second = admin.list_events(status="FAILED", limit=1, cursor=first["nextCursor"])
    assert [first["items"][0]["eventId"], second["items"][0]["eventId"]] == ["evt_5", "evt_1"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": "DONE"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"since": "last tuesday"}, "since"),
        ({"cursor": "not-a-cursor!"}, "cursor"),
    ],
)
def test_bad_list_parameters_are_400_with_the_parameter_named(admin, kwargs, message):
    with pytest.raises(BadRequest) as error:
        admin.list_events(**kwargs)
    assert error.value.status == 400 and message in error.value.message


def test_a_cursor_cannot_be_reused_with_other_filters(admin_at_t0, store):
    admin = admin_at_t0
    for n in range(3):
        _record(store, f"evt_{n}", T0 + n)
    cursor = admin.list_events(limit=1)["nextCursor"]

    with pytest.raises(BadRequest, match="other filters"):
        admin.list_events(limit=1, cursor=cursor, status="FAILED")


# -- show -----------------------------------------------------------------------------------------
def test_show_has_payload_status_attempts_handlers_and_timestamps(
    admin, ingestor, consumer, registry, drain_to_records
):
    registry.on("workorder.created", name="notify")(lambda event: None)
    (event_id,) = _deliver_and_consume(
        ingestor, consumer, drain_to_records, samples.maintainx_payload("workorder.created")
    )

    shown = admin.get_event(event_id)

    assert shown["status"] == COMPLETED and shown["attempts"] == 1
    assert shown["payload"]["eventType"] == "NEW_WORK_ORDER"
    assert shown["handlers"]["notify"]["status"] == "SUCCEEDED"
    assert shown["firstSeenAt"] and shown["finishedAt"] and shown["expiresAt"]
    assert "claimToken" not in shown


def test_show_unknown_id_is_404(admin):
    with pytest.raises(NotFound, match="evt_nope"):
        admin.get_event("evt_nope")


# -- retry ----------------------------------------------------------------------------------------
def test_retry_after_the_fix_completes_without_rerunning_succeeded_handlers(
    admin, ingestor, consumer, registry, drain_to_records, stack
):
    # Given an event whose second handler fails while the first succeeds
    calls: list[str] = []
    broken = {"on": True}

    @registry.on("workorder.created", name="notify")
    def notify(event):
        calls.append("notify")

    @registry.on("workorder.created", name="sync")
    def sync(event):
        calls.append("sync")
        if broken["on"]:
            raise RuntimeError("CMMS down")

    (event_id,) = _deliver_and_consume(
        ingestor, consumer, drain_to_records, samples.maintainx_payload("workorder.created")
    )
    receive_all(stack.queue_url)  # drop the SQS retry copy: the operator drives this retry
    assert admin.get_event(event_id)["status"] == FAILED

    # When the handler is fixed and the operator retries
    broken["on"] = False
    answer = admin.retry(event_id)
    assert answer == {"eventId": event_id, "status": QUEUED, "previousStatus": FAILED, "force": False}
    records = drain_to_records()
    assert records[0]["messageAttributes"]["eventId"]["stringValue"] == event_id
    consumer.process_batch({"Records": records})

    # Then the event is COMPLETED and only the failed handler ran again
    shown = admin.get_event(event_id)
    assert shown["status"] == COMPLETED and "lastError" not in shown
    assert sorted(calls) == ["notify", "sync", "sync"]  # side by side: counted, not ordered


def test_retrying_a_completed_event_needs_force_and_force_reruns_every_handler(
    admin, ingestor, consumer, registry, drain_to_records
):
    calls: list[str] = []
    registry.on("workorder.created", name="notify")(lambda event: calls.append("notify"))
    (event_id,) = _deliver_and_consume(
        ingestor, consumer, drain_to_records, samples.maintainx_payload("workorder.created")
    )

    with pytest.raises(Conflict, match="force"):
        admin.retry(event_id)
    assert admin.retry(event_id, force=True)["previousStatus"] == COMPLETED
    consumer.process_batch({"Records": drain_to_records()})

    assert calls == ["notify", "notify"]
    assert admin.get_event(event_id)["status"] == COMPLETED


def test_retry_unknown_id_is_404(admin):
    with pytest.raises(NotFound):
        admin.retry("evt_missing")


def test_bulk_retry_requeues_failed_events_since_a_time_bounded_by_limit(admin_at_t0, store, stack):
    admin = admin_at_t0
    # Given failures last night and an older one, plus a completed event
    _record(store, "old_failure", T0 - 3 * DAY, status=FAILED)
    for n in range(3):
        _record(store, f"night_{n}", T0 - 3600 + n, status=FAILED)
    _record(store, "fine", T0 - 1800)

    # When the operator previews, then retries at most 2 failures since last night
    preview = admin.retry_failed(since="2026-09-14T00:00:00Z", limit=2, dry_run=True)
    result = admin.retry_failed(since="2026-09-14T00:00:00Z", limit=2)

    # Then the oldest two of last night's failures are re-enqueued, and "more" says there is another
    assert preview["wouldRetry"] == ["night_0", "night_1"] and preview["more"] is True
    assert result["retried"] == ["night_0", "night_1"] and result["skipped"] == [] and result["more"] is True
    queued = sorted(m["MessageAttributes"]["eventId"]["StringValue"] for m in receive_all(stack.queue_url))
    assert queued == ["night_0", "night_1"]
    assert admin.get_event("night_0")["status"] == QUEUED
    assert admin.get_event("old_failure")["status"] == FAILED


def test_bulk_retry_without_since_is_400(admin):
    with pytest.raises(BadRequest, match="since is required"):
        admin.retry_failed(since=None)


# -- DLQ ------------------------------------------------------------------------------------------
def test_peek_leaves_messages_and_redrive_moves_every_one_back_and_each_is_processed(
    admin, ingestor, consumer, registry, drain_to_records, stack
):
    # Given three events parked in the DLQ by a permanent handler error
    calls: list[int] = []
    broken = {"on": True}

    @registry.on("workorder.created", name="sync")
    def sync(event):
        if broken["on"]:
            raise PermanentError("bad mapping")
        calls.append(event.work_order_id)

    ids = _deliver_and_consume(
        ingestor,
        consumer,
        drain_to_records,
        *(samples.maintainx_payload("workorder.created", work_order_id=n) for n in (11, 12, 13)),
    )
    assert admin.dlq_depth() == 3

    # When the operator peeks, twice
    first = admin.peek_dlq()
    second = admin.peek_dlq(max_messages=2)

    # Then the messages are shown with why they were parked, and stay in the DLQ
    assert {m["eventId"] for m in first["messages"]} == set(ids)
    assert all("bad mapping" in m["parkedReason"] for m in first["messages"])
    assert len(second["messages"]) == 2 and admin.dlq_depth() == 3

    # When the mapping is fixed and the DLQ redriven
    broken["on"] = False
    result = admin.redrive_dlq()

    # Then all three moved back, the DLQ is empty, and each one is processed
    assert result == {"moved": 3, "failed": 0, "remaining": 0}
    records = drain_to_records()
    assert sorted(r["messageAttributes"]["eventId"]["stringValue"] for r in records) == sorted(ids)
    assert "parkedReason" not in records[0]["messageAttributes"]
    consumer.process_batch({"Records": records})
    assert sorted(calls) == [11, 12, 13]
    assert {admin.get_event(i)["status"] for i in ids} == {COMPLETED}
    assert not [i for i in ids if "parked" in admin.get_event(i)]  # completed: no longer parked


def test_peek_says_why_and_when_for_a_message_the_queue_itself_parked(admin, store, stack):
    # Given an event that failed, and its message moved to the DLQ by the queue's redrive
    # (no parkedReason attribute: the consumer did not park it)
    claim = store.claim({"eventId": "evt_queue_parked", "eventType": "asset.updated"})
    store.finish("evt_queue_parked", claim.token, status="FAILED", results={}, error="Slack: 503")
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=stack.dlq_url,
        MessageBody='{"id": "evt_queue_parked", "type": "asset.updated"}',
        MessageAttributes={"eventId": {"DataType": "String", "StringValue": "evt_queue_parked"}},
    )

    (message,) = admin.peek_dlq()["messages"]

    assert message["parkedBy"] == "queue"
    assert "maxReceiveCount" in message["parkedReason"] and "Slack: 503" in message["parkedReason"]
    assert message["parkedAt"] == store.get("evt_queue_parked")["finishedAt"]


def test_redrive_is_bounded_by_max(admin, stack):
    sqs = boto3.client("sqs", region_name=REGION)
    for n in range(4):
        sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=f'{{"id": "evt_{n}", "type": "asset.updated"}}')

    result = admin.redrive_dlq(max_messages=3)

    assert result["moved"] == 3 and result["remaining"] == 1
    assert len(receive_all(stack.queue_url)) == 3


# -- the index design: pages of 50 across shards, the sparse Attention index, entity timelines ------
def _entity_event(store, event_id: str, entity: str, occurred: str, at: float, *, status: str = COMPLETED) -> None:
    kind, number = entity.split(":")
    payload = samples.maintainx_payload("workorder.updated", work_order_id=int(number), occurred_at=occurred)
    claim = store.claim(
        {
            "eventId": event_id,
            "eventType": "workorder.updated",
            "eventTypes": ["workorder.updated"],
            "source": "default",
            "entityKey": entity,
            "occurredAt": occurred,
            "payload": json.dumps(payload),
        },
        now=at,
    )
    store.finish(event_id, claim.token, status=status, results={}, error="boom" if status == FAILED else None, now=at)


def _in_attention(stack, event_id: str) -> bool:
    from mx_webhooks.store import ATTENTION_INDEX, shard_of

    found = boto3.client("dynamodb", region_name=REGION).query(
        TableName=stack.table_name,
        IndexName=ATTENTION_INDEX,
        KeyConditionExpression="attention = :s",
        ExpressionAttributeValues={":s": {"S": shard_of(event_id)}},
    )["Items"]
    return any(i["eventId"]["S"] == event_id for i in found)


def test_pages_of_50_across_every_shard_and_a_settled_status_page_too(admin_at_t0, store):
    admin = admin_at_t0
    # Given 120 events, one a second, of 120 work orders (spread over the Recent shards)
    for n in range(120):
        _entity_event(store, f"evt_{n:03d}", f"workorder:{5000 + n}", "2026-09-14T10:00:00.000Z", T0 - 200 + n)

    # When the operator pages through 50 at a time, with and without a status
    def walk(**kwargs: Any) -> list[list[str]]:
        pages, cursor = [], None
        while True:
            page = admin.list_events(cursor=cursor, **kwargs)
            pages.append([i["eventId"] for i in page["items"]])
            cursor = page["nextCursor"]
            if cursor is None:
                return pages

    # Then each page holds 50, newest first, every event exactly once
    expected = [f"evt_{n:03d}" for n in reversed(range(120))]
    pages = walk()
    assert [len(p) for p in pages] == [50, 50, 20] and sum(pages, []) == expected
    assert sum(walk(status="COMPLETED"), []) == expected
    assert all(i["status"] == COMPLETED and i["attempts"] == 1 for i in admin.list_events()["items"])


def test_only_events_needing_attention_are_in_the_attention_index(admin_at_t0, store, stack):
    # Given an event completed at its first attempt, and one that failed
    _entity_event(store, "evt_happy", "workorder:1", "2026-09-14T10:00:00.000Z", T0)
    _entity_event(store, "evt_failing", "workorder:2", "2026-09-14T10:00:00.000Z", T0, status=FAILED)

    # Then only the failed one entered the Attention index (the happy path wrote no entry there)
    assert not _in_attention(stack, "evt_happy") and _in_attention(stack, "evt_failing")
    assert [i["eventId"] for i in admin_at_t0.list_events(status="FAILED")["items"]] == ["evt_failing"]

    # When its retry completes, it leaves the index
    claim = store.claim({"eventId": "evt_failing"}, now=T0 + 5)
    assert _in_attention(stack, "evt_failing")  # while it is retried: a sweep could find it stalled
    store.finish("evt_failing", claim.token, status=COMPLETED, results={}, now=T0 + 6)
    assert not _in_attention(stack, "evt_failing")
    assert admin_at_t0.list_events(status="FAILED")["items"] == []


def test_entity_history_is_its_events_in_occurred_order_by_query_calls_only(admin_at_t0, store, dynamodb_calls):
    admin = admin_at_t0
    # Given three events of work order 90001 first seen out of occurredAt order, one failed, and another's
    _entity_event(store, "evt_late", "workorder:90001", "2026-09-14T10:09:00.000Z", T0 - 30)
    _entity_event(store, "evt_early", "workorder:90001", "2026-09-14T10:01:00.000Z", T0 - 20, status=FAILED)
    _entity_event(store, "evt_mid", "workorder:90001", "2026-09-14T10:05:00.000Z", T0 - 10)
    _entity_event(store, "evt_other", "workorder:90002", "2026-09-14T10:03:00.000Z", T0 - 5)
    dynamodb_calls.clear()

    # When the operator asks for the work order's history, two at a time
    first = admin.entity_events("workorder", "90001", limit=2)
    second = admin.entity_events("workorder", "90001", limit=2, cursor=first["nextCursor"])

    # Then its events come in occurredAt order, with status, status change and a pointer to show
    assert [i["eventId"] for i in first["items"]] == ["evt_early", "evt_mid"]
    assert [i["eventId"] for i in second["items"]] == ["evt_late"] and second["nextCursor"] is None
    early = first["items"][0]
    assert early["status"] == FAILED and early["lastError"] == "boom" and early["attempts"] == 1
    assert (
        early["statusChange"] == {"from": "OPEN", "to": "IN_PROGRESS"} and early["show"] == "/admin/webhooks/evt_early"
    )
    assert set(dynamodb_calls) == {"Query"}
    # and mistakes are 400s naming the parameter
    with pytest.raises(BadRequest, match="kind"):
        admin.entity_events("invoice", "1")
    with pytest.raises(BadRequest, match="cursor"):
        admin.entity_events("workorder", "90002", cursor=first["nextCursor"])


# -- stats (the operator console's overview) ----------------------------------------------------
def test_stats_count_the_last_24_hours_by_status_and_hour_with_queries_only(admin_at_t0, store, stack, dynamodb_calls):
    admin = admin_at_t0
    # Given events first seen 25 h ago (outside), 3 h ago (two: one completed, one failed),
    # one still in progress 10 s ago and one completed now; and one message in the DLQ
    _record(store, "evt_old", T0 - 25 * 3600, status=FAILED)
    _record(store, "evt_3h_ok", T0 - 3 * 3600)
    _record(store, "evt_3h_failed", T0 - 3 * 3600 + 10, status=FAILED)
    store.claim({"eventId": "evt_running", "eventType": "workorder.created"}, now=T0 - 10)
    _record(store, "evt_now", T0)
    boto3.client("sqs", region_name=REGION).send_message(QueueUrl=stack.dlq_url, MessageBody="{}")
    dynamodb_calls.clear()

    # When the console asks for the overview of the last 24 hours
    stats = admin.stats()

    # Then the counts hold only the window's events: those needing attention by status, the
    # rest (completed, or on their first attempt) as SETTLED, read from the indexes alone
    assert stats["hours"] == 24 and stats["total"] == 4 and not stats["truncated"]
    assert {k: v for k, v in stats["counts"].items() if v} == {"SETTLED": 3, "FAILED": 1}
    # and each hour says what was received, processed and failed in it
    hours = {
        point["hour"]: point for point in stats["series"] if any(point[k] for k in ("received", "processed", "failed"))
    }
    assert hours == {
        "2026-09-14T11:00:00Z": {"hour": "2026-09-14T11:00:00Z", "received": 2, "processed": 1, "failed": 1},
        "2026-09-14T13:00:00Z": {"hour": "2026-09-14T13:00:00Z", "received": 1, "processed": 1, "failed": 0},
        "2026-09-14T14:00:00Z": {"hour": "2026-09-14T14:00:00Z", "received": 1, "processed": 1, "failed": 0},
    }
    assert len(stats["series"]) == 25 and stats["dlqDepth"] == 1
    # read with Query on the index, never a scan
    assert dynamodb_calls and set(dynamodb_calls) == {"Query"}


def test_stats_hours_out_of_range_is_400(admin):
    with pytest.raises(BadRequest, match="hours"):
        admin.stats(hours="0")
