"""Out of order across batches, on the local stack: events 1, 2, 3 of one work order, 1 failing twice.

Sent the way they happen: 1 and 2 together (one batch: 2 is held behind 1, WAITING), then
3 a moment later in a batch of its own, while 1 and 2 wait out their backoff, so 3 runs
first. The checks: every wait is visible in ``admin list`` (the admin API) while it lasts;
no event waits longer than its backoff between two tries; the ``latest_only`` handler
never goes back to an older state (the events older than one it handled are SKIPPED) and
has seen the newest state last.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from devtools.local_stack import LocalStackProcess
from tests.e2e.conftest import deliver

pytestmark = pytest.mark.e2e

BASE, CAP = 2, 8  # the backoff: 2, 4, 8 s
SLACK_S = 3.0  # a try may come later than its backoff by the poll, the batching window (1 s) and the run


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("order-e2e")


@pytest.fixture(scope="module")
def local(state: Path) -> Iterator[LocalStackProcess]:
    params = {"BackoffBaseSeconds": str(BASE), "BackoffCapSeconds": str(CAP), "BackoffJitter": "0"}
    with LocalStackProcess(
        params=params, handler_modules=["tests.e2e.order_e2e_handlers"], env={"ORDER_E2E_DIR": str(state)}
    ) as stack:
        yield stack


def _send(local: LocalStackProcess, n: int, status: str, *, fail_twice: bool = False) -> str:
    data: dict[str, Any] = {"id": "wo_order_e2e", "previousStatus": "OPEN", "currentStatus": status}
    if fail_twice:
        data["e2e"] = "fail-twice"
    payload = {
        "id": f"evt_order_{n}_{int(time.time() * 1000)}",
        "type": "workorder.updated",
        "data": data,
        "createdAt": f"2026-09-14T10:00:0{n}.000Z",  # 1 < 2 < 3, whatever order they arrive in
    }
    return deliver(local.info["webhook_url"], payload, "generic")


def _get(local: LocalStackProcess, path: str) -> Any:
    try:
        with urllib.request.urlopen(local.url + path, timeout=30) as response:  # noqa: S310 - http://127.0.0.1
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code == 404:  # not recorded yet
            return {}
        raise


def _outcomes(local: LocalStackProcess, event_id: str) -> list[dict[str, Any]]:
    """The consumer's line for each try of the event, in order: its outcome (processed, failed...),
    or "held" when it was held behind an earlier event of its work order."""
    found = []
    for line in local.function_log_text().splitlines():
        if f'"{event_id}"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if event_id not in (record.get("event_id"), record.get("correlation_id")):
            continue
        if record.get("message") == "event held":
            record["outcome"] = "held"
        if record.get("outcome"):
            found.append(record)
    return found


def _at(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(record["timestamp"]).timestamp()  # RFC 3339 (observability.logger)


def test_events_out_of_order_across_batches_wait_visibly_and_the_latest_only_handler_never_goes_back(local, state):
    # When 1 (its other handler fails twice) and 2 arrive together, and 3 a moment later
    first = _send(local, 1, "IN_PROGRESS", fail_twice=True)
    second = _send(local, 2, "ON_HOLD")
    waiting: dict[str, Any] = {}
    deadline = time.monotonic() + 20
    while second not in waiting and time.monotonic() < deadline:  # 2 held behind 1: listed WAITING
        waiting = {i["eventId"]: i for i in _get(local, "/admin/webhooks?status=WAITING")["items"]}
        time.sleep(0.1)
    third = _send(local, 3, "DONE")

    # Then 2's wait was listed by the admin API, with what it waits for
    assert second in waiting, local.log_text()[-3000:]
    assert _get(local, f"/admin/webhooks/{second}")["waitingFor"] in (first, None)  # None: it has moved on since
    shown = {}
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        shown = {e: _get(local, f"/admin/webhooks/{e}") for e in (first, second, third)}
        if all(s.get("status") == "COMPLETED" for s in shown.values()):
            break
        time.sleep(0.3)
    assert {e: s.get("status") for e, s in shown.items()} == dict.fromkeys((first, second, third), "COMPLETED"), (
        local.function_log_text()[-4000:]
    )

    # ...1 succeeded on its third try
    tries = {e: _outcomes(local, e) for e in (first, second, third)}
    assert [t["outcome"] for t in tries[first]] == ["failed", "failed", "processed"]
    assert shown[first]["handlers"]["e2e.flaky"]["status"] == "SUCCEEDED"
    # ...no event waited longer than its backoff between two tries (held or failed: 2, 4 s...)
    gaps = []
    for event_id, records in tries.items():
        for before, after in zip(records, records[1:], strict=False):
            backoff = min(CAP, BASE * 2 ** (int(before.get("receive_count", 1)) - 1))  # absent on a first receive
            gaps.append((round(_at(after) - _at(before), 2), backoff))
            assert _at(after) - _at(before) <= backoff + SLACK_S, (event_id, before, after)
    print(f"waits between tries (s, backoff): {gaps}")  # the figure for docs/reliability.md
    # ...3 ran in its own batch, before 1 and 2 finished; 2 waited for 1 (held, then run)
    assert tries[third][0]["outcome"] == "processed" and _at(tries[third][0]) < _at(tries[first][-1])
    assert "held" in [t["outcome"] for t in tries[second]]
    # ...and the latest-only handler saw 1 (on its first try, beside the failing handler), then 3,
    # never 2, which is older than 3: SKIPPED as stale; it ended with the newest state
    mirror = [line.split() for line in (state / "mirror").read_text().splitlines()]
    assert mirror == [[first, "IN_PROGRESS"], [third, "DONE"]]
    assert shown[second]["handlers"]["e2e.mirror"]["status"] == "SKIPPED"
    assert "stale" in shown[second]["handlers"]["e2e.mirror"]["error"]
