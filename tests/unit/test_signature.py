"""Signature verification, both schemes: every failure reason, rotation, units, raw bytes."""

from __future__ import annotations

import json

import pytest

from mx_webhooks.signature import (
    REASONS,
    SignatureError,
    compute_signature,
    parse_signature_header,
    parse_timestamp,
    signature_header,
    verify_body_signature,
)

NOW = 1_790_000_000
SECRET = "whsec_current"
BODY = b'{"eventType":"NEW_WORK_ORDER","occurredAt":"2026-09-14T13:03:18.971Z","orgId":4711,"workOrderId":90001}'


def real(ts: int | str = NOW, secret: str = SECRET, body: bytes = BODY) -> dict[str, str]:
    return {"x-maintainx-webhook-body-signature": signature_header(secret, str(ts), body)}


def generic(ts: int | str = NOW, secret: str = SECRET, body: bytes = BODY) -> dict[str, str]:
    return {"x-maintainx-signature": compute_signature(secret, str(ts), body), "x-maintainx-timestamp": str(ts)}


def reason_of(headers: dict[str, str], body: bytes = BODY, secrets: tuple[str, ...] = (SECRET,), **kwargs) -> str:
    with pytest.raises(SignatureError) as caught:
        verify_body_signature(headers, body, secrets, now=NOW, **kwargs)
    return caught.value.reason


def test_signature_is_hmac_sha256_of_timestamp_dot_body_in_lowercase_hex():
    # Known answer computed independently: echo -n '1700000000.{}' | openssl dgst -sha256 -hmac secret
    assert compute_signature("secret", "1700000000", b"{}") == (
        "b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
    )


@pytest.mark.parametrize("make", [real, generic], ids=["maintainx", "generic"])
def test_a_genuine_delivery_verifies_in_both_schemes(make):
    verified = verify_body_signature(make(), BODY, (SECRET,), now=NOW)

    assert verified.timestamp == NOW
    assert verified.scheme == ("maintainx" if make is real else "generic")


@pytest.mark.parametrize("make", [real, generic], ids=["maintainx", "generic"])
def test_rotation_any_of_the_sources_secrets_may_match(make):
    verified = verify_body_signature(make(secret="whsec_old"), BODY, ("whsec_new", "whsec_old"), now=NOW)

    assert verified.secret_index == 1


def test_several_v1_values_any_may_match():
    wrong = compute_signature("other", str(NOW), BODY)
    right = compute_signature(SECRET, str(NOW), BODY)
    headers = {"x-maintainx-webhook-body-signature": f"t={NOW},v1={wrong},v1={right},v0=ignored,scheme=x"}

    assert verify_body_signature(headers, BODY, (SECRET,), now=NOW).secret_index == 0


@pytest.mark.parametrize("make", [real, generic], ids=["maintainx", "generic"])
def test_millisecond_timestamps_are_accepted_and_signed_as_sent(make):
    ms = str(NOW * 1000 + 123)

    verified = verify_body_signature(make(ts=ms), BODY, (SECRET,), now=NOW)

    assert verified.timestamp == pytest.approx(NOW + 0.123)


def test_the_signature_covers_the_raw_body_not_reserialised_json():
    spaced = b'{ "eventType": "NEW_WORK_ORDER",  "workOrderId": 90001 }'
    headers = real(body=spaced)

    assert verify_body_signature(headers, spaced, (SECRET,), now=NOW)
    reserialised = json.dumps(json.loads(spaced), separators=(",", ":")).encode()
    assert reason_of(headers, body=reserialised) == "signature_mismatch"


def test_unicode_bodies_are_signed_as_utf8_bytes():
    body = '{"comment":"Pumpe prüfen ✓"}'.encode()

    assert verify_body_signature(real(body=body), body, (SECRET,), now=NOW)


# ---- every failure reason, in each scheme where it applies -------------------------------


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_signature"),
        ({"content-type": "application/json"}, "missing_signature"),
        ({"x-maintainx-webhook-body-signature": ""}, "malformed_signature"),
        ({"x-maintainx-webhook-body-signature": f"v1={'a' * 64}"}, "malformed_signature"),
        ({"x-maintainx-webhook-body-signature": f"t={NOW}"}, "malformed_signature"),
        ({"x-maintainx-webhook-body-signature": f"t={NOW},t={NOW + 1},v1={'a' * 64}"}, "malformed_signature"),
        ({"x-maintainx-webhook-body-signature": f"t={NOW},v1=nothex"}, "malformed_signature"),
        ({"x-maintainx-webhook-body-signature": f"t=abc,v1={'a' * 64}"}, "malformed_timestamp"),
        ({"x-maintainx-webhook-body-signature": f"t=-5,v1={'a' * 64}"}, "malformed_timestamp"),
        ({"x-maintainx-webhook-body-signature": f"t={'9' * 30},v1={'a' * 64}"}, "malformed_timestamp"),
        ({"x-maintainx-webhook-body-signature": f"t={NOW},v1={'a' * 64}"}, "signature_mismatch"),
    ],
    ids=[
        "no-header",
        "unrelated-headers",
        "empty",
        "no-timestamp",
        "no-v1",
        "two-timestamps",
        "not-hex",
        "non-numeric-ts",
        "negative-ts",
        "huge-ts",
        "wrong-signature",
    ],
)
def test_maintainx_scheme_failure_reasons(headers, reason):
    assert reason_of(headers) == reason


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"x-maintainx-timestamp": str(NOW)}, "missing_signature"),
        ({"x-maintainx-signature": "", "x-maintainx-timestamp": str(NOW)}, "missing_signature"),
        ({"x-maintainx-signature": "a" * 64}, "malformed_timestamp"),
        ({"x-maintainx-signature": "a" * 64, "x-maintainx-timestamp": "1.5e9"}, "malformed_timestamp"),
        ({"x-maintainx-signature": "zz", "x-maintainx-timestamp": str(NOW)}, "malformed_signature"),
        ({"x-maintainx-signature": "a" * 64, "x-maintainx-timestamp": str(NOW)}, "signature_mismatch"),
    ],
    ids=["no-signature", "empty-signature", "no-timestamp", "float-timestamp", "short-signature", "wrong-signature"],
)
def test_generic_scheme_failure_reasons(headers, reason):
    assert reason_of(headers) == reason


@pytest.mark.parametrize("make", [real, generic], ids=["maintainx", "generic"])
@pytest.mark.parametrize(
    ("offset", "reason"),
    [(-301, "timestamp_too_old"), (301, "timestamp_in_future")],
    ids=["stale", "future"],
)
def test_timestamps_outside_the_tolerance_are_rejected_both_ways(make, offset, reason):
    assert reason_of(make(ts=NOW + offset)) == reason


@pytest.mark.parametrize("offset", [-300, 300])
def test_timestamps_at_the_edge_of_the_tolerance_are_accepted(offset):
    assert verify_body_signature(real(ts=NOW + offset), BODY, (SECRET,), now=NOW)


def test_stale_millisecond_timestamps_are_rejected_too():
    assert reason_of(real(ts=(NOW - 3600) * 1000)) == "timestamp_too_old"


def test_a_configured_tolerance_is_honoured():
    assert reason_of(real(ts=NOW - 61), tolerance=60) == "timestamp_too_old"


@pytest.mark.parametrize("make", [real, generic], ids=["maintainx", "generic"])
def test_a_wrong_secret_is_a_mismatch(make):
    assert reason_of(make(secret="attacker")) == "signature_mismatch"


def test_a_source_without_secrets_fails_closed():
    assert reason_of(real(), secrets=()) == "no_secrets_configured"


def test_a_tampered_body_is_a_mismatch():
    assert reason_of(real(), body=BODY.replace(b"90001", b"90002")) == "signature_mismatch"


def test_uri_signature_is_verified_when_present_and_configured():
    uri = "https://hooks.example.com/webhooks/maintainx/requests"
    good = {**real(), "x-maintainx-webhook-uri-signature": signature_header(SECRET, str(NOW), uri.encode())}
    bad = {**real(), "x-maintainx-webhook-uri-signature": signature_header(SECRET, str(NOW), b"https://elsewhere/")}

    assert verify_body_signature(good, BODY, (SECRET,), now=NOW, request_uri=uri)
    assert reason_of(bad, request_uri=uri) == "uri_signature_mismatch"
    # not configured (no request_uri): the URI header is not checked
    assert verify_body_signature(bad, BODY, (SECRET,), now=NOW)


def test_every_reason_is_declared():
    assert {"missing_signature", "signature_mismatch", "timestamp_too_old"} <= set(REASONS)


def test_parse_helpers():
    assert parse_signature_header(f" t={NOW} , v1=ABC ") == (str(NOW), ["abc"])
    assert parse_timestamp("999999999999") == 999999999999.0  # just below the millisecond threshold
    assert parse_timestamp("1000000000000") == 1_000_000_000.0
