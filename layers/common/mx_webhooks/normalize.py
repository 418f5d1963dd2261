"""One vocabulary over both wire formats (``maintainx-webhooks.md`` section 3).

Pure functions on the decoded JSON payload, shared by ingest (which must stay on the
standard library for its cold start) and by the consumer's pydantic event model.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

UNKNOWN_TYPE = "unknown"

# Real MaintainX ``eventType`` -> generic type. Status changes to DONE also raise
# ``workorder.completed`` (see ``types_for``).
MAINTAINX_EVENT_TYPES: dict[str, str] = {
    "NEW_WORK_ORDER": "workorder.created",
    "WORK_ORDER_CHANGE": "workorder.updated",
    "WORK_ORDER_STATUS_CHANGE": "workorder.updated",
    "NEW_WORK_REQUEST": "request.created",
    "WORK_REQUEST_STATUS_CHANGE": "request.updated",
    "NEW_COMMENT_ON_WORK_ORDER": "workorder.commented",
}

# Every type a handler can subscribe to.
KNOWN_TYPES = frozenset(
    {
        "workorder.created",
        "workorder.updated",
        "workorder.completed",
        "workorder.commented",
        "asset.updated",
        "request.created",
        "request.updated",
    }
)

_GENERIC_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


def payload_format(payload: dict[str, Any]) -> str:
    """``maintainx`` for real deliveries (``eventType``), ``generic`` for the brief's."""
    return "maintainx" if "eventType" in payload else "generic"


def canonical_json(payload: Any) -> str:
    """Sorted keys, no spaces: the same bytes for the same content, however it was sent."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def derive_event_id(payload: dict[str, Any]) -> str:
    """The idempotency key: the generic payload's ``id``, else a hash of the payload.

    Real MaintainX deliveries carry no id; a retried delivery has the same body and
    a new signature timestamp, so the SHA-256 of the canonical JSON identifies it.
    """
    event_id = payload.get("id") if payload_format(payload) == "generic" else None
    if isinstance(event_id, str) and 0 < len(event_id) <= 200 and event_id.isprintable():
        return event_id
    if isinstance(event_id, int) and not isinstance(event_id, bool):
        return str(event_id)
    # surrogatepass: a JSON "\\ud800" escape decodes to a lone surrogate, which strict
    # UTF-8 cannot encode; the id must still be derived (and the same every time).
    digest = hashlib.sha256(canonical_json(payload).encode("utf-8", "surrogatepass")).hexdigest()
    return f"mx_{digest[:40]}"


def types_for(payload: dict[str, Any]) -> tuple[str, ...]:
    """Normalised types, primary first. Unknown or absent types give ``("unknown",)``."""
    if payload_format(payload) == "maintainx":
        raw = payload.get("eventType")
        if not isinstance(raw, str):
            return (UNKNOWN_TYPE,)
        mapped = MAINTAINX_EVENT_TYPES.get(raw)
        if mapped is None:
            return ("asset.updated",) if "ASSET" in raw.upper() else (UNKNOWN_TYPE,)
        if raw == "WORK_ORDER_STATUS_CHANGE" and str(payload.get("newStatus", "")).upper() == "DONE":
            return (mapped, "workorder.completed")
        return (mapped,)
    raw = payload.get("type")
    if isinstance(raw, str) and raw in KNOWN_TYPES:
        return (raw,)
    if isinstance(raw, str) and len(raw) <= 64 and _GENERIC_TYPE.match(raw):
        return (raw,)
    return (UNKNOWN_TYPE,)


def primary_type(payload: dict[str, Any]) -> str:
    return types_for(payload)[0]
