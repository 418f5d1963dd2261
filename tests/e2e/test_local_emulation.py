"""The local stack's stand-ins for API Gateway and the SQS event source mapping behave as AWS documents.

Small and fast: a real HTTP front on a free port with a stub function, and the
event source poller against moto's SQS in this process.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from devtools.local_stack.http_front import HttpFront, Route
from devtools.local_stack.lambda_runtime import LocalFunction
from devtools.local_stack.sqs_source import SqsEventSource
from tests.conftest import REGION

pytestmark = pytest.mark.e2e


class StubFunction(LocalFunction):
    """A LocalFunction whose handler is a Python callable; records every event it gets."""

    def __init__(self, handler: Callable[[Any], Any]) -> None:
        super().__init__("Stub", "stub", "arn:aws:lambda:us-east-1:123456789012:function:stub", Path("."), "x.y", {})
        self.events: list[Any] = []
        self._handler = handler

    def invoke(self, event: Any) -> Any:
        self.events.append(event)
        return self._handler(event)


def _request(url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def front() -> Iterator[Callable[..., tuple[HttpFront, StubFunction]]]:
    started: list[HttpFront] = []

    def start(handler: Callable[[Any], Any], routes: list[tuple[str, str, bool]]) -> tuple[HttpFront, StubFunction]:
        function = StubFunction(handler)
        server = HttpFront([Route(m, p, function, iam) for m, p, iam in routes], port=0)
        server.start()
        started.append(server)
        return server, function

    yield start
    for server in started:
        server.stop()


def test_requests_become_payload_v2_events_on_the_most_specific_route(front):
    # Given a greedy route, a parameter route and a static route
    server, function = front(
        lambda event: {"statusCode": 200, "body": event["routeKey"]},
        [("ANY", "/admin/{proxy+}", False), ("GET", "/admin/webhooks/{id}", True), ("GET", "/admin/dlq", True)],
    )

    # When requests hit each of them
    static = _request(server.url + "/admin/dlq?limit=5&limit=6")
    param = _request(server.url + "/admin/webhooks/evt_1", headers={"Cookie": "a=1; b=2", "X-Thing": "v"})
    greedy = _request(server.url + "/admin/anything/else", method="DELETE")
    missing = _request(server.url + "/nowhere")

    # Then API Gateway's choice of route holds, and the events carry what payload v2 carries
    assert [static[2], param[2], greedy[2]] == [b"GET /admin/dlq", b"GET /admin/webhooks/{id}", b"ANY /admin/{proxy+}"]
    assert missing[0] == 404 and json.loads(missing[2]) == {"message": "Not Found"}
    first, second, third = function.events
    assert first["queryStringParameters"] == {"limit": "5,6"} and first["rawQueryString"] == "limit=5&limit=6"
    assert second["pathParameters"] == {"id": "evt_1"} and second["cookies"] == ["a=1", "b=2"]
    assert second["headers"]["x-thing"] == "v" and second["version"] == "2.0"
    assert second["requestContext"]["authorizer"]["iam"]["accountId"] == "123456789012"  # IAM route: caller context
    assert third["pathParameters"] == {"proxy": "anything/else"} and "authorizer" not in third["requestContext"]


def test_bodies_are_passed_raw_text_as_is_and_binary_as_base64(front):
    server, function = front(lambda event: {"statusCode": 202, "body": "{}"}, [("POST", "/in", False)])
    text = b'{"a": 1,  "b": "\xc3\xa9"}'  # spacing and UTF-8 kept byte for byte: signatures are over raw bytes
    binary = bytes(range(256))

    _request(server.url + "/in", "POST", text, {"content-type": "application/json"})
    _request(server.url + "/in", "POST", binary, {"content-type": "application/octet-stream"})

    as_text, as_binary = function.events
    assert as_text["isBase64Encoded"] is False and as_text["body"].encode() == text
    assert as_binary["isBase64Encoded"] is True and base64.b64decode(as_binary["body"]) == binary


def test_responses_follow_api_gateway_rules(front):
    def handler(event: dict[str, Any]) -> Any:
        path = event["rawPath"]
        if path == "/plain":
            return {"ok": True}  # no statusCode: API Gateway sends it as 200 JSON
        if path == "/b64":
            return {"statusCode": 201, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True}
        raise RuntimeError("boom")

    server, _ = front(handler, [("GET", "/{name}", False)])

    plain, b64, crash = (_request(server.url + p) for p in ("/plain", "/b64", "/crash"))

    assert plain[0] == 200 and json.loads(plain[2]) == {"ok": True}
    assert b64[0] == 201 and b64[2] == b"\x00\x01"
    assert crash[0] == 500 and json.loads(crash[2]) == {"message": "Internal Server Error"}


# -- the SQS event source mapping -------------------------------------------------------------


@pytest.fixture
def queue(aws: None) -> dict[str, str]:
    sqs = boto3.client("sqs", region_name=REGION)
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName="events",
        Attributes={
            "VisibilityTimeout": "1",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}),
        },
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return {"url": url, "arn": arn, "dlq": dlq}


def _run_source(queue: dict[str, str], function: StubFunction, seconds: float, **options: Any) -> SqsEventSource:
    sqs = boto3.client("sqs", region_name=REGION)
    source = SqsEventSource(sqs, queue_url=queue["url"], queue_arn=queue["arn"], function=function, **options)
    source.start()
    time.sleep(seconds)
    source.stop()
    return source


def _count(queue_url: str) -> int:
    attrs = boto3.client("sqs", region_name=REGION).get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_the_batching_window_gathers_a_batch_and_only_reported_failures_stay(queue):
    # Given a consumer that reports the record saying "bad" as failed, behind a 1 s batching window
    # (and a visibility timeout longer than the window, as Lambda requires: with the fixture's
    # 1 s, a slow machine received "a" again before the window closed)
    sqs = boto3.client("sqs", region_name=REGION)
    sqs.set_queue_attributes(QueueUrl=queue["url"], Attributes={"VisibilityTimeout": "10"})

    def consumer(event: dict[str, Any]) -> dict[str, Any]:
        return {
            "batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "bad"]
        }

    function = StubFunction(consumer)
    source = SqsEventSource(
        sqs,
        queue_url=queue["url"],
        queue_arn=queue["arn"],
        function=function,
        batch_size=10,
        batching_window_s=1,
        report_batch_item_failures=True,
    )
    source.start()
    try:
        # When one message arrives, and four more 0.3 s later
        sqs.send_message(QueueUrl=queue["url"], MessageBody="a")
        time.sleep(0.3)
        for body in ("b", "bad", "c", "d"):
            sqs.send_message(QueueUrl=queue["url"], MessageBody=body)
        time.sleep(1.2)
    finally:
        source.stop()

    # Then one invocation got all five, shaped as Lambda shapes them, and only "bad" is left in the queue
    first = function.events[0]["Records"]
    assert sorted(r["body"] for r in first) == ["a", "b", "bad", "c", "d"]
    assert first[0]["eventSource"] == "aws:sqs" and first[0]["eventSourceARN"] == queue["arn"]
    assert first[0]["attributes"]["ApproximateReceiveCount"] == "1"
    assert _count(queue["url"]) == 1


def test_a_malformed_partial_response_or_an_exception_fails_the_whole_batch(queue):
    sqs = boto3.client("sqs", region_name=REGION)
    for body in ("a", "b"):
        sqs.send_message(QueueUrl=queue["url"], MessageBody=body)
    function = StubFunction(lambda event: {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]})

    _run_source(queue, function, 0.5, batch_size=10, report_batch_item_failures=True)

    assert function.events and _count(queue["url"]) == 2  # nothing deleted

    def crash(event: Any) -> Any:
        raise RuntimeError("boom")

    raising = StubFunction(crash)
    _run_source(queue, raising, 1.6, batch_size=10, report_batch_item_failures=True)
    assert raising.events and _count(queue["url"]) + _count(queue["dlq"]) == 2  # nothing deleted either


def test_the_queues_redrive_moves_a_message_after_max_receive_count(queue):
    # Given a message whose every invocation fails, on a queue with maxReceiveCount 2 and a 1 s visibility timeout
    boto3.client("sqs", region_name=REGION).send_message(QueueUrl=queue["url"], MessageBody="poison")
    function = StubFunction(lambda event: {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]})

    # When the event source runs for a few visibility timeouts
    _run_source(queue, function, 3.5, batch_size=1, report_batch_item_failures=True)

    # Then it was delivered exactly twice, and the queue moved it to the DLQ
    counts = [e["Records"][0]["attributes"]["ApproximateReceiveCount"] for e in function.events]
    assert counts == ["1", "2"]
    assert _count(queue["url"]) == 0 and _count(queue["dlq"]) == 1
