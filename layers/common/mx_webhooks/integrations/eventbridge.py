"""Forward events to an EventBridge bus, so any AWS service can subscribe with a rule and no code.

Each event becomes one entry: source ``maintainx``, detail-type the event's type
(``workorder.created``...), detail the normalised event (``WebhookEvent`` as JSON),
time its ``occurredAt``. A rule matches e.g.
``{"source": ["maintainx"], "detail-type": ["workorder.completed"]}``.

Calls go through the ``EventBridge`` circuit breaker (``mx_webhooks.breaker``): while
PutEvents keeps failing (throttled, unavailable, after botocore's own retries) events are
deferred rather than sent.

EventBridge has no idempotency key: an event is put at least once (a retry after a
crash between the put and the consumer's record puts it again); subscribers
deduplicate on ``detail.event_id``.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mx_webhooks.breaker import breaker_for
from mx_webhooks.events import WebhookEvent

SOURCE = "maintainx"
BREAKER = "EventBridge"
# Errors that say the request is wrong, not that EventBridge is down: they do not trip the breaker.
CALLER_ERRORS = frozenset(
    {"ResourceNotFoundException", "AccessDeniedException", "ValidationException", "InvalidEventPatternException"}
)
MAX_DETAIL_BYTES = 250_000  # PutEvents allows 256 KB per entry, envelope included


class ForwardFailed(Exception):
    """EventBridge refused the entry (throttled, internal error): retry the event later."""


def entry_for(event: WebhookEvent, bus_name: str) -> dict[str, Any]:
    detail = event.model_dump(mode="json")
    text = json.dumps(detail, separators=(",", ":"))
    if len(text.encode()) > MAX_DETAIL_BYTES:
        # The raw payload is the bulky part; subscribers can fetch it from the event log.
        detail["payload"] = None
        detail["data"] = {}
        detail["truncated"] = True
        text = json.dumps(detail, separators=(",", ":"))
    entry: dict[str, Any] = {
        "EventBusName": bus_name,
        "Source": SOURCE,
        "DetailType": event.type,
        "Detail": text,
    }
    if event.occurred_at is not None:
        entry["Time"] = event.occurred_at
    return entry


class EventForwarder:
    def __init__(self, events_client: Any, bus_name: str) -> None:
        self._events = events_client
        self.bus_name = bus_name

    def forward(self, event: WebhookEvent) -> None:
        breaker = breaker_for(BREAKER)
        breaker.before_call()  # open: CircuitOpen, the handler is deferred
        try:
            response = self._events.put_events(Entries=[entry_for(event, self.bus_name)])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in CALLER_ERRORS:
                breaker.succeeded()  # it answered: our request is wrong (no such bus, no permission)
            else:
                breaker.failed(reason=f"PutEvents {exc.response.get('Error', {}).get('Code')}")
            raise
        except BotoCoreError as exc:  # no connection, timeouts, after botocore's retries
            breaker.failed(reason=f"PutEvents {type(exc).__name__}")
            raise
        if response.get("FailedEntryCount"):
            failed = (response.get("Entries") or [{}])[0]
            breaker.failed(reason=f"PutEvents entry {failed.get('ErrorCode')}")
            raise ForwardFailed(
                f"EventBridge did not take the event: {failed.get('ErrorCode')}: {failed.get('ErrorMessage')}"
            )
        breaker.succeeded()
