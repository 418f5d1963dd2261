"""The load test's fault injection (``devtools.local_stack.chaos``) does what it claims, on moto's server.

Fast (a few seconds), not marked ``load``: a lost reply is applied before it is lost
and botocore retries the identical request; a duplicate SQS delivery reaches a second
invocation while the first still runs; both are counted and reported.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

from devtools.local_stack import chaos as devtools_chaos
from devtools.local_stack.chaos import Chaos, ChaosSpec, read_report
from devtools.local_stack.sqs_source import SqsEventSource

REGION = "us-east-1"


@pytest.fixture
def endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    reset = urllib.request.Request(f"{url}/moto-api/reset", method="POST")  # noqa: S310
    urllib.request.urlopen(reset, timeout=10).close()  # noqa: S310 - moto on 127.0.0.1
    try:
        yield url
    finally:
        urllib.request.urlopen(reset, timeout=10).close()  # noqa: S310
        server.stop()


def client(service: str, endpoint: str, attempts: int = 3) -> Any:
    return boto3.session.Session().client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": attempts, "mode": "standard"}),
    )


def scripted(chaos: Chaos, values: list[float]) -> None:
    """Replace the lost-reply coin with a script: per request, [hit?, reported as a 500?]."""
    script = iter(values)
    chaos._rng_dynamodb.random = lambda: next(script, 0.99)  # type: ignore[method-assign]


def counter_update(dynamodb: Any) -> dict[str, Any]:
    return dynamodb.update_item(
        TableName="t",
        Key={"pk": {"S": "event-1"}},
        UpdateExpression="SET n = if_not_exists(n, :zero) + :one",
        ConditionExpression="attribute_not_exists(pk)",
        ExpressionAttributeValues={":zero": {"N": "0"}, ":one": {"N": "1"}},
    )


@pytest.fixture
def table(endpoint: str) -> Any:
    dynamodb = client("dynamodb", endpoint)
    dynamodb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return dynamodb


def test_spec_parses_shares_and_refuses_the_unknown():
    assert ChaosSpec.parse("dynamodb-lost-replies=0.02, sqs-duplicates=0.05") == ChaosSpec(0.02, 0.05)
    assert not ChaosSpec.parse("")
    for bad in ("dynamodb-lost-replies", "lost=0.1", "sqs-duplicates=2"):
        with pytest.raises(ValueError):
            ChaosSpec.parse(bad)


@pytest.mark.parametrize("as_500", [False, True], ids=["connection-closed", "500"])
def test_a_lost_reply_is_applied_and_the_sdk_retries_the_identical_request(table, endpoint, tmp_path, as_500):
    # Given a client whose first UpdateItem is applied and its reply lost
    chaos = Chaos(ChaosSpec(dynamodb_lost_replies=0.5), seed=1, report=tmp_path / "chaos.json")
    dynamodb = client("dynamodb", endpoint)
    chaos.install(dynamodb.meta.events)
    scripted(chaos, [0.0, 0.0 if as_500 else 0.99])

    # When a conditional write that only a first attempt can pass is made
    with pytest.raises(ClientError) as refused:
        counter_update(dynamodb)

    # Then the first attempt was applied (the item holds n = 1), and botocore's retry of the
    # same request met the state it left: refused by its condition, as on DynamoDB
    assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert refused.value.response["ResponseMetadata"]["RetryAttempts"] == 1
    item = table.get_item(TableName="t", Key={"pk": {"S": "event-1"}})["Item"]
    assert item["n"] == {"N": "1"}
    report = read_report(tmp_path / "chaos.json")
    assert report["counts"]["dynamodb_lost_replies"] == 1
    assert report["counts"]["dynamodb_lost_replies.applied"] == 1
    assert report["counts"]["dynamodb_lost_replies.as_500" if as_500 else "dynamodb_lost_replies.as_connection_closed"]
    assert report["faults"][0]["event_id"] == "event-1"
    assert report["faults"][0]["operation"] == "UpdateItem"


def test_without_retries_the_caller_sees_the_failure_of_a_write_that_was_applied(table, endpoint):
    chaos = Chaos(ChaosSpec(dynamodb_lost_replies=1.0), seed=1)
    dynamodb = client("dynamodb", endpoint, attempts=1)
    chaos.install(dynamodb.meta.events)
    scripted(chaos, [0.0, 0.99])

    with pytest.raises(ConnectionClosedError):
        counter_update(dynamodb)

    assert table.get_item(TableName="t", Key={"pk": {"S": "event-1"}})["Item"]["n"] == {"N": "1"}
    chaos.uninstall()
    assert table.get_item(TableName="t", Key={"pk": {"S": "event-1"}})  # reads are never touched


def test_reads_and_other_clients_are_left_alone(table, endpoint):
    chaos = Chaos(ChaosSpec(dynamodb_lost_replies=1.0), seed=1)
    hooked = client("dynamodb", endpoint, attempts=1)
    chaos.install(hooked.meta.events)
    counter_update(table)  # another client: no fault
    assert hooked.get_item(TableName="t", Key={"pk": {"S": "event-1"}})["Item"]["n"] == {"N": "1"}
    assert not chaos.counts


class SlowFunction:
    """Stands in for a LocalFunction: records what each invocation got, takes its time."""

    logical_id = "Consumer"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.calls.append([r["body"] for r in event["Records"]])
        time.sleep(1.0)
        return {"batchItemFailures": []}


def test_a_duplicate_delivery_reaches_a_second_invocation_while_the_first_runs(endpoint, tmp_path):
    # Given a queue with one message, and SQS delivering every first receive once more
    sqs = client("sqs", endpoint)
    queue_url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody="event-1",
        MessageAttributes={"eventId": {"DataType": "String", "StringValue": "event-1"}},
    )
    chaos = Chaos(ChaosSpec(sqs_duplicates=1.0), seed=1, report=tmp_path / "chaos.json")
    once = {"done": False}
    should = chaos.should_redeliver

    def first_receive_only(message: dict[str, Any]) -> bool:
        if once["done"]:
            return False
        once["done"] = True
        return should(message)

    chaos.should_redeliver = first_receive_only  # type: ignore[method-assign]
    function = SlowFunction()
    source = SqsEventSource(
        sqs,
        queue_url=queue_url,
        queue_arn="arn:aws:sqs:us-east-1:123456789012:q",
        function=function,  # type: ignore[arg-type]
        report_batch_item_failures=True,
        concurrency=2,
        redelivery=chaos,
    )

    # When the event source runs
    source.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
            in_queue = int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])
            if len(function.calls) >= 2 and not in_queue:
                break
            time.sleep(0.1)
    finally:
        source.stop()

    # Then two invocations got the message, the second while the first still ran; both were
    # acknowledged (either receipt handle deletes it) and the fault was counted
    assert function.calls == [["event-1"], ["event-1"]]
    report = read_report(tmp_path / "chaos.json")
    assert report["counts"]["sqs_duplicates"] == 1
    assert report["counts"]["sqs_duplicates_received.concurrent"] == 1
    assert report["faults"][0]["event_id"] == "event-1"
    assert source.redelivered == 1
    assert json.loads((tmp_path / "chaos.json").read_text())["spec"].startswith("dynamodb-lost-replies=0.0")


def test_atomic_item_writes_let_one_of_many_concurrent_conditional_claims_win(table, endpoint):
    """Without the lock moto lets several win (up to 11 of 16 here, in every trial) once
    the interpreter switches threads often and the write is as long as the consumer's claim."""
    clients = [client("dynamodb", endpoint, attempts=1) for _ in range(16)]
    sets = ", ".join(f"#a{i} = if_not_exists(#a{i}, :v)" for i in range(30))

    def trial(key: str) -> list[int]:
        start = threading.Barrier(len(clients))
        won: list[int] = []

        def claim(n: int) -> None:
            start.wait()
            try:
                clients[n].update_item(
                    TableName="t",
                    Key={"pk": {"S": key}},
                    UpdateExpression="SET claimToken = :t, " + sets,
                    ConditionExpression="attribute_not_exists(pk)",
                    ExpressionAttributeNames={f"#a{i}": f"a{i}" for i in range(30)},
                    ExpressionAttributeValues={":t": {"S": str(n)}, ":v": {"S": "x" * 100}},
                )
            except ClientError:
                return
            won.append(n)

        threads = [threading.Thread(target=claim, args=(n,)) for n in range(len(clients))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        return won

    # Given 16 clients claiming the same new item at once, threads switching every 10 µs
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        # When moto's item writes are made atomic, as the local stack makes them
        with devtools_chaos.atomic_item_writes():
            winners = {f"event-{k}": trial(f"event-{k}") for k in range(5)}
    finally:
        sys.setswitchinterval(interval)

    # Then in every trial exactly one claim passed its condition, and the item holds its token
    assert {key: len(won) for key, won in winners.items()} == {key: 1 for key in winners}
    for key, won in winners.items():
        item = table.get_item(TableName="t", Key={"pk": {"S": key}})["Item"]
        assert item["claimToken"] == {"S": str(won[0])}
