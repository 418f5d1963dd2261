"""Consumer benchmarks for ``devtools.bench``: DynamoDB calls per event, wall time per batch.

Runs in the bench's own process (the layer's source is on ``PYTHONPATH``).

- Calls are counted with a ``before-call`` hook on the DynamoDB client, against moto,
  so conditional writes really fail for a duplicate.
- Wall time per batch uses stubbed answers (a ``before-send`` hook) plus a sleep of
  ``delay`` seconds per HTTP attempt, for both our consumer and the Powertools recipe.
  Stubs rather than moto here because moto does DynamoDB's server-side work on our
  CPU and under our GIL, which real DynamoDB does not; that would measure moto.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from devtools.samples import encode, maintainx_payload

REGION = "us-east-1"
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/events"
DLQ_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/events-dlq"


def sqs_record(body: str, event_id: str, event_type: str) -> dict[str, Any]:
    """One record as Lambda's SQS event source mapping delivers it (attributes as ingest sets them)."""

    def attribute(value: str) -> dict[str, Any]:
        return {"stringValue": value, "dataType": "String", "stringListValues": [], "binaryListValues": []}

    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": uuid.uuid4().hex,
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000))},
        "messageAttributes": {
            "eventId": attribute(event_id),
            "eventType": attribute(event_type),
            "source": attribute("default"),
        },
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:events",
        "awsRegion": REGION,
    }


def make_batch(size: int = 10, *, same_entity: bool = False, first_id: int = 1) -> dict[str, Any]:
    """``size`` new-work-order deliveries, one work order each (or all on one work order)."""
    from mx_webhooks import normalize

    records = []
    for index in range(size):
        payload = maintainx_payload("workorder.created", work_order_id=first_id if same_entity else first_id + index)
        payload["userId"] = first_id + index  # distinct bodies -> distinct event ids
        records.append(sqs_record(encode(payload).decode(), normalize.derive_event_id(payload), "workorder.created"))
    return {"Records": records}


def _registry(count: int, *, idempotent: bool) -> Any:
    from mx_webhooks.registry import Registry

    registry = Registry()
    for index in range(count):
        registry.on("workorder.created", name=f"bench.handler{index}", idempotent=idempotent)(lambda event: None)
    return registry


def _consumer(dynamodb: Any, sqs: Any, registry: Any, table: str = "events") -> Any:
    from mx_webhooks.consumer import Consumer, ConsumerConfig
    from mx_webhooks.store import EventStore

    config = ConsumerConfig.model_validate({"TABLE_NAME": table, "QUEUE_URL": QUEUE_URL, "DLQ_URL": DLQ_URL})
    return Consumer(config, EventStore(dynamodb, table, lease_seconds=90), registry, sqs, None)


def _count_calls(client: Any) -> dict[str, int]:
    counts: dict[str, int] = {}

    def before_call(model: Any, **_: Any) -> None:
        counts[model.name] = counts.get(model.name, 0) + 1

    client.meta.events.register("before-call.dynamodb", before_call)
    return counts


def dynamodb_calls(events: int = 10) -> list[dict[str, Any]]:
    """DynamoDB API calls per new event and per duplicate, per handler set-up (moto)."""
    import boto3
    from moto import mock_aws

    from devtools.bench.cost import table_definition

    cases = [
        ("1 handler", 1, False),
        ("3 handlers, idempotent=True", 3, True),
        ("3 handlers, not idempotent", 3, False),
    ]
    rows = []
    for label, handlers, idempotent in cases:
        with mock_aws():
            dynamodb = boto3.client("dynamodb", region_name=REGION)
            dynamodb.create_table(TableName="events", **table_definition())
            sqs = boto3.client("sqs", region_name=REGION)
            consumer = _consumer(dynamodb, sqs, _registry(handlers, idempotent=idempotent))
            counts = _count_calls(dynamodb)
            batch = make_batch(events)
            assert consumer.process_batch(batch) == {"batchItemFailures": []}
            new = sum(counts.values()) / events
            counts.clear()
            redelivered = {"Records": [{**r, "messageId": str(uuid.uuid4())} for r in batch["Records"]]}
            assert consumer.process_batch(redelivered) == {"batchItemFailures": []}
            duplicate = sum(counts.values()) / events
            item = dynamodb.get_item(TableName="events", Key={"eventId": {"S": _first_id(batch)}})["Item"]
        rows.append({"case": label, "new": new, "duplicate": duplicate, "item_bytes": item_size(item)})
    return rows


def _first_id(batch: dict[str, Any]) -> str:
    return str(batch["Records"][0]["messageAttributes"]["eventId"]["stringValue"])


def item_size(item: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute names plus values, in bytes (close enough for WRU maths)."""

    def value_size(value: dict[str, Any]) -> int:
        (kind, inner), *_ = value.items()
        if kind in ("S", "N", "B"):
            return len(str(inner).encode())
        if kind == "BOOL" or kind == "NULL":
            return 1
        if kind == "M":
            return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in inner.items())
        if kind == "L":
            return 3 + sum(value_size(v) + 1 for v in inner)
        return len(json.dumps(inner))

    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


# -- wall time per batch, simulated round trips -------------------------------------------------
def _stub(client: Any, answer: Callable[[str, dict[str, Any]], bytes], delay: float) -> dict[str, int]:
    from devtools.bench.child import stub

    return stub(client, answer, delay)


def _powertools_answer(operation: str, params: dict[str, Any]) -> bytes:
    return b"{}"  # PutItem (the conditional claim) and UpdateItem (save the result) both succeed


def _ours_answer(operation: str, params: dict[str, Any]) -> bytes:
    from devtools.bench.child import dynamodb_answer

    return dynamodb_answer(operation, params)


def powertools_recipe(dynamodb: Any, handlers: int) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The documented Powertools pattern: BatchProcessor + idempotent_function per record."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    from mx_webhooks.events import parse_event

    persistence = DynamoDBPersistenceLayer(table_name="idempotency", boto3_client=dynamodb)
    config = IdempotencyConfig(event_key_jmespath="messageAttributes.eventId.stringValue")
    processor = BatchProcessor(event_type=EventType.SQS)
    work = [lambda event: None for _ in range(handlers)]

    @idempotent_function(data_keyword_argument="record", persistence_store=persistence, config=config)
    def handle(record: dict[str, Any]) -> dict[str, Any]:
        event = parse_event(record["body"], event_id=record["messageAttributes"]["eventId"]["stringValue"])
        for handler in work:
            handler(event)
        return {"eventId": event.event_id}

    def record_handler(record: SQSRecord) -> Any:
        return handle(record=record.raw_event)

    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        config.register_lambda_context(context)
        return process_partial_response(  # type: ignore[return-value]  # a TypedDict, a dict at run time
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    return lambda_handler


def batch_wall_time(
    *, delay: float = 0.005, batches: int = 12, same_entity: bool = False, handlers: int = 1
) -> dict[str, Any]:
    """Median wall seconds per batch of 10 new events: ours and the Powertools recipe, interleaved."""
    import boto3

    from devtools.bench.child import Context, sqs_answer
    from mx_webhooks.consumer import ConsumerConfig, client_config

    config = ConsumerConfig.model_validate({"TABLE_NAME": "events", "QUEUE_URL": QUEUE_URL, "DLQ_URL": DLQ_URL})
    pool = client_config(config)  # as deployed
    ours_ddb = boto3.client("dynamodb", region_name=REGION, config=pool)
    ours_sqs = boto3.client("sqs", region_name=REGION, config=pool)
    ours_counts = _stub(ours_ddb, _ours_answer, delay)
    _stub(ours_sqs, sqs_answer, delay)
    consumer = _consumer(ours_ddb, ours_sqs, _registry(handlers, idempotent=False))

    pt_ddb = boto3.client("dynamodb", region_name=REGION)
    pt_counts = _stub(pt_ddb, _powertools_answer, delay)
    recipe = powertools_recipe(pt_ddb, handlers)

    context = Context()
    ours: list[float] = []
    theirs: list[float] = []
    for index in range(batches + 2):
        batch = make_batch(10, same_entity=same_entity, first_id=100_000 + index * 10)
        start = time.perf_counter()
        assert consumer.process_batch(batch, context) == {"batchItemFailures": []}
        mid = time.perf_counter()
        assert recipe(batch, context) == {"batchItemFailures": []}
        end = time.perf_counter()
        if index >= 2:  # the first two warm botocore's caches and the thread pool
            ours.append(mid - start)
            theirs.append(end - mid)
    return {
        "ours_s": statistics.median(ours),
        "powertools_s": statistics.median(theirs),
        "ratio": statistics.median(o / t for o, t in zip(ours, theirs, strict=True)),
        "ours_calls": sum(ours_counts.values()) / ((batches + 2) * 10),
        "powertools_calls": sum(pt_counts.values()) / ((batches + 2) * 10),
    }
