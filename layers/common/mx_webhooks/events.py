"""The one event model handlers see, whichever wire format the delivery used."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from mx_webhooks import normalize


class InvalidEvent(Exception):
    """The message can never be processed (not JSON, not an event): park it, don't retry."""


EntityId = int | str


class WebhookEvent(BaseModel):
    """A MaintainX event in the generic vocabulary (``maintainx-webhooks.md`` section 3)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str
    type: str
    types: tuple[str, ...]
    source: str = "default"
    format: Literal["maintainx", "generic"]
    source_event_type: str
    occurred_at: datetime | None = None
    org_id: int | None = None
    work_order_id: EntityId | None = None
    work_request_id: EntityId | None = None
    asset_id: EntityId | None = None
    old_status: str | None = None
    new_status: str | None = None
    comment: str | None = None
    data: dict[str, Any]
    payload: dict[str, Any]

    @field_validator("work_order_id", "work_request_id", "asset_id", mode="before")
    @classmethod
    def _entity_id(cls, value: Any) -> Any:
        """MaintainX ids are numbers; numeric strings are accepted and made numbers."""
        if isinstance(value, bool | float | dict | list):
            raise ValueError("an id must be an integer or a string")
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return value

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        """Timestamps without an offset are taken as UTC, so lags and ordering compare."""
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    @property
    def entity_key(self) -> str:
        """What ordering is kept for: the work order or work request, else the event itself."""
        if self.work_order_id is not None:
            return f"workorder:{self.work_order_id}"
        if self.work_request_id is not None:
            return f"request:{self.work_request_id}"
        if self.asset_id is not None:
            return f"asset:{self.asset_id}"
        return f"event:{self.event_id}"

    @property
    def is_known_type(self) -> bool:
        return self.type in normalize.KNOWN_TYPES


def parse_event(body: str, *, event_id: str | None = None, source: str = "default") -> WebhookEvent:
    """Parse a queued delivery (the raw webhook body) into a ``WebhookEvent``.

    Raises ``InvalidEvent`` for anything that no retry could fix.
    """
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep to parse
        raise InvalidEvent(f"body is not JSON: {type(exc).__name__}: {exc}"[:500]) from exc
    if not isinstance(payload, dict):
        raise InvalidEvent(f"body is a JSON {type(payload).__name__}, not an object")
    fmt = normalize.payload_format(payload)
    raw_type = payload.get("eventType") if fmt == "maintainx" else payload.get("type")
    if not isinstance(raw_type, str) or not raw_type:
        raise InvalidEvent("no event type: neither eventType nor type is a non-empty string")
    types = normalize.types_for(payload)
    fields: dict[str, Any]
    if fmt == "maintainx":
        data = payload
        fields = {
            "occurred_at": payload.get("occurredAt"),
            "org_id": payload.get("orgId"),
            "work_order_id": payload.get("workOrderId"),
            "work_request_id": payload.get("workRequestId", payload.get("requestId")),
            "asset_id": payload.get("assetId"),
            "old_status": payload.get("oldStatus"),
            "new_status": payload.get("newStatus"),
            "comment": payload.get("comment"),
        }
    else:
        data = payload.get("data", {})
        if not isinstance(data, dict):
            raise InvalidEvent("data is not a JSON object")
        entity = data.get("id")
        fields = {
            "occurred_at": payload.get("createdAt"),
            "work_order_id": entity if types[0].startswith("workorder.") else data.get("workOrderId"),
            "work_request_id": entity if types[0].startswith("request.") else data.get("requestId"),
            "asset_id": entity if types[0].startswith("asset.") else None,
            "old_status": data.get("previousStatus"),
            "new_status": data.get("currentStatus", data.get("status")),
            "comment": data.get("comment") if isinstance(data.get("comment"), str) else None,
        }
    try:
        return WebhookEvent(
            event_id=event_id or normalize.derive_event_id(payload, source),
            type=types[0],
            types=types,
            source=source,
            format=fmt,
            source_event_type=raw_type,
            data=data,
            payload=payload,
            **fields,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidEvent(f"invalid event: {problems}") from exc
