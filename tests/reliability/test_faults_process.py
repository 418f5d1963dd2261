"""Faults that need a real process: the Lambda killed in the middle of a handler."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from devtools import samples
from devtools.local_stack.process import python_env
from mx_webhooks import store as store_module
from mx_webhooks.registry import Registry
from tests.conftest import REGION, ROOT, LambdaContext, table_definition
from tests.reliability.crash_worker import as_record, build, register

LEASE_SECONDS = 30
VISIBILITY_SECONDS = 1  # how soon SQS hands the killed invocation's message out again (the test's stand-in for 360 s)


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """moto's server on 127.0.0.1, a free port, with the queue and table; its environment."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    reset = f"{endpoint}/moto-api/reset"  # the in-process server shares moto's state: start clean, end clean
    urllib.request.urlopen(urllib.request.Request(reset, method="POST"), timeout=10).close()  # noqa: S310
    try:
        sqs = boto3.client("sqs", region_name=REGION)
        dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
        queue = sqs.create_queue(QueueName="events", Attributes={"VisibilityTimeout": str(VISIBILITY_SECONDS)})
        boto3.client("dynamodb", region_name=REGION).create_table(TableName="events", **table_definition())
        env = {
            "AWS_ENDPOINT_URL": endpoint,
            "QUEUE_URL": queue["QueueUrl"],
            "DLQ_URL": dlq,
            "TABLE_NAME": "events",
            "LEASE_SECONDS": str(LEASE_SECONDS),
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield env
    finally:
        urllib.request.urlopen(urllib.request.Request(reset, method="POST"), timeout=10).close()  # noqa: S310
        server.stop()


def test_a_consumer_killed_inside_a_handler_is_finished_by_the_retry_without_rerunning_the_finished_one(
    moto_server, tmp_path, monkeypatch
):
    # Given one queued event with two handlers, and a consumer process that will hang in the second
    body = samples.encode(samples.generic_payload("workorder.created", event_id="evt_killed")).decode()
    sqs = boto3.client("sqs", region_name=REGION)
    sqs.send_message(
        QueueUrl=moto_server["QUEUE_URL"],
        MessageBody=body,
        MessageAttributes={"eventId": {"DataType": "String", "StringValue": "evt_killed"}},
    )
    env = python_env()
    worker = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "tests.reliability.crash_worker", str(tmp_path)], cwd=ROOT, env=env
    )
    try:
        # The two handlers run side by side: wait until second hangs and first's success,
        # which finished while second still ran, is checkpointed
        deadline = time.monotonic() + 30
        events = store_module.EventStore(boto3.client("dynamodb", region_name=REGION), "events")
        while not (
            (tmp_path / "inside-second").exists()
            and ((events.get("evt_killed") or {}).get("handlers") or {}).get("first", {}).get("status") == "SUCCEEDED"
        ):
            assert worker.poll() is None, "the worker exited before reaching the second handler"
            assert time.monotonic() < deadline, "the worker never reached the second handler"
            time.sleep(0.05)

        # When the process is killed there (SIGKILL: no cleanup, no finally, as a Lambda timeout)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    runs = (tmp_path / "runs.log").read_text().split()
    assert sorted(runs) == ["first", "second:start"]
    item = store_module.EventStore(boto3.client("dynamodb", region_name=REGION), "events").get("evt_killed")
    assert item["status"] == "IN_PROGRESS" and item["handlers"]["first"]["status"] == "SUCCEEDED"

    # and SQS hands the message out again (its visibility timeout ran out) after the lease has ended
    time.sleep(VISIBILITY_SECONDS + 0.2)
    (message,) = sqs.receive_message(
        QueueUrl=moto_server["QUEUE_URL"], AttributeNames=["All"], MessageAttributeNames=["All"]
    )["Messages"]

    class AfterTheLease:
        @staticmethod
        def time() -> float:
            return time.time() + LEASE_SECONDS + 1

    monkeypatch.setattr(store_module, "time", AfterTheLease)
    registry = Registry()
    register(registry, tmp_path, hang=False)
    consumer, _ = build(registry)
    record: dict[str, Any] = as_record(message)
    result = consumer.process_batch({"Records": [record]}, LambdaContext())

    # Then the retry takes the claim over, runs only the unfinished handler, and completes the event
    assert result == {"batchItemFailures": []}
    assert record["attributes"]["ApproximateReceiveCount"] == "2"
    runs = (tmp_path / "runs.log").read_text().split()
    assert sorted(runs[:2]) == ["first", "second:start"] and runs[2:] == ["second:start", "second:done"]
    item = store_module.EventStore(boto3.client("dynamodb", region_name=REGION), "events").get("evt_killed")
    assert item["status"] == "COMPLETED" and item["attempts"] == 2
