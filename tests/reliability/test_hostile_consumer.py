"""Malformed SQS records through the consumer: each parked or handled, none crashes the batch.

The queue only holds what ingest verified, but a redrive, an operator's manual send or
a bug upstream can put anything there. A record the consumer cannot understand must be
recorded PARKED in the DLQ at once, without holding back or crashing the
other records of its batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools import samples
from mx_webhooks.events import InvalidEvent, parse_event
from tests.conftest import LambdaContext, receive_all, sqs_record


def _record(text: str, **changes: Any) -> dict[str, Any]:
    record = sqs_record(text)
    for key, value in changes.items():
        if value is _DROP:
            record.pop(key, None)
        else:
            record[key] = value
    return record


_DROP = object()
GOOD = samples.encode(samples.generic_payload("workorder.created", event_id="evt_good")).decode()


@dataclass(frozen=True)
class Malformed:
    name: str
    record: dict[str, Any]
    parked: bool  # True: recorded PARKED; False: a valid event after all (processed)


def _attrs(**values: Any) -> dict[str, Any]:
    return {k: {"stringValue": v, "dataType": "String"} for k, v in values.items()}


MALFORMED = [
    Malformed("body_empty", _record(""), True),
    Malformed("body_missing", _record("", body=_DROP), True),
    Malformed("body_null", _record("", body=None), True),
    Malformed("body_not_json", _record("{not json"), True),
    Malformed("body_json_array", _record("[1,2]"), True),
    Malformed("body_json_string", _record('"workorder.created"'), True),
    Malformed(
        "body_deeply_nested", _record('{"type":"workorder.created","data":' + "[" * 50_000 + "]" * 50_000 + "}"), True
    ),
    Malformed("no_type", _record('{"id":"evt_x","data":{}}'), True),
    Malformed("type_not_a_string", _record('{"id":"evt_x","type":7,"data":{}}'), True),
    Malformed("event_type_empty", _record('{"eventType":"","orgId":1}'), True),
    Malformed("data_not_an_object", _record('{"id":"evt_x","type":"workorder.created","data":[1]}'), True),
    Malformed("work_order_id_a_float", _record('{"eventType":"NEW_WORK_ORDER","workOrderId":1.5}'), True),
    Malformed("work_order_id_an_object", _record('{"eventType":"NEW_WORK_ORDER","workOrderId":{"a":1}}'), True),
    Malformed("occurred_at_garbage", _record('{"eventType":"NEW_WORK_ORDER","occurredAt":"yesterday"}'), True),
    Malformed("org_id_text", _record('{"eventType":"NEW_WORK_ORDER","orgId":"acme"}'), True),
    Malformed("lone_surrogate_without_event_id", _record('{"eventType":"NEW_WORK_ORDER","comment":"\\ud800"}'), False),
    Malformed("no_message_attributes", _record(GOOD, messageAttributes=_DROP), False),
    Malformed("message_attributes_null", _record(GOOD, messageAttributes=None), False),
    Malformed(
        "attribute_without_string_value", _record(GOOD, messageAttributes={"eventId": {"dataType": "String"}}), False
    ),
    Malformed("receive_count_not_a_number", _record(GOOD, attributes={"ApproximateReceiveCount": "many"}), False),
    Malformed("attributes_missing", _record(GOOD, attributes=_DROP), False),
    Malformed("unknown_source_attribute", _record(GOOD, messageAttributes=_attrs(source="../../etc")), False),
]


def test_the_consumer_catalogue_names_at_least_twenty_cases():
    assert len({m.name for m in MALFORMED}) == len(MALFORMED) >= 20


@pytest.mark.parametrize("case", MALFORMED, ids=[m.name for m in MALFORMED])
def test_a_malformed_record_is_parked_or_handled_and_its_batch_neighbour_still_runs(
    case, consumer, registry, stack, store
):
    # Given a batch with the malformed record next to a good event of another entity
    ran: list[str] = []
    registry.on("*")(lambda event: ran.append(event.event_id))
    neighbour = samples.encode(samples.generic_payload("asset.updated", event_id="evt_neighbour")).decode()
    batch = {"Records": [case.record, sqs_record(neighbour, event_id="evt_neighbour")]}

    # When the consumer processes the batch
    result = consumer.process_batch(batch, LambdaContext())

    # Then nothing is retried (nothing transient happened), the neighbour ran once...
    assert result == {"batchItemFailures": []}
    assert "evt_neighbour" in ran
    parked = receive_all(stack.dlq_url)
    if case.parked:
        # ...and the malformed record is parked in the DLQ now, with a PARKED record saying why
        assert len(parked) == 1 and parked[0]["MessageAttributes"]["parkedReason"]["StringValue"]
        assert ran == ["evt_neighbour"]
    else:
        # ...and the record, odd but valid, was processed like any other
        assert parked == []
        assert len(ran) == 2


@settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    bodies=st.lists(
        st.one_of(
            st.text(max_size=60),
            st.dictionaries(
                st.sampled_from(["id", "type", "eventType", "data", "workOrderId", "occurredAt", "orgId", "x"]),
                st.one_of(st.none(), st.integers(), st.text(max_size=12), st.lists(st.integers(), max_size=2)),
                max_size=6,
            ).map(json.dumps),
        ),
        min_size=1,
        max_size=6,
    ),
    receive_count=st.one_of(st.integers(-3, 10).map(str), st.text(max_size=3)),
)
def test_property_any_batch_is_answered_and_every_record_ends_handled_or_parked(
    consumer, registry, stack, store, bodies, receive_count
):
    # Given a batch of arbitrary bodies and receive counts (moto answers every call)
    if not registry.names():  # the registry lives as long as the test, across examples
        registry.on("*", name="noop")(lambda event: None)
    records = [sqs_record(body) for body in bodies]
    for record in records:
        record["attributes"]["ApproximateReceiveCount"] = receive_count

    # When the consumer processes it, Then it answers without raising and retries nothing
    assert consumer.process_batch({"Records": records}, LambdaContext()) == {"batchItemFailures": []}
    # and exactly the records that are not events were parked, each with its reason
    parked = receive_all(stack.dlq_url)
    assert sorted(m["Body"] for m in parked) == sorted(b or "-" for b in bodies if not _is_event(b))
    assert all(m["MessageAttributes"]["parkedReason"]["StringValue"] for m in parked)


def _is_event(body: str) -> bool:
    try:
        parse_event(body)
    except InvalidEvent:
        return False
    return True
