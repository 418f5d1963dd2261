"""One measured process of ``devtools.bench``: ``python devtools/bench/child.py MODE``.

Run by path in a fresh interpreter, with ``PYTHONPATH`` set the way Lambda sets
``sys.path`` (``/var/task`` then ``/opt/python``: here the ``sam build`` output), so
nothing the parent imported leaks into the figure. It imports only the standard
library until the measured part starts. The input (a signed API event, options)
arrives as JSON on stdin; the result goes as JSON to the file named by
``BENCH_OUT``, because stdout carries the functions' own log lines (sent to
/dev/null by the parent, as Lambda ships them off-box).

AWS is stubbed at the botocore level: a ``before-send`` hook answers each request
with a canned response, after botocore has validated, serialised and signed it,
and before any socket is opened; botocore then parses the canned answer as usual.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()  # CLOCK_MONOTONIC: comparable with the parent's clock

import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

SQS_SEND_OK = (
    b'{"MD5OfMessageBody":"00000000000000000000000000000000","MessageId":"5fea7756-0ea4-451a-a703-a558b933e274"}'
)


class _Raw:
    """The ``raw`` of a botocore ``AWSResponse``: only ``stream()`` is read."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def stub(client: Any, answer: Any, delay_s: float = 0.0) -> dict[str, int]:
    """Answer every request of ``client`` with ``answer(operation, params) -> bytes``; count calls."""
    counts: dict[str, int] = {}
    client.meta.events.register("before-send", _before_send(answer, delay_s, counts))
    return counts


def stub_all(answer: Any) -> dict[str, int]:
    """The same for every client made later from boto3's default session (they copy its hooks)."""
    import boto3

    counts: dict[str, int] = {}
    boto3.setup_default_session()
    boto3.DEFAULT_SESSION._session.register("before-send", _before_send(answer, 0.0, counts))
    return counts


def _before_send(answer: Any, delay_s: float, counts: dict[str, int]) -> Any:
    from botocore.awsrequest import AWSResponse

    def before_send(request: Any, **_: Any) -> Any:
        operation = request.headers.get("X-Amz-Target", b"")
        operation = operation.decode() if isinstance(operation, bytes) else operation
        operation = operation.rsplit(".", 1)[-1]
        counts[operation] = counts.get(operation, 0) + 1
        if delay_s:
            time.sleep(delay_s)
        body = answer(operation, json.loads(request.body or b"{}"))
        return AWSResponse(request.url, 200, {"content-type": "application/x-amz-json-1.0"}, _Raw(body))

    return before_send


def sqs_answer(operation: str, params: dict[str, Any]) -> bytes:
    return SQS_SEND_OK


def any_answer(operation: str, params: dict[str, Any]) -> bytes:
    """Plausible empty answers for every call the functions make."""
    if operation in ("SendMessage", "UpdateItem"):
        return dynamodb_answer(operation, params) if operation == "UpdateItem" else SQS_SEND_OK
    if operation == "Query":
        return b'{"Items":[],"Count":0,"ScannedCount":0}'
    return b"{}"


def dynamodb_answer(operation: str, params: dict[str, Any]) -> bytes:
    """A new event: the claim succeeds and returns the item it wrote; other writes succeed."""
    if operation == "UpdateItem" and params.get("ReturnValues") == "ALL_NEW":
        item = {"eventId": params["Key"]["eventId"], "status": {"S": "IN_PROGRESS"}, "attempts": {"N": "1"}}
        return json.dumps({"Attributes": item}).encode()
    return b"{}"


class Context:
    function_name = "bench"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    memory_limit_in_mb = 256
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/bench"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def bare_setup() -> Any:
    """The baseline: what any receiver needs (hmac, json, an SQS client), nothing else."""
    import boto3

    client = boto3.client("sqs")
    stub(client, sqs_answer)
    return client


def bare_handle(client: Any, event: dict[str, Any], secret: bytes, queue_url: str) -> dict[str, Any]:
    """Verify the MaintainX body signature, parse, enqueue, answer: the minimum a receiver does."""
    import hashlib
    import hmac

    body = event["body"].encode()
    header = event["headers"]["x-maintainx-webhook-body-signature"]
    parts = dict(p.split("=", 1) for p in header.split(","))
    expected = hmac.new(secret, parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, parts["v1"]):
        return {"statusCode": 401}
    payload = json.loads(body)
    client.send_message(QueueUrl=queue_url, MessageBody=body.decode())
    return {"statusCode": 202, "body": json.dumps({"received": True, "type": payload.get("eventType")})}


def cold(spec: dict[str, Any]) -> dict[str, Any]:
    """Import (the entry module, or the bare baseline) and handle one request."""
    event = spec["event"]
    if spec["variant"] == "ingest":
        import ingest_handler

        t_imported = time.perf_counter()
        stub(ingest_handler._sqs, sqs_answer)
        result = ingest_handler.lambda_handler(event, Context())
    else:
        client = bare_setup()
        t_imported = time.perf_counter()
        result = bare_handle(client, event, spec["secret"].encode(), spec["queue_url"])
    t_done = time.perf_counter()
    assert result["statusCode"] == 202, result
    return {"t0": T0, "t_imported": t_imported, "t_done": t_done}


def warm(spec: dict[str, Any]) -> dict[str, Any]:
    """Per-request cost, interleaved rounds of ingest and baseline in one process."""
    import ingest_handler

    ingest_counts = stub(ingest_handler._sqs, sqs_answer)
    client = bare_setup()
    event, n, rounds = spec["event"], spec["requests"], spec["rounds"]
    secret, queue_url = spec["secret"].encode(), spec["queue_url"]
    ctx = Context()
    for _ in range(50):  # warm both paths (first-call caches in botocore, logger...)
        ingest_handler.lambda_handler(event, ctx)
        bare_handle(client, event, secret, queue_url)
    ours: list[float] = []
    bare: list[float] = []
    ours_cpu: list[float] = []
    bare_cpu: list[float] = []
    for _ in range(rounds):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            ingest_handler.lambda_handler(event, ctx)
        ours.append((time.perf_counter() - start) / n)
        ours_cpu.append((time.process_time() - start_cpu) / n)
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            bare_handle(client, event, secret, queue_url)
        bare.append((time.perf_counter() - start) / n)
        bare_cpu.append((time.process_time() - start_cpu) / n)
    assert ingest_counts.get("SendMessage", 0) >= n * rounds
    return {"ours": ours, "bare": bare, "ours_cpu": ours_cpu, "bare_cpu": bare_cpu}


def rss(spec: dict[str, Any]) -> dict[str, Any]:
    """Peak RSS of a function's process after its cold start and ``requests`` invocations."""
    import importlib

    counts = stub_all(any_answer)
    module = importlib.import_module(spec["module"])
    for _ in range(spec["requests"]):
        module.lambda_handler(spec["event"], Context())
    return {"peak_rss_mib": _peak_rss_kib() / 1024, "modules": len(sys.modules), "aws_calls": counts}


def _peak_rss_kib() -> int:
    """This process's peak RSS (VmHWM). Not ``ru_maxrss``: Linux carries that over from the
    parent at fork and keeps it across exec, so a child would report the bench's own size."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def consumer_cpu(spec: dict[str, Any]) -> dict[str, Any]:
    """CPU seconds of the consumer per batch with instant (stubbed) AWS answers."""
    import consumer_handler

    stub(consumer_handler.CONSUMER.store.client, dynamodb_answer)
    stub(consumer_handler.CONSUMER.sqs, sqs_answer)
    batches = spec["batches"]
    for batch in batches[:5]:
        consumer_handler.lambda_handler(batch, Context())
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    for batch in batches[5:]:
        assert consumer_handler.lambda_handler(batch, Context()) == {"batchItemFailures": []}
    n = len(batches) - 5
    return {"cpu_s": (time.process_time() - start_cpu) / n, "wall_s": (time.perf_counter() - start_wall) / n}


def imports(spec: dict[str, Any]) -> dict[str, Any]:
    """Import the layer's third-party packages (from wherever sys.path finds them first)."""
    import importlib

    start, start_cpu = time.perf_counter(), time.process_time()
    for name in spec["modules"]:
        importlib.import_module(name)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    origins = {name: getattr(sys.modules[name], "__file__", "") for name in spec["modules"]}
    return {"s": elapsed, "cpu_s": cpu, "origins": origins}


MODES = {"cold": cold, "warm": warm, "rss": rss, "consumer_cpu": consumer_cpu, "imports": imports}

if __name__ == "__main__":
    spec = json.loads(sys.stdin.read())
    result = MODES[sys.argv[1]](spec)
    with open(os.environ["BENCH_OUT"], "w") as out:
        json.dump(result, out)
