"""Handlers the entity-timeline end-to-end test loads into the local stack (``--handler-modules``).

``e2e.history`` runs on every event; on a work-order status change to ``ON_HOLD`` it fails
once (remembered in ``$HISTORY_E2E_DIR``, since the stack runs in another process), so
that event is retried and completes on its second attempt.
"""

from __future__ import annotations

import os
from pathlib import Path

from mx_webhooks.events import WebhookEvent
from mx_webhooks.registry import on

STATE = Path(os.environ.get("HISTORY_E2E_DIR", "/nonexistent"))


@on("*", name="e2e.history")
def history(event: WebhookEvent) -> None:
    if event.new_status == "ON_HOLD":
        marker = STATE / f"failed-{event.event_id}"
        if not marker.exists():
            marker.touch()
            raise RuntimeError("e2e: fails once on ON_HOLD")
