"""ConsumerFunction: SQS batch -> handlers, exactly once each -> partial batch response.

Thin on purpose; the logic is ``mx_webhooks.consumer``. Module load validates the
config, builds the AWS clients and imports (and configures) the handler modules once
per container.
"""

from __future__ import annotations

import os
from typing import Any

import boto3

from mx_webhooks.clients import consumer_aws
from mx_webhooks.consumer import Consumer, ConsumerConfig
from mx_webhooks.handlers import load_handler_modules
from mx_webhooks.observability import logger
from mx_webhooks.registry import registry
from mx_webhooks.store import EventStore

CONFIG = ConsumerConfig.model_validate(os.environ)
HANDLER_MODULES = load_handler_modules(CONFIG.handler_modules, os.environ)
_aws = consumer_aws(CONFIG.max_workers)
CONSUMER = Consumer(
    CONFIG,
    EventStore(
        boto3.client("dynamodb", config=_aws),
        CONFIG.table_name,
        lease_seconds=CONFIG.lease_seconds,
        ttl_days=CONFIG.event_ttl_days,
    ),
    registry,
    boto3.client("sqs", config=_aws),
    boto3.client("sns", config=_aws) if CONFIG.alert_topic_arn else None,
)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return CONSUMER.process_batch(event, context)
