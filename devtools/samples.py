"""Sample deliveries in both wire formats, signed, and as API Gateway events.

One source for the sample events in ``events/``, the sender CLI, the local stack's
hint and the tests, so they cannot drift apart.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from mx_webhooks.signature import (
    BODY_SIGNATURE_HEADER,
    GENERIC_SIGNATURE_HEADER,
    GENERIC_TIMESTAMP_HEADER,
    compute_signature,
    signature_header,
)

LOCAL_SECRET = "local-dev-secret"  # the local stack's and the sample events' secret; not a real one
FORMATS = ("maintainx", "generic")

# The generic vocabulary -> the real eventType that produces it.
MAINTAINX_TYPES = {
    "workorder.created": "NEW_WORK_ORDER",
    "workorder.updated": "WORK_ORDER_STATUS_CHANGE",
    "workorder.completed": "WORK_ORDER_STATUS_CHANGE",
    "workorder.commented": "NEW_COMMENT_ON_WORK_ORDER",
    "request.created": "NEW_WORK_REQUEST",
    "request.updated": "WORK_REQUEST_STATUS_CHANGE",
    "asset.updated": "ASSET_CHANGE",
}
EVENT_TYPES = tuple(MAINTAINX_TYPES)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def maintainx_payload(event_type: str, *, work_order_id: int = 90001, occurred_at: str | None = None) -> dict[str, Any]:
    """A payload shaped like a live MaintainX delivery (``maintainx-webhooks.md``)."""
    occurred = occurred_at or _now_iso()
    base: dict[str, Any] = {"eventType": MAINTAINX_TYPES[event_type], "occurredAt": occurred, "orgId": 4711}
    if event_type == "workorder.created":
        return {**base, "workOrderId": work_order_id, "customerId": None, "userId": 501}
    if event_type in ("workorder.updated", "workorder.completed"):
        new = "DONE" if event_type == "workorder.completed" else "IN_PROGRESS"
        old = "IN_PROGRESS" if new == "DONE" else "OPEN"
        return {
            **base,
            "workOrderId": work_order_id,
            "oldStatus": old,
            "newStatus": new,
            "customerId": None,
            "userId": 501,
        }
    if event_type == "workorder.commented":
        return {"type": "TEXT", **base, "comment": "checked the pump seal", "workOrderId": work_order_id}
    if event_type == "request.created":
        return {**base, "workRequestId": 777}
    if event_type == "request.updated":
        return {"newStatus": "APPROVED", "oldStatus": "PENDING", **base, "requestId": 777}
    return {**base, "assetId": 3301}


def generic_payload(
    event_type: str, *, event_id: str | None = None, work_order_id: str = "wo_test_001"
) -> dict[str, Any]:
    """A payload in the brief's generic format."""
    data: dict[str, Any]
    if event_type == "workorder.created":
        data = {
            "id": work_order_id,
            "title": "Test Work Order",
            "priority": "HIGH",
            "status": "OPEN",
            "asset": {"id": "asset_001", "name": "Test Asset"},
            "location": {"id": "loc_001", "name": "Test Location"},
        }
    elif event_type == "workorder.updated":
        data = {"id": work_order_id, "previousStatus": "OPEN", "currentStatus": "IN_PROGRESS"}
    elif event_type == "workorder.completed":
        data = {"id": work_order_id, "title": "Test Work Order", "completedAt": _now_iso(), "requiresFollowUp": True}
    elif event_type == "workorder.commented":
        data = {"id": work_order_id, "comment": "checked the pump seal"}
    elif event_type in ("request.created", "request.updated"):
        data = {
            "id": "req_test_001",
            "title": "Emergency Repair Request",
            "description": "Machine making strange noise",
        }
    else:
        data = {"id": "asset_001", "name": "Test Asset", "status": "ONLINE"}
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:20]}",
        "type": event_type,
        "data": data,
        "createdAt": _now_iso(),
    }


def payload(event_type: str, fmt: str, **kwargs: Any) -> dict[str, Any]:
    if fmt == "maintainx":
        return maintainx_payload(event_type, **kwargs)
    return generic_payload(event_type, **kwargs)


def encode(body: dict[str, Any] | list[Any]) -> bytes:
    """Compact JSON, the way MaintainX sends it."""
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def signed_headers(body: bytes, secret: str, fmt: str, timestamp: str | int | None = None) -> dict[str, str]:
    """Headers a genuine delivery of ``body`` carries in ``fmt``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    if fmt == "maintainx":
        return {"content-type": "application/json", BODY_SIGNATURE_HEADER: signature_header(secret, ts, body)}
    return {
        "content-type": "application/json",
        GENERIC_SIGNATURE_HEADER: compute_signature(secret, ts, body),
        GENERIC_TIMESTAMP_HEADER: ts,
    }


def api_event(
    body: bytes,
    headers: dict[str, str],
    *,
    source: str | None = None,
    base64_encoded: bool = False,
    domain: str = "127.0.0.1:3000",
) -> dict[str, Any]:
    """An API Gateway HTTP API payload v2 event for ``POST /webhooks/maintainx[/{source}]``."""
    path = "/webhooks/maintainx" + (f"/{source}" if source else "")
    route = "POST /webhooks/maintainx" + ("/{source}" if source else "")
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "MaintainX",
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": route,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "body": base64.b64encode(body).decode("ascii") if base64_encoded else body.decode("utf-8"),
        "isBase64Encoded": base64_encoded,
    }
    if source:
        event["pathParameters"] = {"source": source}
    return event


def signed_api_event(
    event_type: str,
    fmt: str,
    *,
    secret: str = LOCAL_SECRET,
    timestamp: str | int | None = None,
    source: str | None = None,
    **payload_kwargs: Any,
) -> dict[str, Any]:
    body = encode(payload(event_type, fmt, **payload_kwargs))
    return api_event(body, signed_headers(body, secret, fmt, timestamp), source=source)
