"""A consumer that outlives its timeout, in the local stack: its batch comes back, as in Lambda.

The real LocalFunction (a handler module written to tmp_path, 1 s timeout) behind the
real SqsEventSource, against moto's SQS in this process: a timed-out invocation
deletes nothing, its records come back after the queue's visibility timeout, and the
queue's redrive parks a record whose every invocation overruns.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import boto3
import pytest

from devtools.local_stack.lambda_runtime import LocalFunction
from devtools.local_stack.sqs_source import Delivery, SqsEventSource
from tests.conftest import REGION

pytestmark = pytest.mark.e2e

VISIBILITY_S = 2

# Overruns on every receive of "always", on the first receive only of "once"; logs each
# invocation (body, receive count, start time, which module) next to itself.
HANDLER = textwrap.dedent(
    """
    import json
    import time
    import uuid
    from pathlib import Path

    CONTAINER = uuid.uuid4().hex  # new on every load
    LOG = Path(__file__).with_name("invocations.jsonl")

    def handler(event, context):
        for record in event["Records"]:
            count = int(record["attributes"]["ApproximateReceiveCount"])
            line = {"body": record["body"], "count": count, "at": time.time(), "container": CONTAINER}
            with LOG.open("a") as log:
                log.write(json.dumps(line) + "\\n")
            if record["body"] == "always" or count == 1:
                while True:  # overrun; the runtime abandons and stops this
                    time.sleep(0.02)
        return {"batchItemFailures": []}
    """
)


@pytest.fixture
def queue(aws: None) -> dict[str, str]:
    sqs = boto3.client("sqs", region_name=REGION)
    dlq = sqs.create_queue(QueueName="timeout-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName="timeout-events",
        Attributes={
            "VisibilityTimeout": str(VISIBILITY_S),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}),
        },
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return {"url": url, "arn": arn, "dlq": dlq}


def _count(queue_url: str) -> int:
    attrs = boto3.client("sqs", region_name=REGION).get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_a_timed_out_batch_comes_back_after_its_visibility_timeout_and_is_parked_if_it_always_overruns(
    queue: dict[str, str], tmp_path: Path
) -> None:
    # Given a consumer with a 1 s timeout that overruns on "always" every time and on "once" the first time,
    # fed one record per batch from a queue with a 2 s visibility timeout and maxReceiveCount 2
    (tmp_path / "overrun_handler.py").write_text(HANDLER)
    function = LocalFunction(
        logical_id="Overrun",
        name="overrun",
        arn="arn:aws:lambda:us-east-1:123456789012:function:overrun",
        code_dir=tmp_path,
        handler="overrun_handler.handler",
        environment={},
        timeout_s=1,
    )
    function.load()
    deliveries: list[Delivery] = []
    sqs = boto3.client("sqs", region_name=REGION)
    source = SqsEventSource(
        sqs,
        queue_url=queue["url"],
        queue_arn=queue["arn"],
        function=function,
        batch_size=1,
        report_batch_item_failures=True,
        concurrency=2,
        on_batch=deliveries.extend,
    )
    bodies: dict[str, str] = {}
    for body in ("once", "always"):
        bodies[sqs.send_message(QueueUrl=queue["url"], MessageBody=body)["MessageId"]] = body

    # When the event source runs until the queue is empty
    started = time.monotonic()
    source.start()
    try:
        while _count(queue["url"]) and time.monotonic() - started < 12:
            time.sleep(0.1)
    finally:
        source.stop()
    elapsed = time.monotonic() - started

    # Then "once" was received twice, the second time only after the first receive's visibility timeout,
    # and that invocation (in a freshly loaded module) finished and deleted it
    log = [json.loads(line) for line in (tmp_path / "invocations.jsonl").read_text().splitlines()]
    once = [entry for entry in log if entry["body"] == "once"]
    assert [entry["count"] for entry in once] == [1, 2]
    assert once[1]["at"] - once[0]["at"] >= VISIBILITY_S - 0.2
    assert once[1]["container"] != once[0]["container"]
    # "always" timed out on both receives and the queue's redrive moved it to the DLQ on the third
    assert [entry["count"] for entry in log if entry["body"] == "always"] == [1, 2]
    assert _count(queue["url"]) == 0 and _count(queue["dlq"]) == 1
    parked = sqs.receive_message(QueueUrl=queue["dlq"])["Messages"]
    assert [m["Body"] for m in parked] == ["always"]
    # The event source saw three timed-out invocations (nothing deleted) and one success (deleted)
    outcomes = sorted((bodies[d.message_id], d.receive_count, d.deleted, d.error) for d in deliveries)
    timed_out = "FunctionTimedOut: Task timed out after 1.00 seconds"
    assert outcomes == [
        ("always", 1, False, timed_out),
        ("always", 2, False, timed_out),
        ("once", 1, False, timed_out),
        ("once", 2, True, None),
    ]
    assert function.loads >= 2 and elapsed < 8


def test_a_late_result_of_an_abandoned_invocation_is_ignored(queue: dict[str, str], tmp_path: Path) -> None:
    # Given a handler that blocks past its timeout and then returns "all succeeded" (no failures reported)
    (tmp_path / "late_handler.py").write_text(
        textwrap.dedent(
            """
            import time

            def handler(event, context):
                if event["Records"][0]["attributes"]["ApproximateReceiveCount"] == "1":
                    time.sleep(1.3)  # blocked past the 1 s timeout: the sleep ends before it can be stopped
                return {"batchItemFailures": []}
            """
        )
    )
    function = LocalFunction(
        "Late", "late", "arn:aws:lambda:us-east-1:123456789012:function:late", tmp_path, "late_handler.handler", {}, 1
    )
    deliveries: list[Delivery] = []
    sqs = boto3.client("sqs", region_name=REGION)
    sqs.send_message(QueueUrl=queue["url"], MessageBody="late")
    source = SqsEventSource(
        sqs,
        queue_url=queue["url"],
        queue_arn=queue["arn"],
        function=function,
        batch_size=1,
        report_batch_item_failures=True,
        on_batch=deliveries.extend,
    )

    # When the event source runs past the abandoned invocation's end, but not past the visibility timeout
    source.start()
    try:
        time.sleep(1.7)
        # Then its late "success" deleted nothing: the message is still there, in flight
        assert _count(queue["url"]) == 1
        assert [(d.deleted, d.error is not None) for d in deliveries] == [(False, True)]
        # and it comes back and is processed by the next invocation
        deadline = time.monotonic() + 5
        while _count(queue["url"]) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        source.stop()
    assert _count(queue["url"]) == 0 and _count(queue["dlq"]) == 0
    assert [(d.receive_count, d.deleted) for d in deliveries] == [(1, False), (2, True)]
