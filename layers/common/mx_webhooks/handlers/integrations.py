"""The built-in integrations as handlers, each switched on by configuration.

- ``SLACK_NOTIFY_ENABLED`` (template ``SlackNotifyEnabled``): ``workorder.created`` -> a Slack
  message with the title, priority, asset, location and a link. Not ``latest_only``: it
  announces a creation, one event per work order, so there is no newer state to prefer,
  and a message delayed by an outage is still wanted once Slack is back (the watermark
  would only cost a DynamoDB write per event).
- ``STATUS_HISTORY_ENABLED`` (``StatusHistoryEnabled``): ``workorder.updated`` with a status
  change -> one history item per transition. ``latest_only``: an event older than one it
  already handled for that work order is SKIPPED (stale) by the consumer, across batches
  and retries, so the current status is never set back by a late event.
- ``FOLLOW_UP_ENABLED`` (``FollowUpEnabled``, ``FollowUpRule``): ``workorder.completed`` -> a
  follow-up work order when the rule says so, exactly once.
- ``REQUEST_TO_WORK_ORDER_ENABLED`` (``RequestToWorkOrderEnabled``): ``request.created`` -> a
  work order from the request, exactly once.
- ``EVENT_BUS_NAME`` (``EventBusName``, non-empty): every event -> the EventBridge bus.

Listed in ``HANDLER_MODULES``, this module is configured with the consumer's
environment (``configure``, called by ``load_handler_modules``) and registers only
the handlers that are on, so a switched-off integration costs nothing and does not
appear in the event log. Tests build their own with
``build(config, ...)`` and ``register(registry, integrations)``.

Real MaintainX payloads carry ids only: titles, priorities, assets and locations
come from the MaintainX API. Generic-format payloads that carry them are used as
they are, without an API call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

from pydantic import BaseModel

from mx_webhooks.events import WebhookEvent
from mx_webhooks.integrations.eventbridge import EventForwarder
from mx_webhooks.integrations.http import JsonHttp, RetryPolicy
from mx_webhooks.integrations.maintainx_api import MaintainXClient, NewWorkOrder, WorkOrder, WorkRequest
from mx_webhooks.integrations.settings import IntegrationsConfig, SecretValue
from mx_webhooks.integrations.slack import SlackNotifier, WorkOrderSummary, new_work_order_message
from mx_webhooks.integrations.status_history import StatusHistory
from mx_webhooks.integrations.work_orders import IntentStore, WorkOrderCreator
from mx_webhooks.observability import logger
from mx_webhooks.registry import PermanentError, Registry, registry

FOLLOW_UP = "follow-up"
FROM_REQUEST = "from-request"


@dataclass(slots=True)
class Integrations:
    """The configured edges; ``None`` where the integration is off."""

    config: IntegrationsConfig
    api: MaintainXClient | None = None
    slack: SlackNotifier | None = None
    history: StatusHistory | None = None
    creator: WorkOrderCreator | None = None
    forwarder: EventForwarder | None = None


def build(
    config: IntegrationsConfig,
    *,
    dynamodb_client: Any = None,
    events_client: Any = None,
    retry: RetryPolicy | None = None,
) -> Integrations:
    """Wire the integrations that are on. AWS clients are made here unless given (tests give moto's)."""
    retry = retry or RetryPolicy(budget_seconds=config.http_budget_seconds, max_attempts=config.http_max_attempts)
    if (config.needs_table and dynamodb_client is None) or (config.event_bus_name and events_client is None):
        import boto3

        from mx_webhooks.clients import integrations_aws

        aws = integrations_aws()
        dynamodb_client = dynamodb_client or boto3.client("dynamodb", config=aws)
        events_client = events_client or (boto3.client("events", config=aws) if config.event_bus_name else None)

    integrations = Integrations(config)
    if config.needs_api:
        api_key = SecretValue(
            config.api_key_secret_arn,
            "apiKey",
            local=config.local_api_key,
            max_age=config.secret_max_age,
            what="MaintainX API key",
        )
        integrations.api = MaintainXClient(
            JsonHttp("MaintainX", retry), api_key.get, base_url=config.api_base_url, app_url=config.app_url
        )
    if config.slack_enabled:
        url = SecretValue(
            config.slack_secret_arn,
            "webhookUrl",
            local=config.local_slack_url,
            max_age=config.secret_max_age,
            what="Slack incoming-webhook URL",
        )
        integrations.slack = SlackNotifier(JsonHttp("Slack", retry), url.get)
    if config.status_history_enabled:
        integrations.history = StatusHistory(dynamodb_client, config.table_name)
    if (config.follow_up_enabled or config.request_to_work_order_enabled) and integrations.api is not None:
        integrations.creator = WorkOrderCreator(integrations.api, IntentStore(dynamodb_client, config.table_name))
    if config.event_bus_name:
        integrations.forwarder = EventForwarder(events_client, config.event_bus_name)
    return integrations


def register(target: Registry, integrations: Integrations) -> list[str]:
    """Register the handlers of the integrations that are on; return their names."""
    on = target.on
    names: list[str] = []
    if integrations.slack is not None:
        on("workorder.created", name="integrations.slack_new_work_order")(partial(notify_slack, integrations))
        names.append("integrations.slack_new_work_order")
    if integrations.history is not None:
        on("workorder.updated", name="integrations.status_history", idempotent=True, latest_only=True)(
            partial(record_status_change, integrations)
        )
        names.append("integrations.status_history")
    if integrations.config.follow_up_enabled and integrations.creator is not None:
        on("workorder.completed", name="integrations.follow_up_work_order", idempotent=True)(
            partial(create_follow_up, integrations)
        )
        names.append("integrations.follow_up_work_order")
    if integrations.config.request_to_work_order_enabled and integrations.creator is not None:
        on("request.created", name="integrations.work_order_from_request", idempotent=True)(
            partial(create_from_request, integrations)
        )
        names.append("integrations.work_order_from_request")
    if integrations.forwarder is not None:
        on("*", name="integrations.forward_to_eventbridge")(partial(forward_to_eventbridge, integrations))
        names.append("integrations.forward_to_eventbridge")
    return names


# -- the handlers ------------------------------------------------------------------------------
def notify_slack(integrations: Integrations, event: WebhookEvent) -> None:
    assert integrations.slack is not None and integrations.api is not None
    work_order = _work_order(integrations, event, needs="title")
    summary = WorkOrderSummary(
        id=work_order.id,
        title=work_order.title,
        url=integrations.api.work_order_url(work_order.id),
        priority=work_order.priority,
        asset=work_order.asset_name,
        location=work_order.location_name,
        status=work_order.status,
    )
    integrations.slack.post(new_work_order_message(summary))
    logger.info("slack notified of a new work order", extra={"work_order_id": work_order.id})


def record_status_change(integrations: Integrations, event: WebhookEvent) -> None:
    assert integrations.history is not None
    if event.work_order_id is None or event.new_status is None or event.new_status == event.old_status:
        return  # a change that is not a status transition
    if event.occurred_at is None:
        raise PermanentError("a status change without occurredAt cannot be ordered")
    result = integrations.history.record(
        work_order_id=event.work_order_id,
        event_id=event.event_id,
        occurred_at=event.occurred_at,
        old_status=event.old_status,
        new_status=event.new_status,
        source_event_type=event.source_event_type,
    )
    log = logger.warning if result == "stale" else logger.info
    log(
        f"status transition {result}",
        extra={"work_order_id": event.work_order_id, "from": event.old_status, "to": event.new_status},
    )


def create_follow_up(integrations: Integrations, event: WebhookEvent) -> None:
    assert integrations.creator is not None and integrations.api is not None
    config = integrations.config
    work_order = _work_order(integrations, event, needs=config.follow_up_field)
    wanted = (
        config.follow_up_rule == "always"
        or work_order.flag(config.follow_up_field)
        or (work_order.priority or "").upper() in config.follow_up_priorities
    )
    if not wanted:
        return
    title = work_order.title or f"work order #{work_order.id}"
    new = NewWorkOrder(
        title=f"Follow-up: {title}"[:300],
        description=f"Follow-up of work order #{work_order.id}: {integrations.api.work_order_url(work_order.id)}",
        priority=work_order.priority,
        asset_id=work_order.asset_ref,
        location_id=work_order.location_ref,
    )
    result = integrations.creator.create_once(event_id=event.event_id, purpose=FOLLOW_UP, new=new)
    logger.info(
        "follow-up work order",
        extra={"work_order_id": work_order.id, "follow_up_id": result.work_order_id, "newly_created": result.created},
    )


def create_from_request(integrations: Integrations, event: WebhookEvent) -> None:
    assert integrations.creator is not None and integrations.api is not None
    if event.work_request_id is None:
        raise PermanentError("request.created without a work request id")
    request: WorkRequest
    if event.format == "generic" and event.data.get("title"):
        request = _model(WorkRequest, {**event.data, "id": event.work_request_id})
    else:
        request = integrations.api.get_work_request(event.work_request_id)
    origin = f"Created from work request #{request.id}."
    new = NewWorkOrder(
        title=(request.title or f"Work request #{request.id}")[:300],
        description=f"{request.description}\n\n{origin}" if request.description else origin,
        priority=request.priority,
        asset_id=request.asset_ref,
        location_id=request.location_ref,
    )
    result = integrations.creator.create_once(event_id=event.event_id, purpose=FROM_REQUEST, new=new)
    logger.info(
        "work order from a work request",
        extra={"work_request_id": request.id, "work_order_id": result.work_order_id, "newly_created": result.created},
    )


def forward_to_eventbridge(integrations: Integrations, event: WebhookEvent) -> None:
    assert integrations.forwarder is not None
    integrations.forwarder.forward(event)


def _work_order(integrations: Integrations, event: WebhookEvent, *, needs: str) -> WorkOrder:
    """The event's work order: from a generic payload that carries ``needs``, else from the API."""
    if event.work_order_id is None:
        raise PermanentError(f"{event.type} without a work order id")
    if event.format == "generic" and needs in event.data:
        return _model(WorkOrder, {**event.data, "id": event.work_order_id})
    assert integrations.api is not None
    return integrations.api.get_work_order(event.work_order_id)


def _model[M: BaseModel](model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValueError as exc:
        raise PermanentError(f"the payload's {model.__name__} is unreadable: {exc}") from exc


@cache
def maintainx_api() -> MaintainXClient:
    """The MaintainX API client for your own handlers, configured from the environment, made once.

    Uses the same API key secret and base URL as the built-in integrations, whether
    or not any of them is switched on.
    """
    configured = integrations()
    if configured.api is not None:
        return configured.api
    config = configured.config
    api_key = SecretValue(
        config.api_key_secret_arn,
        "apiKey",
        local=config.local_api_key,
        max_age=config.secret_max_age,
        what="MaintainX API key",
    )
    retry = RetryPolicy(budget_seconds=config.http_budget_seconds, max_attempts=config.http_max_attempts)
    return MaintainXClient(
        JsonHttp("MaintainX", retry), api_key.get, base_url=config.api_base_url, app_url=config.app_url
    )


_STATE: dict[str, Any] = {}


def configure(environ: Mapping[str, str]) -> None:
    """Build the integrations that ``environ`` switches on and register their handlers.

    Once per process: the handler registry is process-wide, and a function's
    environment does not change while its container lives.
    """
    if "integrations" in _STATE:
        return
    _STATE["integrations"] = build(IntegrationsConfig.from_env(environ))
    _STATE["registered"] = register(registry, _STATE["integrations"])


def use(configured: Integrations) -> None:
    """Make ``configured`` the integrations ``maintainx_api()`` answers from (tests, scripts)."""
    _STATE["integrations"] = configured


def integrations() -> Integrations:
    """The configured integrations (``configure`` must have run)."""
    configured: Integrations = _STATE["integrations"]
    return configured
