"""Integration fixtures: the real ingest and consumer wired to moto resources."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from mx_webhooks.consumer import Consumer, ConsumerConfig
from mx_webhooks.registry import Registry
from mx_webhooks.store import EventStore
from tests.conftest import REGION, Stack, receive_all, sqs_record


@pytest.fixture
def consumer_config(stack: Stack) -> ConsumerConfig:
    return ConsumerConfig.model_validate({**stack.env(), "BACKOFF_JITTER": "0", "LEASE_SECONDS": "60"})


@pytest.fixture
def store(stack: Stack) -> EventStore:
    return EventStore(boto3.client("dynamodb", region_name=REGION), stack.table_name, lease_seconds=60)


@pytest.fixture
def consumer(consumer_config: ConsumerConfig, store: EventStore, registry: Registry) -> Consumer:
    return Consumer(
        consumer_config,
        store,
        registry,
        boto3.client("sqs", region_name=REGION),
        boto3.client("sns", region_name=REGION),
    )


@pytest.fixture
def drain_to_records(stack: Stack) -> Callable[..., list[dict[str, Any]]]:
    """Receive what ingest queued and shape it as Lambda's SQS event records."""

    def drain(queue_url: str | None = None) -> list[dict[str, Any]]:
        records = []
        for message in receive_all(queue_url or stack.queue_url):
            attrs = {
                name: {"stringValue": value.get("StringValue"), "dataType": value["DataType"]}
                for name, value in message.get("MessageAttributes", {}).items()
            }
            record = sqs_record(
                message["Body"],
                message_id=message["MessageId"],
                receipt_handle=message["ReceiptHandle"],
                receive_count=int(message["Attributes"]["ApproximateReceiveCount"]),
            )
            record["messageAttributes"] = attrs
            records.append(record)
        return records

    return drain


@pytest.fixture
def calls() -> Iterator[list[str]]:
    yield []
