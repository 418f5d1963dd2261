"""IngestFunction: POST /webhooks/maintainx[/{source}] -> verify -> SQS -> 202.

Thin on purpose; the logic is ``mx_webhooks.ingest``. Module load builds the config
and the SQS client once per container and nothing else (cold start matters here).
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from mx_webhooks.ingest import IngestConfig, Ingestor
from mx_webhooks.observability import logger

CONFIG = IngestConfig.from_env()
# Short timeouts and few retries: MaintainX gives up after ~10 s, and a 503 makes it retry.
# No client-side parameter validation: the one call's parameters are built by our code
# (and SQS validates them anyway); it was ~7% of a warm request (docs/benchmarks.md).
_sqs = boto3.client(
    "sqs",
    config=Config(
        connect_timeout=2,
        read_timeout=3,
        retries={"max_attempts": 2, "mode": "standard"},
        parameter_validation=False,
    ),
)
INGESTOR = Ingestor(CONFIG, _sqs)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return INGESTOR.handle(event)
