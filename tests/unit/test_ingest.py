"""Ingest behaviour with a recording SQS stand-in: statuses, bodies, what gets queued."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from devtools import samples
from mx_webhooks.ingest import ConfigError, IngestConfig, Ingestor


class RecordingSQS:
    def __init__(self, fail: Exception | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail = fail

    def send_message(self, **kwargs: Any) -> dict[str, str]:
        if self.fail:
            raise self.fail
        self.sent.append(kwargs)
        return {"MessageId": "m-1"}


def make(fail: Exception | None = None, **env: str) -> tuple[Ingestor, RecordingSQS]:
    config = IngestConfig.from_env(
        {"QUEUE_URL": "https://sqs.local/q", "LOCAL_WEBHOOK_SECRETS": '{"default": ["local-dev-secret"]}', **env}
    )
    sqs = RecordingSQS(fail)
    return Ingestor(config, sqs), sqs


def signed(body: bytes, fmt: str = "maintainx", **kwargs: Any) -> dict[str, Any]:
    return samples.api_event(body, samples.signed_headers(body, samples.LOCAL_SECRET, fmt), **kwargs)


@pytest.mark.parametrize("fmt", samples.FORMATS)
@pytest.mark.parametrize("event_type", samples.EVENT_TYPES)
def test_every_type_in_both_formats_is_accepted_and_queued(event_type, fmt):
    ingestor, sqs = make()

    response = ingestor.handle(samples.signed_api_event(event_type, fmt))

    assert response["statusCode"] == 202
    (sent,) = sqs.sent
    assert (
        sent["MessageAttributes"]["eventType"]["StringValue"] == event_type.replace("completed", "updated")
        if fmt == "maintainx"
        else event_type
    )


def test_base64_bodies_are_decoded_before_verification():
    ingestor, sqs = make()
    body = samples.encode(samples.maintainx_payload("workorder.created"))
    event = samples.api_event(
        body, samples.signed_headers(body, samples.LOCAL_SECRET, "maintainx"), base64_encoded=True
    )

    assert ingestor.handle(event)["statusCode"] == 202
    assert sqs.sent[0]["MessageBody"].encode() == body


def test_a_base64_flag_on_a_body_that_is_not_base64_is_400():
    ingestor, sqs = make()
    event = signed(b'{"eventType":"NEW_WORK_ORDER"}')
    event["isBase64Encoded"] = True
    event["body"] = "%%% not base64 %%%"

    assert ingestor.handle(event)["statusCode"] == 400
    assert sqs.sent == []


def test_non_canonical_json_is_verified_on_its_raw_bytes_and_queued_as_received():
    ingestor, sqs = make()
    body = b'{\n  "workOrderId": 90001,\n  "eventType": "NEW_WORK_ORDER",\n  "orgId": 4711\n}'

    response = ingestor.handle(signed(body))

    assert response["statusCode"] == 202
    assert sqs.sent[0]["MessageBody"].encode() == body
    # the id is the canonical hash, so the compact form of the same payload is the same event
    compact = samples.encode(json.loads(body))
    assert json.loads(make()[0].handle(signed(compact))["body"])["eventId"] == json.loads(response["body"])["eventId"]


def test_too_large_is_413_before_any_crypto():
    ingestor, sqs = make(MAX_BODY_BYTES="100")

    response = ingestor.handle(signed(b'{"eventType":"NEW_WORK_ORDER","pad":"' + b"x" * 200 + b'"}'))

    assert response["statusCode"] == 413
    assert sqs.sent == []


@pytest.mark.parametrize(
    "body", [b"not json", b"[1,2,3]", b'"text"', b"\xff\xfe"], ids=["text", "array", "string", "not-utf8"]
)
def test_a_genuine_body_that_is_not_a_json_object_is_400(body):
    ingestor, sqs = make()
    event = samples.api_event(b"", samples.signed_headers(body, samples.LOCAL_SECRET, "maintainx"), base64_encoded=True)
    event["body"] = base64.b64encode(body).decode()

    response = ingestor.handle(event)

    assert response["statusCode"] == 400
    assert sqs.sent == []


def test_an_unknown_source_is_401_with_the_generic_body(output):
    ingestor, sqs = make()

    response = ingestor.handle(samples.signed_api_event("workorder.created", "maintainx", source="nope"))

    assert response["statusCode"] == 401
    assert json.loads(response["body"]) == {"error": "unauthorized"}
    assert sqs.sent == []
    assert any(line.get("reason") == "unknown_source" for line in output())


def test_a_rejection_logs_and_counts_its_reason_but_answers_generically(output):
    ingestor, _ = make()

    response = ingestor.handle(samples.signed_api_event("workorder.created", "generic", timestamp=1))

    assert json.loads(response["body"]) == {"error": "unauthorized"}
    lines = output()
    assert any(
        line.get("reason") == "timestamp_too_old" and line.get("message") == "webhook rejected" for line in lines
    )
    assert any(line.get("WebhookRejected") == [1.0] and line.get("reason") == "timestamp_too_old" for line in lines)


def test_queue_failure_is_503_with_retry_after():
    ingestor, _ = make(fail=ConnectionError("sqs down"))

    response = ingestor.handle(samples.signed_api_event("workorder.created", "maintainx"))

    assert response["statusCode"] == 503
    assert "retry-after" in response["headers"]


def test_header_names_are_case_insensitive():
    ingestor, _ = make()
    event = samples.signed_api_event("workorder.created", "generic")
    event["headers"] = {k.upper(): v for k, v in event["headers"].items()}

    assert ingestor.handle(event)["statusCode"] == 202


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "QUEUE_URL"),
        ({"QUEUE_URL": "q"}, "WEBHOOK_SECRET_ARN"),
        (
            {"QUEUE_URL": "q", "WEBHOOK_SECRET_ARN": "arn", "SIGNATURE_TOLERANCE_SECONDS": "soon"},
            "SIGNATURE_TOLERANCE_SECONDS",
        ),
    ],
)
def test_config_errors_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        IngestConfig.from_env(env)


@pytest.mark.parametrize(
    ("event_id", "why"),
    [
        (int("9" * 2100), "at most 30 digits"),
        ("x" * 201, "1 to 200 characters"),
        ("", "1 to 200 characters"),
        ("a~b", "must not contain"),
        ("tab\there", "printable"),
        (True, "not a boolean"),
    ],
    ids=["2100-digit-number", "201-chars", "empty", "tilde", "control-char", "boolean"],
)
def test_an_id_out_of_bounds_is_400_saying_why_and_nothing_is_queued(event_id, why):
    # Given a genuine generic delivery whose id no claim could store (or scope)
    ingestor, sqs = make()
    body = json.dumps({"id": event_id, "type": "workorder.created", "data": {}}).encode()

    # When it is posted
    response = ingestor.handle(samples.api_event(body, samples.signed_headers(body, samples.LOCAL_SECRET, "generic")))

    # Then it is refused with a clear reason, before anything is queued
    assert response["statusCode"] == 400
    answer = json.loads(response["body"])
    assert answer["error"] == "invalid payload" and why in answer["detail"]
    assert sqs.sent == []


def test_ids_are_scoped_by_source_so_one_source_cannot_name_anothers_event():
    ingestor, sqs = make(LOCAL_WEBHOOK_SECRETS='{"default": ["local-dev-secret"], "requests": ["requests-new"]}')
    body = samples.encode(samples.generic_payload("workorder.created", event_id="evt_same"))

    default = ingestor.handle(samples.api_event(body, samples.signed_headers(body, samples.LOCAL_SECRET, "generic")))
    other = ingestor.handle(
        samples.api_event(body, samples.signed_headers(body, "requests-new", "generic"), source="requests")
    )

    assert json.loads(default["body"])["eventId"] == "evt_same"
    assert json.loads(other["body"])["eventId"] == "requests~evt_same"
    assert [m["MessageAttributes"]["eventId"]["StringValue"] for m in sqs.sent] == ["evt_same", "requests~evt_same"]
