"""The whole flow over real HTTP: signed webhook -> API -> ingest -> queue -> consumer -> EventsTable / DLQ / alert.

Runs against the local stack (default) or a deployed one (``AWS_SAM_STACK_NAME``);
see ``conftest.py``.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from devtools import samples
from mx_webhooks.store import EventStore
from tests.e2e.conftest import Target

pytestmark = pytest.mark.e2e


def _unique() -> str:
    return uuid.uuid4().hex[:12]


def _send(
    target: Target, body: bytes, fmt: str, *, secret: str | None = None, timestamp: int | None = None
) -> tuple[int, dict]:
    headers = samples.signed_headers(body, secret or target.secret, fmt, timestamp)
    return target.post(body, headers)


def _generic(event_type: str = "workorder.created", **data: object) -> tuple[str, bytes]:
    payload = samples.generic_payload(event_type, event_id=f"evt_e2e_{_unique()}")
    payload["data"].update(data)
    return payload["id"], samples.encode(payload)


def test_every_event_type_in_both_formats_is_processed(target: Target):
    # Given one genuine delivery of every event type in each wire format
    sent: dict[str, str] = {}
    for index, event_type in enumerate(samples.EVENT_TYPES):
        for fmt in samples.FORMATS:
            if fmt == "maintainx":
                payload = samples.maintainx_payload(event_type, work_order_id=int(time.time() * 1000) % 10**9 + index)
            else:
                payload = samples.generic_payload(event_type, event_id=f"evt_e2e_{_unique()}")
            body = samples.encode(payload)

            # When each is posted, signed with the stack's secret
            status, answer = _send(target, body, fmt)

            # Then each is accepted at once, with its event id
            assert status == 202, answer
            sent[answer["eventId"]] = event_type

    # And every one of them is processed and recorded under its type
    for event_id, event_type in sent.items():
        item = target.wait_status(event_id, "COMPLETED")
        assert event_type in item["eventTypes"], item
        assert item["attempts"] == 1


def test_a_duplicate_delivery_runs_the_handlers_once(target: Target):
    # Given a real-format delivery that MaintainX sends twice (a retry: same body, new signature timestamp)
    body = samples.encode(samples.maintainx_payload("workorder.created", work_order_id=int(_unique()[:8], 16)))
    now = int(time.time())
    first_status, first = _send(target, body, "maintainx", timestamp=now - 5)
    second_status, second = _send(target, body, "maintainx", timestamp=now)

    # Then both are acknowledged under the same event id
    assert (first_status, second_status) == (202, 202)
    event_id = first["eventId"]
    assert second["eventId"] == event_id

    # And the event is processed once: one attempt, every handler recorded once
    item = target.wait_status(event_id, "COMPLETED")
    if target.local:
        # both messages were consumed (the second found the event done), and the handlers ran once
        target.wait_for(
            f"both messages of {event_id} consumed",
            lambda: (
                sum(1 for line in target.stack.log_text().splitlines() if "consumer" in line and event_id in line) == 2
            ),
        )
        runs = target.stack.function_log_text().count(f'"e2e_run":"{event_id}"')
        assert runs == 1, f"the handlers ran {runs} times"
    else:
        time.sleep(5)  # give the second message time to be consumed
    item = target.item(event_id)
    assert item is not None and item["status"] == "COMPLETED" and item["attempts"] == 1
    assert all(result["status"] == "SUCCEEDED" for result in item["handlers"].values())


def test_a_bad_signature_is_401_and_nothing_is_queued(target: Target):
    # Given deliveries signed with the wrong secret, or with a timestamp ten minutes old
    bad_id, bad_body = _generic()
    stale_id, stale_body = _generic()
    good_id, good_body = _generic()

    # When they are posted
    wrong = _send(target, bad_body, "generic", secret="not-the-secret")
    stale = _send(target, stale_body, "generic", timestamp=int(time.time()) - 600)

    # Then both are 401 with a body that does not say why
    assert wrong == (401, {"error": "unauthorized"})
    assert stale == (401, {"error": "unauthorized"})

    # And neither reaches the consumer: a genuine delivery sent after them is processed, they are not
    assert _send(target, good_body, "generic")[0] == 202
    target.wait_status(good_id, "COMPLETED")
    assert target.item(bad_id) is None
    assert target.item(stale_id) is None


def test_an_invalid_event_is_parked_in_the_dlq_at_once(target: Target):
    # Given a genuine, signed delivery that is not an event (no type)
    event_id = f"evt_e2e_{_unique()}"
    body = samples.encode({"id": event_id, "type": "", "data": {}})

    # When it is posted
    status, answer = _send(target, body, "generic")

    # Then it is accepted (the signature is good), recorded PARKED after one attempt under a key of
    # its own (never over the record of the event id it names), and parked at once
    assert status == 202 and answer["eventId"] == event_id
    item = target.wait_status(EventStore.invalid_key("default", body.decode()), "PARKED")
    assert item["parked"] is True and item["attempts"] == 1 and item["claimedEventId"] == event_id
    assert target.item(event_id) is None
    assert "no event type" in item["lastError"]
    parked = target.wait_for(f"{event_id} in the DLQ", lambda: target.dlq_messages(event_id, delete=True))
    assert "no event type" in parked[0]["MessageAttributes"]["parkedReason"]["StringValue"]


def test_a_permanent_handler_error_is_parked_at_once(local_only: Target):
    target = local_only
    # Given an event whose handler raises PermanentError
    event_id, body = _generic(e2e="permanent")

    # When it is delivered
    assert _send(target, body, "generic")[0] == 202

    # Then it is parked after its first attempt, not retried
    item = target.wait_status(event_id, "PARKED")
    assert item["parked"] is True and item["attempts"] == 1
    assert "PermanentError" in item["lastError"]
    target.wait_for(f"{event_id} in the DLQ", lambda: target.dlq_messages(event_id, delete=True))
    assert target.item(event_id)["attempts"] == 1


def test_a_handler_that_always_fails_ends_in_the_dlq_and_alerts(local_only: Target):
    target = local_only
    # Given a queue subscribed to the alerts topic, and an event whose handler always fails
    sqs, sns = target.aws("sqs"), target.aws("sns")
    inbox = sqs.create_queue(QueueName=f"alerts-inbox-{_unique()}")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(
        TopicArn=target.outputs["AlertsTopicArn"],
        Protocol="sqs",
        Endpoint=inbox_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    event_id, body = _generic(e2e="always-fail")

    # When it is delivered
    assert _send(target, body, "generic")[0] == 202

    # Then after maxReceiveCount attempts the queue's redrive moves it to the DLQ
    target.wait_for(f"{event_id} in the DLQ", lambda: target.dlq_messages(event_id, delete=True), timeout=30)
    item = target.item(event_id)
    assert item is not None
    assert item["status"] == "PARKED" and item["parked"] is True
    assert item["attempts"] == target.max_receive_count
    assert "always fails" in item["lastError"]

    # And the alert published on the last attempt reached the subscribed queue
    def alert() -> dict | None:
        for message in sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10).get("Messages", []):
            body = json.loads(message["Body"])
            if body.get("eventId") == event_id:
                return body
        return None

    published = target.wait_for(f"the alert for {event_id}", alert)
    assert published["receiveCount"] == target.max_receive_count
    assert "always fails" in published["error"]
