"""Reliability fixtures: the real ingest and consumer wired to moto, plus fault injection.

Faults are injected at botocore's transport (``before-send`` hooks), so the code
under test runs its real client calls, retries and error handling.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from mx_webhooks.consumer import Consumer, ConsumerConfig
from mx_webhooks.registry import Registry
from mx_webhooks.store import EventStore
from tests.conftest import REGION, Stack, receive_all, sqs_record

SECRET = "local-dev-secret"


@pytest.fixture
def make_consumer(stack: Stack, registry: Registry) -> Callable[..., Consumer]:
    """A consumer with its own clients; ``dynamodb``/``sqs``/``sns`` override a client."""

    def make(*, lease_seconds: int = 60, **clients: Any) -> Consumer:
        config = ConsumerConfig.model_validate(
            {**stack.env(), "BACKOFF_JITTER": "0", "LEASE_SECONDS": str(lease_seconds)}
        )
        dynamodb = clients.get("dynamodb") or boto3.client("dynamodb", region_name=REGION)
        return Consumer(
            config,
            EventStore(dynamodb, stack.table_name, lease_seconds=lease_seconds),
            registry,
            clients.get("sqs") or boto3.client("sqs", region_name=REGION),
            clients.get("sns") or boto3.client("sns", region_name=REGION),
        )

    return make


@pytest.fixture
def consumer(make_consumer: Callable[..., Consumer]) -> Consumer:
    return make_consumer()


@pytest.fixture
def store(stack: Stack) -> EventStore:
    return EventStore(boto3.client("dynamodb", region_name=REGION), stack.table_name, lease_seconds=60)


def message_to_record(message: dict[str, Any]) -> dict[str, Any]:
    """An SQS ReceiveMessage message shaped as the record Lambda's event source mapping passes."""
    record = sqs_record(
        message["Body"],
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        receive_count=int(message["Attributes"]["ApproximateReceiveCount"]),
    )
    record["messageAttributes"] = {
        name: {"stringValue": value.get("StringValue"), "dataType": value["DataType"]}
        for name, value in message.get("MessageAttributes", {}).items()
    }
    return record


@pytest.fixture
def drain(stack: Stack) -> Callable[..., list[dict[str, Any]]]:
    """Receive every visible message of a queue as Lambda records."""

    def run(queue_url: str | None = None) -> list[dict[str, Any]]:
        return [message_to_record(m) for m in receive_all(queue_url or stack.queue_url)]

    return run


def error_response(status: int, code: str, message: str = "injected", *, json_protocol: bool = True) -> AWSResponse:
    """A raw HTTP error response as the AWS service would send it."""
    if json_protocol:
        body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message}).encode()
        headers = {"x-amzn-ErrorType": code, "Content-Type": "application/x-amz-json-1.0"}
    else:
        body = json.dumps({"__type": code, "message": message}).encode()
        headers = {"x-amzn-query-error": f"{code};Sender", "Content-Type": "application/x-amz-json-1.0"}

    class _Raw:
        def stream(self, **_: Any) -> Iterator[bytes]:
            yield body

    response = AWSResponse("https://injected.invalid", status, headers, _Raw())
    response._content = body  # noqa: SLF001  (botocore reads .content)
    return response


_NOWHERE = "https://fault-injected.invalid/"


class FaultInjector:
    """Fails chosen calls of one botocore client before they leave the process.

    ``fail(operation, times, response_factory)``: the next ``times`` calls of the
    operation get the injected response (or raise the exception the factory returns)
    instead of reaching moto. ``calls`` counts every attempt, retries included.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.plans: dict[str, list[Callable[[], Any]]] = {}
        self.calls: dict[str, int] = {}
        self.injected: dict[str, int] = {}
        self._urls: dict[int, str] = {}
        client.meta.events.register_first(f"before-send.{client.meta.service_model.endpoint_prefix}", self._hook)

    def fail(self, operation: str, times: int, factory: Callable[[], Any]) -> None:
        self.plans.setdefault(operation, []).extend([factory] * times)

    def _hook(self, request: Any, **_: Any) -> Any:
        if request.url == _NOWHERE:  # botocore resends the same request object on a retry
            request.url = self._urls.pop(id(request))
        operation = _operation_of(request)
        self.calls[operation] = self.calls.get(operation, 0) + 1
        plan = self.plans.get(operation)
        if not plan:
            return None
        result = plan.pop(0)()
        if result is None:  # a planned pass: this call goes through
            return None
        self.injected[operation] = self.injected.get(operation, 0) + 1
        if isinstance(result, BaseException):
            raise result
        # botocore emits before-send to every handler and takes the first response, so
        # moto would still apply the call; send moto's copy nowhere it recognises.
        self._urls[id(request)] = request.url
        request.url = _NOWHERE
        return result


def _operation_of(request: Any) -> str:
    target = request.headers.get("X-Amz-Target")
    if target:
        value = target.decode() if isinstance(target, bytes) else target
        return value.rsplit(".", 1)[-1]
    body = request.body.decode() if isinstance(request.body, bytes) else str(request.body or "")
    for part in body.split("&"):  # query protocol (SNS): Action=Publish&...
        if part.startswith("Action="):
            return part.removeprefix("Action=")
    return "unknown"
