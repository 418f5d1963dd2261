"""What the local stack prints: the banner, then one line per webhook request and per consumed record."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, TextIO

from devtools.local_stack.http_front import Exchange
from devtools.local_stack.logtap import LogTap
from devtools.local_stack.resources import REGION
from devtools.local_stack.sqs_source import Delivery

if TYPE_CHECKING:
    from devtools.local_stack.stack import LocalStack


def park_limit(environment: Mapping[str, str]) -> int | None:
    """The attempt at which the consumer parks an event: ``min(RETRY_ATTEMPTS, MAX_RECEIVE_COUNT)``."""
    limits = [int(environment[k]) for k in ("RETRY_ATTEMPTS", "MAX_RECEIVE_COUNT") if environment.get(k)]
    return min(limits) if limits else None


class Console:
    """Timestamped lines on ``out``, one per HTTP exchange and per consumed record."""

    def __init__(self, out: TextIO, tap: LogTap) -> None:
        self.out = out
        self.tap = tap
        self._lock = threading.Lock()
        self.attempt_limits: dict[str, int] = {}  # queue ARN -> where its consumer parks an event
        self.redrive_limits: dict[str, int] = {}  # queue ARN -> the queue's own maxReceiveCount

    def line(self, text: str) -> None:
        stamp = datetime.now().strftime("%H:%M:%S.%f")[:-3]
        with self._lock:
            self.out.write(f"{stamp}  {text}\n")
            self.out.flush()

    def print_exchange(self, exchange: Exchange) -> None:
        seen = self.tap.take_thread()
        target = f"{exchange.method} {exchange.path}"
        if exchange.status < 300:
            try:
                answer = json.loads(exchange.response_body)
            except ValueError:
                answer = {}
            event_id = answer.get("eventId", "") if isinstance(answer, dict) else ""
            event_type = next((str(f["event_type"]) for f in seen if f.get("event_type")), "")
            detail = f"{event_id}  {event_type}".strip()
        elif exchange.status == 429:
            detail = "throttled (the API's stage throttle; the function was not invoked)"
        else:
            detail = next((str(f["reason"]) for f in seen if f.get("reason")), "")
        self.line(f"http      {exchange.status}  {target}  {detail}  {exchange.duration_ms:.0f} ms")

    def print_circuit(self, integration: str, state: str, why: str) -> None:
        """A circuit breaker's transition (opened, probing, closed), as it happens."""
        self.line(f"breaker   {state:<9}  {integration}  {why[:160]}")

    def print_batch(self, queue_arn: str, batch: list[Delivery]) -> None:
        limit = self.attempt_limits.get(queue_arn) or self.redrive_limits.get(queue_arn)
        redrive = self.redrive_limits.get(queue_arn)
        for delivery in batch:
            event_id = delivery.attributes.get("eventId", delivery.message_id)
            seen = self.tap.take_outcome(event_id) or {}
            outcome = str(seen.get("outcome") or ("ok" if delivery.deleted else "retry"))
            event_type = seen.get("event_type") or delivery.attributes.get("eventType", "")
            ms = seen.get("duration_ms", delivery.duration_ms)
            # The event's own count (as `show` says it) when the consumer claimed it; a retried
            # event's message starts its receive count again at 1.
            attempt = f"attempt {seen.get('attempts') or delivery.receive_count}" + (f"/{limit}" if limit else "")
            text = f"consumer  {outcome:<9}  {event_id}  {event_type}  {float(ms):.0f} ms  {attempt}"
            if not delivery.deleted and redrive and delivery.receive_count >= redrive:
                text += "  -> the queue moves it to the DLQ"
            error = seen.get("error") or delivery.error
            if error:
                text += f"  ({str(error)[:160]})"
            self.line(text)


def banner(stack: LocalStack, overrides: Mapping[str, str]) -> str:
    """The lines ``make run`` prints once the stack is up."""
    webhook = stack.info["webhook_url"]
    port = stack.url.rsplit(":", 1)[1]
    make_send = "make send" if port == "3000" else f"make send PORT={port}"
    outputs = stack.outputs
    throttles = ", ".join(
        f"{api} {t.default[0]:g}/s burst {t.default[1]:g}" if t.default else f"{api} per route"
        for api, t in stack.throttles.items()
    )
    queues = [f"{k}={v}" for k, v in outputs.items() if k.endswith("Url") and ("Queue" in k or "DLQ" in k)]
    tables = [f"{k}={v}" for k, v in outputs.items() if k.endswith("TableName")]
    given = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "none (the template's defaults)"
    lines = [
        f"Local stack ready in {stack.ready_seconds:.1f} s (moto at {stack.endpoint_url}, region {REGION}).",
        "",
        f"  Webhook URL     {webhook}   (or {webhook}/<source>)",
        f"  Signing secret  {stack.secret}",
        f"  Send an event   {make_send}   (or: python -m devtools.send --url "
        f"{webhook} --secret {stack.secret} --type workorder.created)",
        "",
        "  Routes (IAM authorisation is not checked locally):",
        *(f"    {route}" for route in stack.info["routes"]),
        "  Throttles       " + (throttles or "none") + " (429 past them)",
        "  Queues          " + (", ".join(queues) or "none"),
        "  Tables          " + (", ".join(tables) or "none"),
        "  Alerts topic    " + str(outputs.get("AlertsTopicArn", "none")) + "  (its alerts print below as alert lines)",
        "  --param         " + given,
        "  HandlerModules  " + stack.parameters.get("HandlerModules", "(not a template parameter)"),
        "  AWS CLI/boto3   any credentials, --endpoint-url " + stack.endpoint_url,
    ]
    if stack.skipped:
        lines.append(f"  Not created locally: {', '.join(stack.skipped)}")
    lines += ["", "Ctrl-C stops everything. One line per webhook request and per consumed record:", ""]
    return "\n".join(lines)
