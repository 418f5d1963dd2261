"""Ingest: verify a delivery, queue it, answer fast.

Runs on every webhook, on the public internet, and must answer MaintainX well inside
its ~10 s timeout on a cold start. So: standard library plus boto3 and the Powertools
logger only; no pydantic, no DynamoDB. Responses:

| status | when |
|---|---|
| 202 | verified, queued: ``{"received": true, "eventId": ...}`` |
| 400 | verified but not a UTF-8 JSON object (nested too deep, U+FFFE/U+FFFF); bad base64; an ``id`` out of bounds |
| 401 | any signature/timestamp/source failure (generic body; reason logged + metric) |
| 413 | body larger than ``MAX_BODY_BYTES`` |
| 503 | the queue or the secret store is unavailable: MaintainX retries later |
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from mx_webhooks import normalize
from mx_webhooks.observability import emit, log_with_metrics, logger, metrics_batch
from mx_webhooks.queues import EventQueues
from mx_webhooks.secrets import SecretProvider, SecretsUnavailable
from mx_webhooks.signature import DEFAULT_TOLERANCE_SECONDS, SignatureError, verify_body_signature

DEFAULT_SOURCE = "default"
# Characters an SQS message body may not hold (the API refuses the whole message).
_SQS_UNSAFE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
DEFAULT_MAX_BODY_BYTES = 240_000  # SQS takes 256 KiB with attributes; keep room for them


class ConfigError(Exception):
    """A required environment variable is missing or invalid."""


def _env(environ: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = environ.get(name, default)
    if value is None:
        raise ConfigError(f"environment variable {name} is required")
    return value


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, str(default))
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"environment variable {name} must be an integer, got {raw!r}") from exc


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """The ingest function's environment, validated once at cold start.

    A frozen dataclass rather than a pydantic model on purpose: importing pydantic
    and building a model costs ingest's cold start more than the whole rest of its
    code (see docs/benchmarks.md); the consumer and admin functions use pydantic.
    """

    queue_url: str
    secret_arn: str
    local_secrets_json: str
    tolerance_seconds: int
    max_body_bytes: int
    verify_uri_signature: bool
    public_base_url: str
    secret_cache_seconds: int

    # field -> environment variable: the one list of what ingest reads (a template test
    # checks it against the function's Environment, both ways)
    ENV_NAMES: ClassVar[dict[str, str]] = {
        "queue_url": "QUEUE_URL",
        "secret_arn": "WEBHOOK_SECRET_ARN",
        "local_secrets_json": "LOCAL_WEBHOOK_SECRETS",
        "tolerance_seconds": "SIGNATURE_TOLERANCE_SECONDS",
        "max_body_bytes": "MAX_BODY_BYTES",
        "verify_uri_signature": "VERIFY_URI_SIGNATURE",
        "public_base_url": "PUBLIC_BASE_URL",
        "secret_cache_seconds": "SECRET_CACHE_SECONDS",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IngestConfig:
        environ = os.environ if environ is None else environ
        env = cls.ENV_NAMES
        config = cls(
            queue_url=_env(environ, env["queue_url"]),
            secret_arn=_env(environ, env["secret_arn"], ""),
            local_secrets_json=_env(environ, env["local_secrets_json"], ""),
            tolerance_seconds=_env_int(environ, env["tolerance_seconds"], DEFAULT_TOLERANCE_SECONDS),
            max_body_bytes=_env_int(environ, env["max_body_bytes"], DEFAULT_MAX_BODY_BYTES),
            verify_uri_signature=_env(environ, env["verify_uri_signature"], "false").lower() == "true",
            public_base_url=_env(environ, env["public_base_url"], "").rstrip("/"),
            secret_cache_seconds=_env_int(environ, env["secret_cache_seconds"], 300),
        )
        if not config.secret_arn and not config.local_secrets_json:
            raise ConfigError("set WEBHOOK_SECRET_ARN (or, for local use only, LOCAL_WEBHOOK_SECRETS)")
        if config.tolerance_seconds <= 0 or config.max_body_bytes <= 0:
            raise ConfigError("SIGNATURE_TOLERANCE_SECONDS and MAX_BODY_BYTES must be positive")
        return config


def response(status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", **(headers or {})},
        "body": json.dumps(body, separators=(",", ":")),
    }


UNAUTHORIZED = {"error": "unauthorized"}


class Ingestor:
    """Turns API Gateway HTTP API (payload v2) events into queued deliveries."""

    def __init__(self, config: IngestConfig, sqs_client: Any, secrets: SecretProvider | None = None) -> None:
        self.config = config
        self.sqs = sqs_client
        self.queues = EventQueues(sqs_client, config.queue_url)
        self.secrets = secrets or SecretProvider(
            config.secret_arn, config.local_secrets_json, max_age=config.secret_cache_seconds
        )

    def handle(self, event: Mapping[str, Any], now: float | None = None) -> dict[str, Any]:
        with metrics_batch():  # one EMF line per request, whatever the outcome
            return self._handle(event, time.time() if now is None else now)

    def _handle(self, event: Mapping[str, Any], now: float) -> dict[str, Any]:
        emit("WebhookReceived")
        source = ((event.get("pathParameters") or {}).get("source") or DEFAULT_SOURCE).strip()
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        # Until the event id is known (rejections), the API request id correlates the
        # log lines with the access log; from then on the event id, as in the consumer.
        request_id = (event.get("requestContext") or {}).get("requestId")
        # source absent on the lines of the default route (/webhooks/maintainx): bytes on every line
        logger.append_keys(source=source if source != DEFAULT_SOURCE else None, correlation_id=request_id)

        raw = event.get("body") or ""
        body = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
        if event.get("isBase64Encoded"):
            try:
                body = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                return self._reject(400, "invalid_base64", "isBase64Encoded but the body is not base64")
        if len(body) > self.config.max_body_bytes:
            return self._reject(413, "body_too_large", f"{len(body)} bytes > {self.config.max_body_bytes}")

        try:
            secrets = self.secrets.secrets_for(source)
        except SecretsUnavailable as exc:
            logger.error("secret store unavailable", extra={"error": str(exc)})
            emit("EnqueueFailed")
            return response(503, {"error": "temporarily unavailable"}, {"retry-after": "30"})
        if secrets is None:
            return self._reject(401, "unknown_source", f"no secrets configured for source {source!r}")
        try:
            verified = verify_body_signature(
                headers,
                body,
                secrets,
                now=now,
                tolerance=self.config.tolerance_seconds,
                request_uri=self._request_uri(event) if self.config.verify_uri_signature else None,
            )
        except SignatureError as exc:
            return self._reject(401, exc.reason, exc.detail)

        # Decode as strict UTF-8 first: json.loads(bytes) would also accept UTF-16/32 and
        # a BOM, which the consumer (and SQS, for U+FFFE/U+FFFF) cannot take. A deeply
        # nested body makes json raise RecursionError, not ValueError.
        try:
            text = body.decode("utf-8")
            payload = json.loads(text)
        except (ValueError, RecursionError):
            return self._reject(400, "invalid_json", "verified body is not UTF-8 JSON")
        if not isinstance(payload, dict):
            return self._reject(400, "not_an_object", f"verified body is a JSON {type(payload).__name__}")
        if _SQS_UNSAFE.search(text):
            return self._reject(400, "invalid_characters", "verified body holds characters SQS refuses")

        problem = normalize.event_id_problem(payload)
        if problem is not None:
            # Verified, so the sender is genuine: tell it what to fix.
            return self._reject(400, "invalid_id", problem, public_detail=problem)
        event_id = normalize.derive_event_id(payload, source)
        event_type = normalize.primary_type(payload)
        logger.append_keys(event_id=event_id, correlation_id=event_id)
        try:
            self.queues.send_event(text, event_id=event_id, event_type=event_type, source=source)
        except Exception:  # ClientError, EndpointConnectionError, timeouts: all mean "retry later"
            logger.exception("enqueue failed", extra={"event_type": event_type})
            emit("EnqueueFailed")
            return response(503, {"error": "temporarily unavailable"}, {"retry-after": "5"})

        emit("WebhookEnqueued", eventType=_metric_type(event_type))
        log_with_metrics(
            "webhook enqueued",
            event_type=event_type,
            scheme=verified.scheme,
            # absent for the current secret (index 0); during a rotation, lines with 1 show who still signs with the old
            secret_index=verified.secret_index or None,
        )
        return response(202, {"received": True, "eventId": event_id})

    def _reject(self, status: int, reason: str, detail: str, *, public_detail: str | None = None) -> dict[str, Any]:
        logger.warning("webhook rejected", extra={"reason": reason, "detail": detail, "status": status})
        emit("WebhookRejected", reason=reason)
        body: dict[str, Any] = UNAUTHORIZED if status == 401 else {"error": _PUBLIC_ERRORS.get(status, "bad request")}
        if public_detail and status != 401:
            body = {**body, "detail": public_detail}
        return response(status, body)

    def _request_uri(self, event: Mapping[str, Any]) -> str:
        """The full URI MaintainX posted to, for the URI signature."""
        raw_path = event.get("rawPath") or ""
        query = event.get("rawQueryString") or ""
        base = self.config.public_base_url
        if not base:
            domain = (event.get("requestContext") or {}).get("domainName") or ""
            base = f"https://{domain}"
        return f"{base}{raw_path}" + (f"?{query}" if query else "")


_PUBLIC_ERRORS = {400: "invalid payload", 413: "payload too large"}


def _metric_type(event_type: str) -> str:
    """Bound the metric's cardinality: unknown generic types count as ``unknown``."""
    return event_type if event_type in normalize.KNOWN_TYPES else normalize.UNKNOWN_TYPE
