"""The admin Lambda's HTTP contract (API Gateway HTTP API payload v2) against moto."""

from __future__ import annotations

import importlib
import json
import time
import uuid
from typing import Any

import boto3
import pytest

from mx_webhooks.admin import Admin, AdminConfig
from mx_webhooks.store import FAILED, iso
from tests.conftest import REGION, LambdaContext, receive_all


@pytest.fixture
def api(stack, monkeypatch):
    monkeypatch.setenv("TABLE_NAME", stack.table_name)
    monkeypatch.setenv("QUEUE_URL", stack.queue_url)
    monkeypatch.setenv("DLQ_URL", stack.dlq_url)
    module = importlib.import_module("admin_handler")
    config = AdminConfig(TABLE_NAME=stack.table_name, QUEUE_URL=stack.queue_url, DLQ_URL=stack.dlq_url)
    monkeypatch.setattr(
        module,
        "ADMIN",
        Admin(config, boto3.client("dynamodb", region_name=REGION), boto3.client("sqs", region_name=REGION)),
    )

    def call(method: str, path: str, query: str = "", body: dict[str, Any] | None = None) -> tuple[int, Any]:
        params = dict(pair.split("=", 1) for pair in query.split("&")) if query else None
        event = {
            "version": "2.0",
            "routeKey": f"{method} {path}",
            "rawPath": path,
            "rawQueryString": query,
            "queryStringParameters": params,
            "headers": {"content-type": "application/json"},
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "admin",
                "authorizer": {"iam": {"userArn": "arn:aws:iam::123456789012:user/operator"}},
                "domainName": "admin.local",
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
                "requestId": uuid.uuid4().hex,
                "routeKey": f"{method} {path}",
                "stage": "$default",
                "timeEpoch": 0,
            },
            "body": json.dumps(body) if body is not None else None,
            "isBase64Encoded": False,
        }
        response = module.lambda_handler(event, LambdaContext())
        return response["statusCode"], json.loads(response["body"])

    return call


def _failed(store, event_id: str) -> None:
    claim = store.claim({"eventId": event_id, "eventType": "workorder.created", "payload": '{"id": "x"}'})
    store.finish(event_id, claim.token, status=FAILED, results={}, error="sync: boom")


def test_list_show_and_retry_over_http(api, store, stack):
    # Given a failed event
    _failed(store, "evt_1")

    # When the operator lists failures, opens one and retries it
    list_status, listing = api("GET", "/admin/webhooks", "status=FAILED&limit=10")
    show_status, shown = api("GET", "/admin/webhooks/evt_1")
    retry_status, retried = api("POST", "/admin/webhooks/evt_1/retry")

    # Then each answers 200 with the documented JSON, and the event is queued again
    assert list_status == 200 and [i["eventId"] for i in listing["items"]] == ["evt_1"]
    assert listing["nextCursor"] is None
    assert show_status == 200 and shown["lastError"] == "sync: boom" and shown["payload"] == {"id": "x"}
    assert retry_status == 200 and retried["status"] == "QUEUED"
    assert [m["MessageAttributes"]["eventId"]["StringValue"] for m in receive_all(stack.queue_url)] == ["evt_1"]


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "status", "needle"),
    [
        ("GET", "/admin/webhooks", "status=BROKEN", None, 400, "status"),
        ("GET", "/admin/webhooks", "limit=1000", None, 400, "limit"),
        ("GET", "/admin/webhooks/evt_missing", "", None, 404, "evt_missing"),
        ("POST", "/admin/webhooks/evt_missing/retry", "", None, 404, "evt_missing"),
        ("POST", "/admin/webhooks/evt_1/retry", "force=maybe", None, 400, "force"),
        ("POST", "/admin/webhooks/retry", "", {}, 400, "since is required"),
        ("POST", "/admin/webhooks/retry", "", {"since": "1d", "limit": 9999}, 400, "limit"),
        ("GET", "/admin/dlq", "max=0", None, 400, "max"),
        ("GET", "/admin/stats", "hours=1000", None, 400, "hours"),
    ],
)
def test_mistakes_get_a_clear_400_or_404(api, store, method, path, query, body, status, needle):
    _failed(store, "evt_1")

    code, answer = api(method, path, query, body)

    assert code == status and needle in answer["error"], answer


def test_bulk_retry_and_redrive_over_http(api, store, stack):
    _failed(store, "evt_1")
    boto3.client("sqs", region_name=REGION).send_message(QueueUrl=stack.dlq_url, MessageBody='{"id": "evt_2"}')

    assert api("POST", "/admin/webhooks/retry", "", {"since": "1h", "dryRun": True})[1]["wouldRetry"] == ["evt_1"]
    assert api("GET", "/admin/dlq")[1]["approximateDepth"] == 1
    assert api("POST", "/admin/dlq/redrive")[1] == {"moved": 1, "failed": 0, "remaining": 0}


def test_stats_over_http(api, store):
    _failed(store, "evt_1")

    code, stats = api("GET", "/admin/stats", "hours=2")

    assert code == 200 and stats["hours"] == 2 and stats["counts"]["FAILED"] == 1 and stats["dlqDepth"] == 0
    assert sum(point["received"] for point in stats["series"]) == 1


def test_integrations_over_http_shows_each_breaker(api, store):
    # Given a consumer recorded Slack's breaker opening for 5 minutes
    now = time.time()
    store.record_breaker("Slack", "OPEN", at=now, open_until=now + 300, reason="open for 300 s: Slack answered 503")

    code, answer = api("GET", "/admin/integrations")

    assert code == 200
    shown = {item["name"]: item for item in answer["items"]}
    assert shown["Slack"]["state"] == "OPEN" and shown["Slack"]["until"] == iso(now + 300)
    assert not shown["Slack"]["expired"] and "503" in shown["Slack"]["reason"]
    assert shown["EventBridge"] == {
        "name": "EventBridge",
        "state": "CLOSED",
        "since": None,
        "until": None,
        "expired": False,
        "reason": None,
        "retryAfterSeconds": None,
    }
