"""Webhook signature verification for both MaintainX schemes.

Real MaintainX deliveries carry ``x-maintainx-webhook-body-signature: t=<ts>,v1=<hex>``
(Stripe style: several ``v1`` for rotation, unknown keys ignored) and, sometimes,
``x-maintainx-webhook-uri-signature`` of the same shape over the full request URI.
The generic format of the brief carries ``X-MaintainX-Signature`` (hex) and
``X-MaintainX-Timestamp``. Both sign ``<timestamp>.<raw body>`` with HMAC-SHA256.

Written by hand rather than with a library: no maintained Python package implements
MaintainX's scheme, and the ingest cold path must stay on the standard library
(``hmac``, ``hashlib``). Every comparison is constant time.

Domain code: no boto3, no I/O. Failures raise ``SignatureError`` with a machine
readable ``reason``; the entry point turns every reason into the same generic 401.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

BODY_SIGNATURE_HEADER = "x-maintainx-webhook-body-signature"
URI_SIGNATURE_HEADER = "x-maintainx-webhook-uri-signature"
GENERIC_SIGNATURE_HEADER = "x-maintainx-signature"
GENERIC_TIMESTAMP_HEADER = "x-maintainx-timestamp"

DEFAULT_TOLERANCE_SECONDS = 300
MILLISECONDS_THRESHOLD = 10**12  # a timestamp >= 1e12 is milliseconds
_MAX_TIMESTAMP_DIGITS = 16
_HEX_DIGITS = frozenset("0123456789abcdef")
_SHA256_HEX_LENGTH = 64

# Every reason a verification can fail for; logged and counted, never returned.
REASONS = (
    "missing_signature",
    "malformed_signature",
    "malformed_timestamp",
    "timestamp_too_old",
    "timestamp_in_future",
    "signature_mismatch",
    "uri_signature_mismatch",
    "no_secrets_configured",
)


class SignatureError(Exception):
    """A delivery failed verification; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Verified:
    """What a successful verification established."""

    scheme: str  # "maintainx" or "generic"
    timestamp: float  # seconds since the epoch
    secret_index: int  # which of the source's secrets matched (0 = newest)


def compute_signature(secret: str, timestamp: str, message: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of ``<timestamp>.<message>`` keyed by ``secret``."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + message, hashlib.sha256)
    return mac.hexdigest()


def signature_header(secret: str, timestamp: str, message: bytes) -> str:
    """The ``t=...,v1=...`` header value MaintainX would send."""
    return f"t={timestamp},v1={compute_signature(secret, timestamp, message)}"


def parse_signature_header(value: str) -> tuple[str, list[str]]:
    """Split ``t=<ts>,v1=<hex>[,v1=<hex>...]`` into the timestamp and the v1 values.

    Unknown keys are ignored. Two different ``t`` values (a header sent twice and
    joined by a proxy) are malformed: we cannot tell which was signed.
    """
    timestamps: set[str] = set()
    signatures: list[str] = []
    for part in value.split(","):
        key, sep, item = part.strip().partition("=")
        if not sep:
            continue
        key = key.strip()
        if key == "t":
            timestamps.add(item.strip())
        elif key == "v1":
            signatures.append(item.strip().lower())
    if len(timestamps) != 1:
        raise SignatureError("malformed_signature", "need exactly one t=")
    if not signatures:
        raise SignatureError("malformed_signature", "no v1=")
    return timestamps.pop(), signatures


def parse_timestamp(raw: str) -> float:
    """Signed timestamp string -> seconds. Values >= 1e12 are milliseconds."""
    if not raw or len(raw) > _MAX_TIMESTAMP_DIGITS or not raw.isascii() or not raw.isdigit():
        raise SignatureError("malformed_timestamp", f"not a positive integer of at most {_MAX_TIMESTAMP_DIGITS} digits")
    value = int(raw)
    return value / 1000.0 if value >= MILLISECONDS_THRESHOLD else float(value)


def check_freshness(timestamp: float, now: float, tolerance: float) -> None:
    """Reject a timestamp outside ``now ± tolerance`` (replay protection, both ways)."""
    if timestamp < now - tolerance:
        raise SignatureError("timestamp_too_old", f"{now - timestamp:.0f}s old, tolerance {tolerance:.0f}s")
    if timestamp > now + tolerance:
        raise SignatureError("timestamp_in_future", f"{timestamp - now:.0f}s ahead, tolerance {tolerance:.0f}s")


def _is_sha256_hex(value: str) -> bool:
    return len(value) == _SHA256_HEX_LENGTH and set(value) <= _HEX_DIGITS


def _match(secrets: Sequence[str], timestamp: str, message: bytes, candidates: Sequence[str]) -> int | None:
    """Index of the first secret whose signature equals any candidate, else None.

    Every secret is compared against every candidate so the time taken does not
    depend on which one matched.
    """
    found: int | None = None
    encoded = [c.encode("ascii") for c in candidates if _is_sha256_hex(c)]
    for index, secret in enumerate(secrets):
        expected = compute_signature(secret, timestamp, message).encode("ascii")
        for candidate in encoded:
            if hmac.compare_digest(expected, candidate) and found is None:
                found = index
    return found


def verify_body_signature(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    request_uri: str | None = None,
) -> Verified:
    """Verify a delivery in whichever scheme its headers use.

    ``headers`` must have lower-case names. ``request_uri`` is the full URI the
    delivery was sent to; when given and the URI signature header is present, that
    signature is verified too.
    """
    if BODY_SIGNATURE_HEADER in headers:
        timestamp, candidates = parse_signature_header(headers[BODY_SIGNATURE_HEADER])
        scheme = "maintainx"
    elif GENERIC_SIGNATURE_HEADER in headers or GENERIC_TIMESTAMP_HEADER in headers:
        timestamp = headers.get(GENERIC_TIMESTAMP_HEADER, "").strip()
        signature = headers.get(GENERIC_SIGNATURE_HEADER, "").strip().lower()
        if not signature:
            raise SignatureError("missing_signature", "X-MaintainX-Signature absent or empty")
        if not timestamp:
            raise SignatureError("malformed_timestamp", "X-MaintainX-Timestamp absent or empty")
        candidates = [signature]
        scheme = "generic"
    else:
        raise SignatureError("missing_signature", "no signature header")

    signed_at = parse_timestamp(timestamp)
    if not all(_is_sha256_hex(c) for c in candidates):
        raise SignatureError("malformed_signature", "signature is not 64 hex digits")
    check_freshness(signed_at, now, tolerance)
    if not secrets:
        raise SignatureError("no_secrets_configured", "the source has no signing secret")

    index = _match(secrets, timestamp, body, candidates)
    if index is None:
        raise SignatureError("signature_mismatch", f"none of {len(secrets)} secret(s) matched")

    if scheme == "maintainx" and request_uri is not None and URI_SIGNATURE_HEADER in headers:
        uri_timestamp, uri_candidates = parse_signature_header(headers[URI_SIGNATURE_HEADER])
        check_freshness(parse_timestamp(uri_timestamp), now, tolerance)
        if _match(secrets, uri_timestamp, request_uri.encode("utf-8"), uri_candidates) is None:
            raise SignatureError("uri_signature_mismatch", "URI signature did not match")

    return Verified(scheme=scheme, timestamp=signed_at, secret_index=index)
