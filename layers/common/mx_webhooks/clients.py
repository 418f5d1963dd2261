"""Named botocore client profiles: every function's AWS client settings, in one place.

Each profile says why it is what it is; the entry modules (``functions/*``) and the
integrations build their clients from these and nothing else.
"""

from __future__ import annotations

from botocore.config import Config


def ingest_sqs() -> Config:
    """Ingest's one SQS client: short timeouts and few retries, because MaintainX gives up
    after ~10 s and a 503 makes it retry. No client-side parameter validation: the one
    call's parameters are built by our code (and SQS validates them anyway); it was ~7% of
    a warm request (docs/benchmarks.md)."""
    return Config(
        connect_timeout=2,
        read_timeout=3,
        retries={"max_attempts": 2, "mode": "standard"},
        parameter_validation=False,
    )


def consumer_aws(max_workers: int) -> Config:
    """The consumer's DynamoDB, SQS and SNS clients.

    Adaptive retries absorb throttling (and retry a write whose reply was lost: every
    conditional write is idempotent by token); one pooled connection per worker thread;
    no client-side parameter validation: every request is built here, the service
    validates it anyway, and validating nested DynamoDB values cost ~10% of the
    consumer's CPU per event (docs/benchmarks.md).
    """
    return Config(
        retries={"max_attempts": 5, "mode": "adaptive"},
        max_pool_connections=max(10, max_workers),
        parameter_validation=False,
    )


def admin_aws() -> Config:
    """The admin function's clients: an operator is waiting (API Gateway's 30 s limit), so
    a few standard retries, and a pool for the bulk retry's eight threads."""
    return Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=10)


def integrations_aws() -> Config:
    """The integrations' DynamoDB (status history, work-order intents) and EventBridge
    clients: adaptive retries absorb throttling during bursts of events."""
    return Config(retries={"max_attempts": 5, "mode": "adaptive"})
