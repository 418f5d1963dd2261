"""The one place Logger and metrics are created; everything imports them from here.

Service name and namespace come from ``POWERTOOLS_SERVICE_NAME`` and
``POWERTOOLS_METRICS_NAMESPACE`` (set in the template's Globals). Kept free of
pydantic and tracing imports: the ingest function's cold start pays for every
import made here.
"""

from __future__ import annotations

import os

from aws_lambda_powertools.logging import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "maintainx-webhooks")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "MaintainXWebhooks")

logger = Logger(service=SERVICE)

# Every custom metric the code emits, with the dimension names it carries besides
# ``service``. The dashboard and the alarms in template.yaml must use exactly these
# (tests/template checks it both ways).
METRIC_CATALOG: dict[str, tuple[str, ...]] = {
    "WebhookReceived": (),
    "WebhookRejected": ("reason",),
    "WebhookEnqueued": ("eventType",),
    "EnqueueFailed": (),
    "EventProcessed": ("eventType",),
    "EventDuplicate": ("eventType",),
    "EventFailed": ("eventType",),
    "EventParked": ("eventType",),
    "EventIgnored": ("eventType",),
    "HandlerDuration": ("handler",),
    "HandlerFailed": ("handler",),
    "ProcessingLag": ("eventType",),
    "AlertPublished": (),
    "ExampleHandled": ("eventType",),
}


def emit(name: str, value: float = 1, unit: MetricUnit = MetricUnit.Count, **dimensions: str) -> None:
    """Write one metric as an EMF line now, with ``service`` and the given dimensions.

    ``single_metric`` flushes immediately and holds no shared state, so it is safe
    from the consumer's worker threads and needs no ``log_metrics`` decorator.
    """
    expected = METRIC_CATALOG[name]
    if tuple(sorted(dimensions)) != tuple(sorted(expected)):
        raise ValueError(f"metric {name} takes dimensions {expected}, got {tuple(dimensions)}")
    with single_metric(
        name=name,
        unit=unit,
        value=value,
        namespace=NAMESPACE,
        default_dimensions={"service": SERVICE, **dimensions},
    ):
        pass
