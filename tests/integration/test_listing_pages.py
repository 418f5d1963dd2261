"""Paging through the listings never skips or repeats an event: a property test against a sorted list.

Random events (entities spread over the ``Recent`` shards, a hot entity, ``firstSeenAt`` ties
across and within shards, statuses in and out of ``Attention``, a few types) are written with
the store's own index keys; every listing (unfiltered, by an attention status, by a settled
status, by type, since a time), walked page by page with a random page size, must equal the
plain list of matching events sorted newest first (``firstSeenAt``, then ``eventId``). A tiny
call budget (``QUERIES_PER_SHARD`` = 2) forces short pages that carry a cursor: the walk
must still come out whole.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import boto3
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mx_webhooks import admin as admin_module
from mx_webhooks.admin import Admin, AdminConfig
from mx_webhooks.store import ATTENTION_STATUSES, IN_PROGRESS, attention_value, list_shard, to_item
from tests.conftest import REGION, table_definition

STATUSES = ("COMPLETED", "COMPLETED", "COMPLETED", "IGNORED", "FAILED", "QUEUED", "WAITING")
TYPES = ("workorder.created", "workorder.updated", "asset.updated")
_tables = itertools.count()

event = st.fixed_dictionaries(
    {
        # few distinct seconds: ties on firstSeenAt within and across shards
        "second": st.integers(min_value=0, max_value=40),
        "entity": st.one_of(st.just("workorder:1"), st.integers(1, 60).map(lambda n: f"workorder:{n}")),
        "status": st.sampled_from(STATUSES),
        "type": st.sampled_from(TYPES),
    }
)


# A walk whose pages stop short on the budget with several shards open (checked: resuming at
# the oldest frontier instead of the newest loses events here).
_rng = random.Random(1)
BUSY = [
    {"second": _rng.randint(0, 40), "entity": f"workorder:{_rng.randint(1, 60)}", "status": s, "type": TYPES[n % 3]}
    for n, s in enumerate(_rng.choice(STATUSES) for _ in range(300))
]


def _write(client: Any, table: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for n, e in enumerate(events):
        event_id = f"evt_{n:04d}"
        row: dict[str, Any] = {
            "eventId": event_id,
            "firstSeenAt": f"2026-09-14T10:00:{e['second']:02d}.000Z",
            "eventType": e["type"],
            "eventTypes": [e["type"]],
            "source": "default",
            "entityKey": e["entity"],
            "status": e["status"],
            "attempts": 1,
            "listShard": list_shard({"entityKey": e["entity"], "eventId": event_id}),
        }
        if (shard := attention_value(event_id, e["status"])) is not None:
            row["attention"] = shard
        rows.append(row)
    for offset in range(0, len(rows), 25):
        chunk = rows[offset : offset + 25]
        client.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": to_item(r)}} for r in chunk]})
    return rows


def _walk(admin: Admin, page: int, **filters: Any) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(2000):  # a walk that does not end is a failure too
        answer = admin.list_events(limit=page, cursor=cursor, **filters)
        assert len(answer["items"]) <= page
        seen.extend(i["eventId"] for i in answer["items"])
        cursor = answer["nextCursor"]
        if cursor is None:
            return seen
    raise AssertionError("the walk did not end")


@example(events=BUSY, page=20, budget=2)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=st.lists(event, min_size=20, max_size=200),
    page=st.integers(min_value=1, max_value=60),
    budget=st.sampled_from([2, 3]),
)
def test_every_listing_walked_page_by_page_is_the_sorted_list(aws, monkeypatch, events, page, budget):
    client = boto3.client("dynamodb", region_name=REGION)
    table = f"events{next(_tables)}"
    client.create_table(TableName=table, **table_definition())
    rows = _write(client, table, events)
    config = AdminConfig(TABLE_NAME=table, QUEUE_URL="unused", DLQ_URL="unused")
    admin = Admin(config, client, None)
    monkeypatch.setattr(admin_module, "QUERIES_PER_SHARD", budget)

    newest_first = sorted(rows, key=lambda r: (r["firstSeenAt"], r["eventId"]), reverse=True)

    def expected(keep: Any) -> list[str]:
        return [r["eventId"] for r in newest_first if keep(r)]

    assert _walk(admin, page) == expected(lambda r: True)
    assert _walk(admin, page, status="FAILED") == expected(lambda r: r["status"] == "FAILED")
    assert _walk(admin, page, status="QUEUED") == expected(lambda r: r["status"] == "QUEUED")
    assert _walk(admin, page, status="COMPLETED") == expected(lambda r: r["status"] == "COMPLETED")
    assert _walk(admin, page, event_type="asset.updated") == expected(lambda r: r["eventType"] == "asset.updated")
    since = "2026-09-14T10:00:20.000Z"
    assert _walk(admin, page, since=since) == expected(lambda r: r["firstSeenAt"] >= since)
    assert _walk(admin, page, status="FAILED", event_type="workorder.created") == expected(
        lambda r: r["status"] == "FAILED" and r["eventType"] == "workorder.created"
    )
    assert IN_PROGRESS not in STATUSES and {"FAILED", "QUEUED", "WAITING"} <= set(ATTENTION_STATUSES)
