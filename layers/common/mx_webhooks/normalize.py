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


DEFAULT_SOURCE = "default"
MAX_ID_LENGTH = 200  # characters of a generic payload's string ``id``
MAX_NUMERIC_ID_DIGITS = 30  # a numeric ``id``: far above any real id, far below DynamoDB's 2 KB key
SCOPE_SEPARATOR = "~"  # never in an accepted id; URL-safe, so a scoped id is one path segment of the admin API


def event_id_problem(payload: dict[str, Any]) -> str | None:
    """Why a generic payload's ``id`` cannot be an event id, or None when it can (or is absent).

    Ingest answers 400 with this reason: an unbounded id would be accepted and then fail
    every claim (DynamoDB's key size limit) until the DLQ.
    """
    if payload_format(payload) != "generic" or payload.get("id") is None:
        return None
    event_id = payload["id"]
    if isinstance(event_id, bool):
        return "id must be a string or an integer, not a boolean"
    if isinstance(event_id, int):
        if len(str(abs(event_id))) > MAX_NUMERIC_ID_DIGITS:
            return f"a numeric id has at most {MAX_NUMERIC_ID_DIGITS} digits"
        return None
    if isinstance(event_id, str):
        if not 0 < len(event_id) <= MAX_ID_LENGTH:
            return f"id must be 1 to {MAX_ID_LENGTH} characters"
        if not event_id.isprintable() or SCOPE_SEPARATOR in event_id:
            return f"id must be printable and must not contain {SCOPE_SEPARATOR!r}"
    return None


def derive_event_id(payload: dict[str, Any], source: str = DEFAULT_SOURCE) -> str:
    """The idempotency key: the generic payload's ``id``, else a hash of the payload.

    Real MaintainX deliveries carry no id; a retried delivery has the same body and
    a new signature timestamp, so the SHA-256 of the canonical JSON identifies it.

    Scoped by source: events of any source but ``default`` are keyed ``<source>~<id>``,
    so a holder of one source's secret cannot touch another source's events (ids are
    otherwise global). An id ``event_id_problem`` refuses falls back to the hash here
    (ingest refuses it first; this keeps the consumer total).
    """
    event_id = payload.get("id") if payload_format(payload) == "generic" else None
    if event_id is not None and event_id_problem(payload) is None and isinstance(event_id, str | int):
        key = str(event_id)
    else:
        # surrogatepass: a JSON "\\ud800" escape decodes to a lone surrogate, which strict
        # UTF-8 cannot encode; the id must still be derived (and the same every time).
        digest = hashlib.sha256(canonical_json(payload).encode("utf-8", "surrogatepass")).hexdigest()
        key = f"mx_{digest[:40]}"
    return key if source == DEFAULT_SOURCE else f"{source}{SCOPE_SEPARATOR}{key}"


def payload_digest(payload: Any) -> str:
    """SHA-256 of the canonical JSON: tells a redelivery of an event from another event reusing its id."""
    return hashlib.sha256(canonical_json(payload).encode("utf-8", "surrogatepass")).hexdigest()


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
