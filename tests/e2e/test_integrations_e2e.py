"""The built-in integrations on the local stack: signed webhooks over HTTP -> queue -> consumer -> fakes.

The stack is the template on moto in a child process (``devtools.local_stack``),
with the integrations switched on by template parameters and their secrets filled
the way a user fills them; MaintainX and Slack are fake servers on 127.0.0.1.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devtools import samples
from devtools.local_stack import LocalStackProcess
from mx_webhooks.normalize import derive_event_id
from tests.fakes.fake_maintainx import API_KEY, FakeMaintainX
from tests.fakes.fake_slack import FakeSlack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeMaintainX, FakeSlack]]:
    with FakeMaintainX() as maintainx, FakeSlack() as slack:
        yield maintainx, slack


@pytest.fixture(scope="module")
def stack(fakes: tuple[FakeMaintainX, FakeSlack]) -> Iterator[LocalStackProcess]:
    maintainx, slack = fakes
    with LocalStackProcess(
        params={
            "SlackNotifyEnabled": "true",
            "StatusHistoryEnabled": "true",
            "MaintainXApiBaseUrl": maintainx.url,
            "BackoffBaseSeconds": "1",
        },
        secret_values={
            "MaintainXApiKeySecret": json.dumps({"apiKey": API_KEY}),
            "SlackWebhookSecret": json.dumps({"webhookUrl": slack.webhook_url}),
        },
    ) as running:
        yield running


def _post(stack: LocalStackProcess, payload: dict[str, Any]) -> int:
    body = samples.encode(payload)
    request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
        stack.info["webhook_url"],
        data=body,
        headers=samples.signed_headers(body, stack.info["secret"], "maintainx"),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return int(response.status)


def _wait_for[T](probe: Callable[[], T], timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_a_new_work_order_delivery_produces_the_slack_message(stack, fakes):
    # Given work order 90123 in MaintainX
    maintainx, slack = fakes
    maintainx.add_work_order(
        90123,
        title="Compressor 2 overheating",
        priority="HIGH",
        asset={"id": 3301, "name": "Compressor 2"},
        location={"id": 12, "name": "Plant South"},
    )

    # When MaintainX delivers NEW_WORK_ORDER to the local stack
    status = _post(stack, samples.maintainx_payload("workorder.created", work_order_id=90123))

    # Then Slack receives the message with the details fetched from the API
    assert status == 202
    messages = _wait_for(lambda: [m for m in slack.messages if "#90123" in m["text"]])
    assert messages, f"no Slack message; stack log:\n{stack.log_text()[-3000:]}"
    (message,) = messages
    assert message["text"] == "New work order #90123: Compressor 2 overheating (priority HIGH)"
    blocks = json.dumps(message["blocks"])
    assert "Compressor 2" in blocks and "Plant South" in blocks and "/workorders/90123" in blocks
    assert maintainx.calls_to("GET", "/v1/workorders/90123")[0].headers["authorization"] == f"Bearer {API_KEY}"


def test_status_changes_reach_the_history_table_and_a_late_one_is_skipped_as_stale(stack):
    table = stack.outputs["IntegrationsTableName"]
    ddb = stack.client("dynamodb")
    change = {"eventType": "WORK_ORDER_STATUS_CHANGE", "orgId": 4711, "workOrderId": 90777}
    newer = {**change, "oldStatus": "IN_PROGRESS", "newStatus": "DONE", "occurredAt": "2026-09-14T13:10:00.000Z"}
    older = {**change, "oldStatus": "OPEN", "newStatus": "IN_PROGRESS", "occurredAt": "2026-09-14T13:00:00.000Z"}

    assert _post(stack, newer) == 202
    assert _wait_for(lambda: _items(ddb, table, "t#"))
    assert _post(stack, older) == 202

    # The history handler is latest_only: the late event is SKIPPED (stale) and changes nothing
    def skipped() -> dict[str, Any] | None:
        found = ddb.get_item(
            TableName=stack.outputs["EventsTableName"], Key={"eventId": {"S": derive_event_id(older)}}
        ).get("Item")
        handler = ((found or {}).get("handlers", {}).get("M", {}).get("integrations.status_history") or {}).get("M")
        return handler if handler and handler["status"]["S"] == "SKIPPED" else None

    assert "stale" in _wait_for(skipped)["error"]["S"]
    assert [i["toStatus"]["S"] for i in _items(ddb, table, "t#")] == ["DONE"]
    assert _items(ddb, table, "stale#") == []


def _items(ddb: Any, table: str, prefix: str) -> list[dict[str, Any]]:
    return ddb.query(
        TableName=table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
        ExpressionAttributeValues={":pk": {"S": "wo#90777"}, ":p": {"S": prefix}},
    )["Items"]
