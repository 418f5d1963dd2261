"""5,000 events in the local stack's table in seconds: copies of an item the store itself wrote.

Going through the whole pipeline (sign, ingest, queue, consumer) costs about a second
per dozen events on this machine; the page-load figure needs the table's size, not the
path that filled it. So one real event is delivered and processed, its item read back
as DynamoDB wrote it (the store's own update expressions built it), and copies with new
ids, times, statuses and entities are written with ``BatchWriteItem``, 25 a request,
from a few threads; their index keys come from the store's own functions
(``list_shard``, ``attention_value``). ``firstSeenAt``/``updatedAt`` are spread over the
last 24 hours so the overview's counts and chart and the ``Recent``/``Attention``
listings all see them.
"""

from __future__ import annotations

import copy
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mx_webhooks.store import attention_value, iso, list_shard

STATUS_MIX = (("COMPLETED", 80), ("FAILED", 8), ("IGNORED", 6), ("QUEUED", 3), ("IN_PROGRESS", 3))


def seeded_items(template: dict[str, Any], count: int, now: float, *, seed: int = 15) -> list[dict[str, Any]]:
    """``count`` copies of ``template`` (a raw DynamoDB item), first seen over the last 24 h."""
    rng = random.Random(seed)
    statuses = [status for status, weight in STATUS_MIX for _ in range(weight)]
    items = []
    for n in range(count):
        first_seen = now - rng.uniform(60, 24 * 3600 - 60)
        status = rng.choice(statuses)
        item = copy.deepcopy(template)
        item["eventId"] = {"S": f"seed_{n:05d}"}
        item["status"] = {"S": status}
        item["firstSeenAt"] = {"S": iso(first_seen)}
        item["updatedAt"] = {"S": iso(first_seen + rng.uniform(0.05, 2))}
        entity = f"workorder:{700000 + n % 900}"
        item["entityKey"] = {"S": entity}
        # the index keys as the store writes them: Recent by the entity's shard, Attention
        # (sparse) by the event's own, only while it needs attention
        item["listShard"] = {"S": list_shard({"entityKey": entity, "eventId": item["eventId"]["S"]})}
        attention = attention_value(item["eventId"]["S"], status)
        if attention is None:
            item.pop("attention", None)
        else:
            item["attention"] = {"S": attention}
        item.pop("leaseUntil", None)
        item.pop("claimToken", None)
        if status == "FAILED":
            item["lastError"] = {"S": "seed.sync: RuntimeError: CMMS unavailable"}
        else:
            item.pop("lastError", None)
        items.append(item)
    return items


def batch_write(client: Any, table: str, items: list[dict[str, Any]], *, threads: int = 4) -> None:
    def write(chunk: list[dict[str, Any]]) -> None:
        requests: dict[str, list[dict[str, Any]]] = {table: [{"PutRequest": {"Item": item}} for item in chunk]}
        while requests.get(table):
            left = client.batch_write_item(RequestItems=requests).get("UnprocessedItems") or {}
            requests = left

    chunks = [items[i : i + 25] for i in range(0, len(items), 25)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(write, chunks))
