"""The brief's own retry profile through the real consumer: delays 1, 2, 4, 8 s, the fifth failure parks."""

from __future__ import annotations

import json
from typing import Any

import boto3

from devtools import samples
from tests.conftest import REGION, LambdaContext, receive_all
from tests.reliability.crash_worker import as_record


def test_the_briefs_profile_backs_off_1_2_4_8_seconds_and_parks_on_the_fifth_failure(
    consumer, registry, store, stack, monkeypatch
):
    # Given the brief's profile (5 attempts, exponential from 1 s, no jitter) and a handler that
    # always fails, its event queued in the real (moto) queue
    consumer.config = consumer.config.model_copy(
        update={"retry_attempts": 5, "max_receive_count": 140, "backoff_base_seconds": 1, "backoff_jitter": 0}
    )
    registry.on("workorder.created", name="always_fails")(lambda event: (_ for _ in ()).throw(ConnectionError("down")))
    set_visibility: list[int] = []
    real_back_off = consumer.queues.back_off

    def back_off(receipt: str, delay: int) -> None:
        set_visibility.append(delay)
        real_back_off(receipt, delay)

    monkeypatch.setattr(consumer.queues, "back_off", back_off)
    sqs = boto3.client("sqs", region_name=REGION)
    dlq_arn = sqs.get_queue_attributes(QueueUrl=stack.dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 140})  # the template's backstop
    sqs.set_queue_attributes(QueueUrl=stack.queue_url, Attributes={"RedrivePolicy": redrive})
    body = samples.encode(samples.generic_payload("workorder.created", event_id="evt_brief")).decode()
    attributes = {
        "eventId": {"DataType": "String", "StringValue": "evt_brief"},
        "eventType": {"DataType": "String", "StringValue": "workorder.created"},
        "source": {"DataType": "String", "StringValue": "default"},
    }
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body, MessageAttributes=attributes)

    # When the queue delivers it as often as the consumer asks (each time it is visible again)
    answers = []
    for _ in range(5):
        (message,) = _receive_when_visible(sqs, stack.queue_url)
        answers.append(consumer.process_batch({"Records": [as_record(message)]}, LambdaContext()))

    # Then the visibility delays were 1, 2, 4 and 8 s, and the fifth failure parked the event:
    # recorded PARKED, in the DLQ with the reason, the queue empty
    assert set_visibility == [1, 2, 4, 8]
    assert [len(a["batchItemFailures"]) for a in answers] == [1, 1, 1, 1, 0]
    item = store.get("evt_brief")
    assert item["status"] == "PARKED" and item["attempts"] == 5
    assert "out of retries after 5 attempts" in item["lastError"]
    (parked,) = receive_all(stack.dlq_url)
    assert "out of retries" in parked["MessageAttributes"]["parkedReason"]["StringValue"]
    assert receive_all(stack.queue_url) == []


def _receive_when_visible(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    for _ in range(30):
        answer = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=1,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        if answer.get("Messages"):
            return list(answer["Messages"])
    raise AssertionError("the message did not come back")
