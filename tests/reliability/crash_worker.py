"""A consumer process for the kill test: ``python -m tests.reliability.crash_worker <dir>``.

Receives one message from the queue (moto server, ``AWS_ENDPOINT_URL``), runs the
consumer on it with two handlers, ``first`` (not idempotent, so its success is
checkpointed) and ``second``, which announces itself and then hangs until the test
kills the process with SIGKILL, as Lambda does to a timed-out invocation.
Every handler run is appended to ``<dir>/runs.log``: the side effect being counted.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import boto3

from mx_webhooks.consumer import Consumer, ConsumerConfig
from mx_webhooks.registry import Registry
from mx_webhooks.store import EventStore


def register(registry: Registry, workdir: Path, *, hang: bool) -> None:
    log = workdir / "runs.log"

    def record(line: str) -> None:
        with log.open("a") as f:
            f.write(line + "\n")

    @registry.on("workorder.created", name="first")
    def first(event: Any) -> None:
        record("first")

    @registry.on("workorder.created", name="second")
    def second(event: Any) -> None:
        record("second:start")
        if hang:
            (workdir / "inside-second").touch()
            time.sleep(120)  # killed long before this ends
        record("second:done")


def build(registry: Registry) -> tuple[Consumer, Any]:
    config = ConsumerConfig.model_validate({**os.environ, "BACKOFF_JITTER": "0"})
    sqs = boto3.client("sqs")
    store = EventStore(boto3.client("dynamodb"), config.table_name, lease_seconds=config.lease_seconds)
    return Consumer(config, store, registry, sqs, boto3.client("sns")), sqs


class _Context:
    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def as_record(message: dict[str, Any]) -> dict[str, Any]:
    """An SQS message as Lambda's event source mapping hands it to the function."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message["Attributes"],
        "messageAttributes": {
            name: {"stringValue": value.get("StringValue"), "dataType": value["DataType"]}
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "eventSource": "aws:sqs",
    }


def main() -> None:
    # No test modules imported here: tests/conftest.py clears AWS_ENDPOINT_URL on import.
    workdir = Path(sys.argv[1])
    registry = Registry()
    register(registry, workdir, hang=True)
    consumer, sqs = build(registry)
    queue_url = os.environ["QUEUE_URL"]
    messages: list[dict[str, Any]] = []
    while not messages:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=1, AttributeNames=["All"], MessageAttributeNames=["All"]
        ).get("Messages", [])
    consumer.process_batch({"Records": [as_record(messages[0])]}, _Context())


if __name__ == "__main__":
    main()
