"""Lost replies, duplicate deliveries, forged ids and overruns: each handler once, nothing lost.

DynamoDB documents that a request answered with a 500 (or whose connection dropped)
may have been applied. ``LostReplies`` makes that happen for real: it lets moto apply
the chosen call, then answers the client with a 500 or drops the connection, and
botocore retries the identical request, as it does in AWS. Outcomes are counted by the
handlers' own side effects (``ledger``), not by the table alone.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ConnectionClosedError
from moto.core.models import botocore_stubber

from devtools import samples
from mx_webhooks.admin import STRANDED_AFTER_SECONDS, Admin, AdminConfig, AdminError
from mx_webhooks.consumer import ConsumerConfig, client_config
from mx_webhooks.registry import PermanentError
from mx_webhooks.store import EventStore
from tests.conftest import REGION, LambdaContext, receive_all, sqs_record
from tests.reliability.conftest import error_response, message_to_record
from tests.reliability.test_faults import consume_until_empty, no_backoff_sleep

CONSUMER_CONFIG = client_config(ConsumerConfig.model_validate({"TABLE_NAME": "-", "QUEUE_URL": "-", "DLQ_URL": "-"}))
ADMIN_CONFIG = client_config(ConsumerConfig.model_validate({"TABLE_NAME": "-", "QUEUE_URL": "-", "DLQ_URL": "-"}))
_NOWHERE = "https://lost-reply.invalid/"


def server_error() -> Any:
    return error_response(500, "InternalServerError", "reply lost after the write was applied")


def dropped(request: Any) -> Exception:
    return ConnectionClosedError(endpoint_url=request.url)


class LostReplies:
    """Applies chosen calls of one client at moto, then loses their reply.

    ``lose(operation, call, mode, times)``: the ``call``-th attempt of ``operation``
    (counting every attempt, retries included) and the ``times - 1`` after it are
    applied, then answered with a 500 (``mode="500"``) or a dropped connection
    (``mode="drop"``). With ``times`` at the client's attempt count, the SDK gives up
    although the first write was applied.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.plan: dict[str, set[int]] = {}
        self.modes: dict[tuple[str, int], str] = {}
        self.calls: Counter[str] = Counter()
        self.lost: Counter[str] = Counter()
        self._urls: dict[int, str] = {}
        client.meta.events.register_first(f"before-send.{client.meta.service_model.endpoint_prefix}", self._hook)

    def lose(self, operation: str, call: int, mode: str, times: int = 1) -> LostReplies:
        for n in range(call, call + times):
            self.plan.setdefault(operation, set()).add(n)
            self.modes[(operation, n)] = mode
        return self

    def _hook(self, request: Any, **_: Any) -> Any:
        if request.url == _NOWHERE:  # botocore resends the same request object on a retry
            request.url = self._urls.pop(id(request))
        target = request.headers.get("X-Amz-Target") or b""
        operation = (target.decode() if isinstance(target, bytes) else target).rsplit(".", 1)[-1] or "query"
        self.calls[operation] += 1
        number = self.calls[operation]
        if number not in self.plan.get(operation, set()):
            return None
        botocore_stubber(event_name="before-send", request=request)  # applied at moto...
        self.lost[operation] += 1
        if self.modes[(operation, number)] == "drop":  # ...and the connection drops before the reply
            raise dropped(request)
        # ...and the reply is a 500. botocore hands before-send to every handler and takes
        # the first response: point moto's own copy of this call nowhere it recognises.
        self._urls[id(request)] = request.url
        request.url = _NOWHERE
        return server_error()


@pytest.fixture
def ledger() -> Counter[tuple[str, str]]:
    """(event id, handler) -> times the handler's side effect happened."""
    return Counter()


def _record_effects(registry: Any, ledger: Counter[tuple[str, str]], lock: threading.Lock) -> None:
    @registry.on("workorder.created")
    def notify(event: Any) -> None:
        with lock:
            ledger[(event.event_id, "notify")] += 1

    @registry.on("workorder.created")
    def sync(event: Any) -> None:
        with lock:
            ledger[(event.event_id, "sync")] += 1


def _queue(stack: Any, event_id: str, **fields: Any) -> str:
    body = samples.encode(samples.generic_payload("workorder.created", event_id=event_id, **fields)).decode()
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=stack.queue_url,
        MessageBody=body,
        MessageAttributes={"eventId": {"DataType": "String", "StringValue": event_id}},
    )
    return body


def _alerts(stack: Any) -> list[dict[str, Any]]:
    return [json.loads(m["Body"]) for m in receive_all(stack.alerts_queue_url)]  # raw delivery


# -- every conditional write of the consumer -------------------------------------------------
# An event with two non-idempotent handlers costs three UpdateItems: claim, checkpoint, finish.
WRITES = {1: "claim", 2: "checkpoint", 3: "finish"}


@pytest.mark.parametrize("mode", ["500", "drop"])
@pytest.mark.parametrize("call", sorted(WRITES), ids=[WRITES[c] for c in sorted(WRITES)])
def test_a_consumer_write_applied_but_its_reply_lost_is_retried_safely(
    call, mode, stack, make_consumer, registry, store, ledger, monkeypatch
):
    # Given the consumer's n-th write applied by DynamoDB but its reply lost once
    no_backoff_sleep(monkeypatch)
    _record_effects(registry, ledger, threading.Lock())
    dynamodb = boto3.client("dynamodb", region_name=REGION, config=CONSUMER_CONFIG)
    faults = LostReplies(dynamodb).lose("UpdateItem", call, mode)
    consumer = make_consumer(dynamodb=dynamodb)
    _queue(stack, f"evt_lost_{call}_{mode}")

    # When the queue is drained
    consume_until_empty(consumer, stack.queue_url)

    # Then the SDK's retry recognised its own write: each handler ran once, the event is
    # complete after one attempt, and the queue holds nothing
    assert faults.lost["UpdateItem"] == 1
    event_id = f"evt_lost_{call}_{mode}"
    assert ledger == Counter({(event_id, "notify"): 1, (event_id, "sync"): 1})
    item = store.get(event_id)
    assert item["status"] == "COMPLETED" and item["attempts"] == 1
    assert receive_all(stack.queue_url) == [] and receive_all(stack.dlq_url) == []


@pytest.mark.parametrize("call", sorted(WRITES), ids=[WRITES[c] for c in sorted(WRITES)])
def test_a_consumer_write_applied_then_every_retry_lost_still_runs_each_handler_once(
    call, stack, make_consumer, registry, store, ledger, monkeypatch
):
    # Given the n-th write applied and then every attempt of it answered with a 500, so the
    # SDK gives up on a write DynamoDB applied (the claim found busy was the bug)
    no_backoff_sleep(monkeypatch)
    _record_effects(registry, ledger, threading.Lock())
    dynamodb = boto3.client("dynamodb", region_name=REGION, config=CONSUMER_CONFIG)
    faults = LostReplies(dynamodb).lose("UpdateItem", call, "500", times=6)
    consumer = make_consumer(dynamodb=dynamodb, lease_seconds=1)
    event_id = f"evt_lost_all_{call}"
    _queue(stack, event_id)

    # When the queue is drained (the record fails, comes back and is retried)
    results = consume_until_empty(consumer, stack.queue_url, on_round=lambda n: time.sleep(1.1 if n else 0))

    # Then the event completes, each handler's side effect happened once, nothing is left
    assert faults.lost["UpdateItem"] == 6
    assert len(results[0]["batchItemFailures"]) == 1
    assert ledger == Counter({(event_id, "notify"): 1, (event_id, "sync"): 1})
    assert store.get(event_id)["status"] == "COMPLETED"
    assert receive_all(stack.queue_url) == [] and receive_all(stack.dlq_url) == []


def test_a_finish_applied_but_reported_failed_is_not_turned_back_to_failed(stack, make_consumer, registry, store):
    # Given a finish that DynamoDB applied (COMPLETED) while the client gave up on it
    ran: list[str] = []
    registry.on("workorder.created")(lambda event: ran.append(event.event_id))
    dynamodb = boto3.client("dynamodb", region_name=REGION, config=CONSUMER_CONFIG)
    LostReplies(dynamodb).lose("UpdateItem", 2, "drop", times=6)
    consumer = make_consumer(dynamodb=dynamodb)
    body = _queue(stack, "evt_finish_applied")
    (record,) = [message_to_record(m) for m in receive_all(stack.queue_url)]

    # When the consumer's error path releases the claim
    result = consumer.process_batch({"Records": [record]}, LambdaContext())

    # Then the record goes back (it could not know) but the event stays COMPLETED, and its
    # redelivery is a duplicate: the handler ran once
    assert len(result["batchItemFailures"]) == 1
    assert store.get("evt_finish_applied")["status"] == "COMPLETED"
    again = make_consumer().process_batch({"Records": [sqs_record(body, event_id="evt_finish_applied")]}, None)
    assert again == {"batchItemFailures": []} and ran == ["evt_finish_applied"]


# -- the same SQS message delivered twice at once --------------------------------------------


def test_a_busy_copy_does_not_delete_the_message_its_holder_needs_to_retry(
    stack, make_consumer, registry, store, atomic_dynamodb
):
    # Given one SQS message delivered twice (two receipt handles) and a handler that fails
    # transiently the first time, slowly enough that the second copy finds the event busy
    attempts: list[str] = []
    effects: list[str] = []
    started = threading.Event()

    @registry.on("workorder.created")
    def flaky(event: Any) -> None:
        attempts.append(event.event_id)
        if len(attempts) == 1:
            started.set()
            time.sleep(0.3)
            raise ConnectionError("Slack is down")
        effects.append(event.event_id)

    _queue(stack, "evt_twice")
    sqs = boto3.client("sqs", region_name=REGION)
    (first,) = receive_all(stack.queue_url)
    sqs.change_message_visibility(QueueUrl=stack.queue_url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0)
    (second,) = receive_all(stack.queue_url)
    assert first["MessageId"] == second["MessageId"]
    holder, copy = make_consumer(lease_seconds=1), make_consumer(lease_seconds=1)
    results: dict[str, dict[str, Any]] = {}

    def run(name: str, consumer: Any, message: dict[str, Any]) -> None:
        if name == "copy":
            started.wait(5)
        results[name] = consumer.process_batch({"Records": [message_to_record(message)]}, LambdaContext())

    threads = [
        threading.Thread(target=run, args=("holder", holder, first)),
        threading.Thread(target=run, args=("copy", copy, second)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    # Then both copies were returned (the holder failed, the copy found it busy): the
    # message was never deleted, and its redelivery completes the event
    assert len(results["holder"]["batchItemFailures"]) == 1
    assert len(results["copy"]["batchItemFailures"]) == 1
    time.sleep(2.05)  # the holder's lease has ended (whole seconds); in SQS, the backoff has
    for receipt in (first["ReceiptHandle"], second["ReceiptHandle"]):
        sqs.change_message_visibility(QueueUrl=stack.queue_url, ReceiptHandle=receipt, VisibilityTimeout=0)
    consume_until_empty(make_consumer(), stack.queue_url)
    assert effects == ["evt_twice"]
    assert store.get("evt_twice")["status"] == "COMPLETED"


# -- a forged delivery reusing a live event's id ---------------------------------------------


@pytest.mark.parametrize(
    "forged",
    [
        {"id": "evt_live_forged", "type": "workorder.created", "data": [1]},  # invalid: data is not an object
        {"id": "evt_live_forged", "type": "workorder.created", "data": {"id": 666}},  # valid, another payload
    ],
    ids=["invalid", "different_payload"],
)
def test_a_forged_delivery_sharing_a_live_events_id_touches_nothing_of_it(
    forged, stack, make_consumer, registry, store
):
    # Given event X whose handler is running (its claim live)
    release = threading.Event()
    running = threading.Event()
    effects: list[Any] = []

    @registry.on("workorder.created")
    def slow(event: Any) -> None:
        running.set()
        release.wait(10)
        effects.append(event.data.get("id"))

    body = samples.encode(samples.generic_payload("workorder.created", event_id="evt_live_forged", work_order_id=1))
    good = sqs_record(body.decode(), event_id="evt_live_forged")
    holder = threading.Thread(target=make_consumer().process_batch, args=({"Records": [good]}, LambdaContext()))
    holder.start()
    assert running.wait(5)
    before = store.get("evt_live_forged")

    # When a signed delivery naming the same id, but not that event, is consumed meanwhile
    bad = sqs_record(json.dumps(forged), event_id="evt_live_forged")
    result = make_consumer().process_batch({"Records": [bad]}, LambdaContext())
    during = store.get("evt_live_forged")
    release.set()
    holder.join(10)

    # Then it is parked under its own key with its reason and an alert; X's record, payload
    # and claim were untouched while it ran, and X's handler ran once, on X's payload
    assert result == {"batchItemFailures": []}
    assert during == before
    parked = store.get(EventStore.invalid_key("default", bad["body"]))
    assert parked["status"] == "PARKED" and parked["parked"] is True
    assert parked["claimedEventId"] == "evt_live_forged"
    (in_dlq,) = receive_all(stack.dlq_url)
    assert in_dlq["Body"] == bad["body"]
    assert any(a["eventId"] == parked["eventId"] for a in _alerts(stack))
    final = store.get("evt_live_forged")
    assert final["status"] == "COMPLETED" and final["payload"] == body.decode()
    assert effects == [1]


def test_the_same_id_from_another_source_is_another_event(stack, ingestor, make_consumer, registry, store):
    # Given two sources whose deliveries carry the same generic id
    ran: list[str] = []
    registry.on("workorder.created")(lambda event: ran.append(event.event_id))
    body = samples.encode(samples.generic_payload("workorder.created", event_id="evt_shared"))

    # When both are ingested and consumed
    answers = [
        ingestor.handle(samples.api_event(body, samples.signed_headers(body, samples.LOCAL_SECRET, "generic"))),
        ingestor.handle(
            samples.api_event(body, samples.signed_headers(body, "requests-new", "generic"), source="requests")
        ),
    ]
    consume_until_empty(make_consumer(), stack.queue_url)

    # Then each is its own event, keyed by its source: neither can touch the other's record
    ids = [json.loads(a["body"])["eventId"] for a in answers]
    assert [a["statusCode"] for a in answers] == [202, 202]
    assert ids == ["evt_shared", "requests~evt_shared"]
    assert sorted(ran) == sorted(ids)
    assert store.get("requests~evt_shared")["source"] == "requests"


# -- a handler that overruns the function timeout --------------------------------------------


class Stopped(BaseException):
    """Lambda stopping the function at its timeout: nothing after it runs in that invocation."""


def test_a_handler_overrunning_once_runs_to_completion_on_the_redelivery(stack, make_consumer, registry, store):
    # Given a handler that overruns the timeout on its first attempt (Lambda stops it
    # before its side effect) and then runs in time
    effects: list[str] = []
    tries: list[int] = []

    @registry.on("workorder.created")
    def slow_then_fine(event: Any) -> None:
        tries.append(1)
        if len(tries) == 1:
            raise Stopped
        effects.append(event.event_id)

    _queue(stack, "evt_overrun_once")
    (message,) = receive_all(stack.queue_url)
    with pytest.raises(Stopped):  # the invocation dies: nothing deleted, nothing released
        make_consumer(lease_seconds=1).process_batch({"Records": [message_to_record(message)]}, LambdaContext())
    assert store.get("evt_overrun_once")["status"] == "IN_PROGRESS"

    # When the message comes back after its visibility timeout (the lease has ended by then)
    time.sleep(2.05)  # leases are whole seconds: a 1 s lease has surely ended 2 s later
    boto3.client("sqs", region_name=REGION).change_message_visibility(
        QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    consume_until_empty(make_consumer(), stack.queue_url)

    # Then the redelivery took the claim over and the handler's side effect happened once
    assert effects == ["evt_overrun_once"]
    item = store.get("evt_overrun_once")
    assert item["status"] == "COMPLETED" and item["attempts"] == 2


def test_an_event_whose_handler_always_overruns_is_found_parked_and_alerted(stack, make_consumer, registry, store):
    # Given a handler that always overruns: every receive is stopped, and the queue's redrive
    # finally moves the message to the DLQ while the event is still IN_PROGRESS
    registry.on("workorder.created")(lambda event: (_ for _ in ()).throw(Stopped()))
    _queue(stack, "evt_overrun_always")
    sqs = boto3.client("sqs", region_name=REGION)
    for _ in range(stack.max_receive_count):
        (message,) = receive_all(stack.queue_url)
        with pytest.raises(Stopped):
            make_consumer(lease_seconds=1).process_batch({"Records": [message_to_record(message)]}, LambdaContext())
        time.sleep(2.05)
        sqs.change_message_visibility(
            QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    assert receive_all(stack.queue_url) == []  # the receive after the last one moved it to the DLQ
    assert len(receive_all(stack.dlq_url)) == 1
    assert store.get("evt_overrun_always")["status"] == "IN_PROGRESS"

    # When the stalled-claim sweep runs (its schedule: every 5 minutes), past the grace period
    admin = _admin(stack, clock=lambda: time.time() + 3600)
    swept = admin.sweep_stalled()

    # Then the event is recorded PARKED with its reason, an alert says so, and
    # retry-failed finds it
    assert swept["marked"] == ["evt_overrun_always"] and swept["alertedFromDLQ"] == []  # one alert, not two
    item = store.get("evt_overrun_always")
    assert item["status"] == "PARKED" and item["parked"] is True and "stalled" in item["lastError"]
    (alert,) = _alerts(stack)
    assert alert["eventId"] == "evt_overrun_always" and "stalled" in alert["alert"]
    assert admin.retry_failed(since="1d", dry_run=True)["wouldRetry"] == ["evt_overrun_always"]
    assert admin.sweep_stalled() == {"marked": [], "alertedFromDLQ": []}  # once


# -- the admin path -----------------------------------------------------------------------------


def _admin(stack: Any, *, dynamodb: Any = None, clock: Callable[[], float] = time.time) -> Admin:
    config = AdminConfig(
        TABLE_NAME=stack.table_name, QUEUE_URL=stack.queue_url, DLQ_URL=stack.dlq_url, ALERT_TOPIC_ARN=stack.topic_arn
    )
    return Admin(
        config,
        dynamodb or boto3.client("dynamodb", region_name=REGION),
        boto3.client("sqs", region_name=REGION),
        sns=boto3.client("sns", region_name=REGION),
        clock=clock,
    )


def _failed_event(stack: Any, make_consumer: Any, registry: Any, event_id: str) -> list[str]:
    """An event PARKED on its last attempt, its message gone; returns the handler's effects."""
    effects: list[str] = []
    broken = {"down": True}

    @registry.on("workorder.created")
    def flaky(event: Any) -> None:
        if broken["down"]:
            raise ConnectionError("Slack is down")
        effects.append(event.event_id)

    body = samples.encode(samples.generic_payload("workorder.created", event_id=event_id)).decode()
    record = sqs_record(body, event_id=event_id, receive_count=stack.max_receive_count)
    make_consumer().process_batch({"Records": [record]}, LambdaContext())
    broken["down"] = False
    return effects


@pytest.mark.parametrize("mode", ["500", "drop"])
def test_an_admin_retry_whose_reply_is_lost_still_requeues_the_event(
    mode, stack, make_consumer, registry, store, monkeypatch
):
    # Given a FAILED event, and the admin's update applied but its reply lost once
    no_backoff_sleep(monkeypatch)
    effects = _failed_event(stack, make_consumer, registry, "evt_admin_lost")
    dynamodb = boto3.client("dynamodb", region_name=REGION, config=ADMIN_CONFIG)
    LostReplies(dynamodb).lose("UpdateItem", 1, mode)

    # When the operator retries it
    answer = _admin(stack, dynamodb=dynamodb).retry("evt_admin_lost")

    # Then the retry is accepted (not a 409), one message is queued, and it completes once
    assert answer["status"] == "QUEUED"
    consume_until_empty(make_consumer(), stack.queue_url)
    assert effects == ["evt_admin_lost"]
    assert store.get("evt_admin_lost")["status"] == "COMPLETED"


def test_an_event_stranded_queued_by_a_failed_send_is_found_and_retried(stack, make_consumer, registry, store):
    # Given an admin retry whose update landed but whose SQS send failed: QUEUED, no message
    effects = _failed_event(stack, make_consumer, registry, "evt_stranded")
    admin = _admin(stack)

    class SendFails:
        def __getattr__(self, name: str) -> Any:
            return getattr(real_sqs, name)

        def send_message(self, **_: Any) -> Any:
            raise ConnectionClosedError(endpoint_url="https://sqs.us-east-1.amazonaws.com/")

    real_sqs, admin.queues.sqs = admin.queues.sqs, SendFails()
    with pytest.raises(ConnectionClosedError):
        admin.retry("evt_stranded")
    admin.queues.sqs = real_sqs
    assert store.get("evt_stranded")["status"] == "QUEUED" and receive_all(stack.queue_url) == []

    # When the operator's bulk retry runs once the retry is overdue
    later = _admin(stack, clock=lambda: time.time() + STRANDED_AFTER_SECONDS + 60)
    answer = later.retry_failed(since="1d")

    # Then it finds the stranded event, queues it, and the handler runs once
    assert answer["retried"] == ["evt_stranded"]
    consume_until_empty(make_consumer(), stack.queue_url)
    assert effects == ["evt_stranded"]
    assert store.get("evt_stranded")["status"] == "COMPLETED"


@pytest.mark.parametrize("mode", ["500", "drop"])
def test_a_sweep_whose_reply_is_lost_marks_and_alerts_once(mode, stack, store, monkeypatch):
    # Given an event left IN_PROGRESS by a stopped consumer, long ago
    no_backoff_sleep(monkeypatch)
    store.claim({"eventId": "evt_sweep_lost", "eventType": "workorder.created"}, now=time.time() - 7200)
    dynamodb = boto3.client("dynamodb", region_name=REGION, config=ADMIN_CONFIG)
    LostReplies(dynamodb).lose("UpdateItem", 1, mode)

    # When the sweep's write is applied but its reply lost once
    swept = _admin(stack, dynamodb=dynamodb).sweep_stalled()

    # Then the retried write recognised itself: marked once, alerted once
    assert swept["marked"] == ["evt_sweep_lost"]
    assert store.get("evt_sweep_lost")["parked"] is True
    assert [a["eventId"] for a in _alerts(stack)] == ["evt_sweep_lost"]


def test_a_redrive_of_large_parked_messages_moves_them_all(stack):
    # Given ten parked messages near ingest's size limit (together far over SQS's batch limit)
    sqs = boto3.client("sqs", region_name=REGION)
    for n in range(10):
        sqs.send_message(
            QueueUrl=stack.dlq_url,
            MessageBody=json.dumps({"id": f"evt_big_{n}", "type": "workorder.created", "pad": "x" * 230_000}),
            MessageAttributes={
                "eventId": {"DataType": "String", "StringValue": f"evt_big_{n}"},
                "parkedReason": {"DataType": "String", "StringValue": "r" * 900},
            },
        )

    # When the operator redrives the DLQ
    answer = _admin(stack).redrive_dlq()

    # Then every message moved (one send per message that large), none failed, none left
    assert answer == {"moved": 10, "failed": 0, "remaining": 0}
    moved = receive_all(stack.queue_url)
    assert sorted(m["MessageAttributes"]["eventId"]["StringValue"] for m in moved) == [
        f"evt_big_{n}" for n in range(10)
    ]
    assert all("parkedReason" not in m["MessageAttributes"] for m in moved)


def test_a_long_error_still_fits_the_alert(stack, make_consumer, registry):
    # Given a handler whose error text is far larger than an SNS message may be
    registry.on("workorder.created")(lambda event: (_ for _ in ()).throw(RuntimeError("<html>" + "x" * 400_000)))
    body = samples.encode(samples.generic_payload("workorder.created", event_id="evt_long_error")).decode()
    record = sqs_record(body, event_id="evt_long_error", receive_count=stack.max_receive_count)

    # When its last allowed attempt fails
    make_consumer().process_batch({"Records": [record]}, LambdaContext())

    # Then the alert is published, its error cut, and it says where the whole record is
    (alert,) = _alerts(stack)
    assert alert["eventId"] == "evt_long_error" and len(alert["error"]) < 1100
    assert alert["show"]["api"] == "GET /admin/webhooks/evt_long_error"


def test_a_permanent_error_parks_with_an_alert(stack, make_consumer, registry, store):
    registry.on("workorder.created")(lambda event: (_ for _ in ()).throw(PermanentError("no such asset")))
    body = samples.encode(samples.generic_payload("workorder.created", event_id="evt_perm_alert")).decode()

    make_consumer().process_batch({"Records": [sqs_record(body, event_id="evt_perm_alert")]}, LambdaContext())

    assert store.get("evt_perm_alert")["parked"] is True
    assert [a["eventId"] for a in _alerts(stack)] == ["evt_perm_alert"]


def test_an_event_the_queue_parked_without_the_consumer_is_alerted_once_by_the_sweep(stack, store):
    # Given an event whose last receives all died before the consumer could claim it: the
    # queue's redrive moved its message to the DLQ (no parkedReason), nobody alerted
    body = samples.encode(samples.generic_payload("workorder.created", event_id="evt_queue_moved")).decode()
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=stack.dlq_url,
        MessageBody=body,
        MessageAttributes={
            "eventId": {"DataType": "String", "StringValue": "evt_queue_moved"},
            "eventType": {"DataType": "String", "StringValue": "workorder.created"},
        },
    )

    # When the sweep runs, twice
    first, second = _admin(stack).sweep_stalled(), _admin(stack).sweep_stalled()

    # Then one alert names it, the event is recorded parked, and the message stays in the DLQ
    assert first["alertedFromDLQ"] == ["evt_queue_moved"] and second["alertedFromDLQ"] == []
    assert [a["eventId"] for a in _alerts(stack)] == ["evt_queue_moved"]
    item = store.get("evt_queue_moved")
    assert item["status"] == "PARKED" and item["parked"] is True and item["alertedAt"]
    assert len(receive_all(stack.dlq_url)) == 1


def test_a_refused_delivery_is_kept_for_inspection_and_never_retried(stack, make_consumer, registry, store):
    # Given a delivery refused for reusing a completed event's id with another payload
    ran: list[Any] = []
    registry.on("workorder.created")(lambda event: ran.append(event.data.get("id")))
    good = samples.encode(samples.generic_payload("workorder.created", event_id="evt_owned", work_order_id=1))
    make_consumer().process_batch({"Records": [sqs_record(good.decode(), event_id="evt_owned")]}, None)
    other = json.dumps({"id": "evt_owned", "type": "workorder.created", "data": {"id": 2}})
    make_consumer().process_batch({"Records": [sqs_record(other, event_id="evt_owned")]}, None)
    refused = EventStore.invalid_key("default", other)
    assert store.get(refused)["claimedEventId"] == "evt_owned"

    # When an operator retries it, or retries everything that failed
    admin = _admin(stack)
    with pytest.raises(AdminError, match="refused delivery"):
        admin.retry(refused)
    bulk = admin.retry_failed(since="1d")

    # Then nothing is sent: the refused payload never runs, the record stays as it was
    assert refused not in bulk["retried"] and receive_all(stack.queue_url) == []
    assert ran == [1] and store.get(refused)["status"] == "PARKED"
