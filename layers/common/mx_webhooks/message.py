"""The one contract of a queued event's SQS message attributes.

Ingest, the consumer (when it parks a message in the DLQ) and the admin retry all
build them here, so they cannot drift: the consumer reads exactly these three
(``eventId``, ``eventType``, ``source``); the DLQ adds ``parkedReason``, which a
redrive drops. Standard library only: ingest imports it on its cold-start path.
"""

from __future__ import annotations

from typing import Any

ATTRIBUTES = ("eventId", "eventType", "source")
PARKED_REASON = "parkedReason"
MAX_REASON_CHARS = 1000


def message_attributes(
    event_id: str, event_type: str, source: str, *, parked_reason: str | None = None
) -> dict[str, Any]:
    """SendMessage ``MessageAttributes`` for an event (plus why it was parked, for the DLQ)."""
    values = {"eventId": event_id, "eventType": event_type, "source": source}
    if parked_reason is not None:
        values[PARKED_REASON] = parked_reason[:MAX_REASON_CHARS] or "invalid"
    return {name: {"DataType": "String", "StringValue": value} for name, value in values.items()}
