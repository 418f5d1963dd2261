"""IngestFunction: POST /webhooks/maintainx[/{source}] -> verify -> SQS -> 202.

Thin on purpose; the logic is ``mx_webhooks.ingest``. Module load builds the config
and the SQS client once per container and nothing else (cold start matters here).
"""

from __future__ import annotations

from typing import Any

import boto3

from mx_webhooks.clients import ingest_sqs
from mx_webhooks.ingest import IngestConfig, Ingestor
from mx_webhooks.observability import logger

CONFIG = IngestConfig.from_env()
_sqs = boto3.client("sqs", config=ingest_sqs())
INGESTOR = Ingestor(CONFIG, _sqs)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return INGESTOR.handle(event)
