"""The cost model of ``devtools.bench``: dollars per million deliveries, by service.

Inputs: durations measured in the same run, memory sizes and batch size from
template.yaml, and the us-east-1 list prices below. The prices are written into
docs/benchmarks.md with the date they were read, so a reader can redo the sums.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# us-east-1 list prices (USD) from the AWS pricing pages, as read on PRICES_DATE
# (DynamoDB on-demand after the 2024-11-01 price cut). Free tiers are left out.
PRICES_DATE = "2025-06 (AWS pricing pages; not fetched by this run)"
PRICES: dict[str, tuple[float, str]] = {
    "http_api_request": (
        1.00 / 1e6,
        "API Gateway HTTP API: $1.00 per million requests (first 300 M/month, 512 KB units)",
    ),
    "lambda_request": (0.20 / 1e6, "Lambda: $0.20 per million requests"),
    "lambda_gb_s": (0.0000166667, "Lambda x86_64: $0.0000166667 per GB-second, billed per 1 ms"),
    "sqs_request": (0.40 / 1e6, "SQS standard: $0.40 per million requests (64 KB units)"),
    "dynamodb_wru": (0.625 / 1e6, "DynamoDB on-demand: $0.625 per million write request units (1 KB each)"),
    "dynamodb_rru": (0.125 / 1e6, "DynamoDB on-demand: $0.125 per million read request units (4 KB each)"),
    "logs_gb": (0.50, "CloudWatch Logs (Standard): $0.50 per GB ingested"),
    "xray_trace": (5.00 / 1e6, "X-Ray: $5.00 per million traces recorded"),
}

# Lambda gives a function CPU in proportion to its memory: 1,769 MB is one full vCPU.
FULL_VCPU_MB = 1769
# Assumed in-region round trip of one SQS / DynamoDB call from Lambda (ms).
AWS_RTT_MS = 8.0
# X-Ray default sampling: 1 request/s reservoir, then 5 %; at volume the 5 % dominates.
XRAY_SAMPLED = 0.05
# Traces recorded per delivery: ingest's invocation, and the consumer's invocation, which
# handles a batch (one trace per invocation, whatever its batch size; this model counted
# one per delivery before 2026-11-28, i.e. 2 instead of 1 + 1/batch).
# What Lambda logs besides our own lines (bytes per invocation) in its text format: START,
# END and REPORT. With LoggingConfig SystemLogLevel WARN (template.yaml) none of them is
# written for an invocation that succeeds (platform_log_bytes() reads the template).
LAMBDA_PLATFORM_LOG_BYTES = 330
# CloudWatch Logs counts an event as its message's UTF-8 bytes plus 26 (PutLogEvents' batch
# size rule). Its pricing page does not say the 26 are billed; counted anyway, to err high.
LOG_EVENT_OVERHEAD_BYTES = 26
# Values the HTTP API puts in its access-log line for one delivery (widest usual values:
# an IPv4 address of 15 characters, a 4-digit latency), to size the template's format.
ACCESS_LOG_SAMPLE = {
    "$context.requestId": "Jx1YxjXXIAMEVWw=",
    "$context.identity.sourceIp": "203.000.113.195",
    "$context.routeKey": "POST /webhooks/maintainx/{source}",
    "$context.status": "202",
    "$context.responseLatency": "1000",
    "$context.integrationErrorMessage": "-",
}


def template() -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    return dict(yaml_parse((ROOT / "template.yaml").read_text()))


def table_definition(logical_id: str = "EventsTable") -> dict[str, Any]:
    """CreateTable arguments for a table, from its definition in template.yaml."""
    props = template()["Resources"][logical_id]["Properties"]
    return {
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": "PAY_PER_REQUEST",
        **({"GlobalSecondaryIndexes": props["GlobalSecondaryIndexes"]} if props.get("GlobalSecondaryIndexes") else {}),
    }


def configured() -> dict[str, int]:
    """Memory sizes and the consumer's batch size, as deployed by default."""
    doc = template()
    resources, params = doc["Resources"], doc.get("Parameters", {})
    glob = doc.get("Globals", {}).get("Function", {})

    def memory(name: str) -> int:
        return int(resources[name]["Properties"].get("MemorySize", glob.get("MemorySize", 128)))

    result = {
        "ingest_mb": memory("IngestFunction"),
        "consumer_mb": memory("ConsumerFunction"),
        "batch_size": int(params.get("ConsumerBatchSize", {}).get("Default", 10)),
    }
    if "AdminFunction" in resources:
        result["admin_mb"] = memory("AdminFunction")
    return result


def platform_log_bytes(function: str) -> int:
    """START/END/REPORT bytes per successful invocation of ``function`` as template.yaml configures it."""
    logging_config = template()["Resources"][function]["Properties"].get("LoggingConfig", {})
    if logging_config.get("LogFormat") == "JSON" and logging_config.get("SystemLogLevel") == "WARN":
        return 0
    return LAMBDA_PLATFORM_LOG_BYTES + 3 * LOG_EVENT_OVERHEAD_BYTES


def access_log_bytes() -> int:
    """The webhook API's access-log line for one delivery: its format in template.yaml,
    filled with ``ACCESS_LOG_SAMPLE`` (an unknown variable fails here, not silently)."""
    line = template()["Resources"]["WebhookApi"]["Properties"]["AccessLogSettings"]["Format"]
    for variable in sorted(ACCESS_LOG_SAMPLE, key=len, reverse=True):
        line = line.replace(variable, ACCESS_LOG_SAMPLE[variable])
    if "$context" in line:
        raise ValueError(f"access-log format has a variable ACCESS_LOG_SAMPLE lacks: {line}")
    return len(line.encode()) + LOG_EVENT_OVERHEAD_BYTES


def log_bytes_by_source(m: Measured, cfg: dict[str, int]) -> dict[str, float]:
    """Bytes ingested per delivery, by where they come from."""
    batch = cfg["batch_size"]
    overhead = LOG_EVENT_OVERHEAD_BYTES * m.log_lines
    return {
        "ingest lines": m.ingest_log_bytes,
        "consumer lines": m.consumer_log_bytes,
        "26 B per line": overhead,
        "Lambda START/END/REPORT": platform_log_bytes("IngestFunction")
        + platform_log_bytes("ConsumerFunction") / batch,
        "API access log": access_log_bytes(),
    }


@dataclass
class Measured:
    """What the bench measured, per delivery unless it says otherwise."""

    ingest_cpu_ms: float  # warm ingest CPU per request on this machine (one core)
    consumer_cpu_ms_per_batch: float  # consumer CPU per batch, AWS answers stubbed
    consumer_serial_calls_per_batch: float  # AWS calls on the critical path of one batch
    dynamodb_writes: float  # UpdateItem calls per new event
    item_kb: float  # the event item's size
    table_wru: float  # base-table write units per new event (devtools/bench/capacity.py)
    index_wru: float  # GSI write units per new event (from the index definitions in template.yaml)
    ingest_log_bytes: float  # our log + EMF lines per request
    consumer_log_bytes: float  # our log + EMF lines per event
    body_bytes: int
    log_lines: float = 0  # our log lines per delivery (ingest + consumer), for the per-event overhead


def cost_per_million(m: Measured, cfg: dict[str, int]) -> tuple[list[tuple[str, float, str]], dict[str, float]]:
    """(service, $ per million deliveries, how) rows, and the durations used."""
    million = 1e6
    batch = cfg["batch_size"]
    ingest_ms = m.ingest_cpu_ms * FULL_VCPU_MB / min(cfg["ingest_mb"], FULL_VCPU_MB) + AWS_RTT_MS
    consumer_ms = (
        m.consumer_cpu_ms_per_batch * FULL_VCPU_MB / min(cfg["consumer_mb"], FULL_VCPU_MB)
        + m.consumer_serial_calls_per_batch * AWS_RTT_MS
    )
    ingest_gb_s = math.ceil(ingest_ms) / 1000 * cfg["ingest_mb"] / 1024
    consumer_gb_s = math.ceil(consumer_ms) / 1000 * cfg["consumer_mb"] / 1024 / batch
    sqs_units = math.ceil(m.body_bytes / 65536)
    sqs_requests = sqs_units * (1 + 1 / batch + 1 / batch)  # send + (receive + delete-batch) per batch
    traces = 1 + 1 / batch
    log_gb = sum(log_bytes_by_source(m, cfg).values()) / 1024**3
    p = {k: v[0] for k, v in PRICES.items()}
    rows = [
        ("API Gateway HTTP API", million * p["http_api_request"], "1 request per delivery"),
        (
            "Lambda ingest",
            million * (p["lambda_request"] + ingest_gb_s * p["lambda_gb_s"]),
            f"1 invocation, {math.ceil(ingest_ms)} ms x {cfg['ingest_mb']} MB",
        ),
        (
            "Lambda consumer",
            million * (p["lambda_request"] / batch + consumer_gb_s * p["lambda_gb_s"]),
            f"1/{batch} invocation, {math.ceil(consumer_ms)} ms per batch x {cfg['consumer_mb']} MB",
        ),
        (
            "SQS",
            million * sqs_requests * p["sqs_request"],
            f"{sqs_requests:.2f} requests (send, receive/{batch}, delete/{batch})",
        ),
        (
            "DynamoDB",
            million * (m.table_wru + m.index_wru) * p["dynamodb_wru"],
            f"{m.dynamodb_writes:.0f} writes = {m.table_wru:g} table WRU (item {m.item_kb:.1f} KB) "
            f"+ {m.index_wru:g} index WRU (GSIs in template.yaml), no reads",
        ),
        ("CloudWatch Logs", million * log_gb * p["logs_gb"], f"{log_gb * 1024**3:.0f} bytes per delivery ingested"),
        (
            "X-Ray (Tracing: Active)",
            million * traces * XRAY_SAMPLED * p["xray_trace"],
            f"{traces:g} traces (ingest, consumer per batch), {XRAY_SAMPLED:.0%} sampled",
        ),
    ]
    return rows, {"ingest_ms": ingest_ms, "consumer_ms": consumer_ms}
