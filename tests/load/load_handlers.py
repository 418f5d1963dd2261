"""The load test's only handler (``HandlerModules=tests.load.load_handlers``).

It logs one WARNING line per run (``load_run=<event id>``) so the test can count
runs per event with the stack's ``LogLevel`` at WARNING, which keeps every other
log line, and its cost, out of the measurement. Idempotent=True: the consumer then
writes twice per event (claim, finish), as it would for a production handler that
is safe to repeat.
"""

from __future__ import annotations

from mx_webhooks.events import WebhookEvent
from mx_webhooks.observability import logger
from mx_webhooks.registry import on


@on("*", name="load.count_run", idempotent=True)
def count_run(event: WebhookEvent) -> None:
    logger.warning("load handler ran", extra={"load_run": event.event_id})
