"""End-to-end fixtures: one target per session, the local stack or a deployed stack.

- Default: ``python -m devtools.local_stack`` in a subprocess on free ports, with
  ``MaxReceiveCount=3``, no backoff, and ``tests.e2e.e2e_handlers`` loaded.
- ``AWS_SAM_STACK_NAME=<stack>`` (and credentials): the deployed stack, found by
  its outputs. Its signing secret is ``E2E_WEBHOOK_SECRET``, else the first
  ``default`` secret in the stack's Secrets Manager secret. Tests that need the
  failing test handlers (``local_only``) are skipped there.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import CALLER_AWS_ENV

LOCAL_PARAMS = {
    "MaxReceiveCount": "3",
    "BackoffBaseSeconds": "0",  # a failed record is visible again at once: the retries take seconds
    "BackoffJitter": "0",
}


@dataclass
class Target:
    """Where the e2e tests send webhooks, and the AWS resources they look at."""

    kind: str  # "local" or "deployed"
    webhook_url: str
    secret: str
    outputs: dict[str, Any]
    client: Callable[[str], Any]
    max_receive_count: int
    timeout_s: float  # how long a delivery may take to be processed here
    stack: Any = None  # the LocalStackProcess, locally
    _clients: dict[str, Any] = field(default_factory=dict)

    def aws(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.client(service)
        return self._clients[service]

    @property
    def local(self) -> bool:
        return self.kind == "local"

    def post(self, body: bytes, headers: dict[str, str], source: str | None = None) -> tuple[int, dict[str, Any]]:
        url = self.webhook_url + (f"/{source}" if source else "")
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def item(self, event_id: str) -> dict[str, Any] | None:
        from boto3.dynamodb.types import TypeDeserializer

        found = self.aws("dynamodb").get_item(
            TableName=self.outputs["EventsTableName"], Key={"eventId": {"S": event_id}}, ConsistentRead=True
        )
        raw = found.get("Item")
        return {k: TypeDeserializer().deserialize(v) for k, v in raw.items()} if raw else None

    def wait_for(self, what: str, probe: Callable[[], Any], timeout: float | None = None) -> Any:
        """Poll ``probe`` until it returns something truthy; fail with ``what`` and the stack's log."""
        deadline = time.monotonic() + (timeout or self.timeout_s)
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                log = self.stack.log_text()[-3000:] if self.stack is not None else ""
                pytest.fail(f"timed out waiting for {what}\n{log}")
            time.sleep(0.1)

    def wait_status(self, event_id: str, *statuses: str, timeout: float | None = None) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            item = self.item(event_id)
            return item if item and item.get("status") in statuses else None

        return self.wait_for(f"event {event_id} to be {'/'.join(statuses)}", probe, timeout)

    def dlq_messages(self, event_id: str, *, delete: bool = False) -> list[dict[str, Any]]:
        """The DLQ's messages of one event (peeked without hiding others; deleted with ``delete``)."""
        sqs = self.aws("sqs")
        found = []
        for _ in range(5):
            messages = sqs.receive_message(
                QueueUrl=self.outputs["EventsDLQUrl"],
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                VisibilityTimeout=0 if not delete else 30,
            ).get("Messages", [])
            for message in messages:
                attribute = (message.get("MessageAttributes") or {}).get("eventId") or {}
                if attribute.get("StringValue") == event_id:
                    found.append(message)
                    if delete:
                        sqs.delete_message(
                            QueueUrl=self.outputs["EventsDLQUrl"], ReceiptHandle=message["ReceiptHandle"]
                        )
                elif delete:
                    sqs.change_message_visibility(
                        QueueUrl=self.outputs["EventsDLQUrl"],
                        ReceiptHandle=message["ReceiptHandle"],
                        VisibilityTimeout=0,
                    )
            if found:
                return found
        return found


def _local_target() -> Iterator[Target]:
    from devtools.local_stack import LocalStackProcess

    stack = LocalStackProcess(params=LOCAL_PARAMS, handler_modules=["tests.e2e.e2e_handlers"])
    stack.start()
    try:
        yield Target(
            kind="local",
            webhook_url=str(stack.info["webhook_url"]),
            secret=str(stack.info["secret"]),
            outputs=stack.outputs,
            client=stack.client,
            max_receive_count=int(LOCAL_PARAMS["MaxReceiveCount"]),
            timeout_s=15,
            stack=stack,
        )
    finally:
        # SIGTERM here (test_local_stack.py covers Ctrl-C): a clean exit that frees the port
        port = int(stack.url.rsplit(":", 1)[1]) if stack.info else None
        code = stack.stop(signum=signal.SIGTERM)
    assert code == 0, stack.log_text()[-2000:]
    if port is not None:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, "the stack's port still answers after SIGTERM"


def _deployed_target(stack_name: str) -> Target:
    import boto3

    env = CALLER_AWS_ENV
    session = boto3.Session(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=env.get("AWS_SESSION_TOKEN"),
        profile_name=env.get("AWS_PROFILE"),
        region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
    )
    if session.get_credentials() is None:
        pytest.skip(f"AWS_SAM_STACK_NAME={stack_name} is set but no AWS credentials were found")
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        stack = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    except (BotoCoreError, ClientError) as exc:
        pytest.fail(f"AWS_SAM_STACK_NAME={stack_name}: could not read the stack's outputs: {exc}", pytrace=False)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    secret = os.environ.get("E2E_WEBHOOK_SECRET")
    if not secret:
        value = session.client("secretsmanager").get_secret_value(SecretId=outputs["WebhookSecretArn"])
        secrets = json.loads(value["SecretString"]).get("default") or []
        if not secrets:
            pytest.skip("the stack's webhook secret has no default secret; fill it or set E2E_WEBHOOK_SECRET")
        secret = secrets[0] if isinstance(secrets, list) else secrets
    parameters = {p["ParameterKey"]: p.get("ParameterValue") for p in stack.get("Parameters", [])}
    return Target(
        kind="deployed",
        webhook_url=outputs["WebhookUrl"],
        secret=str(secret),
        outputs=outputs,
        client=session.client,
        max_receive_count=int(parameters.get("MaxReceiveCount") or 5),
        timeout_s=60,
    )


@pytest.fixture(scope="session")
def target() -> Iterator[Target]:
    stack_name = CALLER_AWS_ENV.get("AWS_SAM_STACK_NAME") or os.environ.get("AWS_SAM_STACK_NAME")
    if stack_name:
        yield _deployed_target(stack_name)
    else:
        yield from _local_target()


@pytest.fixture
def local_only(target: Target) -> Target:
    """For tests that need the local stack's failing test handlers."""
    if not target.local:
        pytest.skip("needs tests.e2e.e2e_handlers, which only the local stack loads")
    return target


def deliver(webhook_url: str, payload: dict[str, Any], fmt: str = "maintainx") -> str:
    """Sign ``payload`` with the local stack's secret in ``fmt`` and post it as the sender does
    (``devtools.send.post``); asserts the 202 and returns the event id."""
    from devtools import samples, send

    body = samples.encode(payload)
    headers = {**samples.signed_headers(body, samples.LOCAL_SECRET, fmt), "content-type": "application/json"}
    status, answer = send.post(webhook_url, body, headers, timeout=10)
    assert status == 202, answer
    return str(json.loads(answer)["eventId"])
