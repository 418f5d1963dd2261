"""Handlers the end-to-end tests load into the local stack (``--handler-modules tests.e2e.e2e_handlers``).

They act only on events that ask for it, through ``data.e2e`` in a generic-format
payload, so every other event runs exactly as in production:

- ``"always-fail"``: raises on every attempt (retried, then alerted and dead-lettered);
- ``"permanent"``: raises ``PermanentError`` (parked in the DLQ at once).

``record_run`` logs ``e2e_run=<event id>`` each time it runs, so a test can count
handler runs in the functions' log.
"""

from __future__ import annotations

from mx_webhooks.events import WebhookEvent
from mx_webhooks.observability import logger
from mx_webhooks.registry import PermanentError, on


@on("*", name="e2e.record_run")
def record_run(event: WebhookEvent) -> None:
    logger.info("e2e handler ran", extra={"e2e_run": event.event_id})


@on("*", name="e2e.fail_on_request")
def fail_on_request(event: WebhookEvent) -> None:
    marker = event.data.get("e2e")
    if marker == "always-fail":
        raise RuntimeError("e2e: this handler always fails")
    if marker == "permanent":
        raise PermanentError("e2e: this event can never succeed")
