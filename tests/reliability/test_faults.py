"""Injected faults: each one survived, with nothing lost and nothing run twice.

Faults are injected at botocore's transport (``FaultInjector``) or by killing a real
process, so the code under test runs its real calls, retries and error handling
against moto.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

from devtools import samples
from mx_webhooks import store as store_module
from mx_webhooks.consumer import ConsumerConfig, client_config
from mx_webhooks.ingest import IngestConfig, Ingestor
from tests.conftest import LOCAL_SECRETS, REGION, LambdaContext, receive_all, sqs_record
from tests.reliability.conftest import FaultInjector, error_response, message_to_record

# The retry settings the functions use (functions/*/..._handler.py), so a test's client
# absorbs (or fails on) exactly what the deployed one would. botocore's ``max_attempts``
# counts retries: 2 means 3 attempts in all, 5 means 6. (The consumer's "adaptive" mode
# is "standard" plus client-side rate limiting.)
INGEST_ATTEMPTS = 3
CONSUMER_ATTEMPTS = 6
INGEST_SQS_CONFIG = Config(
    connect_timeout=2, read_timeout=3, retries={"max_attempts": 2, "mode": "standard"}, parameter_validation=False
)
CONSUMER_CONFIG = client_config(ConsumerConfig.model_validate({"TABLE_NAME": "-", "QUEUE_URL": "-", "DLQ_URL": "-"}))


def throttled() -> Any:
    return error_response(
        400, "ProvisionedThroughputExceededException", "Rate of requests exceeds the allowed throughput"
    )


def unavailable() -> Any:
    return EndpointConnectionError(endpoint_url="https://sqs.us-east-1.amazonaws.com/")


def no_backoff_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore sleeps between retries, and adaptive mode's token bucket holds requests
    back after throttling; the retries still happen, the test need not wait for them."""
    import botocore.retries.bucket
    import botocore.retries.standard

    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, context: 0)
    monkeypatch.setattr(botocore.retries.bucket.TokenBucket, "acquire", lambda self, amount=1, block=True: True)


def consume_until_empty(
    consumer: Any, queue_url: str, *, rounds: int = 10, on_round: Callable[[int], None] | None = None
) -> list[dict[str, Any]]:
    """Play Lambda's event source mapping: receive, process, delete what succeeded.

    Failed records are made visible again at once (the test does not wait out the
    backoff). Returns every batch result.
    """
    sqs = boto3.client("sqs", region_name=REGION)
    results = []
    for round_no in range(rounds):
        if on_round:
            on_round(round_no)
        messages = receive_all(queue_url)
        if not messages:
            return results
        records = [message_to_record(m) for m in messages]
        result = consumer.process_batch({"Records": records}, LambdaContext())
        results.append(result)
        failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
        for record in records:
            if record["messageId"] in failed:
                sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
                )
            else:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=record["receiptHandle"])
    raise AssertionError(f"queue not empty after {rounds} rounds")


# -- SQS unavailable at ingest ---------------------------------------------------------------


@pytest.fixture
def ingest_sqs(stack: Any) -> Any:
    return boto3.client("sqs", region_name=REGION, config=INGEST_SQS_CONFIG)


def _ingestor(stack: Any, sqs: Any) -> Ingestor:
    return Ingestor(IngestConfig.from_env({"QUEUE_URL": stack.queue_url, "LOCAL_WEBHOOK_SECRETS": LOCAL_SECRETS}), sqs)


def test_sqs_down_at_ingest_answers_503_and_the_retried_delivery_is_processed_once(
    stack, ingest_sqs, consumer, registry, monkeypatch
):
    # Given SQS unreachable for every attempt ingest's client makes
    no_backoff_sleep(monkeypatch)
    ran: list[str] = []
    registry.on("workorder.created")(lambda event: ran.append(event.event_id))
    faults = FaultInjector(ingest_sqs)
    faults.fail("SendMessage", INGEST_ATTEMPTS, unavailable)
    ingestor = _ingestor(stack, ingest_sqs)
    body = samples.encode(samples.maintainx_payload("workorder.created", work_order_id=501))

    # When MaintainX delivers, then retries the same body with a new signature timestamp
    first = ingestor.handle(samples.api_event(body, samples.signed_headers(body, samples.LOCAL_SECRET, "maintainx")))
    nothing_queued = receive_all(stack.queue_url) == []
    retry = ingestor.handle(
        samples.api_event(body, samples.signed_headers(body, samples.LOCAL_SECRET, "maintainx", int(time.time()) + 1))
    )

    # Then the first answer is 503 with Retry-After, the retry 202, and the handler runs once
    assert first["statusCode"] == 503 and first["headers"]["retry-after"]
    assert faults.injected["SendMessage"] == INGEST_ATTEMPTS and nothing_queued
    assert retry["statusCode"] == 202
    consume_until_empty(consumer, stack.queue_url)
    assert ran == [json.loads(retry["body"])["eventId"]]


def test_a_lost_send_response_is_answered_503_and_the_duplicate_it_creates_runs_once(
    stack, ingest_sqs, consumer, registry, store
):
    # Given SQS that stores the message but whose answer never arrives (read timeout)
    ran: list[str] = []
    registry.on("workorder.created")(lambda event: ran.append(event.event_id))

    class AnswerLost:
        def __init__(self, real: Any) -> None:
            self.real, self.lost = real, 1

        def send_message(self, **kwargs: Any) -> Any:
            result = self.real.send_message(**kwargs)
            if self.lost:
                self.lost -= 1
                raise ReadTimeoutError(endpoint_url="https://sqs.us-east-1.amazonaws.com/")
            return result

    ingestor = _ingestor(stack, AnswerLost(ingest_sqs))
    body = samples.encode(samples.maintainx_payload("workorder.created", work_order_id=502))

    # When ingest answers 503 and MaintainX, as it must, retries
    first = ingestor.handle(samples.api_event(body, samples.signed_headers(body, samples.LOCAL_SECRET, "maintainx")))
    retry = ingestor.handle(
        samples.api_event(body, samples.signed_headers(body, samples.LOCAL_SECRET, "maintainx", int(time.time()) + 1))
    )

    # Then the queue holds the event twice, and the consumer runs its handler once
    assert (first["statusCode"], retry["statusCode"]) == (503, 202)
    event_id = json.loads(retry["body"])["eventId"]
    consume_until_empty(consumer, stack.queue_url)
    assert ran == [event_id]
    assert store.get(event_id)["status"] == "COMPLETED"


# -- DynamoDB throttling in the consumer -----------------------------------------------------


def _queue_event(stack: Any, event_id: str, event_type: str = "workorder.created") -> str:
    body = samples.encode(samples.generic_payload(event_type, event_id=event_id)).decode()
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=stack.queue_url,
        MessageBody=body,
        MessageAttributes={"eventId": {"DataType": "String", "StringValue": event_id}},
    )
    return body


def test_brief_dynamodb_throttling_is_absorbed_by_client_retries(stack, make_consumer, registry, store, monkeypatch):
    # Given DynamoDB throttling the consumer's first two writes (its client retries 5 times)
    no_backoff_sleep(monkeypatch)
    ran: list[str] = []
    registry.on("workorder.created")(lambda event: ran.append(event.event_id))
    dynamodb = boto3.client("dynamodb", region_name=REGION, config=CONSUMER_CONFIG)
    faults = FaultInjector(dynamodb)
    faults.fail("UpdateItem", 2, throttled)
    consumer = make_consumer(dynamodb=dynamodb)
    _queue_event(stack, "evt_throttle_brief")

    # When the consumer gets the message
    results = consume_until_empty(consumer, stack.queue_url)

    # Then the record succeeds on its first delivery and the handler ran once
    assert faults.injected["UpdateItem"] == 2
    assert results == [{"batchItemFailures": []}]
    assert ran == ["evt_throttle_brief"]
    assert store.get("evt_throttle_brief")["status"] == "COMPLETED"


@pytest.mark.parametrize("write", ["claim", "finish"])
def test_throttling_beyond_client_retries_fails_the_record_and_its_retry_runs_the_handler_once(
    write, stack, make_consumer, registry, store, monkeypatch
):
    # Given DynamoDB throttling every attempt of one write (the claim, or the final record)
    no_backoff_sleep(monkeypatch)
    ran: list[str] = []
    registry.on("workorder.created")(lambda event: ran.append(event.event_id))
    dynamodb = boto3.client("dynamodb", region_name=REGION, config=CONSUMER_CONFIG)
    faults = FaultInjector(dynamodb)
    consumer = make_consumer(dynamodb=dynamodb)
    _queue_event(stack, f"evt_throttle_{write}")

    def throttle_first_round(round_no: int) -> None:
        if round_no == 0:
            # claim = the 1st UpdateItem; finish = the 2nd: let the claim through first
            faults.plans["UpdateItem"] = ([] if write == "claim" else [lambda: None]) + [throttled] * CONSUMER_ATTEMPTS

    # When the consumer gets the message, fails, and SQS redelivers it
    results = consume_until_empty(consumer, stack.queue_url, on_round=throttle_first_round)

    # Then the first delivery fails, a later one succeeds, and the handler ran exactly once
    assert len(results[0]["batchItemFailures"]) == 1
    assert results[-1] == {"batchItemFailures": []}
    assert ran == [f"evt_throttle_{write}"]
    item = store.get(f"evt_throttle_{write}")
    assert item["status"] == "COMPLETED" and item["attempts"] == (1 if write == "claim" else 2)


def test_a_failed_handler_whose_outcome_could_not_be_recorded_is_still_retried(
    stack, make_consumer, registry, store, monkeypatch
):
    # Given a handler that fails once, and DynamoDB throttling the write that records the failure
    no_backoff_sleep(monkeypatch)
    attempts: list[str] = []

    @registry.on("workorder.created")
    def flaky(event):
        attempts.append(event.event_id)
        if len(attempts) == 1:
            raise ConnectionError("Slack is down")

    dynamodb = boto3.client("dynamodb", region_name=REGION, config=CONSUMER_CONFIG)
    faults = FaultInjector(dynamodb)
    consumer = make_consumer(dynamodb=dynamodb)
    _queue_event(stack, "evt_unrecorded_failure")

    def throttle_first_round(round_no: int) -> None:
        if round_no == 0:
            faults.plans["UpdateItem"] = [lambda: None] + [throttled] * CONSUMER_ATTEMPTS

    # When SQS redelivers the record
    consume_until_empty(consumer, stack.queue_url, on_round=throttle_first_round)

    # Then the handler was retried and the event completed: nothing was lost
    assert attempts == ["evt_unrecorded_failure", "evt_unrecorded_failure"]
    assert store.get("evt_unrecorded_failure")["status"] == "COMPLETED"


def test_when_even_the_release_fails_the_retry_waits_out_the_lease_and_finishes_the_event(
    stack, make_consumer, registry, store, monkeypatch
):
    # Given DynamoDB refusing every write after the claim for a whole attempt (finish and release)
    no_backoff_sleep(monkeypatch)
    ran: list[str] = []
    registry.on("workorder.created")(lambda event: ran.append(event.event_id))
    dynamodb = boto3.client("dynamodb", region_name=REGION, config=CONSUMER_CONFIG)
    faults = FaultInjector(dynamodb)
    faults.fail("UpdateItem", 1, lambda: None)
    faults.fail("UpdateItem", 2 * CONSUMER_ATTEMPTS, throttled)
    consumer = make_consumer(dynamodb=dynamodb, lease_seconds=30)
    delays: list[int] = []
    consumer.sqs.meta.events.register(
        "provide-client-params.sqs.ChangeMessageVisibility",
        lambda params, **_: delays.append(params["VisibilityTimeout"]),
    )
    _queue_event(stack, "evt_store_down")
    (message,) = receive_all(stack.queue_url)

    # When the attempt fails
    first = consumer.process_batch({"Records": [message_to_record(message)]}, LambdaContext())

    # Then the record is retried no sooner than the lease ends (31 s, not the 10 s backoff,
    # which would bring it back to a "busy" claim that acknowledges it)
    assert len(first["batchItemFailures"]) == 1
    assert delays == [31]
    assert store.get("evt_store_down")["status"] == "IN_PROGRESS"

    # and once the lease has ended, the redelivery takes the claim over and completes the event
    class Later:
        @staticmethod
        def time() -> float:
            return time.time() + 31

    monkeypatch.setattr(store_module, "time", Later)
    record = message_to_record(message)
    record["attributes"]["ApproximateReceiveCount"] = "2"
    assert consumer.process_batch({"Records": [record]}, LambdaContext()) == {"batchItemFailures": []}
    assert store.get("evt_store_down")["status"] == "COMPLETED"
    assert ran == ["evt_store_down", "evt_store_down"]  # its success could not be recorded: at least once


# -- poison messages -------------------------------------------------------------------------


def test_poison_messages_are_parked_on_their_first_delivery_and_the_rest_of_the_batch_completes(
    stack, make_consumer, registry, store, monkeypatch
):
    # Given a queue (redrive after 3 receives) holding good events, an unparseable message,
    # and an event its handler rejects permanently; and the DLQ unreachable for the first try
    from mx_webhooks.registry import PermanentError

    no_backoff_sleep(monkeypatch)
    ran: list[str] = []

    @registry.on("workorder.created", "request.created")
    def handle(event):
        ran.append(event.event_id)
        if event.type == "request.created":
            raise PermanentError("request has no asset")

    for n in range(3):
        _queue_event(stack, f"evt_good_{n}")
    _queue_event(stack, "evt_rejected", "request.created")
    boto3.client("sqs", region_name=REGION).send_message(QueueUrl=stack.queue_url, MessageBody="{truncated")
    consumer_sqs = boto3.client("sqs", region_name=REGION, config=INGEST_SQS_CONFIG)
    faults = FaultInjector(consumer_sqs)
    faults.fail("SendMessage", 2 * INGEST_ATTEMPTS, unavailable)  # parking both poisons fails once
    consumer = make_consumer(sqs=consumer_sqs)

    # When the consumer works the queue
    results = consume_until_empty(consumer, stack.queue_url)

    # Then the first round completes the good events and retries the two poisons it could not park,
    assert len(results[0]["batchItemFailures"]) == 2
    # the second parks them (before the queue's own redrive, at 3 receives), and nothing is lost
    assert len(results) == 2 and results[1] == {"batchItemFailures": []}
    parked = receive_all(stack.dlq_url)
    assert sorted(m["Body"][:10] for m in parked) == sorted(["{truncated", _queue_body_prefix("evt_rejected")])
    assert all(store.get(f"evt_good_{n}")["status"] == "COMPLETED" for n in range(3))
    rejected = store.get("evt_rejected")
    assert rejected["status"] == "PARKED" and rejected["parked"] is True
    assert sorted(ran) == ["evt_good_0", "evt_good_1", "evt_good_2", "evt_rejected", "evt_rejected"]


def _queue_body_prefix(event_id: str) -> str:
    return json.dumps({"id": event_id}, separators=(",", ":"))[:10]


# -- many concurrent duplicates --------------------------------------------------------------


def test_sixteen_concurrent_deliveries_of_one_event_run_its_handler_once(
    stack, ingestor, make_consumer, registry, store, atomic_dynamodb
):
    # Given MaintainX retrying one delivery 16 times at once (a slow receiver), all accepted
    runs: list[str] = []
    lock = threading.Lock()

    @registry.on("workorder.created")
    def slow(event):
        time.sleep(0.05)
        with lock:
            runs.append(event.event_id)

    body = samples.encode(samples.maintainx_payload("workorder.created", work_order_id=777))
    barrier = threading.Barrier(16)
    answers: list[int] = []

    def deliver(n: int) -> None:
        headers = samples.signed_headers(body, samples.LOCAL_SECRET, "maintainx", int(time.time()) - n)
        barrier.wait()
        answers.append(ingestor.handle(samples.api_event(body, headers))["statusCode"])

    _run_threads(deliver, 16)
    assert answers == [202] * 16
    records = [message_to_record(m) for m in receive_all(stack.queue_url)]
    assert len(records) == 16

    # When 16 consumer invocations each get one of the copies at the same moment
    consumers = [make_consumer() for _ in range(16)]
    results: list[dict[str, Any]] = []
    barrier = threading.Barrier(16)

    def consume(n: int) -> None:
        barrier.wait()
        results.append(consumers[n].process_batch({"Records": [records[n]]}, LambdaContext()))

    _run_threads(consume, 16)

    # Then the handler ran exactly once; the copies that found it busy went back to the queue
    # and, retried once the holder finished, are acknowledged as duplicates
    event_id = records[0]["messageAttributes"]["eventId"]["stringValue"]
    assert runs == [event_id]
    returned = {f["itemIdentifier"] for r in results for f in r["batchItemFailures"]}
    assert len(returned) <= 15  # a copy that came after the holder finished is a duplicate, acknowledged
    retried = consumers[0].process_batch(
        {"Records": [r for r in records if r["messageId"] in returned]}, LambdaContext()
    )
    assert retried == {"batchItemFailures": []} and runs == [event_id]
    item = store.get(event_id)
    assert item["status"] == "COMPLETED" and item["attempts"] == 1


def _run_threads(target: Callable[[int], None], count: int) -> None:
    errors: list[BaseException] = []

    def guarded(n: int) -> None:
        try:
            target(n)
        except BaseException as exc:  # surfaced below: a thread's exception would vanish
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors


# -- the alert topic unavailable -------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [unavailable, lambda: error_response(403, "AuthorizationError", "KMS key disabled", json_protocol=False)],
    ids=["sns_unreachable", "sns_denied"],
)
def test_with_the_alert_topic_unavailable_the_last_failure_is_still_recorded_and_parked(
    fault, stack, make_consumer, registry, store, monkeypatch
):
    # Given a handler failing on the event's last allowed attempt, and SNS failing every publish
    no_backoff_sleep(monkeypatch)
    registry.on("workorder.created")(lambda event: (_ for _ in ()).throw(ConnectionError("Slack is down")))
    sns = boto3.client("sns", region_name=REGION, config=CONSUMER_CONFIG)
    faults = FaultInjector(sns)
    faults.fail("Publish", CONSUMER_ATTEMPTS, fault)
    consumer = make_consumer(sns=sns)
    body = samples.encode(samples.generic_payload("workorder.created", event_id="evt_no_alert")).decode()
    record = sqs_record(body, event_id="evt_no_alert", receive_count=stack.max_receive_count)

    # When the consumer processes it
    result = consumer.process_batch({"Records": [record]}, LambdaContext())

    # Then the publish was tried and failed, yet the message is parked in the DLQ (the DLQ's
    # own alarm still fires) and the event log holds the failure, parked, with its reason
    assert faults.injected["Publish"] >= 1
    assert result == {"batchItemFailures": []}
    assert len(receive_all(stack.dlq_url)) == 1
    item = store.get("evt_no_alert")
    assert item["status"] == "PARKED" and item["parked"] is True
    assert "Slack is down" in item["lastError"]
    assert receive_all(stack.alerts_queue_url) == []
