"""No signing secret in any log line, metric, queued message or event record.

A full run with known secret values, read from Secrets Manager (moto) the way the
deployed ingest function reads them: genuine, rotated, forged, stale and
misconfigured deliveries through ingest, then the consumer with a failing handler
and an alert. Every log record of every logger is captured with the root logger at
DEBUG (more verbose than any ``LogLevel`` the template allows), as is stdout; none may
contain a secret. This test found that botocore dumps Secrets Manager's response,
secret included, at DEBUG: ``mx_webhooks.observability`` now holds botocore at INFO.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterator

import boto3
import pytest

from devtools import samples
from mx_webhooks.ingest import IngestConfig, Ingestor
from mx_webhooks.observability import logger as service_logger
from tests.conftest import REGION, LambdaContext, receive_all
from tests.reliability.conftest import message_to_record

NEW = "whsec_NEW_5f2c9a7e1d4b8f60a3c2e9d1"
OLD = "whsec_OLD_0b7e4d2a9c6f1e8b5a3d7c40"
REQUESTS = "whsec_REQ_8d1f6b3e0a9c2d5f7e4b1a66"
SECRETS = (NEW, OLD, REQUESTS)


@pytest.fixture
def all_logs() -> Iterator[Callable[[], io.StringIO]]:
    """Call to start capturing every log record of every logger at DEBUG (root included,
    as a Lambda with ApplicationLogLevel DEBUG would), formatted by Powertools."""
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(service_logger.registered_formatter)
    root = logging.getLogger()
    service = logging.getLogger(service_logger.service)
    saved = (root.level, service.level)

    def start() -> io.StringIO:
        root.addHandler(handler)
        service.addHandler(handler)
        root.setLevel(logging.DEBUG)
        service_logger.setLevel("DEBUG")
        return sink

    try:
        yield start
    finally:
        root.removeHandler(handler)
        service.removeHandler(handler)
        root.setLevel(saved[0])
        service.setLevel(saved[1])


def _ingestor(stack, secret_arn: str) -> Ingestor:
    config = IngestConfig.from_env({"QUEUE_URL": stack.queue_url, "WEBHOOK_SECRET_ARN": secret_arn})
    return Ingestor(config, boto3.client("sqs", region_name=REGION))


def test_no_secret_appears_in_logs_metrics_messages_or_records(stack, make_consumer, registry, all_logs, capsys):
    # Given the signing secrets in Secrets Manager, as deployed
    secretsmanager = boto3.client("secretsmanager", region_name=REGION)
    arn = secretsmanager.create_secret(
        Name="webhook-signing-secrets", SecretString=json.dumps({"default": [NEW, OLD], "requests": [REQUESTS]})
    )["ARN"]
    broken_arn = secretsmanager.create_secret(Name="broken", SecretString=NEW)["ARN"]  # not JSON: misconfigured
    ingestor = _ingestor(stack, arn)
    now = int(time.time())
    logs = all_logs()  # from here on: setting the secrets up is not what is under test
    statuses = []

    # When every kind of delivery comes in...
    for event_type in samples.EVENT_TYPES:
        statuses.append(ingestor.handle(samples.signed_api_event(event_type, "maintainx", secret=NEW))["statusCode"])
    statuses.append(ingestor.handle(samples.signed_api_event("workorder.created", "generic", secret=OLD))["statusCode"])
    statuses.append(
        ingestor.handle(samples.signed_api_event("request.created", "maintainx", secret=REQUESTS, source="requests"))[
            "statusCode"
        ]
    )
    statuses.append(
        ingestor.handle(samples.signed_api_event("workorder.created", "maintainx", secret=REQUESTS))["statusCode"]
    )
    statuses.append(
        ingestor.handle(samples.signed_api_event("workorder.created", "maintainx", secret=NEW, timestamp=now - 3600))[
            "statusCode"
        ]
    )
    statuses.append(
        _ingestor(stack, broken_arn).handle(samples.signed_api_event("workorder.created", "maintainx"))["statusCode"]
    )
    assert statuses == [202] * 7 + [202, 202, 401, 401, 503]

    # ...and the consumer runs them, one handler failing for good on its last attempt
    registry.on("*", name="noop")(lambda event: None)
    registry.on("workorder.completed")(lambda event: (_ for _ in ()).throw(RuntimeError("downstream refused")))
    records = [message_to_record(m) for m in receive_all(stack.queue_url)]
    for record in records:
        record["attributes"]["ApproximateReceiveCount"] = str(stack.max_receive_count)
    result = make_consumer().process_batch({"Records": records}, LambdaContext())
    assert result == {"batchItemFailures": []}  # the failing one parked by the consumer itself
    assert len(receive_all(stack.alerts_queue_url)) == 1
    assert len(receive_all(stack.dlq_url)) == 1

    # Then no secret is in any log line, metric line, queued or parked message, or event record
    logged = logs.getvalue()
    captured = capsys.readouterr()
    assert '"webhook enqueued"' in logged + captured.out  # the capture did see the service's logs
    items = boto3.client("dynamodb", region_name=REGION).scan(TableName=stack.table_name)["Items"]
    everything = "\n".join(
        [logged, captured.out, captured.err, json.dumps(items), json.dumps(records)]
        + [json.dumps(m) for m in receive_all(stack.dlq_url)]
    )
    leaked = [secret for secret in SECRETS if secret in everything]
    assert leaked == [], f"secret(s) found in the captured output: {len(leaked)}"
