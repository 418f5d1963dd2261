"""Normalisation of every payload shape in maintainx-webhooks.md into one vocabulary."""

from __future__ import annotations

import json

import pytest

from mx_webhooks.events import InvalidEvent, parse_event
from mx_webhooks.normalize import canonical_json, derive_event_id, types_for

# The shapes observed on live deliveries (maintainx-webhooks.md section 1), verbatim.
LIVE = {
    "new_work_order": '{"eventType":"NEW_WORK_ORDER","occurredAt":"2026-09-14T13:03:18.971Z","orgId":4711,"workOrderId":90001,"customerId":null,"userId":501}',
    "status_change": '{"eventType":"WORK_ORDER_STATUS_CHANGE","occurredAt":"2026-09-14T13:03:19.905Z","orgId":4711,"workOrderId":90001,"oldStatus":"OPEN","newStatus":"IN_PROGRESS","customerId":null,"userId":501}',
    "comment": '{"type":"TEXT","orgId":4711,"comment":"checked the pump seal","eventType":"NEW_COMMENT_ON_WORK_ORDER","occurredAt":"2026-09-14T13:04:34.512Z","workOrderId":90002}',
    "new_request": '{"eventType":"NEW_WORK_REQUEST","occurredAt":"2026-09-14T13:02:00.000Z","orgId":4711,"workRequestId":777}',
    "request_status": '{"newStatus":"APPROVED","oldStatus":"PENDING","occurredAt":"2026-09-14T13:03:19.905Z","orgId":4711,"requestId":777,"eventType":"WORK_REQUEST_STATUS_CHANGE"}',
}


@pytest.mark.parametrize(
    ("shape", "types", "entity"),
    [
        ("new_work_order", ("workorder.created",), "workorder:90001"),
        ("status_change", ("workorder.updated",), "workorder:90001"),
        ("comment", ("workorder.commented",), "workorder:90002"),
        ("new_request", ("request.created",), "request:777"),
        ("request_status", ("request.updated",), "request:777"),
    ],
)
def test_live_maintainx_shapes_map_to_the_generic_vocabulary(shape, types, entity):
    event = parse_event(LIVE[shape])

    assert event.types == types
    assert event.type == types[0]
    assert event.format == "maintainx"
    assert event.entity_key == entity
    assert event.org_id == 4711
    assert event.occurred_at is not None and event.occurred_at.tzinfo is not None


def test_comment_events_take_their_type_from_event_type_not_the_comment_type():
    event = parse_event(LIVE["comment"])

    assert event.source_event_type == "NEW_COMMENT_ON_WORK_ORDER"
    assert event.comment == "checked the pump seal"


def test_status_change_to_done_is_also_workorder_completed():
    payload = json.loads(LIVE["status_change"]) | {"oldStatus": "IN_PROGRESS", "newStatus": "DONE"}

    event = parse_event(json.dumps(payload))

    assert event.types == ("workorder.updated", "workorder.completed")
    assert (event.old_status, event.new_status) == ("IN_PROGRESS", "DONE")


def test_work_order_change_is_workorder_updated():
    assert types_for({"eventType": "WORK_ORDER_CHANGE", "workOrderId": 1}) == ("workorder.updated",)


def test_asset_events_are_asset_updated_and_unknown_ones_unknown():
    assert types_for({"eventType": "ASSET_STATUS_CHANGE"}) == ("asset.updated",)
    assert types_for({"eventType": "PART_QUANTITY_CHANGE"}) == ("unknown",)


def test_work_request_ids_under_both_names_are_the_same_entity():
    created = parse_event(LIVE["new_request"])
    changed = parse_event(LIVE["request_status"])

    assert created.work_request_id == changed.work_request_id == 777


def test_numeric_string_ids_become_numbers():
    event = parse_event('{"eventType":"NEW_WORK_ORDER","workOrderId":"90001","orgId":4711}')

    assert event.work_order_id == 90001


@pytest.mark.parametrize(
    ("event_type", "entity"),
    [
        ("workorder.created", "workorder:wo_test_001"),
        ("workorder.updated", "workorder:wo_test_001"),
        ("workorder.completed", "workorder:wo_test_001"),
        ("asset.updated", "asset:asset_001"),
        ("request.created", "request:req_test_001"),
    ],
)
def test_generic_shapes(event_type, entity):
    data = {
        "id": entity.split(":")[1],
        "previousStatus": "OPEN",
        "currentStatus": "IN_PROGRESS",
        "requiresFollowUp": True,
    }
    body = {"id": "evt_1", "type": event_type, "data": data, "createdAt": "2026-09-14T13:03:18Z"}

    event = parse_event(json.dumps(body))

    assert event.event_id == "evt_1"
    assert event.types == (event_type,)
    assert event.format == "generic"
    assert event.entity_key == entity
    assert event.data["requiresFollowUp"] is True
    if event_type == "workorder.updated":
        assert (event.old_status, event.new_status) == ("OPEN", "IN_PROGRESS")


def test_real_deliveries_get_a_payload_hash_id_that_ignores_formatting():
    compact = json.loads(LIVE["new_work_order"])
    reordered = dict(reversed(list(compact.items())))

    assert derive_event_id(compact) == derive_event_id(reordered)
    assert derive_event_id(compact).startswith("mx_")
    assert derive_event_id(compact) != derive_event_id(compact | {"workOrderId": 90002})
    assert canonical_json({"b": 1, "a": [1, {"d": 2, "c": 3}]}) == '{"a":[1,{"c":3,"d":2}],"b":1}'


def test_generic_id_is_the_idempotency_key():
    assert derive_event_id({"id": "evt_abc", "type": "workorder.created"}) == "evt_abc"


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1, 2]",
        '"a string"',
        '{"orgId": 1}',
        '{"eventType": ""}',
        '{"id": "e", "type": "workorder.created", "data": [1]}',
        '{"eventType": "NEW_WORK_ORDER", "workOrderId": {"nested": 1}}',
        '{"eventType": "NEW_WORK_ORDER", "occurredAt": "yesterday"}',
    ],
    ids=["not-json", "array", "string", "no-type", "empty-type", "data-not-object", "object-id", "bad-time"],
)
def test_what_no_retry_can_fix_is_invalid(body):
    with pytest.raises(InvalidEvent):
        parse_event(body)
