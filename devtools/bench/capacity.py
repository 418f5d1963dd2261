"""Write units per delivery and the hottest partition, from the key design in template.yaml.

Two figures ``make bench`` reports (docs/benchmarks.md, docs/data-model.md):

1. **Write units of one happy-path delivery** (a new event, one handler, success): the real
   consumer runs against moto, a botocore hook reads the item before and after each of its
   writes, and the units follow from DynamoDB's rules applied to the table and to each GSI
   as template.yaml defines it (key schema, projection):

   - table: an UpdateItem costs ceil(max(size before, size after) / 1 KB);
   - a GSI: nothing when the item is not in it before or after, or when neither its key
     nor a projected attribute changed; an entry put or deleted costs ceil(entry / 1 KB);
     a key change costs a delete and a put; a changed projected attribute, an update.

   moto answers UpdateItem without ``ConsumedCapacity`` (moto 5.x reports it for PutItem,
   DeleteItem and reads only, as a constant), so there is nothing of moto's to compare
   for these writes; the bench says so instead of comparing against a constant.

2. **The hottest partition of a 10,000 deliveries/s mix**: a synthetic day of MaintainX
   traffic (many work orders and requests, a few hot work orders, some failures, waits
   and duplicates; ``Mix``), each delivery's writes laid on their partition keys by the
   same functions the store uses (``shard_of``, ``attention_value``), for the current
   design and for the one it replaced (``ByDay`` / ``ByStatus``). Figure: the most
   writes any one partition key takes, per second per 1,000 deliveries/s, and its share
   of its table's or index's writes.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from devtools.bench.consumer import item_size

KB = 1024


# -- units of one write ---------------------------------------------------------------------------
def _present(item: dict[str, Any] | None, keys: list[str]) -> bool:
    return item is not None and all(k in item for k in keys)


def _entry(item: dict[str, Any], gsi: dict[str, Any], table_key: list[str]) -> dict[str, Any]:
    keys = [k["AttributeName"] for k in gsi["KeySchema"]]
    projection = gsi.get("Projection", {})
    kind = projection.get("ProjectionType", "ALL")
    if kind == "ALL":
        return dict(item)
    names = set(keys) | set(table_key) | set(projection.get("NonKeyAttributes", []) if kind == "INCLUDE" else [])
    return {k: v for k, v in item.items() if k in names}


def gsi_units(
    before: dict[str, Any] | None, after: dict[str, Any] | None, gsi: dict[str, Any], table_key: list[str]
) -> int:
    """Write units one table write costs ``gsi`` (items in DynamoDB JSON)."""
    keys = [k["AttributeName"] for k in gsi["KeySchema"]]
    was, now = _present(before, keys), _present(after, keys)
    if not was and not now:
        return 0
    if not was:
        assert after is not None
        return max(1, math.ceil(item_size(_entry(after, gsi, table_key)) / KB))
    assert before is not None
    old = _entry(before, gsi, table_key)
    if not now:
        return max(1, math.ceil(item_size(old) / KB))
    assert after is not None
    new = _entry(after, gsi, table_key)
    if any(before[k] != after[k] for k in keys):
        return max(1, math.ceil(item_size(old) / KB)) + max(1, math.ceil(item_size(new) / KB))
    if old == new:
        return 0
    return max(1, math.ceil(max(item_size(old), item_size(new)) / KB))


def table_units(before: dict[str, Any] | None, after: dict[str, Any] | None) -> int:
    sizes = [item_size(i) for i in (before, after) if i]
    return max(1, math.ceil(max(sizes, default=0) / KB))


@dataclass
class Write:
    operation: str
    table_wru: int
    index_wru: dict[str, int]
    moto_capacity: Any = None


def happy_path(events: int = 10) -> dict[str, Any]:
    """Per new event on the happy path: base-table and index write units, by write (moto)."""
    import boto3
    from moto import mock_aws

    from devtools.bench.consumer import _consumer, _registry, make_batch
    from devtools.bench.cost import table_definition

    definition = table_definition()
    table_key = [k["AttributeName"] for k in definition["KeySchema"]]
    indexes = definition.get("GlobalSecondaryIndexes", [])
    writes: list[Write] = []
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        reader = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(TableName="events", **definition)
        consumer = _consumer(dynamodb, boto3.client("sqs", region_name="us-east-1"), _registry(1, idempotent=False))
        before_images: dict[int, dict[str, Any] | None] = {}

        def read(key: dict[str, Any]) -> dict[str, Any] | None:
            return reader.get_item(TableName="events", Key=key, ConsistentRead=True).get("Item")

        def before_build(model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            if model.name in ("UpdateItem", "PutItem", "DeleteItem"):
                params.setdefault("ReturnConsumedCapacity", "INDEXES")
                key = params.get("Key") or {k: params["Item"][k] for k in table_key}
                context["bench_key"] = key
                before_images[id(context)] = read(key)

        def after_call(model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            if "bench_key" not in context:
                return
            before = before_images.pop(id(context), None)
            after = read(context["bench_key"])
            failed = "Error" in parsed
            after = before if failed else after
            units = {g["IndexName"]: gsi_units(before, after, g, table_key) for g in indexes}
            writes.append(Write(model.name, table_units(before, after), units, parsed.get("ConsumedCapacity")))

        dynamodb.meta.events.register("before-parameter-build.dynamodb", before_build)
        dynamodb.meta.events.register("after-call.dynamodb", after_call)
        assert consumer.process_batch(make_batch(events, first_id=7000)) == {"batchItemFailures": []}
    per_index = Counter[str]()
    for write in writes:
        per_index.update(write.index_wru)
    return {
        "writes_per_event": len(writes) / events,
        "table_wru": sum(w.table_wru for w in writes) / events,
        "index_wru": sum(per_index.values()) / events,
        "by_index": {name: per_index.get(name, 0) / events for name in (g["IndexName"] for g in indexes)},
        "moto_capacity": sorted({str(w.moto_capacity) for w in writes}),
    }


# -- the hottest partition of a traffic mix --------------------------------------------------------
@dataclass
class Mix:
    """A synthetic day of MaintainX deliveries, as shares of all deliveries."""

    work_orders: int = 200_000
    requests: int = 20_000
    assets: int = 5_000
    hot_work_orders: int = 5
    hot_share: float = 0.005  # of all deliveries, each hot work order (a busy line's work order)
    request_share: float = 0.15
    asset_share: float = 0.05
    fail_once: float = 0.02  # fail their first attempt, succeed on the retry
    held: float = 0.01  # held WAITING behind an earlier event of their entity first
    parked: float = 0.002
    duplicate: float = 0.03  # MaintainX redelivers an event already done (a slow answer)
    seed: int = 13

    def deliveries(self, count: int) -> Iterator[tuple[str, str, str]]:
        """(event id, entity key, outcome) for ``count`` deliveries."""
        rng = random.Random(self.seed)
        hot = [f"workorder:{9_000_000 + i}" for i in range(self.hot_work_orders)]
        done: list[str] = []
        for _ in range(count):
            roll = rng.random()
            if roll < self.hot_share * self.hot_work_orders:
                entity = hot[int(roll / self.hot_share)]
            elif roll < self.hot_share * self.hot_work_orders + self.request_share:
                entity = f"request:{rng.randrange(self.requests)}"
            elif roll < self.hot_share * self.hot_work_orders + self.request_share + self.asset_share:
                entity = f"asset:{rng.randrange(self.assets)}"
            else:
                entity = f"workorder:{rng.randrange(self.work_orders)}"
            outcome = rng.random()
            if outcome < self.duplicate and done:
                yield rng.choice(done), entity, "duplicate"
                continue
            event_id = f"mx_{uuid.UUID(int=rng.getrandbits(128)).hex}"
            done.append(event_id)
            if len(done) > 10_000:
                done.pop(0)
            outcome = rng.random()
            kind = "happy"
            if outcome < self.parked:
                kind = "parked"
            elif outcome < self.parked + self.fail_once:
                kind = "fail_once"
            elif outcome < self.parked + self.fail_once + self.held:
                kind = "held"
            yield event_id, entity, kind


# (table or index, partition key) written by each step of each outcome, per design.
Design = Callable[[str, str, str, str], list[tuple[str, str]]]


def current_design(event_id: str, entity: str, outcome: str, day: str) -> list[tuple[str, str]]:
    from mx_webhooks.store import shard_of

    table = ("EventsTable", event_id)
    recent = ("Recent", shard_of(entity))
    attention = ("Attention", shard_of(event_id))
    if outcome == "duplicate":
        return [table]  # the refused claim still costs its write
    if outcome == "happy":
        return [table, recent, table]  # claim (+ Recent entry), finish
    if outcome == "fail_once":  # claim, finish FAILED (+ Attention), claim (Attention: status), finish (- Attention)
        return [table, recent, table, attention, table, attention, table, attention]
    if outcome == "held":  # mark_waiting (+ Recent, + Attention), claim, finish (- Attention)
        return [table, recent, attention, table, attention, table, attention]
    return [table, recent, table, attention]  # parked: claim, finish FAILED parked


def previous_design(event_id: str, entity: str, outcome: str, day: str) -> list[tuple[str, str]]:
    """ByDay (listDay / firstSeenAt) and ByStatus (status / firstSeenAt), both projecting status-bearing columns."""
    table = ("EventsTable", event_id)
    by_day = ("ByDay", day)

    def status(name: str) -> tuple[str, str]:
        return ("ByStatus", name)

    if outcome == "duplicate":
        return [table]
    if outcome == "happy":  # claim: puts in both; finish: ByDay update, ByStatus delete + put
        return [table, by_day, status("IN_PROGRESS"), table, by_day, status("IN_PROGRESS"), status("COMPLETED")]
    if outcome == "fail_once":
        first = [table, by_day, status("IN_PROGRESS"), table, by_day, status("IN_PROGRESS"), status("FAILED")]
        again = [table, by_day, status("FAILED"), status("IN_PROGRESS")]
        return [*first, *again, table, by_day, status("IN_PROGRESS"), status("COMPLETED")]
    if outcome == "held":
        waiting = [table, by_day, status("WAITING")]
        claim = [table, by_day, status("WAITING"), status("IN_PROGRESS")]
        return [*waiting, *claim, table, by_day, status("IN_PROGRESS"), status("COMPLETED")]
    return [table, by_day, status("IN_PROGRESS"), table, by_day, status("IN_PROGRESS"), status("FAILED")]


@dataclass
class Hottest:
    design: str
    writes_per_delivery: float
    partition: tuple[str, str]
    per_second_per_1000: float  # that partition's writes/s per 1,000 deliveries/s
    share_of_its_index: float
    share_of_all: float
    by_index: dict[str, float] = field(default_factory=dict)  # the hottest partition's share, per table/index


def hottest_partition(design: Design, name: str, mix: Mix | None = None, sample: int = 200_000) -> Hottest:
    mix = mix or Mix()
    day = time.strftime("%Y-%m-%d", time.gmtime())
    counts: Counter[tuple[str, str]] = Counter()
    for event_id, entity, outcome in mix.deliveries(sample):
        counts.update(design(event_id, entity, outcome, day))
    totals: Counter[str] = Counter()
    for (index, _), n in counts.items():
        totals[index] += n
    peak: dict[str, tuple[tuple[str, str], int]] = {}
    for key, n in counts.items():
        if key[0] not in peak or n > peak[key[0]][1]:
            peak[key[0]] = (key, n)
    (hot_key, hot_n) = max(peak.values(), key=lambda kn: kn[1] / totals[kn[0][0]])
    total = sum(totals.values())
    return Hottest(
        design=name,
        writes_per_delivery=total / sample,
        partition=hot_key,
        per_second_per_1000=hot_n / sample * 1000,
        share_of_its_index=hot_n / totals[hot_key[0]],
        share_of_all=hot_n / total,
        by_index={index: n / totals[index] for index, (_, n) in ((i, peak[i]) for i in sorted(peak))},
    )
