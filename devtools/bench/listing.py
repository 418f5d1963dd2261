"""The admin listings against a moto server holding 5,000 events: time, calls, read units.

``python -m devtools.bench.listing [--events 5000] [--only local|plain] [--profile NAME]``

Serves moto as the local stack does (``devtools.local_stack.moto_server.MotoProcess``: a
process of its own, cheroot, the ``moto_index`` speed-ups), and as moto comes
(``ThreadedMotoServer`` in this process, no speed-up) as the baseline, one after the
other in the same run; for each it creates EventsTable from template.yaml, writes one
event with the store's own claim and finish, copies it ``events`` times over the last
24 h with the store's index keys (the browser tier's seeding: ``tests/browser/seed.py``),
then times each admin question (median of 3) through boto3 over HTTP. For each it also reports the DynamoDB calls one
request makes and the read units they would cost on DynamoDB, computed from what each
call returned (Query: 0.5 RRU per 4 KB read, rounded up per call; BatchGetItem: 0.5 RRU
per item per 4 KB, eventually consistent; GetItem/Query with ConsistentRead: 1 per 4 KB).
Filtered-out index entries are charged too (a Query pays for what it scans): the sizes
are those of the index entries the key condition matched, up to the call's Limit.

It prints each question's median on both, and the ratio (baseline / local stack); the
calls and read units do not depend on the server, they are the admin's own. ``--only``
runs one of the two; ``--profile NAME`` prints a cProfile of that question (this
process only: the admin and the SDK; moto's side is in the other process).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import pstats
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3

REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it, near enough: names plus values' text."""
    return sum(len(k) + len(json.dumps(v)) for k, v in item.items())


class CallMeter:
    """Counts a client's DynamoDB calls and the read units they would cost."""

    def __init__(self, client: Any) -> None:
        self.calls: dict[str, int] = {}
        self.rru = 0.0
        self.items_read = 0
        client.meta.events.register("before-call.dynamodb.*", self._before)
        client.meta.events.register("after-call.dynamodb.*", self._after)

    def reset(self) -> None:
        self.calls, self.rru, self.items_read = {}, 0.0, 0

    @staticmethod
    def _before(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        body = params.get("body") or b"{}"
        request = json.loads(body) if isinstance(body, bytes | str) else body
        consistent = request.get("ConsistentRead") or any(
            r.get("ConsistentRead") for r in (request.get("RequestItems") or {}).values()
        )
        context["consistent"] = bool(consistent)

    def _after(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        self.calls[model.name] = self.calls.get(model.name, 0) + 1
        consistent = bool(context.get("consistent"))
        if model.name == "Query":
            # what the key condition read: the returned items (a filter drops some after the
            # read, so ScannedCount x average size when a filter was given)
            items = parsed.get("Items") or []
            size = sum(_size(i) for i in items)
            scanned = int(parsed.get("ScannedCount", len(items)))
            if items and scanned > len(items):
                size = size * scanned // len(items)
            elif not items and scanned:
                size = scanned * 200
            self.rru += max(1, math.ceil(size / 4096)) * (1.0 if consistent else 0.5)
            self.items_read += scanned
        elif model.name == "BatchGetItem":
            for items in (parsed.get("Responses") or {}).values():
                for item in items:
                    self.rru += math.ceil(_size(item) / 4096) * (1.0 if consistent else 0.5)
                    self.items_read += 1
        elif model.name == "GetItem":
            self.rru += max(1, math.ceil(_size(parsed.get("Item") or {}) / 4096)) * (1.0 if consistent else 0.5)
            self.items_read += 1


@contextmanager
def moto_server(*, plain: bool) -> Iterator[str]:
    if not plain:  # as the local stack serves moto
        from devtools.local_stack.moto_server import MotoProcess

        child = MotoProcess("127.0.0.1", 0)
        child.start()
        try:
            yield f"http://127.0.0.1:{child.port}"
        finally:
            child.stop()
        return
    from moto.server import ThreadedMotoServer  # moto as it comes: Werkzeug, in this process, no speed-up

    from devtools.local_stack.chaos import atomic_item_writes

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        with atomic_item_writes():
            yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def seed(endpoint: str, count: int, now: float) -> tuple[Any, Any, str]:
    """The admin (over HTTP), its meter, and an entity the seeded events share."""
    from mx_webhooks.admin import Admin, AdminConfig
    from mx_webhooks.store import EventStore
    from tests.browser.seed import batch_write, seeded_items
    from tests.conftest import table_definition

    dynamodb = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint)
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=endpoint)
    dynamodb.create_table(TableName="events", **table_definition())
    queue = sqs.create_queue(QueueName="events")["QueueUrl"]
    store = EventStore(dynamodb, "events")
    meta = {
        "eventId": "template",
        "eventType": "workorder.updated",
        "eventTypes": ["workorder.updated"],
        "source": "default",
        "entityKey": "workorder:700001",
        "occurredAt": "2026-09-14T10:00:00.000Z",
        "payload": json.dumps({"id": "template", "type": "workorder.updated", "workOrderId": 700001}),
    }
    claim = store.claim(meta, now=now)
    store.finish("template", claim.token, status="COMPLETED", results={}, now=now)
    template = dynamodb.get_item(TableName="events", Key={"eventId": {"S": "template"}})["Item"]
    batch_write(dynamodb, "events", seeded_items(template, count, now))
    config = AdminConfig.model_validate({"TABLE_NAME": "events", "QUEUE_URL": queue, "DLQ_URL": queue})
    client = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint)
    meter = CallMeter(client)
    return Admin(config, client, sqs, clock=lambda: now), meter, "700001"


def questions(admin: Any, entity: str) -> dict[str, Callable[[], Any]]:
    page1: dict[str, Any] = {}

    def first() -> Any:
        page1.update(admin.list_events())
        return page1

    def second() -> Any:
        return admin.list_events(cursor=page1["nextCursor"])

    return {
        "list_page1": first,
        "list_page2": second,
        "status_failed": lambda: admin.list_events(status="FAILED"),
        "status_completed": lambda: admin.list_events(status="COMPLETED"),
        "type_filter": lambda: admin.list_events(event_type="workorder.updated"),
        "type_filter_none": lambda: admin.list_events(event_type="asset.deleted"),
        "since_2h": lambda: admin.list_events(since="2h"),
        "entity_timeline": lambda: admin.entity_events("workorder", entity),
    }


def measure(count: int = 5000, *, plain: bool = False, profile: str | None = None) -> dict[str, Any]:
    now = time.time()
    with moto_server(plain=plain) as endpoint:
        admin, meter, entity = seed(endpoint, count, now)
        report: dict[str, Any] = {"events": count, "moto": "plain" if plain else "local stack", "questions": {}}
        for name, ask in questions(admin, entity).items():
            times = []
            answer: Any = None
            for _ in range(3):
                meter.reset()
                started = time.perf_counter()
                answer = ask()
                times.append((time.perf_counter() - started) * 1000)
            report["questions"][name] = {
                "median_ms": round(statistics.median(times), 1),
                "items": len(answer["items"]),
                "next": answer["nextCursor"] is not None,
                "calls": dict(meter.calls),
                "rru": meter.rru,
                "entries_read": meter.items_read,
            }
            if profile == name:
                profiler = cProfile.Profile()
                profiler.enable()
                ask()
                profiler.disable()
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    return report


def compare(count: int, profile: str | None = None) -> dict[str, Any]:
    """Both servers in this run: each question's median on each, and baseline / local stack."""
    local = measure(count, plain=False, profile=profile)
    plain = measure(count, plain=True)
    rows = {}
    for name, mine in local["questions"].items():
        base = plain["questions"][name]
        assert (mine["items"], mine["calls"]) == (base["items"], base["calls"]), (name, mine, base)
        rows[name] = {
            "local_stack_ms": mine["median_ms"],
            "plain_moto_ms": base["median_ms"],
            "ratio": round(base["median_ms"] / max(mine["median_ms"], 0.1), 1),
            "calls": mine["calls"],
            "rru": mine["rru"],
            "entries_read": mine["entries_read"],
        }
    return {"events": count, "questions": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--only", choices=("local", "plain"))
    parser.add_argument("--profile")
    args = parser.parse_args(argv)
    if args.only:
        report = measure(args.events, plain=args.only == "plain", profile=args.profile)
    else:
        report = compare(args.events, profile=args.profile)
        print(f"{'question':18} {'local stack':>12} {'plain moto':>11} {'ratio':>6}  calls")
        for name, row in report["questions"].items():
            calls = ", ".join(f"{n} {k}" for k, n in row["calls"].items())
            local, plain = row["local_stack_ms"], row["plain_moto_ms"]
            print(f"{name:18} {local:>9.1f} ms {plain:>8.1f} ms {row['ratio']:>5.1f}x  {calls}")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
