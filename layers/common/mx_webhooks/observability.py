"""The one place Logger and metrics are created; everything imports them from here.

Service name and namespace come from ``POWERTOOLS_SERVICE_NAME`` and
``POWERTOOLS_METRICS_NAMESPACE`` (set in the template's Globals). Kept free of
pydantic and tracing imports: the ingest function's cold start pays for every
import made here.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import threading
from typing import TYPE_CHECKING

from aws_lambda_powertools.logging import Logger
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.base import SingleMetric

if TYPE_CHECKING:
    from aws_lambda_powertools.tracing import Tracer

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "maintainx-webhooks")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "MaintainXWebhooks")

logger = Logger(service=SERVICE)

# botocore logs whole request and response bodies at DEBUG, Secrets Manager's
# SecretString included. Keep its loggers at INFO even when the root logger is set to
# DEBUG (Lambda's ApplicationLogLevel), so a debugging session cannot leak the
# signing secrets; tests/reliability/test_secrets_not_logged.py checks it.
logging.getLogger("botocore").setLevel(logging.INFO)

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
    "EventRetried": (),
    "DLQRedriven": (),
    "ExampleHandled": ("eventType",),
}


@functools.cache
def get_tracer() -> Tracer:
    """The Powertools Tracer, created on first use.

    Ingest never calls this: building a Tracer loads the X-Ray SDK and patches boto3,
    which measured +0.3-0.45 s on ingest's import (median of 7 fresh processes each;
    README "Operating it"). Lambda's active tracing still records ingest's segment.
    """
    from aws_lambda_powertools.tracing import Tracer

    return Tracer(service=SERVICE)


_write_lock = threading.Lock()


def emit(name: str, value: float = 1, unit: MetricUnit = MetricUnit.Count, **dimensions: str) -> None:
    """Write one metric as an EMF line now, with ``service`` and the given dimensions.

    Powertools builds and validates the EMF document (``SingleMetric``); we write it
    ourselves in one locked call instead of ``single_metric``'s ``print``, because the
    consumer emits from worker threads and ``print`` writes the newline separately,
    which interleaves lines and breaks CloudWatch's EMF parsing.
    """
    expected = METRIC_CATALOG[name]
    if tuple(sorted(dimensions)) != tuple(sorted(expected)):
        raise ValueError(f"metric {name} takes dimensions {expected}, got {tuple(dimensions)}")
    metric = SingleMetric(namespace=NAMESPACE)
    metric.add_metric(name=name, unit=unit, value=value)
    metric.add_dimension(name="service", value=SERVICE)
    for dim_name, dim_value in dimensions.items():
        metric.add_dimension(name=dim_name, value=dim_value)
    line = json.dumps(metric.serialize_metric_set(), separators=(",", ":")) + "\n"
    with _write_lock:
        sys.stdout.write(line)
