"""Shared fixtures: fake AWS credentials, moto, the stack's resources, events, contexts.

Table key schemas are read from template.yaml so the schema has one source of truth.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

ROOT = Path(__file__).resolve().parent.parent

# The sam local tier's time per step (tests/samlocal), printed at the end of the run. A file,
# because under pytest-xdist a worker runs the tier and the controller prints the summary
# (and only this conftest, not the tier's own, is loaded by the controller).
SAMLOCAL_TIMINGS = ROOT / "test-output" / "samlocal-timings.json"


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the controller, or a run without workers
        SAMLOCAL_TIMINGS.unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SAMLOCAL_TIMINGS.exists():
        timings = json.loads(SAMLOCAL_TIMINGS.read_text())
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
        terminalreporter.write_line(f"sam local tier, by step: {steps}")


EVENTS = ROOT / "events"
REGION = "us-east-1"

# The caller's own AWS settings, before the fake ones below replace them: only the
# end-to-end tests against a deployed stack (AWS_SAM_STACK_NAME) use them.
CALLER_AWS_ENV = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_SERVICE_NAME": "maintainx-webhooks",
        "POWERTOOLS_METRICS_NAMESPACE": "MaintainXWebhooks",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
)
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_ENDPOINT_URL", None)


def load_template() -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse((ROOT / "template.yaml").read_text())


def table_definition(logical_id: str = "EventsTable") -> dict[str, Any]:
    """CreateTable arguments for a table, from its definition in template.yaml."""
    props = load_template()["Resources"][logical_id]["Properties"]
    args: dict[str, Any] = {
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if props.get("GlobalSecondaryIndexes"):
        args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    return args


@dataclass
class Stack:
    """The AWS resources the functions use, created in moto."""

    queue_url: str
    dlq_url: str
    table_name: str
    topic_arn: str
    alerts_queue_url: str  # subscribed to the topic, to see published alerts
    max_receive_count: int

    def env(self) -> dict[str, str]:
        return {
            "QUEUE_URL": self.queue_url,
            "DLQ_URL": self.dlq_url,
            "TABLE_NAME": self.table_name,
            "ALERT_TOPIC_ARN": self.topic_arn,
            "MAX_RECEIVE_COUNT": str(self.max_receive_count),
        }


@pytest.fixture(autouse=True)
def fresh_circuit_breakers() -> None:
    """Each test starts with every integration's circuit breaker closed (they are process-wide)."""
    from mx_webhooks import breaker

    breaker.configure(breaker.BreakerSettings())


@pytest.fixture
def aws() -> Iterator[None]:
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def output(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Everything the functions print (structured logs and EMF metrics), parsed.

    The Powertools logger keeps the stream it was created with, and pytest swaps
    ``sys.stdout`` per phase; route the handler to whatever ``sys.stdout`` is at
    write time for the length of the test.
    """
    import sys

    from mx_webhooks.observability import logger

    class CurrentStdout:
        def write(self, text: str) -> int:
            return sys.stdout.write(text)

        def flush(self) -> None:
            sys.stdout.flush()

    handler = logger.registered_handler
    previous = handler.stream  # not setStream(): it flushes the old stream, which may be closed
    handler.stream = CurrentStdout()

    def lines() -> list[dict[str, Any]]:
        text = capsys.readouterr().out
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    try:
        yield lines
    finally:
        handler.stream = previous


@pytest.fixture
def atomic_dynamodb(aws: None) -> Iterator[None]:
    """Make moto's item writes atomic, as DynamoDB's are.

    DynamoDB evaluates a condition and writes the item as one atomic step; moto's
    in-process backend does not lock, so two threads can both pass a condition. The
    concurrency tests serialise moto's writes to test our logic, not moto's (the same
    lock the local stack takes: ``devtools.local_stack.chaos.atomic_item_writes``).
    """
    from devtools.local_stack.chaos import atomic_item_writes

    with atomic_item_writes():
        yield


@pytest.fixture
def stack(aws: None) -> Stack:
    sqs = boto3.client("sqs", region_name=REGION)
    dlq_url = sqs.create_queue(QueueName="events-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName="events",
        Attributes={
            "VisibilityTimeout": "360",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"}),
        },
    )["QueueUrl"]
    boto3.client("dynamodb", region_name=REGION).create_table(TableName="events", **table_definition())
    sns = boto3.client("sns", region_name=REGION)
    topic_arn = sns.create_topic(Name="alerts")["TopicArn"]
    alerts_url = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    alerts_arn = sqs.get_queue_attributes(QueueUrl=alerts_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=alerts_arn, Attributes={"RawMessageDelivery": "true"})
    return Stack(queue_url, dlq_url, "events", topic_arn, alerts_url, max_receive_count=3)


# The local sources' secrets the ingest fixtures verify with: "requests" has a new and an old one.
LOCAL_SECRETS = json.dumps({"default": ["local-dev-secret"], "requests": ["requests-new", "requests-old"]})


@pytest.fixture
def ingestor(stack: Stack) -> Any:
    """The real ingest logic on the moto queue, with local secrets."""
    from mx_webhooks.ingest import IngestConfig, Ingestor

    config = IngestConfig.from_env({"QUEUE_URL": stack.queue_url, "LOCAL_WEBHOOK_SECRETS": LOCAL_SECRETS})
    return Ingestor(config, boto3.client("sqs", region_name=REGION))


@pytest.fixture
def registry() -> Any:
    """An empty handler registry of the test's own (not the global one the examples use)."""
    from mx_webhooks.registry import Registry

    return Registry()


class LambdaContext:
    function_name = "test-function"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    memory_limit_in_mb = 512
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/test-function"
    log_stream_name = "local"

    def __init__(self, remaining_ms: int = 60_000) -> None:
        self._remaining = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()


def load_event(name: str) -> dict[str, Any]:
    """An event from events/, e.g. ``load_event("ingest/maintainx-new-work-order.json")``."""
    return json.loads((EVENTS / name).read_text())


def sqs_record(
    body: str,
    *,
    event_id: str | None = None,
    event_type: str = "workorder.created",
    source: str = "default",
    receive_count: int = 1,
    message_id: str | None = None,
    receipt_handle: str = "",
) -> dict[str, Any]:
    """One record of an SQS event, as Lambda's event source mapping delivers it."""
    import uuid

    attributes = {
        "eventType": {"stringValue": event_type, "dataType": "String", "stringListValues": [], "binaryListValues": []},
        "source": {"stringValue": source, "dataType": "String", "stringListValues": [], "binaryListValues": []},
    }
    if event_id:
        attributes["eventId"] = {
            "stringValue": event_id,
            "dataType": "String",
            "stringListValues": [],
            "binaryListValues": [],
        }
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": receipt_handle or uuid.uuid4().hex,
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": str(int(time.time() * 1000)),  # sent now
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1700000000000",
        },
        "messageAttributes": attributes,
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:events",
        "awsRegion": REGION,
    }


@pytest.fixture
def sqs_batch() -> Callable[..., dict[str, Any]]:
    def make(*records: dict[str, Any]) -> dict[str, Any]:
        return {"Records": list(records)}

    return make


def receive_all(queue_url: str, *, attribute_names: bool = True) -> list[dict[str, Any]]:
    """Drain every visible message of a queue (moto)."""
    sqs = boto3.client("sqs", region_name=REGION)
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"] if attribute_names else [],
            AttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)
