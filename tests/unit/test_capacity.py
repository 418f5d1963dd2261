"""The write-unit rules ``make bench`` applies to each write (devtools/bench/capacity.py)."""

from __future__ import annotations

from devtools.bench.capacity import gsi_units, table_units

RECENT = {
    "IndexName": "Recent",
    "KeySchema": [
        {"AttributeName": "listShard", "KeyType": "HASH"},
        {"AttributeName": "firstSeenAt", "KeyType": "RANGE"},
    ],
    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["eventType"]},
}
BY_STATUS = {
    "IndexName": "ByStatus",
    "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}, {"AttributeName": "firstSeenAt", "KeyType": "RANGE"}],
    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["updatedAt"]},
}
KEY = ["eventId"]


def _item(**values: str) -> dict[str, dict[str, str]]:
    return {"eventId": {"S": "evt_1"}, **{k: {"S": v} for k, v in values.items()}}


def test_a_claim_puts_one_entry_and_a_finish_that_changes_nothing_projected_costs_the_index_nothing():
    claimed = _item(listShard="07", firstSeenAt="t0", eventType="x", status="IN_PROGRESS", updatedAt="t0")
    finished = {**claimed, "status": {"S": "COMPLETED"}, "updatedAt": {"S": "t1"}, "payload": {"S": "p" * 900}}
    assert gsi_units(None, claimed, RECENT, KEY) == 1
    assert gsi_units(claimed, finished, RECENT, KEY) == 0


def test_a_key_change_is_a_delete_and_a_put_and_a_projected_change_an_update():
    claimed = _item(status="IN_PROGRESS", firstSeenAt="t0", updatedAt="t0")
    assert gsi_units(claimed, {**claimed, "status": {"S": "COMPLETED"}}, BY_STATUS, KEY) == 2
    assert gsi_units(claimed, {**claimed, "updatedAt": {"S": "t1"}}, BY_STATUS, KEY) == 1
    assert gsi_units(claimed, _item(firstSeenAt="t0"), BY_STATUS, KEY) == 1  # left the index: a delete
    assert gsi_units(_item(), _item(updatedAt="t1"), BY_STATUS, KEY) == 0  # never in it


def test_the_table_bills_the_larger_image_in_whole_kilobytes():
    assert table_units(None, _item(payload="p" * 100)) == 1
    assert table_units(_item(payload="p" * 1500), _item(payload="p")) == 2
