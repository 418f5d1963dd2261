"""The operator alert: one SNS message per event that needs a person, built in one place.

Used by the consumer (an event's last allowed attempt failed, or it was parked at
once) and by the stalled-claim sweep (a holder was stopped and nothing took over).
The message is bounded: SNS refuses a message over 256 KiB, and a handler's error
text (a downstream HTML error page, a long traceback) can be longer; a refused
publish would drop the alert. The error is cut to ``MAX_ERROR_CHARS`` and the alert
says where the whole record is (``show``).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from mx_webhooks.observability import emit, logger

MAX_ERROR_CHARS = 1000
MAX_SUBJECT_CHARS = 100  # SNS's limit for e-mail subjects
MAX_MESSAGE_BYTES = 200_000  # well inside SNS's 262,144 bytes, attributes included


def alert_message(
    headline: str, *, event_id: str, event_type: str, error: str | None, **details: Any
) -> dict[str, Any]:
    """The alert's JSON document: what happened, to which event, and how to see the rest."""
    text = error or ""
    cut = len(text) > MAX_ERROR_CHARS
    message: dict[str, Any] = {
        "alert": headline,
        "eventId": event_id,
        "eventType": event_type,
        "error": text[:MAX_ERROR_CHARS] + (" ...(cut; the whole error is in the event record)" if cut else ""),
        **details,
        "show": {
            "api": f"GET /admin/webhooks/{quote(event_id, safe='')}",
            "cli": f'make admin ARGS="show {event_id}"',
        },
    }
    return message


def publish_alert(
    sns: Any, topic_arn: str, headline: str, *, event_id: str, event_type: str, error: str | None, **details: Any
) -> bool:
    """Publish one alert; True when SNS took it. A failure is logged and counted, never raised:
    the caller has already recorded the event durably (the record is what matters)."""
    if sns is None or not topic_arn:
        return False
    message = alert_message(headline, event_id=event_id, event_type=event_type, error=error, **details)
    body = json.dumps(message, indent=2)
    if len(body.encode()) > MAX_MESSAGE_BYTES:  # only reachable through huge details or ids
        body = json.dumps({k: message[k] for k in ("alert", "eventId", "eventType", "show")})[:MAX_MESSAGE_BYTES]
    try:
        sns.publish(
            TopicArn=topic_arn,
            Subject=f"MaintainX webhook {event_type}: {headline}"[:MAX_SUBJECT_CHARS],
            Message=body,
            MessageAttributes={"eventId": {"DataType": "String", "StringValue": event_id[:256]}},
        )
    except Exception:
        logger.exception("could not publish the alert", extra={"event_id": event_id})
        return False
    emit("AlertPublished")
    return True
