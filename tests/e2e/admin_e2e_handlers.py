"""Handlers the admin end-to-end test loads into the local stack (``--handler-modules``).

The stack runs in another process, so the test steers them through files in
``$ADMIN_E2E_DIR``: ``broken`` makes ``sync`` fail (retried), ``permanent`` makes it
raise ``PermanentError`` (parked in the DLQ at once); ``calls`` records every run.
"""

from __future__ import annotations

import os
from pathlib import Path

from mx_webhooks.events import WebhookEvent
from mx_webhooks.registry import PermanentError, on

STATE = Path(os.environ.get("ADMIN_E2E_DIR", "/nonexistent"))


def _record(name: str, event: WebhookEvent) -> None:
    with (STATE / "calls").open("a") as calls:
        calls.write(f"{name} {event.work_order_id}\n")


@on("workorder.created", name="e2e.notify")
def notify(event: WebhookEvent) -> None:
    _record("notify", event)


@on("workorder.created", name="e2e.sync")
def sync(event: WebhookEvent) -> None:
    _record("sync", event)
    if (STATE / "permanent").exists():
        raise PermanentError("e2e: mapping rejected")
    if (STATE / "broken").exists():
        raise RuntimeError("e2e: CMMS unavailable")
