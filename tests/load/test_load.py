"""Load on the local stack: every accepted delivery processed once, none lost.

``LOAD_DELIVERIES`` deliveries (default ``DEFAULT_DELIVERIES``, what fits CI's time
budget on 2 cores; ``LOAD_DELIVERIES=5000`` for the full run), 10% of them
duplicates (the same body re-signed later, as MaintainX retries), posted by
``LOAD_CONCURRENCY`` (16) keep-alive connections over 127.0.0.1 to the local stack
(``devtools.local_stack`` in a child process: moto, the HTTP API front, the SQS
poller feeding the consumer). Bounded in count and in time (``LOAD_TIMEOUT_S``, per
variant); it stops by itself.

Two variants, both run by default (CI runs both at ``DEFAULT_DELIVERIES``):

- ``clean``: nothing but the load;
- ``lossy``: the same load with faults injected by the stack (``devtools.local_stack.chaos``,
  ``LOAD_CHAOS``, default ``LOSSY_CHAOS``): 2% of the consumer's DynamoDB writes are
  applied and their reply lost (a dropped connection or a 500, which botocore
  retries with the identical request), and 5% of received SQS messages are delivered
  a second time at once, usually to a concurrent invocation.

``LOAD_LOSSY=1`` runs only the lossy variant, ``LOAD_LOSSY=0`` only the clean one.

Every event is accounted for by its handler's own side effect: the load handler
logs one line per run (``tests.load.load_handlers``), counted per event id, not
by the table's status. Figures (throughput, p50/p99 ingest latency, drain time,
faults injected) are printed and written to ``.local-stack/load-report.json``
(``load-report-lossy.json`` for the lossy variant); the stack's logs and the chaos
report are kept in ``.local-stack/load-<variant>/``. When an event is lost or run
twice, the report names it with the faults that hit it and its log lines.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import pytest

from devtools import samples
from devtools.local_stack import LocalStackProcess
from devtools.local_stack.chaos import read_report
from tests.conftest import ROOT

pytestmark = pytest.mark.load

DEFAULT_DELIVERIES = 500
DELIVERIES = int(os.environ.get("LOAD_DELIVERIES", DEFAULT_DELIVERIES))
CONCURRENCY = int(os.environ.get("LOAD_CONCURRENCY", 16))
DUPLICATE_SHARE = 0.10
TIMEOUT_S = float(os.environ.get("LOAD_TIMEOUT_S", 300))
# Senders hold off while the local queue is deeper than this (0: never). moto's SQS
# walks the whole queue on every receive, so a deep local queue slows the consumer
# quadratically, an artefact of the stand-in that SQS itself does not have.
MAX_QUEUE_DEPTH = int(os.environ.get("LOAD_MAX_QUEUE_DEPTH", 100))
OUT = ROOT / ".local-stack"
LOSSY_CHAOS = "dynamodb-lost-replies=0.02,sqs-duplicates=0.05"
CHAOS = os.environ.get("LOAD_CHAOS", LOSSY_CHAOS)
CHAOS_SEED = int(os.environ.get("LOAD_CHAOS_SEED", 7))
VARIANTS = {"0": ["clean"], "1": ["lossy"]}.get(os.environ.get("LOAD_LOSSY", ""), ["clean", "lossy"])
SHARED_ENTITIES = os.environ.get("LOAD_SHARED_ENTITIES") == "1"


def plan(total: int, seed: int = 7, *, shared_entities: bool = False) -> list[bytes]:
    """``total`` bodies: 90% distinct real-format events, 10% repeats placed after their original.

    Each event concerns its own work order, work request or asset (``shared_entities``:
    every request event the same request and every asset event the same asset, as
    ``samples.maintainx_payload`` makes them). The consumer runs one entity's events in
    order and returns the later ones of a batch unprocessed when an earlier one is
    retried or "busy" (a concurrent copy); those come back after the queue's visibility
    timeout (360 s), longer than CI's whole budget. Exactly-once holds either way
    (docs/reliability.md, "Load held").
    """
    rng = random.Random(seed)
    duplicates = int(total * DUPLICATE_SHARE)
    types = list(samples.EVENT_TYPES)
    bodies = []
    for n in range(total - duplicates):
        payload = samples.maintainx_payload(
            types[n % len(types)],
            work_order_id=100_000 + n,
            occurred_at=f"2026-09-14T13:{n // 60 % 60:02d}:{n % 60:02d}.{n % 1000:03d}Z",
        )
        if not shared_entities:
            for key in ("workRequestId", "requestId", "assetId"):
                if key in payload:
                    payload[key] = 100_000 + n
        bodies.append(samples.encode(payload))
    for _ in range(duplicates):
        original = rng.randrange(len(bodies))
        bodies.insert(rng.randrange(original + 1, len(bodies) + 1), bodies[original])
    return bodies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Sender:
    """``CONCURRENCY`` workers, one keep-alive connection each, retrying a 503 as MaintainX does."""

    def __init__(self, url: str, secret: str, bodies: list[bytes], depth: Any = None) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
        self.secret = secret
        self.bodies = bodies
        self.next = 0
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.accepted: list[str] = []  # event id of every 202
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []
        self.depth = depth  # () -> the local queue's depth, for back-pressure
        self.held_seconds = 0.0
        self._deep = threading.Event()

    def run(self) -> float:
        threads = [threading.Thread(target=self._work, daemon=True) for _ in range(CONCURRENCY)]
        done = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(done,), daemon=True)
        started = time.perf_counter()
        watcher.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=TIMEOUT_S)
        done.set()
        watcher.join(timeout=5)
        return time.perf_counter() - started

    def _watch(self, done: threading.Event) -> None:
        """Back-pressure: flag the queue as deep while it holds more than MAX_QUEUE_DEPTH."""
        while self.depth and MAX_QUEUE_DEPTH and not done.wait(0.25):
            if self.depth() > MAX_QUEUE_DEPTH:
                self._deep.set()
            else:
                self._deep.clear()

    def _take(self) -> bytes | None:
        with self.lock:
            if self.next >= len(self.bodies):
                return None
            self.next += 1
            return self.bodies[self.next - 1]

    def _work(self) -> None:
        assert self.host in ("127.0.0.1", "localhost"), "loopback only"
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        latencies, accepted, statuses = [], [], Counter()
        try:
            while (body := self._take()) is not None:
                if self._deep.is_set():
                    held = time.perf_counter()
                    while self._deep.is_set() and time.perf_counter() - held < TIMEOUT_S:
                        time.sleep(0.05)
                    with self.lock:
                        self.held_seconds += time.perf_counter() - held
                status, answer = 0, b""
                for _attempt in range(5):  # MaintainX retries a 503 and a connection that failed
                    headers = samples.signed_headers(body, self.secret, "maintainx")
                    started = time.perf_counter()
                    try:
                        conn.request("POST", self.path, body=body, headers=headers)
                        response = conn.getresponse()
                        status, answer = response.status, response.read()
                    except (ConnectionError, http.client.HTTPException, TimeoutError):
                        conn.close()
                        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                        status = 0  # counted as a network error, retried
                    else:
                        latencies.append(time.perf_counter() - started)
                    statuses[status] += 1
                    if status not in (0, 503):
                        break
                    time.sleep(0.2)
                if status == 202:
                    accepted.append(json.loads(answer)["eventId"])
        except Exception as exc:  # reported below: a worker dying must fail the test
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()
            with self.lock:
                self.latencies += latencies
                self.accepted += accepted
                self.statuses.update(statuses)


def handler_runs(stack: LocalStackProcess) -> Counter[str]:
    """Event id -> how many times the counting handler ran for it (from the functions' log)."""
    runs: Counter[str] = Counter()
    for line in stack.function_log_text().splitlines():
        if '"load_run"' in line:
            runs[json.loads(line)["load_run"]] += 1
    return runs


def queue_depth(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def table_statuses(stack: LocalStackProcess) -> dict[str, dict[str, Any]]:
    """Event id -> its record's status and attempts (a cross-check; the runs are counted from the handler)."""
    dynamodb = stack.client("dynamodb")
    found: dict[str, dict[str, Any]] = {}
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=stack.outputs["EventsTableName"],
        ProjectionExpression="eventId, #s, attempts",
        ExpressionAttributeNames={"#s": "status"},
    ):
        for item in page["Items"]:
            found[item["eventId"]["S"]] = {
                "status": item.get("status", {}).get("S"),
                "attempts": int(item.get("attempts", {}).get("N", 0)),
            }
    return found


def consumer_lines(stack_log: str) -> Counter[str]:
    """The stack's one line per consumed record: how many were deleted ("ok"), returned ("retry")..."""
    outcomes: Counter[str] = Counter()
    for line in stack_log.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[1] == "consumer":
            outcomes[parts[2]] += 1
    return outcomes


def lost_reply_writes(chaos: dict[str, Any]) -> dict[str, int]:
    """The lost replies by the consumer's write they hit (told apart by the write's condition)."""
    kinds: Counter[str] = Counter()
    for fault in chaos.get("faults", []):
        if fault.get("fault") != "dynamodb-lost-reply":
            continue
        condition = fault.get("condition") or ""
        if "attribute_not_exists(eventId)" in condition:
            kind = "claim"
        elif "claimToken = :token" in condition:
            kind = "release" if ":in_progress" in condition else "finish"
        else:
            kind = "other"
        kinds[f"{kind} {'applied' if fault.get('applied') else 'refused'}"] += 1
    return dict(sorted(kinds.items()))


def evidence(event_ids: set[str], chaos: dict[str, Any], stack_log: str, function_log: str) -> dict[str, Any]:
    """For each event lost or run twice: the faults that hit it and every log line naming it."""
    found = {}
    for event_id in sorted(event_ids)[:20]:
        found[event_id] = {
            "faults": [f for f in chaos.get("faults", []) if f.get("event_id") == event_id],
            "stack_log": [line for line in stack_log.splitlines() if event_id in line][:40],
            "function_log": [line[:600] for line in function_log.splitlines() if event_id in line][:40],
        }
    return found


@pytest.mark.parametrize("variant", VARIANTS)
def test_load_every_accepted_delivery_is_processed_exactly_once(variant: str) -> None:
    # Given the local stack (with faults injected in the lossy variant), one handler that
    # logs each run, and the deliveries to send
    lossy = variant == "lossy"
    bodies = plan(DELIVERIES, shared_entities=SHARED_ENTITIES)
    deadline = time.monotonic() + TIMEOUT_S
    params = {
        "ConsumerBatchingWindowSeconds": "0",
        "ConsumerMaxConcurrency": os.environ.get("LOAD_CONSUMER_CONCURRENCY", "4"),
        "HandlerModules": "tests.load.load_handlers",
        "LogLevel": os.environ.get("LOAD_LOG_LEVEL", "WARNING"),
    }
    keep = OUT / f"load-{variant}"
    shutil.rmtree(keep, ignore_errors=True)
    keep.mkdir(parents=True)
    chaos_path = keep / "chaos.json"
    extra_args = ["--chaos", CHAOS, "--chaos-seed", str(CHAOS_SEED), "--chaos-report", str(chaos_path)] if lossy else []
    with LocalStackProcess(params=params, extra_args=extra_args) as stack:
        stack_start = stack.ready_seconds
        sqs = stack.client("sqs")
        queue_url, dlq_url = stack.outputs["EventsQueueUrl"], stack.outputs["EventsDLQUrl"]

        # When they are posted at concurrency 16
        started = time.perf_counter()
        sender = Sender(
            stack.info["webhook_url"], stack.info["secret"], bodies, depth=lambda: queue_depth(sqs, queue_url)
        )
        send_seconds = sender.run()
        assert not sender.errors, sender.errors[:3]

        # and the consumer drains the queue (bounded: the test stops itself at the deadline)
        while queue_depth(sqs, queue_url) and time.monotonic() < deadline:
            time.sleep(0.5)
        drained = time.perf_counter() - started
        runs = handler_runs(stack)
        while len(runs) < len(set(sender.accepted)) and time.monotonic() < deadline:  # the last batch's log lines
            time.sleep(0.2)
            runs = handler_runs(stack)
        time.sleep(1 if lossy else 0)  # a handler running twice would log its second line by now
        runs = handler_runs(stack)
        queue_left = queue_depth(sqs, queue_url)
        dlq_depth = queue_depth(sqs, dlq_url)
        table = table_statuses(stack)
        stack_log, function_log = stack.log_text(), stack.function_log_text()
    (keep / "stack.log").write_text(stack_log)
    (keep / "functions.log").write_text(function_log)
    chaos = read_report(chaos_path)

    # Then every delivery was accepted, every accepted event ran once, none twice, none lost
    unique = set(sender.accepted)
    twice = {event_id for event_id, n in runs.items() if n > 1}
    lost = unique - set(runs)
    counts = chaos.get("counts", {})
    report = {
        "variant": variant,
        "chaos": CHAOS if lossy else None,
        "deliveries": len(bodies),
        "distinct_events": len(set(bodies)),
        "shared_entities": SHARED_ENTITIES,
        "concurrency": CONCURRENCY,
        "statuses": dict(sender.statuses),
        "send_seconds": round(send_seconds, 2),
        "throughput_per_s": round(len(bodies) / send_seconds, 1),
        "max_queue_depth": MAX_QUEUE_DEPTH,
        "sender_held_seconds_total": round(sender.held_seconds, 1),
        "all_processed_seconds": round(drained, 2),
        "processed_per_s": round(len(runs) / drained, 1),
        "stack_start_seconds": round(stack_start, 1),
        "ingest_latency_ms": {
            "p50": round(percentile(sender.latencies, 0.50) * 1000, 1),
            "p99": round(percentile(sender.latencies, 0.99) * 1000, 1),
            "max": round(max(sender.latencies) * 1000, 1),
        },
        "injected": {
            "dynamodb_lost_replies": counts.get("dynamodb_lost_replies", 0),
            "dynamodb_lost_replies_applied": counts.get("dynamodb_lost_replies.applied", 0),
            "dynamodb_lost_replies_by_write": lost_reply_writes(chaos),
            "sqs_duplicate_deliveries": counts.get("sqs_duplicates", 0),
            "sqs_duplicates_received_concurrently": counts.get("sqs_duplicates_received.concurrent", 0),
            "detail": counts,
        },
        "consumer_records": dict(consumer_lines(stack_log)),
        "events_processed": len(runs),
        "processed_once": sum(1 for n in runs.values() if n == 1),
        "processed_twice": len(twice),
        "lost": len(lost),
        "not_accepted_but_run": len(set(runs) - unique),
        "queue_left": queue_left,
        "dlq": dlq_depth,
        "table": dict(Counter(str(table.get(e, {}).get("status")) for e in unique)),
        "attempts": dict(Counter(table.get(e, {}).get("attempts", 0) for e in unique)),
    }
    if twice or lost:
        report["evidence"] = {
            "lost": evidence(lost, chaos, stack_log, function_log),
            "twice": evidence(twice, chaos, stack_log, function_log),
        }
    OUT.mkdir(exist_ok=True)
    path = OUT / ("load-report.json" if variant == "clean" else f"load-report-{variant}.json")
    path.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "evidence"}))
    summary = {k: v for k, v in report.items() if k not in ("evidence", "injected")}
    assert time.monotonic() < deadline, f"not drained within {TIMEOUT_S} s: {summary}"
    assert sender.statuses[202] == len(bodies), summary  # after retries, as MaintainX makes them
    assert len(unique) == len(set(bodies)), summary
    assert not lost and not twice, f"lost {sorted(lost)[:10]}, twice {sorted(twice)[:10]}; see {path}"
    assert set(runs) == unique, summary
    assert queue_left == 0 and dlq_depth == 0, summary
    assert report["table"] == {"COMPLETED": len(unique)}, summary  # the table agrees with the handler
    if lossy:  # the faults were there to be survived
        assert counts.get("dynamodb_lost_replies.applied", 0) > 0, report["injected"]
        assert counts.get("sqs_duplicates", 0) > 0, report["injected"]
