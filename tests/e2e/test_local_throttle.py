"""The local stack throttles each HTTP API as API Gateway does: token bucket from the template, 429, no invocation.

Two parts: the HTTP front alone (a stub function, a stepped clock: which requests share
a bucket, refill, the 429 itself), and the whole local stack started with a low
throttle (``--param``), hit by a burst of concurrent signed deliveries: exactly the
burst is accepted and every accepted event is processed once, while the throttled
ones never reach ingest or the queue.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from devtools import samples
from devtools.local_stack import LocalStackProcess
from devtools.local_stack.http_front import HttpFront, Route, Throttle
from devtools.local_stack.lambda_runtime import LocalFunction
from tests.e2e.conftest import LOCAL_PARAMS

pytestmark = pytest.mark.e2e

THROTTLED = {"message": "Too Many Requests"}


def _post(url: str, body: bytes = b"{}", headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _metric_sum(log_text: str, name: str) -> float:
    """The sum of one metric over the EMF documents in the functions' log."""
    total = 0.0
    for line in log_text.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document and name in document:
            value = document[name]
            total += sum(value) if isinstance(value, list) else value
    return total


# -- the HTTP front alone ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class CountingFunction(LocalFunction):
    def __init__(self) -> None:
        super().__init__("Stub", "stub", "arn:aws:lambda:us-east-1:123456789012:function:stub", Path("."), "x.y", {})
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def invoke(self, event: Any) -> Any:
        with self._lock:
            self.calls.append(event["routeKey"])
        return {"statusCode": 202, "body": "{}"}


@pytest.fixture
def front() -> Iterator[tuple[HttpFront, CountingFunction, Clock]]:
    # Two APIs: "Hooks" (default 2/s burst 3; one route with 1/s burst 1 of its own) and "Open" (no throttle)
    function, clock = CountingFunction(), Clock()
    routes = [
        Route("POST", "/hooks", function, api="Hooks"),
        Route("POST", "/hooks/{source}", function, api="Hooks"),
        Route("POST", "/hooks-special", function, api="Hooks"),
        Route("POST", "/open", function, api="Open"),
    ]
    throttles = {"Hooks": Throttle((2.0, 3.0), {"POST /hooks-special": (1.0, 1.0)})}
    server = HttpFront(routes, port=0, throttles=throttles, clock=clock)
    server.start()
    yield server, function, clock
    server.stop()


def test_routes_of_one_api_share_its_stage_bucket_and_a_throttled_request_never_invokes(front):
    server, function, clock = front

    # When 5 requests hit the two default routes of "Hooks" at the same instant
    statuses = [_post(server.url + path) for path in ("/hooks", "/hooks/a", "/hooks", "/hooks/b", "/hooks")]

    # Then the burst (3) passes across both routes, the rest get API Gateway's 429, uninvoked
    assert [s for s, _ in statuses] == [202, 202, 202, 429, 429]
    assert statuses[3][1] == THROTTLED
    assert len(function.calls) == 3

    # And half a second at 2/s brings back exactly one token
    clock.now += 0.5
    assert [_post(server.url + "/hooks/c")[0], _post(server.url + "/hooks")[0]] == [202, 429]
    assert len(function.calls) == 4


def test_a_route_with_its_own_settings_has_its_own_bucket_and_other_apis_are_not_throttled(front):
    server, function, clock = front
    assert [_post(server.url + "/hooks")[0] for _ in range(4)] == [202, 202, 202, 429]

    # The route with its own settings (burst 1) is untouched by the default bucket being empty
    assert [_post(server.url + "/hooks-special")[0] for _ in range(2)] == [202, 429]
    # An API without a throttle takes everything; an unknown path is a 404, not a 429
    assert {_post(server.url + "/open")[0] for _ in range(20)} == {202}
    assert _post(server.url + "/nowhere")[0] == 404

    # A second at 1/s refills the special route by one; the default gets 2
    clock.now += 1
    assert [_post(server.url + "/hooks-special")[0] for _ in range(2)] == [202, 429]
    assert [_post(server.url + "/hooks")[0] for _ in range(3)] == [202, 202, 429]


# -- the whole local stack ---------------------------------------------------------------------

BURST = 8
DELIVERIES = 30
# 0.001/s: one token per 1,000 s, so none comes back during the test and the count is exact
THROTTLE_PARAMS = {"ApiThrottleRateLimit": "0.001", "ApiThrottleBurstLimit": str(BURST)}


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStackProcess]:
    process = LocalStackProcess(params={**LOCAL_PARAMS, **THROTTLE_PARAMS}, handler_modules=["tests.e2e.e2e_handlers"])
    process.start()
    try:
        yield process
    finally:
        process.stop()


def test_the_stack_reads_each_apis_throttle_from_the_template_and_its_parameters(stack):
    # The webhook API's throttle comes from the parameters given; the admin API keeps its own
    assert stack.info["throttles"]["WebhookApi"] == {"rate": 0.001, "burst": float(BURST)}
    assert stack.info["throttles"]["AdminApi"] == {"rate": 10.0, "burst": 20.0}
    assert "WebhookApi 0.001/s burst 8" in stack.log_text()


def test_a_burst_above_the_throttle_gets_exactly_the_burst_accepted_and_loses_none_of_it(stack):
    # Given DELIVERIES distinct, genuinely signed deliveries, sent all at once from as many threads
    secret = str(stack.info["secret"])
    bodies = []
    for _ in range(DELIVERIES):
        payload = samples.generic_payload("workorder.created", event_id=f"evt_burst_{uuid.uuid4().hex[:12]}")
        bodies.append(samples.encode(payload))
    start = threading.Barrier(DELIVERIES)

    def deliver(body: bytes) -> tuple[int, Any]:
        headers = samples.signed_headers(body, secret, "generic")
        start.wait()
        return _post(str(stack.info["webhook_url"]), body, headers)

    with ThreadPoolExecutor(max_workers=DELIVERIES) as pool:
        answers = list(pool.map(deliver, bodies))

    # Then exactly the burst is accepted and every other delivery gets API Gateway's 429
    statuses = [status for status, _ in answers]
    assert statuses.count(202) == BURST, statuses
    assert statuses.count(429) == DELIVERIES - BURST, statuses
    assert all(answer == THROTTLED for status, answer in answers if status == 429)
    accepted = {answer["eventId"] for status, answer in answers if status == 202}
    assert len(accepted) == BURST

    # And every accepted event is processed, its handlers run exactly once
    dynamodb = stack.client("dynamodb")
    table = stack.outputs["EventsTableName"]

    def items() -> list[dict[str, Any]]:
        return dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]

    deadline = time.monotonic() + 60
    # (moto's UpdateItem is not atomic to a concurrent scan: an item may show its key alone for a moment)
    while sum(item.get("status", {}).get("S") == "COMPLETED" for item in items()) < BURST:
        assert time.monotonic() < deadline, f"not all accepted events completed:\n{stack.log_text()[-3000:]}"
        time.sleep(0.2)
    recorded = items()
    # only the accepted events were ever recorded: nothing throttled reached ingest or the queue
    assert len(recorded) == BURST
    assert {item["eventId"]["S"] for item in recorded} == accepted
    runs = re.findall(r'"e2e_run": ?"([^"]+)"', stack.function_log_text())
    assert len(runs) == BURST and len(set(runs)) == BURST, runs

    # The ingest function ran once per accepted delivery (a throttled request never invokes it)
    assert _metric_sum(stack.function_log_text(), "WebhookReceived") == BURST
    # The queue and the DLQ empty out: each accepted event's one message was consumed, nothing else queued
    sqs = stack.client("sqs")
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]

    def depth(url: str) -> int:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return sum(int(attributes[name]) for name in names)

    while depth(stack.outputs["EventsQueueUrl"]) > 0:
        assert time.monotonic() < deadline, "the events queue did not empty"
        time.sleep(0.2)
    assert depth(stack.outputs["EventsDLQUrl"]) == 0
    # and the stack's log shows each throttled request, without an invocation
    throttled_lines = [line for line in stack.log_text().splitlines() if "http      429" in line]
    assert len(throttled_lines) == DELIVERIES - BURST
    assert all("throttled" in line for line in throttled_lines)
