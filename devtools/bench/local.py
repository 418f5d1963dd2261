"""Local stack throughput for ``devtools.bench`` (row 6, informational).

Starts ``devtools.local_stack`` in a child process (moto server, the HTTP front,
the SQS poller feeding the consumer; free port), posts ``count`` distinct signed
deliveries from ``concurrency`` threads, records each request's latency, then waits
until every event is COMPLETED in EventsTable. Throughput = deliveries / (first post
-> last event completed). Everything runs on this machine's 2 cores alongside moto,
so it says how the pieces behave together, not what AWS would do.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from devtools import samples
from devtools.send import post


def measure(count: int = 200, concurrency: int = 10, timeout: float = 120) -> dict[str, Any]:
    from devtools.local_stack import LocalStackProcess

    run = f"{time.time_ns():x}"
    bodies = []
    for index in range(count):
        payload = samples.maintainx_payload("workorder.created", work_order_id=10_000_000 + index)
        payload["userId"] = index
        payload["bench"] = run
        bodies.append(samples.encode(payload))

    with LocalStackProcess() as stack:
        url = stack.info["webhook_url"]
        secret = stack.info["secret"]
        table = stack.outputs["EventsTableName"]
        dynamodb = stack.client("dynamodb")

        def send(body: bytes) -> tuple[int, float]:
            headers = samples.signed_headers(body, secret, "maintainx")
            start = time.perf_counter()
            status, _ = post(url, body, headers)
            return status, (time.perf_counter() - start) * 1000

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            results = list(pool.map(send, bodies))
        accepted = sum(1 for status, _ in results if status == 202)
        done = 0
        while time.perf_counter() - started < timeout:
            done = _completed(dynamodb, table, run)
            if done >= accepted:
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
    latencies = sorted(ms for _, ms in results)
    return {
        "per_s": done / elapsed,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "how": (
            f"{count} deliveries, {concurrency} senders, {accepted} accepted (202), {done} completed "
            f"in {elapsed:.1f} s (slowest request {max(ms for _, ms in results):.0f} ms)"
        ),
    }


def _completed(dynamodb: Any, table: str, run: str) -> int:
    """Events of this run that the consumer finished (a scan: the local table is small)."""
    count = 0
    kwargs: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "contains(payload, :run) AND #s = :done",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":run": {"S": run}, ":done": {"S": "COMPLETED"}},
        "Select": "COUNT",
    }
    while True:
        page = dynamodb.scan(**kwargs)
        count += page["Count"]
        if "LastEvaluatedKey" not in page:
            return count
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
