"""Handlers the out-of-order end-to-end test loads into the local stack (``--handler-modules``).

The stack runs in another process, so they report through files in ``$ORDER_E2E_DIR``:

- ``e2e.mirror`` (``latest_only``) keeps a work order's newest status, the way a sync to
  another system would; each run appends ``<event id> <new status>`` to ``mirror``;
- ``e2e.flaky`` fails the first two attempts of an event whose payload has
  ``data.e2e = "fail-twice"`` (its runs counted in ``flaky-<event id>``).
"""

from __future__ import annotations

import os
from pathlib import Path

from mx_webhooks.events import WebhookEvent
from mx_webhooks.registry import on

STATE = Path(os.environ.get("ORDER_E2E_DIR", "/nonexistent"))


@on("workorder.updated", name="e2e.mirror", latest_only=True)
def mirror(event: WebhookEvent) -> None:
    with (STATE / "mirror").open("a") as seen:
        seen.write(f"{event.event_id} {event.new_status}\n")


@on("workorder.updated", name="e2e.flaky")
def flaky(event: WebhookEvent) -> None:
    if event.data.get("e2e") != "fail-twice":
        return
    runs = STATE / f"flaky-{event.event_id}"
    with runs.open("a") as count:
        count.write("run\n")
    if len(runs.read_text().splitlines()) <= 2:
        raise RuntimeError("e2e: the downstream is down (fails twice)")
