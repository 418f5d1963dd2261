"""Load on the local stack: every accepted delivery processed once, none lost.

``LOAD_DELIVERIES`` deliveries (default ``DEFAULT_DELIVERIES``, what fits CI's time
budget on 2 cores; ``LOAD_DELIVERIES=5000`` for the full run), 10% of them
duplicates (the same body re-signed later, as MaintainX retries), posted by
``LOAD_CONCURRENCY`` (16) keep-alive connections over 127.0.0.1 to the local stack
(``devtools.local_stack`` in a child process: moto, the HTTP API front, the SQS
poller feeding the consumer). Bounded in count and in time (``LOAD_TIMEOUT_S``);
it stops by itself. Figures (throughput, p50/p99 ingest latency, drain time) are
printed and written to ``.local-stack/load-report.json``.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import pytest

from devtools import samples
from devtools.local_stack import LocalStackProcess
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
REPORT = ROOT / ".local-stack" / "load-report.json"


def plan(total: int, seed: int = 7) -> list[bytes]:
    """``total`` bodies: 90% distinct real-format events, 10% repeats placed after their original."""
    rng = random.Random(seed)
    duplicates = int(total * DUPLICATE_SHARE)
    types = list(samples.EVENT_TYPES)
    bodies = [
        samples.encode(
            samples.maintainx_payload(
                types[n % len(types)],
                work_order_id=100_000 + n,
                occurred_at=f"2026-09-14T13:{n // 60 % 60:02d}:{n % 60:02d}.{n % 1000:03d}Z",
            )
        )
        for n in range(total - duplicates)
    ]
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


def test_load_every_accepted_delivery_is_processed_exactly_once():
    # Given the local stack with one handler that logs each run, and the deliveries to send
    bodies = plan(DELIVERIES)
    deadline = time.monotonic() + TIMEOUT_S
    params = {
        "ConsumerBatchingWindowSeconds": "0",
        "ConsumerMaxConcurrency": os.environ.get("LOAD_CONSUMER_CONCURRENCY", "4"),
        "HandlerModules": "tests.load.load_handlers",
        "LogLevel": "WARNING",
    }
    with LocalStackProcess(params=params) as stack:
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
        dlq_depth = queue_depth(sqs, dlq_url)

    # Then every delivery was accepted, every accepted event ran once, none twice, none lost
    unique = set(sender.accepted)
    report = {
        "deliveries": len(bodies),
        "distinct_events": len(set(bodies)),
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
        "events_processed": len(runs),
        "processed_twice": sum(1 for n in runs.values() if n > 1),
        "lost": len(unique - set(runs)),
        "dlq": dlq_depth,
    }
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    assert time.monotonic() < deadline, f"not drained within {TIMEOUT_S} s: {report}"
    assert sender.statuses[202] == len(bodies), report  # after retries, as MaintainX makes them
    assert len(unique) == len(set(bodies)), report
    assert set(runs) == unique, report
    assert max(runs.values()) == 1, report
    assert dlq_depth == 0, report
