"""The local stack's moto process (``devtools.local_stack.moto_server.MotoProcess``).

It keeps connections alive (the reason it exists: moto's own server closes each one), serves
one state on each address it is given, says plainly when its port is taken, and leaves the
port free when stopped.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import boto3
import pytest
import urllib3.util.connection

from devtools.local_stack.moto_server import MotoProcess
from tests.conftest import REGION


@pytest.fixture
def moto() -> Iterator[MotoProcess]:
    process = MotoProcess("127.0.0.1", 0)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _client(service: str, port: int) -> object:
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
    )


def test_one_connection_serves_every_call_of_a_client(moto, monkeypatch):
    # Given a client of the moto process, and a count of the TCP connections it opens
    opened: list[object] = []
    connect = urllib3.util.connection.create_connection

    def counted(*args, **kwargs):
        opened.append(args[0])
        return connect(*args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", counted)
    dynamodb = _client("dynamodb", moto.port)

    # When it makes twenty calls, one after the other
    dynamodb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for n in range(19):
        dynamodb.put_item(TableName="t", Item={"k": {"S": f"item-{n}"}})

    # Then one connection carried them all, and moto kept what they wrote
    assert len(opened) == 1
    assert dynamodb.scan(TableName="t", Select="COUNT")["Count"] == 19


def test_a_taken_port_is_said_plainly():
    # Given a port something else listens on
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        # When moto is asked for it, Then the start fails saying which port, and nothing is left running
        process = MotoProcess("127.0.0.1", port)
        with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            process.start()
        assert process._child is None


def test_stopping_frees_the_port_even_with_connections_still_open(moto):
    # Given a client still holding its kept-alive connection to moto
    sqs = _client("sqs", moto.port)
    sqs.list_queues()
    port = moto.port

    # When moto stops
    moto.stop()

    # Then the port can be bound again at once (as a restarted `make run` binds it)
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
