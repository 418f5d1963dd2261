"""AdminFunction: the IAM-authorised admin routes of AdminApi, and the stalled-claim sweep.

Thin on purpose; the logic is ``mx_webhooks.admin``. Every domain error becomes a
JSON ``{"error": ...}`` with its status here, in one place.
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths

from mx_webhooks.admin import Admin, AdminConfig, AdminError, BadRequest, parse_bool
from mx_webhooks.clients import admin_aws
from mx_webhooks.observability import get_tracer, logger

CONFIG = AdminConfig.model_validate(os.environ)
_aws = admin_aws()
ADMIN = Admin(
    CONFIG,
    boto3.client("dynamodb", config=_aws),
    boto3.client("sqs", config=_aws),
    sns=boto3.client("sns", config=_aws) if CONFIG.alert_topic_arn else None,
)
DEADLINE_MARGIN_MS = 5000

tracer = get_tracer()  # traces the DynamoDB and SQS calls (boto3 is patched)
app = APIGatewayHttpResolver()


def _query() -> dict[str, str]:
    return app.current_event.query_string_parameters or {}


def _body() -> dict[str, Any]:
    raw = app.current_event.decoded_body
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest("the request body is not JSON") from exc
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


@app.get("/admin/webhooks")
def list_webhooks() -> dict[str, Any]:
    q = _query()
    return ADMIN.list_events(
        status=q.get("status"),
        event_type=q.get("type"),
        source=q.get("source"),
        since=q.get("since"),
        limit=q.get("limit"),
        cursor=q.get("cursor"),
    )


@app.get("/admin/webhooks/<event_id>")
def show_webhook(event_id: str) -> dict[str, Any]:
    return ADMIN.get_event(event_id)


@app.get("/admin/entities/<kind>/<entity_id>/events")
def entity_events(kind: str, entity_id: str) -> dict[str, Any]:
    q = _query()
    return ADMIN.entity_events(kind, entity_id, since=q.get("since"), limit=q.get("limit"), cursor=q.get("cursor"))


@app.post("/admin/webhooks/retry")
def retry_failed() -> dict[str, Any]:
    options = {**_query(), **_body()}
    return ADMIN.retry_failed(
        since=options.get("since"), limit=options.get("limit"), dry_run=parse_bool(options.get("dryRun"), "dryRun")
    )


@app.post("/admin/webhooks/<event_id>/retry")
def retry_webhook(event_id: str) -> dict[str, Any]:
    options = {**_query(), **_body()}
    return ADMIN.retry(
        event_id, force=parse_bool(options.get("force"), "force"), handler=options.get("handler") or None
    )


@app.get("/admin/dlq")
def peek_dlq() -> dict[str, Any]:
    return ADMIN.peek_dlq(_query().get("max"))


@app.get("/admin/stats")
def stats() -> dict[str, Any]:
    return ADMIN.stats(_query().get("hours"))


@app.get("/admin/integrations")
def integrations() -> dict[str, Any]:
    return ADMIN.integrations()


@app.post("/admin/dlq/redrive")
def redrive_dlq() -> dict[str, Any]:
    options = {**_query(), **_body()}
    remaining_ms = app.lambda_context.get_remaining_time_in_millis() if app.lambda_context else 25_000
    deadline = ADMIN.clock() + max(1.0, (remaining_ms - DEADLINE_MARGIN_MS) / 1000)
    return ADMIN.redrive_dlq(max_messages=options.get("max"), deadline=deadline)


@app.exception_handler(AdminError)
def admin_error(exc: AdminError) -> Response:
    logger.info("admin request refused", extra={"status": exc.status, "error": exc.message})
    return Response(exc.status, content_types.APPLICATION_JSON, json.dumps({"error": exc.message}))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("sweep") == "stalled":  # the SweepStalled schedule, not an HTTP request
        result = ADMIN.sweep_stalled()
        logger.info("stalled-claim sweep", extra={"marked": len(result["marked"])})
        return result
    caller = ((event.get("requestContext") or {}).get("authorizer") or {}).get("iam") or {}
    logger.append_keys(caller=caller.get("userArn"), route=event.get("routeKey"))
    return app.resolve(event, context)
