"""The operator console in a real browser against the local stack: the issue's must-shows.

In file order: the overview after a burst from the sender; a failing event's error, then
Retry after the fix (and Retry one handler); the DLQ redrive; a ``<script>`` payload
shown as text; the timeline page; the safety rails (CSRF, unreachable API, refused
credentials, loopback only); last, page loads with 5,000 events in the table.
"""

from __future__ import annotations

import http.server
import json
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mx_webhooks.store import EventStore, iso
from tests.browser.conftest import ROOT, Console, Stack, python_env
from tests.browser.seed import batch_write, seeded_items

pytestmark = pytest.mark.browser


def _settled(stack: Stack, expected_total: int, timeout: float = 60) -> dict[str, Any]:
    """The API's stats once ``expected_total`` events are recorded and none is still being processed."""
    deadline = time.monotonic() + timeout
    while True:
        _, stats = stack.admin("GET", "/admin/stats?hours=24")
        counts = stats.get("counts", {})
        if stats.get("total", 0) >= expected_total and not counts.get("IN_PROGRESS") and not counts.get("QUEUED"):
            return dict(stats)
        if time.monotonic() > deadline:
            raise AssertionError(f"not settled: {stats}")
        time.sleep(0.3)


def test_overview_shows_the_real_numbers_after_a_burst_from_the_sender(stack, console, page, shots):
    # Given a burst of 20 deliveries from the sender, all processed
    before = stack.admin("GET", "/admin/stats?hours=24")[1]["total"]
    sent = subprocess.run(
        [sys.executable, "-m", "devtools.send", "--url", stack.process.info["webhook_url"], "--burst", "20"],
        cwd=ROOT,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    stats = _settled(stack, before + 20)

    # When the operator opens the overview
    page.goto(console.url + "/?fresh=1")
    page.screenshot(path=shots / "overview.png", full_page=True)

    # Then every count is the API's, the burst's 20 among them, and the chart totals match
    shown = {el.get_attribute("data-status"): int(el.inner_text()) for el in page.locator("[data-status]").all()}
    assert shown["TOTAL"] == stats["total"] >= before + 20
    assert shown["SETTLED"] == stats["counts"]["SETTLED"] >= 20  # completed (or ignored)
    assert int(page.locator("[data-series=received]").inner_text()) == stats["total"]
    assert int(page.locator("[data-series=processed]").inner_text()) >= 20
    assert page.locator("#hourly polyline").count() == 3
    assert int(page.locator("#dlq-depth").inner_text()) == stats["dlqDepth"]
    # and a row for each integration's breaker (GET /admin/integrations)
    rows = page.locator("#breakers tbody tr")
    assert {rows.nth(n).get_attribute("data-integration") for n in range(rows.count())} == {
        "Slack",
        "MaintainX",
        "EventBridge",
    }


def test_the_overview_shows_a_breaker_open_until_then_expired_then_closed(stack, console, page, shots):
    # Given the consumer's records of Slack's breaker, written through the store into the local stack
    store = EventStore(stack.process.client("dynamodb"), stack.process.outputs["EventsTableName"])
    now = time.time()

    def slack_row() -> tuple[str, str, str, str]:
        page.goto(console.url + "/")
        row = page.locator("#breakers tr[data-integration=Slack] td")
        return row.nth(1).inner_text(), row.nth(2).inner_text(), row.nth(3).inner_text(), row.nth(4).inner_text()

    # When it opened ten minutes ago for five (expired: no call since), then opened again now
    # on a Retry-After of ten minutes, then closed
    store.record_breaker("Slack", "OPEN", at=now - 600, open_until=now - 300, reason="open for 300 s: Slack down")
    expired = slack_row()
    reason = "open for 600 s: Slack incoming webhook answered 503"
    store.record_breaker("Slack", "OPEN", at=now, open_until=now + 600, reason=reason, retry_after=600)
    opened = slack_row()
    page.screenshot(path=shots / "overview-breaker-open.png", full_page=True)
    store.record_breaker("Slack", "CLOSED", at=now + 1, reason="the downstream answered")
    closed = slack_row()

    # Then the overview shows each: state, since when, until when, why
    assert expired[0] == "OPEN (expired: the next call probes)" and expired[1] == iso(now - 600)
    assert opened == ("OPEN", iso(now), iso(now + 600), reason)
    assert closed == ("CLOSED", iso(now + 1), "", "the downstream answered")
    others = page.locator("#breakers tr[data-integration=MaintainX] td")
    assert others.nth(1).inner_text() == "CLOSED" and others.nth(2).inner_text() == "never opened"


def test_a_failing_event_shows_its_error_and_retry_after_the_fix_completes_it(stack, console, page, shots):
    # Given an event whose sync handler fails (retries an hour away)
    stack.set_handler(broken=True)
    event_id = stack.send(41_001)
    stack.wait_status(event_id, "FAILED")

    # When the operator finds it among the failures and opens it
    page.goto(console.url + "/events?status=FAILED")
    page.screenshot(path=shots / "events-failed.png", full_page=True)
    page.locator(f"a[href='/events/{event_id}']").click()
    page.wait_for_url(f"**/events/{event_id}")
    page.screenshot(path=shots / "event-failed.png", full_page=True)

    # Then the page shows the error, on the event and on the handler that raised it
    assert page.locator("#status").inner_text() == "FAILED"
    assert "e2e: CMMS unavailable" in page.locator("#last-error").inner_text()
    sync_row = page.locator("tr[data-handler='e2e.sync']")
    assert "FAILED" in sync_row.inner_text() and "e2e: CMMS unavailable" in sync_row.inner_text()
    assert "SUCCEEDED" in page.locator("tr[data-handler='e2e.notify']").inner_text()

    # When the handler is fixed and the operator clicks Retry (and confirms)
    stack.set_handler(broken=False)
    page.locator("#retry").click()
    page.wait_for_url(f"**/events/{event_id}")
    assert "Re-enqueued" in page.locator(".flash").inner_text()

    # Then the event turns COMPLETED on the page, and the handler that had succeeded was not rerun
    _reload_until(page, "#status", "COMPLETED")
    page.screenshot(path=shots / "event-completed.png", full_page=True)
    assert _calls(stack.state, 41_001) == {"notify": 1, "sync": 2}
    # and a second Retry (not forced) is refused with the API's reason, shown on the page
    page.locator("#retry").click()
    page.wait_for_url(f"**/events/{event_id}")
    assert (
        "Not retried" in page.locator(".flash.error").inner_text()
        and "COMPLETED" in page.locator(".flash").inner_text()
    )

    # When the operator reruns one handler only, confirming on the server's page (no JavaScript)
    context = page.context.browser.new_context(java_script_enabled=False)
    try:
        plain = context.new_page()
        plain.goto(console.url + f"/events/{event_id}")
        plain.locator("tr[data-handler='e2e.notify'] button").click()
        assert "Retry handler e2e.notify" in plain.locator("form.confirm").inner_text()
        plain.screenshot(path=shots / "confirm.png")
        plain.locator("#confirm").click()
        plain.wait_for_url(f"**/events/{event_id}")
    finally:
        context.close()

    # Then only that handler runs again, and the event is COMPLETED again
    stack.wait_status(event_id, "COMPLETED")
    _wait(lambda: _calls(stack.state, 41_001) == {"notify": 2, "sync": 2}, "notify to run once more")


def test_redrive_empties_the_dead_letter_queue(stack, console, page, shots):
    # Given two events parked in the DLQ by a PermanentError (FAILED and parked, or PARKED
    # where the consumer records that status)
    stack.set_handler(permanent=True)
    parked = [stack.send(42_000 + n) for n in range(2)]
    for event_id in parked:
        stack.wait_status(event_id, "FAILED", "PARKED")
    _wait(lambda: stack.admin("GET", "/admin/dlq")[1]["approximateDepth"] == 2, "both messages in the DLQ")
    stack.set_handler(permanent=False)

    # When the operator opens the DLQ page
    page.goto(console.url + "/dlq")
    page.screenshot(path=shots / "dlq.png", full_page=True)

    # Then both are listed with why they were parked, and the count to redrive is the depth
    assert page.locator("#dlq-depth").inner_text() == "2"
    for event_id in parked:
        assert "mapping rejected" in page.locator("tr", has=page.locator(f"a[href='/events/{event_id}']")).inner_text()
    assert page.locator("#redrive-max").input_value() == "2"

    # When they redrive (and confirm)
    page.locator("#redrive").click()
    page.wait_for_url("**/dlq")

    # Then both moved, the DLQ is empty, and each event is processed
    assert "Moved 2 message(s) back" in page.locator(".flash").inner_text()
    assert page.locator("#dlq-depth").inner_text() == "0"
    assert "empty" in page.locator("#dlq").inner_text()
    page.screenshot(path=shots / "dlq-redriven.png", full_page=True)
    for event_id in parked:
        stack.wait_status(event_id, "COMPLETED")


def test_a_script_in_a_payload_is_shown_as_text_and_never_runs(stack, console, page, shots):
    # Given an event whose payload carries markup that would run if rendered as HTML
    script = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    event_id = stack.send(43_001, title=script)
    stack.wait_status(event_id, "COMPLETED")

    # When the operator opens it
    page.goto(console.url + f"/events/{event_id}")
    page.screenshot(path=shots / "event-script-payload.png", full_page=True)

    # Then the markup is shown as text, no element was made of it, and nothing ran
    assert script in json.loads(page.locator("#payload").inner_text())["title"]
    assert page.locator("#payload script, #payload img").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_the_timeline_page_shows_the_entity_or_says_the_api_is_missing(stack, console, page, shots):
    # Given events of one work order
    first = stack.send(44_001)
    stack.wait_status(first, "COMPLETED")

    # When the operator follows the event's entity link to its timeline
    page.goto(console.url + f"/events/{first}")
    page.locator("a[href='/entities/workorder/44001']").first.click()
    page.wait_for_url("**/entities/workorder/44001")
    page.screenshot(path=shots / "timeline.png", full_page=True)

    # Then: the events in order where the stack has the timeline route, else a clear message
    has_route = any("/admin/entities/" in route for route in stack.process.info["routes"])
    if has_route:
        assert first in page.locator("#entity-events").inner_text()
    else:
        assert "timeline API is not available on this stack" in page.locator("#timeline-missing").inner_text()


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(stack, console, page):
    # Given a failed event
    stack.set_handler(broken=True)
    event_id = stack.send(45_001)
    stack.wait_status(event_id, "FAILED")
    stack.set_handler(broken=False)

    # When a request forged without the console's token asks to retry it (and to redrive)
    page.goto(console.url + "/")  # the page's session cookie, but not its token
    retry = page.request.post(console.url + f"/events/{event_id}/retry", form={"confirmed": "yes"})
    redrive = page.request.post(console.url + "/dlq/redrive", form={"confirmed": "yes", "max": "5"})

    # Then both are refused, and the event was not re-enqueued
    assert retry.status == 400 and "The form expired" in retry.text()
    assert redrive.status == 400
    time.sleep(1)
    assert stack.admin("GET", f"/admin/webhooks/{event_id}")[1]["status"] == "FAILED"


class _Refusing(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = b'{"message":"Forbidden"}'
        self.send_response(403)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def refusing_api() -> Iterator[str]:
    """An API that answers 403 as API Gateway does when IAM refuses the signature."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_an_unreachable_api_and_refused_credentials_are_said_plainly(page, refusing_api, shots):
    # Given a console whose admin API is down, and one whose credentials are refused
    with Console("--api-url", "http://127.0.0.1:9") as down, Console("--api-url", refusing_api) as refused:
        # When the operator opens the overview of each
        answer = page.goto(down.url + "/")
        page.screenshot(path=shots / "api-unreachable.png")
        unreachable = (answer.status, page.locator("h1").inner_text(), page.locator("#problem").inner_text())
        answer = page.goto(refused.url + "/events")
        forbidden = (answer.status, page.locator("h1").inner_text(), page.locator("#problem").inner_text())

    # Then each says what is wrong and where, instead of a stack trace
    assert unreachable[0] == 502 and unreachable[1] == "The admin API is unreachable"
    assert "http://127.0.0.1:9" in unreachable[2]
    assert forbidden[0] == 403 and forbidden[1] == "The admin API refused the credentials"
    assert "execute-api:Invoke" in forbidden[2]


def test_the_console_binds_the_loopback_address_only(console):
    # The running console serves on 127.0.0.1; asking for any other address is refused
    assert console.url.startswith("http://127.0.0.1:")
    refused = subprocess.run(
        [sys.executable, "-m", "devtools.operator_console", "--api-url", "http://127.0.0.1:9", "--host", "0.0.0.0"],  # noqa: S104
        cwd=ROOT,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert refused.returncode == 2 and "loopback" in refused.stderr


# -- last: 5,000 events in the table ---------------------------------------------------------------
PAGES = {
    "overview": "/",
    "events": "/events",
    "events-failed": "/events?status=FAILED",
    "event": "/events/{event_id}",
    "timeline": "/entities/workorder/44001",
    "dlq": "/dlq",
}
LOADS = 5  # each page five times: the median of five


def test_pages_load_quickly_with_5000_events_in_the_table(stack, console, page, shots):
    # Given 5,000 more events in the table: copies of an item the store wrote, over the last 24 h
    event_id = stack.send(46_001)
    stack.wait_status(event_id, "COMPLETED")
    dynamodb = stack.process.client("dynamodb")
    table = stack.process.outputs["EventsTableName"]
    template = dynamodb.get_item(TableName=table, Key={"eventId": {"S": event_id}}, ConsistentRead=True)["Item"]
    started = time.perf_counter()
    batch_write(dynamodb, table, seeded_items(template, 5000, time.time()))
    seeded_s = time.perf_counter() - started
    page.goto(console.url + "/?fresh=1", timeout=120_000)  # the overview's first count (then served from memory)
    first_count_s = float(page.evaluate("performance.getEntriesByType('navigation')[0].responseEnd")) / 1000
    assert int(page.locator("[data-status=TOTAL]").inner_text()) >= 5000

    # When each page is loaded several times
    figures: dict[str, dict[str, float]] = {}
    for name, path in PAGES.items():
        loads: list[dict[str, float]] = []
        for _ in range(LOADS):
            page.goto(console.url + path.format(event_id=event_id))
            loads.append(page.evaluate(NAVIGATION_TIMING))
        figures[name] = {
            "load_median_ms": round(statistics.median(t["load"] for t in loads), 1),
            "load_max_ms": round(max(t["load"] for t in loads), 1),
            "admin_api_median_ms": round(statistics.median(t["api"] for t in loads), 1),
            "console_median_ms": round(statistics.median(t["console"] for t in loads), 1),
        }
        page.screenshot(path=shots / f"5000-{name}.png", full_page=True)
    report = {
        "events_in_table": 5000,
        "seed_s": round(seeded_s, 2),
        "first_overview_s": round(first_count_s, 2),
        "target_ms": TARGET_MS,
        "over_target": sorted(name for name, f in figures.items() if f["load_median_ms"] >= TARGET_MS),
    }
    (shots / "page-load.json").write_text(json.dumps(report | {"pages": figures}, indent=2))
    print("\npage loads with 5,000 events:", json.dumps(report | {"pages": figures}, indent=1))

    # Then the console's own part of every page (routing, templates) is a few milliseconds,
    # and every page loads within a generous bound (the machine is shared: the 300 ms target
    # is reported in page-load.json, not asserted). A listing page is the admin API's 33
    # DynamoDB calls on moto (32 shards of Recent, then one BatchGetItem): most of its time.
    assert all(f["console_median_ms"] < CONSOLE_BOUND_MS for f in figures.values()), figures
    slow = {name: figure for name, figure in figures.items() if figure["load_median_ms"] > BOUND_MS}
    assert not slow, slow


CONSOLE_BOUND_MS = 100
TARGET_MS = 300  # the target for every page, median of LOADS


# navigation start to the load event's end, and the console's Server-Timing split of the
# server's part: the admin API's calls and the console's own work (routing, templates)
NAVIGATION_TIMING = """(() => {
  const n = performance.getEntriesByType('navigation')[0];
  const server = Object.fromEntries(n.serverTiming.map((t) => [t.name, t.duration]));
  return {load: n.loadEventEnd - n.startTime, api: server.api || 0, console: server.console || 0};
})()"""
BOUND_MS = 1500  # generous: the machine is shared; the target (300 ms) is reported, not asserted


def _reload_until(page: Any, selector: str, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while page.locator(selector).inner_text() != text:
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector} did not become {text}: {page.locator(selector).inner_text()}")
        time.sleep(0.3)
        page.reload()


def _wait(probe: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _calls(state: Path, work_order_id: int) -> dict[str, int]:
    """How many times each test handler ran for the work order (handlers may run side by side)."""
    lines = (state / "calls").read_text().splitlines() if (state / "calls").exists() else []
    return dict(Counter(line.split()[0] for line in lines if line.split()[1] == str(work_order_id)))
