"""The entity timeline on the local stack: the issue's must-show.

Three events of one work order, sent out of order, one failing once: ``admin history
workorder <id>`` (CLI) and ``GET /admin/entities/workorder/<id>/events`` (HTTP) list all
three in ``occurredAt`` order with their handler outcomes; the CLI reads DynamoDB with
Query calls only (a botocore ``before-call`` hook records every operation).
"""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools import admin_cli, samples
from devtools.local_stack import LocalStackProcess
from tests.e2e.conftest import deliver

pytestmark = pytest.mark.e2e

WORK_ORDER = 90417


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("history-e2e")


@pytest.fixture(scope="module")
def local(state: Path) -> Iterator[LocalStackProcess]:
    params = {"BackoffBaseSeconds": "0", "BackoffJitter": "0", "MaxReceiveCount": "5"}
    with LocalStackProcess(
        params=params, handler_modules=["tests.e2e.history_e2e_handlers"], env={"HISTORY_E2E_DIR": str(state)}
    ) as stack:
        yield stack


def _send(local: LocalStackProcess, payload: dict[str, Any]) -> str:
    return deliver(local.info["webhook_url"], payload)


def _get(local: LocalStackProcess, path: str) -> Any:
    try:
        with urllib.request.urlopen(local.url + path, timeout=30) as response:  # noqa: S310 - http://127.0.0.1
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        return {"httpStatus": error.code, **json.loads(error.read() or b"{}")}


def _status_change(old: str, new: str, at: str) -> dict[str, Any]:
    payload = samples.maintainx_payload("workorder.updated", work_order_id=WORK_ORDER, occurred_at=at)
    return {**payload, "oldStatus": old, "newStatus": new}


def test_history_lists_one_work_orders_events_in_occurred_order_with_outcomes_by_query_only(local, state):
    # Given three events of one work order, sent out of order (the last one first), the
    # middle one failing once
    created = samples.maintainx_payload(
        "workorder.created", work_order_id=WORK_ORDER, occurred_at="2026-09-14T13:00:00.000Z"
    )
    on_hold = _status_change("OPEN", "ON_HOLD", "2026-09-14T13:05:00.000Z")
    resumed = _status_change("ON_HOLD", "IN_PROGRESS", "2026-09-14T13:10:00.000Z")
    ids = {}
    for name, payload in (("resumed", resumed), ("created", created), ("on_hold", on_hold)):
        ids[name] = _send(local, payload)

    # When all three are processed
    deadline = time.monotonic() + 60
    while True:
        shown = {name: _get(local, f"/admin/webhooks/{event_id}") for name, event_id in ids.items()}
        if all(s.get("status") == "COMPLETED" for s in shown.values()):
            break
        assert time.monotonic() < deadline, (shown, local.log_text()[-3000:])
        time.sleep(0.3)

    # Then the CLI's history lists them in occurredAt order, reading with Query calls only
    admin = admin_cli.make_admin(admin_cli.build_parser().parse_args(["--endpoint-url", local.endpoint_url, "list"]))
    operations: list[str] = []
    admin.dynamodb.meta.events.register("before-call.dynamodb", lambda model, **_: operations.append(model.name))
    args = admin_cli.build_parser().parse_args(["history", "workorder", str(WORK_ORDER), "--json"])
    out = io.StringIO()
    assert admin_cli.run(args, admin, out) == 0
    answer = json.loads(out.getvalue())
    assert set(answer) == {"items", "nextCursor"} and answer["nextCursor"] is None
    items = answer["items"]
    assert [i["eventId"] for i in items] == [ids["created"], ids["on_hold"], ids["resumed"]]
    assert [i["occurredAt"] for i in items] == sorted(i["occurredAt"] for i in items)
    assert operations and set(operations) == {"Query"}, operations
    # with each one's type, status change, handler outcome and attempts
    assert [i["eventType"] for i in items] == ["workorder.created", "workorder.updated", "workorder.updated"]
    assert [i["statusChange"] for i in items] == [
        None,
        {"from": "OPEN", "to": "ON_HOLD"},
        {"from": "ON_HOLD", "to": "IN_PROGRESS"},
    ]
    assert [i["handlers"]["e2e.history"]["status"] for i in items] == ["SUCCEEDED"] * 3
    assert (state / f"failed-{ids['on_hold']}").exists()  # it did fail once
    assert items[1]["attempts"] == 2 and items[0]["attempts"] == 1
    assert all(i["status"] == "COMPLETED" and i["show"] == f"/admin/webhooks/{i['eventId']}" for i in items)

    # and the table view says the same, with where to look further
    out = io.StringIO()
    code = admin_cli.main(["--endpoint-url", local.endpoint_url, "history", "workorder", str(WORK_ORDER)], out=out)
    text = out.getvalue()
    assert code == 0 and "OPEN -> ON_HOLD" in text and "history=SUCCEEDED" in text
    assert text.index(ids["created"]) < text.index(ids["on_hold"]) < text.index(ids["resumed"])
    assert f"admin show {ids['resumed']}" in text

    # And the HTTP route answers the same envelope, page by page with the cursor
    first = _get(local, f"/admin/entities/workorder/{WORK_ORDER}/events?limit=2")
    assert [i["eventId"] for i in first["items"]] == [ids["created"], ids["on_hold"]] and first["nextCursor"]
    second = _get(local, f"/admin/entities/workorder/{WORK_ORDER}/events?limit=2&cursor={first['nextCursor']}")
    assert [i["eventId"] for i in second["items"]] == [ids["resumed"]] and second["nextCursor"] is None
    assert _get(local, "/admin/entities/workorder/1/events") == {"items": [], "nextCursor": None}
