"""One attribute contract for every queued message: ingest, a consumer park, an admin retry."""

from __future__ import annotations

import boto3

from devtools import samples
from mx_webhooks.admin import Admin, AdminConfig
from mx_webhooks.message import ATTRIBUTES, PARKED_REASON
from mx_webhooks.registry import PermanentError
from tests.conftest import REGION, LambdaContext, receive_all
from tests.reliability.conftest import message_to_record


def test_ingest_a_consumer_park_and_an_admin_retry_send_the_same_attributes(stack, ingestor, consumer, registry):
    # Given an event whose handler fails permanently (so the consumer parks it)
    registry.on("workorder.created")(lambda event: (_ for _ in ()).throw(PermanentError("no such asset")))
    body = samples.encode(samples.generic_payload("workorder.created", event_id="evt_contract"))

    # When ingest queues it, the consumer parks it, and an operator retries it
    ingestor.handle(samples.api_event(body, samples.signed_headers(body, samples.LOCAL_SECRET, "generic")))
    (queued,) = receive_all(stack.queue_url)
    consumer.process_batch({"Records": [message_to_record(queued)]}, LambdaContext())
    boto3.client("sqs", region_name=REGION).delete_message(
        QueueUrl=stack.queue_url, ReceiptHandle=queued["ReceiptHandle"]
    )
    (parked,) = receive_all(stack.dlq_url)
    config = AdminConfig(TABLE_NAME=stack.table_name, QUEUE_URL=stack.queue_url, DLQ_URL=stack.dlq_url)
    Admin(config, boto3.client("dynamodb", region_name=REGION), boto3.client("sqs", region_name=REGION)).retry(
        "evt_contract"
    )
    (retried,) = receive_all(stack.queue_url)

    # Then all three carry exactly the contract's attributes, with the same values (the
    # DLQ adds only why it was parked)
    def attributes(message: dict) -> dict[str, str]:
        return {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}

    expected = {"eventId": "evt_contract", "eventType": "workorder.created", "source": "default"}
    assert set(expected) == set(ATTRIBUTES)
    assert attributes(queued) == expected
    assert attributes(retried) == expected
    assert attributes(parked) == {**expected, PARKED_REASON: attributes(parked)[PARKED_REASON]}
    assert "no such asset" in attributes(parked)[PARKED_REASON]
