"""Hostile input through the ingest handler: a named catalogue plus property tests.

Every case goes through ``Ingestor.handle`` with a real (moto) queue behind it and
checks the documented status, the generic 401 body, the rejection reason counted in
``WebhookRejected``, and that nothing unverified (or unqueueable) reaches the queue.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from devtools import samples
from mx_webhooks.ingest import DEFAULT_MAX_BODY_BYTES, IngestConfig, Ingestor
from mx_webhooks.signature import compute_signature, signature_header
from tests.conftest import LOCAL_SECRETS, REGION, receive_all
from tests.reliability.conftest import SECRET

BODY = samples.encode(
    {"eventType": "NEW_WORK_ORDER", "occurredAt": "2026-09-14T13:03:18.971Z", "orgId": 4711, "workOrderId": 90001}
)
REAL = "x-maintainx-webhook-body-signature"
GEN_SIG = "x-maintainx-signature"
GEN_TS = "x-maintainx-timestamp"


def now() -> int:
    return int(time.time())


def real_sig(body: bytes = BODY, ts: int | str | None = None, secret: str = SECRET) -> str:
    return signature_header(secret, str(now() if ts is None else ts), body)


def event(body: bytes = BODY, headers: dict[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
    return samples.api_event(body, {"content-type": "application/json", **(headers or {})}, **kwargs)


def signed(body: bytes, **kwargs: Any) -> dict[str, Any]:
    return event(body, {REAL: real_sig(body)}, **kwargs)


def generic(body: bytes = BODY, ts: str | None = None, sig: str | None = None) -> dict[str, str]:
    ts = str(now()) if ts is None else ts
    return {GEN_SIG: compute_signature(SECRET, ts, body) if sig is None else sig, GEN_TS: ts}


def nested(depth: int) -> bytes:
    return b'{"eventType":"NEW_WORK_ORDER","x":' + b"[" * depth + b"]" * depth + b"}"


def padded_object(size: int) -> bytes:
    head = b'{"eventType":"NEW_WORK_ORDER","pad":"'
    return head + b"a" * (size - len(head) - 2) + b'"}'


@dataclass(frozen=True)
class Queue:
    url: str


@pytest.fixture(scope="module")
def queue() -> Iterator[Queue]:
    """One moto queue for the whole module (each test drains what it queued): fast."""
    from moto import mock_aws

    with mock_aws():
        yield Queue(boto3.client("sqs", region_name=REGION).create_queue(QueueName="hostile")["QueueUrl"])


@pytest.fixture
def ingestor(queue: Queue) -> Iterator[Ingestor]:
    config = IngestConfig.from_env({"QUEUE_URL": queue.url, "LOCAL_WEBHOOK_SECRETS": LOCAL_SECRETS})
    yield Ingestor(config, boto3.client("sqs", region_name=REGION))
    receive_all(queue.url)  # leave the queue empty for the next test


@pytest.fixture
def stack(queue: Queue) -> Queue:
    return queue


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], dict[str, Any]]
    status: int
    reason: str | None = None  # the WebhookRejected reason, for rejections


def _both_joined(a: str, b: str) -> str:
    return f"{a},{b}"  # what a proxy makes of a header sent twice


CASES = [
    # -- signature headers: missing, empty, duplicated, malformed
    Case("no_signature_header", lambda: event(BODY), 401, "missing_signature"),
    Case("headers_absent", lambda: {**event(BODY), "headers": None}, 401, "missing_signature"),
    Case("empty_signature_header", lambda: event(BODY, {REAL: ""}), 401, "malformed_signature"),
    Case("whitespace_signature_header", lambda: event(BODY, {REAL: "   "}), 401, "malformed_signature"),
    Case("signature_without_t", lambda: event(BODY, {REAL: real_sig().split(",", 1)[1]}), 401, "malformed_signature"),
    Case("signature_without_v1", lambda: event(BODY, {REAL: f"t={now()}"}), 401, "malformed_signature"),
    Case("signature_empty_v1", lambda: event(BODY, {REAL: f"t={now()},v1="}), 401, "malformed_signature"),
    Case("signature_garbage", lambda: event(BODY, {REAL: "sha256=deadbeef"}), 401, "malformed_signature"),
    Case(
        "signature_v1_not_hex",
        lambda: event(BODY, {REAL: f"t={now()},v1={'z' * 64}"}),
        401,
        "malformed_signature",
    ),
    Case(
        "signature_v1_truncated",
        lambda: event(BODY, {REAL: real_sig()[:-1]}),
        401,
        "malformed_signature",
    ),
    Case(
        "header_sent_twice_different_timestamps",
        lambda: event(BODY, {REAL: _both_joined(real_sig(ts=now() - 5), real_sig())}),
        401,
        "malformed_signature",
    ),
    Case("header_sent_twice_identical", lambda: event(BODY, {REAL: _both_joined(real_sig(), real_sig())}), 202),
    Case(
        "signature_v1_uppercase_hex",
        lambda: event(BODY, {REAL: real_sig().split(",")[0] + ",v1=" + real_sig().split("v1=")[1].upper()}),
        202,
    ),
    Case(
        "signature_unknown_keys_and_spaces",
        lambda: event(BODY, {REAL: " v0=abc , " + real_sig().replace(",", " , ") + " , x=1"}),
        202,
    ),
    Case(
        "rotation_one_wrong_one_right_v1",
        lambda: event(BODY, {REAL: real_sig(secret="old-secret") + "," + real_sig().split(",")[1]}),
        202,
    ),
    Case(
        "thousand_wrong_v1_values",
        lambda: event(BODY, {REAL: f"t={now()}," + ",".join(f"v1={i:064x}" for i in range(1000))}),
        401,
        "signature_mismatch",
    ),
    Case("generic_without_timestamp", lambda: event(BODY, {GEN_SIG: generic()[GEN_SIG]}), 401, "malformed_timestamp"),
    Case("generic_without_signature", lambda: event(BODY, {GEN_TS: str(now())}), 401, "missing_signature"),
    Case(
        "both_schemes_real_one_forged",
        lambda: event(BODY, {REAL: real_sig(secret="forged"), **generic()}),
        401,
        "signature_mismatch",
    ),
    # -- timestamps
    Case("timestamp_non_numeric", lambda: event(BODY, {REAL: real_sig(ts="soon")}), 401, "malformed_timestamp"),
    Case("timestamp_negative", lambda: event(BODY, {REAL: real_sig(ts=-now())}), 401, "malformed_timestamp"),
    Case("timestamp_huge", lambda: event(BODY, {REAL: real_sig(ts="9" * 40)}), 401, "malformed_timestamp"),
    Case("timestamp_decimal", lambda: event(BODY, {REAL: real_sig(ts=f"{now()}.5")}), 401, "malformed_timestamp"),
    Case("timestamp_exponent", lambda: event(BODY, {REAL: real_sig(ts="1.7e9")}), 401, "malformed_timestamp"),
    Case(
        "timestamp_unicode_digits",
        lambda: event(BODY, {REAL: "t=١٧٠٠٠٠٠٠٠٠," + real_sig().split(",")[1]}),
        401,
        "malformed_timestamp",
    ),
    Case("timestamp_zero", lambda: event(BODY, {REAL: real_sig(ts=0)}), 401, "timestamp_too_old"),
    Case("timestamp_stale", lambda: event(BODY, {REAL: real_sig(ts=now() - 301)}), 401, "timestamp_too_old"),
    Case("timestamp_future", lambda: event(BODY, {REAL: real_sig(ts=now() + 3600)}), 401, "timestamp_in_future"),
    Case("timestamp_milliseconds", lambda: event(BODY, {REAL: real_sig(ts=now() * 1000)}), 202),
    Case(
        "timestamp_milliseconds_stale",
        lambda: event(BODY, {REAL: real_sig(ts=(now() - 3600) * 1000)}),
        401,
        "timestamp_too_old",
    ),
    Case(
        "timestamp_swapped_after_signing",
        lambda: event(BODY, {REAL: f"t={now() - 1}," + real_sig().split(",")[1]}),
        401,
        "signature_mismatch",
    ),
    Case("generic_timestamp_stale", lambda: event(BODY, generic(ts=str(now() - 3600))), 401, "timestamp_too_old"),
    # -- secrets and what was signed
    Case("wrong_secret", lambda: event(BODY, {REAL: real_sig(secret="guess")}), 401, "signature_mismatch"),
    Case(
        "another_sources_secret",
        lambda: event(BODY, {REAL: real_sig(secret="requests-new")}),
        401,
        "signature_mismatch",
    ),
    Case(
        "signature_over_reserialised_body",
        lambda: event(BODY, {REAL: real_sig(json.dumps(json.loads(BODY), indent=2).encode())}),
        401,
        "signature_mismatch",
    ),
    Case(
        "signature_over_body_only",
        lambda: event(BODY, {REAL: f"t={now()},v1=" + hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()}),
        401,
        "signature_mismatch",
    ),
    Case("truncated_body", lambda: event(BODY[:-5], {REAL: real_sig()}), 401, "signature_mismatch"),
    Case("appended_body", lambda: event(BODY + b" ", {REAL: real_sig()}), 401, "signature_mismatch"),
    # -- bodies
    Case("empty_body_unsigned", lambda: event(b""), 401, "missing_signature"),
    Case("null_body_unsigned", lambda: {**event(b""), "body": None}, 401, "missing_signature"),
    Case("empty_body_signed", lambda: signed(b""), 400, "invalid_json"),
    Case("non_json_body_unsigned", lambda: event(b"hello"), 401, "missing_signature"),
    Case("non_json_body_signed", lambda: signed(b"hello"), 400, "invalid_json"),
    Case("non_utf8_body_signed", lambda: signed(b'{"a":"\xff\xfe"}', base64_encoded=True), 400, "invalid_json"),
    Case(
        "utf16_json_body_signed",  # json.loads(bytes) accepts UTF-16; SQS and the consumer need UTF-8
        lambda: signed(json.dumps(json.loads(BODY)).encode("utf-16"), base64_encoded=True),
        400,
        "invalid_json",
    ),
    Case("utf8_bom_body_signed", lambda: signed(b"\xef\xbb\xbf" + BODY), 400, "invalid_json"),
    Case("json_array_signed", lambda: signed(b"[1,2,3]"), 400, "not_an_object"),
    Case("json_string_signed", lambda: signed(b'"NEW_WORK_ORDER"'), 400, "not_an_object"),
    Case("json_null_signed", lambda: signed(b"null"), 400, "not_an_object"),
    Case("json_number_signed", lambda: signed(b"4711"), 400, "not_an_object"),
    Case("deeply_nested_signed", lambda: signed(nested(60_000)), 400, "invalid_json"),
    Case("nested_but_parseable_signed", lambda: signed(nested(500)), 202),
    Case("lone_surrogate_escape_signed", lambda: signed(b'{"eventType":"NEW_COMMENT","comment":"\\ud800"}'), 202),
    Case(
        "noncharacter_uffff_signed",
        lambda: signed('{"eventType":"X","c":"\uffff"}'.encode()),
        400,
        "invalid_characters",
    ),
    Case("oversized_body_unsigned", lambda: event(padded_object(DEFAULT_MAX_BODY_BYTES + 1)), 413, "body_too_large"),
    Case("oversized_body_signed", lambda: signed(padded_object(DEFAULT_MAX_BODY_BYTES + 1)), 413, "body_too_large"),
    Case("body_exactly_at_limit_signed", lambda: signed(padded_object(DEFAULT_MAX_BODY_BYTES)), 202),
    Case(
        "oversized_after_base64_decoding",
        lambda: signed(padded_object(DEFAULT_MAX_BODY_BYTES + 1), base64_encoded=True),
        413,
        "body_too_large",
    ),
    # -- base64 flag lies
    Case("base64_flag_true_body_plain", lambda: {**signed(BODY), "isBase64Encoded": True}, 400, "invalid_base64"),
    Case(
        "base64_flag_false_body_base64",
        lambda: {**signed(BODY, base64_encoded=True), "isBase64Encoded": False},
        401,
        "signature_mismatch",
    ),
    Case("base64_flag_true_body_base64", lambda: signed(BODY, base64_encoded=True), 202),
    # -- sources
    Case("unknown_source", lambda: signed(BODY, source="nobody"), 401, "unknown_source"),
    Case("source_case_variant", lambda: signed(BODY, source="Requests"), 401, "unknown_source"),
    Case("source_path_traversal", lambda: signed(BODY, source="../default"), 401, "unknown_source"),
    Case(
        "source_secret_used_on_default_route",
        lambda: event(BODY, {REAL: real_sig(secret="requests-old")}),
        401,
        "signature_mismatch",
    ),
    # -- header case
    Case("header_name_upper_case", lambda: event(BODY, {REAL.upper(): real_sig()}), 202),
    Case("header_name_mixed_case", lambda: event(BODY, {"X-MaintainX-Webhook-Body-Signature": real_sig()}), 202),
    Case(
        "generic_header_names_mixed_case",
        lambda: event(BODY, {"X-MaintainX-Signature": generic()[GEN_SIG], "X-MaintainX-Timestamp": generic()[GEN_TS]}),
        202,
    ),
]


def test_the_catalogue_names_at_least_thirty_distinct_cases():
    names = [case.name for case in CASES]
    assert len(names) >= 30 and len(set(names)) == len(names)


def _rejections(stdout: str) -> list[str]:
    """The ``reason`` of every WebhookRejected metric written (EMF lines on stdout)."""
    reasons = []
    for line in stdout.splitlines():
        if line.startswith("{") and '"WebhookRejected"' in line:
            reasons.append(json.loads(line)["reason"])
    return reasons


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_delivery_gets_its_documented_status_and_nothing_unverified_is_queued(case, ingestor, stack, capsys):
    # Given a crafted delivery
    api_event = case.build()
    capsys.readouterr()

    # When ingest handles it
    response = ingestor.handle(api_event)

    # Then it answers the documented status without raising...
    assert response["statusCode"] == case.status, response
    body = json.loads(response["body"])
    queued = receive_all(stack.url)
    reasons = _rejections(capsys.readouterr().out)
    if case.status == 202:
        # ...a genuine one is queued byte for byte, once
        assert [m["Body"].encode("utf-8") for m in queued] == [
            base64.b64decode(api_event["body"]) if api_event["isBase64Encoded"] else api_event["body"].encode()
        ]
        assert body["received"] is True
        assert reasons == []
    else:
        # ...anything else is counted with its reason and nothing reaches the queue
        assert queued == []
        assert reasons == [case.reason]
        if case.status == 401:
            assert body == {"error": "unauthorized"}  # never says which check failed


# -- properties -------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(
    max_examples=40,
    derandomize=True,  # the same examples on every run: CI cannot flake on a new one
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

header_names = st.sampled_from([REAL, REAL.upper(), GEN_SIG, GEN_TS, "content-type", "x-other"])
header_values = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda ts, sig: f"t={ts},v1={sig}",
        st.integers(-(10**15), 10**15),
        st.text("0123456789abcdef", min_size=64, max_size=64),
    ),
    st.integers(0, 10**14).map(str),
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False), st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=6)


@PROPERTY_SETTINGS
@given(
    body=st.binary(max_size=400),
    headers=st.dictionaries(header_names, header_values, max_size=4),
    base64_flag=st.booleans(),
)
def test_property_an_unsigned_delivery_is_never_queued(ingestor, stack, body, headers, base64_flag):
    # Given any body and any headers, without knowledge of the secret
    api_event = event(b"", headers)
    api_event["body"] = base64.b64encode(body).decode() if base64_flag else body.decode("utf-8", "replace")
    api_event["isBase64Encoded"] = base64_flag

    # When ingest handles it, Then it rejects it as unauthorised and queues nothing
    response = ingestor.handle(api_event)
    assert response["statusCode"] == 401
    assert receive_all(stack.url) == []


def _is_queueable_json_object(raw: bytes) -> bool:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and not any(c in "\ufffe\uffff" for c in raw.decode("utf-8"))


@PROPERTY_SETTINGS
@given(body=st.one_of(st.binary(max_size=300), json_objects.map(lambda o: json.dumps(o).encode())))
def test_property_a_signed_body_is_queued_exactly_when_it_is_a_utf8_json_object(ingestor, stack, body):
    # Given any bytes, genuinely signed (sent base64 so that any byte survives the transport)
    response = ingestor.handle(signed(body, base64_encoded=True))

    # Then it is 202 and queued byte for byte if it is a UTF-8 JSON object, else 400 and not queued
    queued = receive_all(stack.url)
    if _is_queueable_json_object(body):
        assert response["statusCode"] == 202, response
        assert [m["Body"].encode("utf-8") for m in queued] == [body]
    else:
        assert response["statusCode"] == 400, response
        assert queued == []


@PROPERTY_SETTINGS
@given(payload=json_objects, first=st.integers(0, 299), second=st.integers(0, 299), indent=st.sampled_from([None, 1]))
def test_property_a_redelivery_signed_later_keeps_its_event_id(ingestor, stack, payload, first, second, indent):
    # Given a real-format payload (no id: the id is derived from the content)
    assume("eventType" not in payload)
    payload = {"eventType": "NEW_WORK_ORDER", **payload}
    body = json.dumps(payload).encode()
    reformatted = json.dumps(payload, indent=indent, sort_keys=True).encode()

    # When it is delivered twice, signed at different moments, serialised differently
    ids = []
    for raw, ts in ((body, now() - first), (reformatted, now() - second)):
        response = ingestor.handle(event(raw, {REAL: real_sig(raw, ts=ts)}))
        assert response["statusCode"] == 202
        ids.append(json.loads(response["body"])["eventId"])

    # Then both deliveries carry the same idempotency key, so the consumer runs it once
    assert ids[0] == ids[1]
    assert {m["MessageAttributes"]["eventId"]["StringValue"] for m in receive_all(stack.url)} == {ids[0]}


@PROPERTY_SETTINGS
@given(position=st.integers(0, len(BODY) - 1), flip=st.integers(1, 255))
def test_property_any_tampered_byte_is_rejected(ingestor, stack, position, flip):
    # Given a genuine signature over BODY, and BODY with one byte changed
    tampered = bytearray(BODY)
    tampered[position] ^= flip
    api_event = event(bytes(tampered), {REAL: real_sig(BODY)}, base64_encoded=True)

    # Then the delivery is rejected and nothing is queued
    assert ingestor.handle(api_event)["statusCode"] == 401
    assert receive_all(stack.url) == []
