"""The one place Logger and metrics are created; everything imports them from here.

Service name and namespace come from ``POWERTOOLS_SERVICE_NAME`` and
``POWERTOOLS_METRICS_NAMESPACE`` (set in the template's Globals). Kept free of
pydantic and tracing imports: the ingest function's cold start pays for every
import made here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import Logger
from aws_lambda_powertools.metrics import MetricUnit

if TYPE_CHECKING:
    from aws_lambda_powertools.tracing import Tracer

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "maintainx-webhooks")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "MaintainXWebhooks")

# What the Powertools logger adds to every line that nobody reads line by line (measured
# 3.3 KB of log per delivery before, docs/benchmarks.md): the log group already names the
# function; its ARN and memory size are constants of the function. Dropped from every
# JSON line we write. ``cold_start`` is kept where true only (the first invocation of a
# container): Lambda's REPORT line, which gave Init Duration, is no longer written.
UNREAD_KEYS = frozenset({"function_arn", "function_memory_size", "function_name"})


# Dropped from INFO lines only (second cut, 2026-11-28: docs/benchmarks.md row 7, README
# "Log volume"): the source ``location``; ``service``, a constant of the log group (an EMF
# document puts it back as its dimension); ``function_request_id``, Lambda's id of the
# invocation, which served to join a line to the START/END/REPORT lines no longer written
# (LoggingConfig SystemLogLevel WARN) and which X-Ray keeps. The correlation id names the
# delivery. WARNING and ERROR lines keep all three, to join a failure to its invocation.
INFO_UNREAD_KEYS = ("location", "service", "function_request_id")


def _trimmed(record: dict[str, Any]) -> dict[str, Any]:
    """A log record without the keys no one reads: ``UNREAD_KEYS``; ``event_id`` where it
    repeats ``correlation_id`` (ingest and consumer lines: the event id is the correlation
    id); ``INFO_UNREAD_KEYS`` on INFO lines (kept on warnings and errors)."""
    trimmed = {k: v for k, v in record.items() if k not in UNREAD_KEYS}
    if trimmed.get("event_id") is not None and trimmed.get("event_id") == trimmed.get("correlation_id"):
        del trimmed["event_id"]
    if trimmed.get("cold_start") is False:
        del trimmed["cold_start"]
    if trimmed.get("level") == "INFO":
        for key in INFO_UNREAD_KEYS:
            trimmed.pop(key, None)
    return trimmed


def _serialize(record: dict[str, Any]) -> str:
    return json.dumps(_trimmed(record), separators=(",", ":"), default=str)


# RFC 3339 timestamps (2026-11-28T17:31:50.102+00:00): with the functions' JSON log format
# (template.yaml LoggingConfig) Lambda reads "timestamp" and "level" from each line and
# only parses RFC 3339; the Powertools default ("2026-11-28 17:31:50,102+0000") is not.
logger = Logger(service=SERVICE, json_serializer=_serialize, use_rfc3339=True, utc=True)

# Lambda's advanced logging controls set AWS_LAMBDA_LOG_LEVEL, which Powertools puts above
# POWERTOOLS_LOG_LEVEL. The template keeps ApplicationLogLevel at INFO or DEBUG (EMF lines
# carry no "level", so Lambda counts them INFO: a WARN filter would drop every metric), so a
# LogLevel of WARNING or ERROR is applied here, on the logger itself.
_wanted = logging.getLevelName(os.environ.get("POWERTOOLS_LOG_LEVEL", "").upper() or "NOTSET")
if isinstance(_wanted, int) and _wanted > logger.log_level:
    logging.getLogger(logger.name).setLevel(_wanted)

# botocore logs whole request and response bodies at DEBUG, Secrets Manager's
# SecretString included. Keep its loggers at INFO even when the root logger is set to
# DEBUG (Lambda's ApplicationLogLevel), so a debugging session cannot leak the
# signing secrets; tests/reliability/test_secrets_not_logged.py checks it.
logging.getLogger("botocore").setLevel(logging.INFO)
# urllib3 logs each request line at DEBUG ("POST /services/T000/B000/secret"): a
# Slack incoming-webhook URL is itself the credential. Same rule.
logging.getLogger("urllib3").setLevel(logging.INFO)

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
    "CircuitState": ("integration",),  # 0 closed, 1 half-open (probing), 2 open: at each change
    "EventDeferred": ("integration",),  # a handler not called: its integration's circuit is open
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
_pending = threading.local()
_UNITS = frozenset(unit.value for unit in MetricUnit)


def emit(name: str, value: float = 1, unit: MetricUnit = MetricUnit.Count, **dimensions: str) -> None:
    """Record one metric with ``service`` and the given dimensions (exactly the catalogued ones).

    Inside ``metrics_batch()`` the metric joins the batch's EMF document; otherwise it
    is written at once as a document of its own.
    """
    expected = METRIC_CATALOG[name]
    if tuple(sorted(dimensions)) != tuple(sorted(expected)):
        raise ValueError(f"metric {name} takes dimensions {expected}, got {tuple(dimensions)}")
    if unit.value not in _UNITS or isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"metric {name}: bad unit {unit!r} or value {value!r}")
    batch: list[tuple[str, float, str, dict[str, str]]] | None = getattr(_pending, "batch", None)
    entry = (name, _compact(value), unit.value, {"service": SERVICE, **dimensions})
    if batch is None:
        batch = getattr(_pending, "sink", None)
    if batch is None:
        _write(_documents([entry]))
    else:
        batch.append(entry)


def _compact(value: float) -> float:
    """1 rather than 1.0, 1127.589 rather than 1127.5890000000001: bytes in every EMF line."""
    value = round(float(value), 3)
    return int(value) if value.is_integer() else value


@contextlib.contextmanager
def _bound(name: str, value: Any) -> Iterator[None]:
    """This thread's ``_pending.<name>`` is ``value`` for the block, then what it was."""
    previous = getattr(_pending, name, None)
    setattr(_pending, name, value)
    try:
        yield
    finally:
        setattr(_pending, name, previous)


@contextlib.contextmanager
def metrics_batch() -> Iterator[None]:
    """Collect this thread's metrics and write them as one EMF line (or a few) at the end.

    Why by hand rather than Powertools ``Metrics``/``SingleMetric``: ``Metrics`` puts
    every metric of a flush under one dimension set, and ``SingleMetric`` writes one
    document per metric, with validation that cost ingest ~70 us per metric (a third
    of its own work; docs/benchmarks.md). An EMF document may carry several
    directives, each with its own dimensions; metrics whose dimension values clash
    (two handlers' durations) go into separate documents.
    """
    previous = getattr(_pending, "batch", None), getattr(_pending, "record", None)
    _pending.batch, _pending.record = [], None
    try:
        yield
    finally:
        batch, record = _pending.batch, _pending.record
        _pending.batch, _pending.record = previous
        sink = getattr(_pending, "sink", None)
        if sink is not None and batch:  # inside invocation_metrics(): written once, at its end
            with _write_lock:
                sink.extend(batch)
            batch = []
        documents = _documents(batch) if batch else []
        if record is not None:
            if documents:
                documents[0] = {**record, **documents[0]}
            else:
                documents = [record]
        if documents:
            _write(documents)


@contextlib.contextmanager
def invocation_metrics() -> Iterator[list[Any]]:
    """The metrics of every ``metrics_batch`` inside it (this thread's, and those of threads
    that ``joined_sink`` it) written as few EMF documents at its end: one per dimension
    value set, each metric's values as an array (EMF takes up to 100 per metric).

    The consumer wraps each invocation in it: each record still gets its own log line,
    but the EMF directives (~450 bytes) are written once per batch instead of once per
    record (docs/benchmarks.md, row 7). What that costs: an invocation killed by its
    timeout loses the metrics of the records it had finished (their log lines are
    written; Lambda's Errors metric counts the timeout; the records come back and count
    as duplicates).
    """
    sink: list[Any] = []
    try:
        with _bound("sink", sink):
            yield sink
    finally:
        if sink:
            _write(_documents(sink))


def current_sink() -> list[Any] | None:
    """This thread's open ``invocation_metrics`` (None outside one), to hand to worker threads."""
    return getattr(_pending, "sink", None)


@contextlib.contextmanager
def joined_sink(sink: list[Any] | None) -> Iterator[None]:
    """In a worker thread: its record batches go to another thread's ``invocation_metrics``."""
    with _bound("sink", sink):
        yield


def current_batch() -> list[Any] | None:
    """This thread's open ``metrics_batch`` (None outside one), to hand to worker threads."""
    return getattr(_pending, "batch", None)


@contextlib.contextmanager
def joined_batch(batch: list[Any] | None) -> Iterator[None]:
    """In a worker thread: this thread's metrics join ``batch``, another thread's open batch
    (a handler run in the consumer's pool reports in its event's line). ``list.append`` is atomic."""
    with _bound("batch", batch):
        yield


def log_with_metrics(message: str, **fields: Any) -> None:
    """An INFO record written in the same line as this batch's metrics.

    Shaped like the Powertools logger's records (its current keys: service, cold
    start, request id, correlation id...; level, message, timestamp) plus ``fields``;
    CloudWatch Logs Insights queries it like any other log line, and EMF ignores the
    keys no directive names. Ingest logs every accepted delivery this way: a separate
    logger line cost a quarter of its warm request time (docs/benchmarks.md).
    Outside a batch it is a plain ``logger.info``.
    """
    if getattr(_pending, "batch", None) is None:
        logger.info(message, extra=fields)
        return
    if logger.log_level > logging.INFO:
        return
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}+00:00"
    # the logger's current keys minus its %-format placeholders (level, timestamp, location)
    keys = {k: v for k, v in logger.get_current_keys().items() if not (isinstance(v, str) and "%(" in v)}
    record = {**keys, "level": "INFO", "message": message, "timestamp": stamp, **fields}
    _pending.record = _trimmed({k: v for k, v in record.items() if v is not None})
    _also_to_other_handlers(message, fields)


def _also_to_other_handlers(message: str, fields: dict[str, Any]) -> None:
    """Hand the record to handlers besides Powertools' own (the local stack's tap), as logging would."""
    base = logging.getLogger(logger.name)
    others = [h for h in base.handlers if h is not logger.registered_handler]
    if others:
        record = base.makeRecord(base.name, logging.INFO, __file__, 0, message, (), None, extra=fields)
        for handler in others:
            if record.levelno >= handler.level:
                handler.handle(record)


EMF_MAX_VALUES = 100  # values one metric may carry in one EMF document


def _documents(entries: list[tuple[str, float, str, dict[str, str]]]) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    timestamp = int(time.time() * 1000)
    for name, value, unit, dims in entries:
        for document in documents:
            root = document
            if any(root.get(k, v) != v for k, v in dims.items()):
                continue  # a dimension of the same name has another value here
            if name in root and (root["_dims"][name] != tuple(dims) or len(root[name]) >= EMF_MAX_VALUES):
                continue
            break
        else:
            document = {"_aws": {"Timestamp": timestamp, "CloudWatchMetrics": []}, "_dims": {}}
            documents.append(document)
        document.update(dims)
        if name in document:
            document[name].append(value)
            continue
        document[name] = [value]
        document["_dims"][name] = tuple(dims)
        directives = document["_aws"]["CloudWatchMetrics"]
        same = [d for d in directives if d["Dimensions"] == [list(dims)]]
        if same:  # one directive per dimension set: its metrics listed together (smaller lines)
            same[0]["Metrics"].append({"Name": name, "Unit": unit})
        else:
            directives.append(
                {"Namespace": NAMESPACE, "Dimensions": [list(dims)], "Metrics": [{"Name": name, "Unit": unit}]}
            )
    for document in documents:
        del document["_dims"]
    return documents


def _write(documents: list[dict[str, Any]]) -> None:
    """One ``write`` call under a lock: worker threads must not interleave lines."""
    text = "".join(json.dumps(d, separators=(",", ":")) + "\n" for d in documents)
    with _write_lock:
        sys.stdout.write(text)
