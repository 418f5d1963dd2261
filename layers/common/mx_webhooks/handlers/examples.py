"""Example handlers: one per generic event type, showing the pattern.

Each is a plain function registered with ``@on``; it gets a ``WebhookEvent`` and
either returns (success, recorded, never rerun) or raises (retried with backoff;
``PermanentError`` parks it at once). These only log and count, so they are safe to
run twice and say ``idempotent=True``.
"""

from __future__ import annotations

from mx_webhooks.events import WebhookEvent
from mx_webhooks.observability import emit, logger
from mx_webhooks.registry import on


@on("workorder.created", idempotent=True)
def log_new_work_order(event: WebhookEvent) -> None:
    # DEBUG: the consumer's outcome line already says the event was processed; an example
    # handler's own INFO line per event was a sixth of the log bill (docs/benchmarks.md)
    logger.debug("new work order", extra={"work_order_id": event.work_order_id, "org_id": event.org_id})
    emit("ExampleHandled", eventType=event.type)


@on("workorder.updated", idempotent=True)
def log_status_transition(event: WebhookEvent) -> None:
    if event.old_status != event.new_status and event.new_status is not None:
        logger.info(
            "work order status changed",
            extra={"work_order_id": event.work_order_id, "from": event.old_status, "to": event.new_status},
        )
    emit("ExampleHandled", eventType="workorder.updated")


@on("workorder.completed", idempotent=True)
def log_completion(event: WebhookEvent) -> None:
    logger.info(
        "work order completed",
        extra={"work_order_id": event.work_order_id, "requires_follow_up": bool(event.data.get("requiresFollowUp"))},
    )
    emit("ExampleHandled", eventType="workorder.completed")


@on("request.created", "request.updated", idempotent=True)
def log_work_request(event: WebhookEvent) -> None:
    logger.info("work request", extra={"work_request_id": event.work_request_id, "status": event.new_status})
    emit("ExampleHandled", eventType=event.type)


@on("asset.updated", "workorder.commented", idempotent=True)
def log_other(event: WebhookEvent) -> None:
    logger.info("event", extra={"event_type": event.type, "source_event_type": event.source_event_type})
    emit("ExampleHandled", eventType=event.type)
