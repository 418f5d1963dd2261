"""The admin on the local stack, over HTTP and through the CLI: the issue's must-shows.

- an event whose handler fails is listed as FAILED with its error;
- after the handler is fixed, a retry brings it to COMPLETED without rerunning the
  handlers that had succeeded;
- DLQ redrive moves every message back and each one is processed.
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


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("admin-e2e")


@pytest.fixture(scope="module")
def local(state: Path) -> Iterator[LocalStackProcess]:
    # Backoff far beyond the test: the only retry that can happen is the operator's
    params = {"BackoffBaseSeconds": "3600", "BackoffCapSeconds": "3600", "BackoffJitter": "0"}
    with LocalStackProcess(
        params=params, handler_modules=["tests.e2e.admin_e2e_handlers"], env={"ADMIN_E2E_DIR": str(state)}
    ) as stack:
        yield stack


def _http(local: LocalStackProcess, method: str, path: str) -> tuple[int, Any]:
    request = urllib.request.Request(local.url + path, method=method, data=b"" if method == "POST" else None)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - http://127.0.0.1
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _send(local: LocalStackProcess, work_order_id: int) -> str:
    return deliver(
        local.info["webhook_url"], samples.maintainx_payload("workorder.created", work_order_id=work_order_id)
    )


def _wait_status(local: LocalStackProcess, event_id: str, status: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        code, shown = _http(local, "GET", f"/admin/webhooks/{event_id}")
        if code == 200 and shown["status"] == status:
            return shown
        if time.monotonic() > deadline:
            raise AssertionError(f"{event_id} did not reach {status}: {code} {shown}\n{local.log_text()[-3000:]}")
        time.sleep(0.2)


def _calls(state: Path, work_order_id: int) -> list[str]:
    lines = (state / "calls").read_text().splitlines() if (state / "calls").exists() else []
    return [line.split()[0] for line in lines if line.split()[1] == str(work_order_id)]


def test_failed_event_is_listed_and_a_retry_after_the_fix_skips_succeeded_handlers(local, state):
    # Given a handler that fails, and a delivery it fails on
    (state / "broken").touch()
    event_id = _send(local, 5101)
    _wait_status(local, event_id, "FAILED")

    # When the operator lists the failures (HTTP and CLI)
    code, listing = _http(local, "GET", "/admin/webhooks?status=FAILED")
    out = io.StringIO()
    cli_code = admin_cli.main(["--endpoint-url", local.endpoint_url, "list", "--status", "FAILED"], out=out)

    # Then the event is listed as FAILED with its error
    assert code == 200
    (listed,) = [i for i in listing["items"] if i["eventId"] == event_id]
    assert listed["status"] == "FAILED" and "e2e: CMMS unavailable" in listed["lastError"]
    assert cli_code == 0 and event_id in out.getvalue() and "e2e: CMMS unavailable" in out.getvalue()

    # When the handler is fixed and the event retried
    (state / "broken").unlink()
    code, answer = _http(local, "POST", f"/admin/webhooks/{event_id}/retry")
    assert (code, answer.get("status")) == (200, "QUEUED"), answer

    # Then it completes, and the handler that had succeeded did not run again
    shown = _wait_status(local, event_id, "COMPLETED")
    # (the two handlers run side by side: counted, not ordered)
    assert sorted(_calls(state, 5101)) == ["notify", "sync", "sync"]
    assert shown["handlers"]["e2e.notify"]["status"] == shown["handlers"]["e2e.sync"]["status"] == "SUCCEEDED"
    # and a clear 404 / 400 for mistakes
    assert _http(local, "GET", "/admin/webhooks/evt_nope") == (
        404,
        {"error": "no event with id 'evt_nope' (it may be older than the retention period)"},
    )
    code, error = _http(local, "GET", "/admin/webhooks?status=DONE")
    assert code == 400 and "status" in error["error"]


def test_dlq_redrive_moves_every_message_back_and_each_is_processed(local, state):
    # Given three events parked in the DLQ by a permanent error
    (state / "permanent").touch()
    ids = [_send(local, n) for n in (5201, 5202, 5203)]
    deadline = time.monotonic() + 30
    # (wait on the peeked messages, not the depth: a message parked between the peek's
    # receive and its depth query is counted but not shown)
    while True:
        peek = _http(local, "GET", "/admin/dlq?max=10")[1]
        if {m["eventId"] for m in peek["messages"]} == set(ids):
            break
        assert time.monotonic() < deadline, peek
        time.sleep(0.2)
    assert peek["approximateDepth"] >= 3

    # When the cause is fixed and the DLQ redriven
    (state / "permanent").unlink()
    code, result = _http(local, "POST", "/admin/dlq/redrive")

    # Then every message moved back and each one is processed
    assert code == 200 and result["moved"] == 3 and result["remaining"] == 0
    for event_id in ids:
        _wait_status(local, event_id, "COMPLETED")
    assert [_calls(state, n).count("sync") for n in (5201, 5202, 5203)] == [2, 2, 2]
