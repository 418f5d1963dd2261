"""Consumer: run each queued event's handlers, record each one's success, retry, park.

Per SQS batch (``ReportBatchItemFailures``):

1. Parse every record into a ``WebhookEvent``. An unparseable or invalid one is a
   permanent error: recorded PARKED with its reason (under a key of its own), sent to
   the DLQ now, acked.
2. Group records by entity (work order, work request); each group runs in
   ``occurredAt`` order, groups run concurrently. When a record of a group fails,
   the later records of that group are held: recorded WAITING (``waitingFor``), logged,
   and returned to the queue on the backoff schedule, so within a batch one entity's
   events are never applied out of order. Across batches there is no such order; a
   ``latest_only`` handler is protected by its per-entity watermark instead.
3. Per event: claim it in EventsTable (one conditional write), run the handlers
   that have not yet succeeded, side by side in a thread pool (each with what is left
   of the invocation's time), record each one's outcome (one write at the end, plus a
   checkpoint for a non-idempotent handler that succeeded while another still ran).
4. The event's status follows from its handlers: COMPLETED when every one succeeded or
   was skipped (stale); FAILED while some will be retried; PARKED (DLQ + record + alert)
   once some are parked and none is left to retry; WAITING when the only ones left were
   deferred by an open circuit breaker (``mx_webhooks.breaker``): not called, not counted
   as an attempt.
5. A failed record goes back through ``batchItemFailures``; its visibility timeout
   is stretched exponentially by its receive count. When the retry schedule is used up
   the consumer parks it itself; the queue's redrive is only a backstop.

Why not Powertools' ``BatchProcessor``: it runs records one after another (or in
asyncio, which boto3 cannot use), and cannot hold a group back when an earlier event
of the same entity failed. We keep its response contract and use its SQS data
classes; the concurrency is a thread pool, since every step is I/O on boto3 clients
(which are thread-safe).
"""

from __future__ import annotations

import contextvars
import math
import random
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, Field

from mx_webhooks import breaker, normalize
from mx_webhooks.alerts import publish_alert
from mx_webhooks.events import InvalidEvent, WebhookEvent, parse_event
from mx_webhooks.handlers import DEFAULT_MODULES
from mx_webhooks.observability import (
    current_batch,
    current_sink,
    emit,
    invocation_metrics,
    joined_batch,
    joined_sink,
    log_with_metrics,
    logger,
    metrics_batch,
)
from mx_webhooks.queues import EventQueues
from mx_webhooks.registry import Deferred, Handler, PermanentError, Registry
from mx_webhooks.store import (
    COMPLETED,
    FAILED,
    PARKED,
    WAITING,
    Claim,
    ClaimKind,
    EventStore,
    HandlerResult,
    HandlerStatus,
    LeaseLost,
    iso,
    new_token,
)

MAX_VISIBILITY_SECONDS = 43_200  # SQS limit: 12 hours
NO_RETRY_CAN_FIX = "parked in the DLQ: no retry can fix it"
OUT_OF_RETRIES = "failed its last allowed attempt; parked in the DLQ"
BUSY_MARGIN_SECONDS = 5  # a "busy" record comes back at most this long after the holder's lease ends
BUSY_RECHECK_SECONDS = 10  # ...and no later than this: the holder has most likely finished by then


class ConsumerConfig(BaseModel):
    """The consumer's environment, validated at cold start."""

    table_name: str = Field(alias="TABLE_NAME")
    queue_url: str = Field(alias="QUEUE_URL")
    dlq_url: str = Field(alias="DLQ_URL")
    alert_topic_arn: str = Field(default="", alias="ALERT_TOPIC_ARN")
    # The queue's redrive count: only a backstop for a consumer that crashes; the consumer
    # itself parks an event when its retry schedule (``retry_attempts``) is used up.
    max_receive_count: int = Field(default=140, ge=1, le=1000, alias="MAX_RECEIVE_COUNT")
    # Attempts before parking. With base 30 s and cap 900 s: 30, 60, ... 480 s, then every
    # 15 minutes, so 125 attempts ride out a downstream outage of at least 24 h even with
    # the most jitter (the brief's own profile: 5 attempts, base 1 s, no jitter).
    retry_attempts: int = Field(default=125, ge=1, le=1000, alias="RETRY_ATTEMPTS")
    backoff_base_seconds: float = Field(default=30, ge=0, alias="BACKOFF_BASE_SECONDS")
    backoff_cap_seconds: float = Field(default=900, ge=0, le=MAX_VISIBILITY_SECONDS, alias="BACKOFF_CAP_SECONDS")
    backoff_jitter: float = Field(default=0.2, ge=0, le=1, alias="BACKOFF_JITTER")
    # How long a claim is held before another invocation may take it over: above the
    # consumer's timeout (60 s in the template), so a live holder is never taken over.
    lease_seconds: int = Field(default=90, ge=1, alias="LEASE_SECONDS")
    event_ttl_days: int = Field(default=30, ge=1, alias="EVENT_TTL_DAYS")
    max_workers: int = Field(default=10, ge=1, le=64, alias="CONSUMER_MAX_WORKERS")
    time_margin_ms: int = Field(default=3000, ge=0, alias="HANDLER_TIME_MARGIN_MS")
    handler_modules: str = Field(default=DEFAULT_MODULES, alias="HANDLER_MODULES")
    # The circuit breaker of each integration (``mx_webhooks.breaker``): failed calls in a
    # row that open it, its first cool-down, and the longest one (it doubles per failed probe).
    breaker_failure_threshold: int = Field(default=3, ge=1, le=100, alias="BREAKER_FAILURE_THRESHOLD")
    breaker_cool_down_seconds: float = Field(default=60, gt=0, alias="BREAKER_COOL_DOWN_SECONDS")
    breaker_max_cool_down_seconds: float = Field(
        default=3600, gt=0, le=MAX_VISIBILITY_SECONDS, alias="BREAKER_MAX_COOL_DOWN_SECONDS"
    )
    # Deferred tries do not count towards ``retry_attempts``; a message deferred this long
    # (by its SentTimestamp) is parked anyway, well before the queue's 4-day retention drops it.
    defer_limit_hours: float = Field(default=72, gt=0, le=96, alias="DEFER_LIMIT_HOURS")

    model_config = {"populate_by_name": True, "extra": "ignore"}

    @property
    def last_attempt(self) -> int:
        """The receive on which a still-failing event is parked by the consumer."""
        return min(self.retry_attempts, self.max_receive_count)

    @property
    def breaker_settings(self) -> breaker.BreakerSettings:
        return breaker.BreakerSettings(
            failure_threshold=self.breaker_failure_threshold,
            cool_down_seconds=self.breaker_cool_down_seconds,
            max_cool_down_seconds=max(self.breaker_cool_down_seconds, self.breaker_max_cool_down_seconds),
        )


def client_config(config: ConsumerConfig) -> Any:
    """botocore settings for the consumer's own AWS clients (``mx_webhooks.clients.consumer_aws``)."""
    from mx_webhooks.clients import consumer_aws

    return consumer_aws(config.max_workers)


def backoff_seconds(
    receive_count: int, base: float, cap: float, jitter: float, rng: Callable[[], float] = random.random
) -> int:
    """Visibility timeout for the next try: ``min(cap, base * 2**(n-1))``, minus up to ``jitter`` of it.

    Jitter spreads retries of a burst that failed together (a downstream outage)
    so they do not all come back in the same second.
    """
    delay = min(cap, base * (2 ** max(0, receive_count - 1)))
    delay -= delay * jitter * rng()
    return int(max(0, min(MAX_VISIBILITY_SECONDS, round(delay))))


class Result(StrEnum):
    """What happened to one record (the ``outcome`` of its log line)."""

    PROCESSED = "processed"
    DUPLICATE = "duplicate"  # finished before: acknowledged
    BUSY = "busy"  # another worker holds it: back to the queue until its lease ends
    IGNORED = "ignored"  # no handler subscribed
    FAILED = "failed"  # back to the queue with backoff
    PARKED = "parked"  # in the DLQ now, recorded
    HELD = "held"  # behind a failed event of the same entity: back to the queue
    DEFERRED = "deferred"  # its only handlers left wait for an open circuit: back, not counted


class HeldClaim:
    """The claim one attempt holds on its event, from before the claim write to the finish.

    Open from the start, because the claim write may be applied with its reply lost: the
    error path then releases it by token. Closed when the claim was refused or the
    finish written; an error after that must not release anything.
    """

    def __init__(self, store: EventStore, event_id: str) -> None:
        self.store = store
        self.event_id = event_id
        self.token = new_token()
        self.results: dict[str, HandlerResult] = {}  # handler results not yet written
        self.written: dict[str, HandlerResult] = {}  # checkpointed during this attempt
        self.open = True
        self.lock = threading.Lock()  # handlers of one event report from several threads
        self.sealed = False  # the attempt is being finished: a handler still running is too late

    def record(self, handler: str, result: HandlerResult) -> bool:
        """Keep one handler's result for the finish; False when it came after the deadline."""
        with self.lock:
            if self.sealed:
                return False
            self.results[handler] = result
            return True

    def seal(self) -> dict[str, HandlerResult]:
        with self.lock:
            self.sealed = True
            return dict(self.results)

    def close(self) -> None:
        self.open = False

    def checkpoint(self, handler: str) -> None:
        """Write one handler's success now, so a crash after it does not rerun it."""
        # Dropped from the pending results only once written: if the write fails, the
        # release that follows still records this handler's success.
        with self.lock:
            result = self.results[handler]
        self.store.checkpoint(self.event_id, self.token, handler, result)
        with self.lock:  # unless the deadline replaced it meanwhile (then the finish records that)
            if self.results.get(handler) is result:
                self.written[handler] = self.results.pop(handler)

    def finish(
        self,
        *,
        status: str,
        error: str | None = None,
        parked: bool = False,
        waiting_for: str | None = None,
        deferred: bool = False,
    ) -> None:
        self.store.finish(
            self.event_id,
            self.token,
            status=status,
            results=self.results,
            error=error,
            parked=parked,
            waiting_for=waiting_for,
            deferred=deferred,
        )
        self.close()

    def release(self, error: str) -> None:
        try:
            self.store.release(self.event_id, self.token, results=self.results, error=error)
        finally:
            self.close()


@dataclass(slots=True)
class Outcome:
    """What happened to one record."""

    message_id: str
    event_id: str
    event_type: str
    result: Result
    error: str | None = None
    duration_ms: int = 0
    not_before: int = 0  # the retry must not come back sooner (seconds): a claim is still held
    attempts: int | None = None  # the event's claims over its life (as ``show`` counts), when claimed

    @property
    def retry(self) -> bool:
        """Goes back to the queue. "busy" too: another worker holds the event, which is not
        finished; deleting this copy could delete the one its holder needs to retry."""
        return self.result in (Result.FAILED, Result.HELD, Result.BUSY, Result.DEFERRED)


@dataclass(slots=True)
class _Item:
    record: dict[str, Any]
    event: WebhookEvent | None
    invalid: str | None

    @property
    def receive_count(self) -> int:
        """SQS's count; a record without a usable one counts as a first receive, not a crash."""
        raw = (self.record.get("attributes") or {}).get("ApproximateReceiveCount", "1")
        try:
            return max(1, int(raw))
        except (TypeError, ValueError):
            return 1

    @property
    def message_id(self) -> str:
        return str(self.record.get("messageId", ""))

    def age_seconds(self, now: float) -> float:
        """Since the message was sent (SQS's SentTimestamp); 0 when unknown."""
        sent = str((self.record.get("attributes") or {}).get("SentTimestamp") or "")
        return max(0.0, now - int(sent) / 1000) if sent.isdigit() else 0.0


def _attribute(record: dict[str, Any], name: str) -> str | None:
    attribute = (record.get("messageAttributes") or {}).get(name) or {}
    value = attribute.get("stringValue", attribute.get("StringValue"))
    return str(value) if value is not None else None


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Consumer:
    def __init__(
        self,
        config: ConsumerConfig,
        store: EventStore,
        registry: Registry,
        sqs_client: Any,
        sns_client: Any | None,
    ) -> None:
        self.config = config
        self.store = store
        self.registry = registry
        self.sqs = sqs_client
        self.queues = EventQueues(sqs_client, config.queue_url, config.dlq_url)
        self.sns = sns_client
        # Kept for the container's life: starting ten threads per batch cost more CPU
        # than the batch's own Python work (docs/benchmarks.md, row 4).
        self._pool = ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="consumer")
        # The handlers of one event, side by side. Its own pool: a record's thread waits on
        # these, and sharing one pool could leave them queued behind the waiting records.
        self._handler_pool: Any = ThreadPoolExecutor(
            max_workers=min(64, config.max_workers * 4), thread_name_prefix="handler"
        )
        breaker.configure(config.breaker_settings, recorder=self.record_breaker)

    def record_breaker(self, transition: breaker.Transition) -> None:
        """A breaker's transition, recorded for operators (``GET /admin/integrations``); one
        conditional write per transition. A failure is logged by the breaker, never raised."""
        self.store.record_breaker(
            transition.integration,
            transition.state.name,
            at=transition.at,
            open_until=transition.open_until,
            reason=transition.reason,
            retry_after=transition.retry_after,
        )

    # -- batch -------------------------------------------------------------------------------
    def process_batch(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        """One SQS batch: a log line per record, the batch's metrics in one EMF write at the end."""
        with invocation_metrics():
            return self._process_batch(event, context)

    def _process_batch(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        items = [self._parse(record) for record in event.get("Records") or []]
        groups: dict[str, list[_Item]] = defaultdict(list)
        for item in items:
            key = item.event.entity_key if item.event else f"invalid:{item.message_id}"
            groups[key].append(item)
        for group in groups.values():
            group.sort(key=lambda i: _sort_time(i.event))

        outcomes: list[Outcome] = []
        workers = min(self.config.max_workers, len(groups)) or 1
        if workers == 1:
            for group in groups.values():
                outcomes.extend(self._run_group(group, context))
        else:
            sink = current_sink()

            def run_group(group: list[_Item]) -> list[Outcome]:
                with joined_sink(sink):
                    return self._run_group(group, context)

            for result in self._pool.map(run_group, list(groups.values())):
                outcomes.extend(result)
        failures = [{"itemIdentifier": o.message_id} for o in outcomes if o.retry]
        return {"batchItemFailures": failures}

    def _parse(self, record: dict[str, Any]) -> _Item:
        source = _attribute(record, "source") or "default"
        try:
            event = parse_event(record.get("body") or "", event_id=_attribute(record, "eventId"), source=source)
        except InvalidEvent as exc:
            return _Item(record, None, str(exc))
        return _Item(record, event, None)

    def _run_group(self, group: list[_Item], context: Any) -> list[Outcome]:
        outcomes: list[Outcome] = []
        blocked_by: str | None = None
        for item in group:
            # Held back behind a failed event of the same entity, unless this is its last
            # allowed receive: then it runs anyway, out of order, rather than being parked
            # in the DLQ without ever having been tried or recorded.
            if blocked_by is not None and item.receive_count < self.config.last_attempt:
                event = item.event
                assert event is not None  # invalid items are never grouped with others
                held = Outcome(item.message_id, event.event_id, event.type, Result.HELD, f"waiting for {blocked_by}")
                # Recorded WAITING (listed and shown), logged, and back on the backoff
                # schedule, not after the queue's whole visibility timeout.
                try:
                    self.store.mark_waiting(self._meta(item, event), waiting_for=blocked_by)
                except Exception:  # the record is a view of the wait; the message is what keeps it
                    logger.warning("could not record the wait", exc_info=True)
                self._after_failure(item, held)
                logger.info(  # with its outcome: the local console prints it as a "held" line
                    "event held",
                    extra={
                        "event_id": event.event_id,
                        "event_type": event.type,
                        "outcome": Result.HELD,
                        "waiting_for": blocked_by,
                        "receive_count": item.receive_count,
                        "error": held.error,
                    },
                )
                outcomes.append(held)
                continue
            outcome = self._run_one(item, context)
            outcomes.append(outcome)
            if outcome.retry:
                blocked_by = outcome.event_id
        return outcomes

    # -- one record --------------------------------------------------------------------------
    def _run_one(self, item: _Item, context: Any) -> Outcome:
        """One record, with its metrics and its outcome log record written as one line."""
        with metrics_batch():
            return self._run_one_measured(item, context)

    def _run_one_measured(self, item: _Item, context: Any) -> Outcome:
        started = time.perf_counter()
        if item.event is None:
            outcome = self._park_invalid(item)
        else:
            logger.thread_safe_append_keys(event_id=item.event.event_id, correlation_id=item.event.event_id)
            outcome = self._process(item, item.event, context)
        outcome.duration_ms = int((time.perf_counter() - started) * 1000)
        if outcome.retry:
            self._after_failure(item, outcome)
        log_with_metrics(
            f"event {outcome.result}",
            event_id=outcome.event_id,
            correlation_id=outcome.event_id,
            event_type=outcome.event_type,
            outcome=outcome.result,
            duration_ms=outcome.duration_ms,
            # absent when 1 (the happy path): "no receive_count" reads as the first receive
            receive_count=item.receive_count if item.receive_count != 1 else None,
            attempts=outcome.attempts if outcome.attempts != 1 else None,
            error=outcome.error,
        )
        logger.thread_safe_remove_keys(["event_id", "correlation_id"])
        return outcome

    def _process(self, item: _Item, event: WebhookEvent, context: Any) -> Outcome:
        """Claim, run, record; on any error while the claim is held, release it and retry the record."""
        held = HeldClaim(self.store, event.event_id)
        try:
            return self._claim_and_run(item, event, held, context)
        except Exception as exc:  # DynamoDB throttled/unavailable, lease lost...: retry the record
            logger.exception("event processing error", extra={"event_type": event.type})
            outcome = Outcome(item.message_id, event.event_id, event.type, Result.FAILED, _error_text(exc))
            if held.open:
                outcome.not_before = self._release(held, outcome.error or "")
            return outcome

    def _claim_and_run(self, item: _Item, event: WebhookEvent, held: HeldClaim, context: Any) -> Outcome:
        metric_type = event.type if event.is_known_type else normalize.UNKNOWN_TYPE
        handlers = self.registry.handlers_for(event.types)
        claim = self.store.claim(self._meta(item, event), token=held.token, ignored=not handlers)
        if claim.kind != ClaimKind.CLAIMED:
            held.close()
            return self._not_claimed(item, event, claim.kind, claim.lease_left(time.time()), metric_type)
        if not handlers:
            held.close()
            emit("EventIgnored", eventType=metric_type)
            return Outcome(item.message_id, event.event_id, event.type, Result.IGNORED)

        outcome = self._run_claimed(item, event, handlers, claim, held, context, metric_type)
        outcome.attempts = claim.attempts
        return outcome

    def _run_claimed(
        self,
        item: _Item,
        event: WebhookEvent,
        handlers: list[Handler],
        claim: Claim,
        held: HeldClaim,
        context: Any,
        metric_type: str,
    ) -> Outcome:
        pending = self._pending(handlers, claim)
        errors = self._run_pending(event, pending, held, context)
        ran = {**held.written, **held.results}
        states = {**claim.handler_states, **{name: r.status for name, r in ran.items()}}
        settled = (HandlerStatus.SUCCEEDED, HandlerStatus.SKIPPED, HandlerStatus.PARKED)
        failing = [h.name for h in handlers if states.get(h.name) not in settled]
        deferred = {name: r for name, r in held.results.items() if r.deferred}
        only_deferred = bool(failing) and all(name in deferred for name in failing)
        too_long = only_deferred and item.age_seconds(time.time()) >= self.config.defer_limit_hours * 3600
        if only_deferred and not too_long:
            return self._defer(item, event, held, deferred)
        # Attempts spent: the receives less those deferred by an open circuit (not tried at all).
        spent = item.receive_count - len(claim.item.get("deferredClaims") or ())
        last = spent >= self.config.last_attempt or too_long
        if failing and last:  # the retry schedule is used up: those handlers are parked too
            for name in failing:
                result = held.results.get(name) or HandlerResult(status=HandlerStatus.FAILED, duration_ms=0)
                result.status = HandlerStatus.PARKED
                result.error = f"out of retries after {spent} attempts: {errors.get(name, 'not run')}"
                held.results[name] = result
        parked = [name for name, result in held.results.items() if result.status == HandlerStatus.PARKED]
        parked += [n for n, st in claim.handler_states.items() if st == HandlerStatus.PARKED and n not in held.results]
        error = "; ".join(f"{name}: {text}" for name, text in errors.items()) or None

        if not failing and not parked:
            held.finish(status=COMPLETED)
            emit("EventProcessed", eventType=metric_type)
            if event.occurred_at is not None:
                lag = (datetime.now(UTC) - event.occurred_at).total_seconds() * 1000
                emit("ProcessingLag", value=max(0.0, lag), unit=MetricUnit.Milliseconds, eventType=metric_type)
            return Outcome(item.message_id, event.event_id, event.type, Result.PROCESSED)
        if failing and not last:  # retried; a handler parked meanwhile waits for the others
            held.finish(status=FAILED, error=error)
            emit("EventFailed", eventType=metric_type)
            return Outcome(item.message_id, event.event_id, event.type, Result.FAILED, error)
        # Every handler succeeded or is parked, and some are: park the event (DLQ, alert).
        reason = error or "parked handlers: " + ", ".join(sorted(set(parked)))
        if failing:
            reason = f"out of retries after {spent} attempts: {reason}"
        held.finish(status=PARKED, error=reason, parked=True)
        if failing:
            emit("EventFailed", eventType=metric_type)
            return self._send_to_dlq(item, event.event_id, event.type, reason, headline=OUT_OF_RETRIES)
        return self._send_to_dlq(item, event.event_id, event.type, reason)

    def _defer(self, item: _Item, event: WebhookEvent, held: HeldClaim, deferred: dict[str, HandlerResult]) -> Outcome:
        """Every handler left was deferred by an open circuit: recorded WAITING with the reason,
        back no sooner than the circuit's end, and not counted as an attempt (its claim token
        joins ``deferredClaims``)."""
        integrations = sorted({str(r.deferred) for r in deferred.values()})
        reason = "; ".join(f"{name}: {r.error}" for name, r in sorted(deferred.items()))
        held.finish(
            status=WAITING, error=reason, waiting_for=", ".join(integrations) + " (circuit open)", deferred=True
        )
        outcome = Outcome(item.message_id, event.event_id, event.type, Result.DEFERRED, reason)
        outcome.not_before = min(MAX_VISIBILITY_SECONDS, math.ceil(max(r.retry_in for r in deferred.values())))
        return outcome

    @staticmethod
    def _pending(handlers: list[Handler], claim: Claim) -> list[Handler]:
        """The handlers to run now: not succeeded, and not parked unless the whole event was
        parked and is being tried again (a redrive, an operator's retry)."""
        states = claim.handler_states
        again = bool(claim.item.get("parked"))
        return [
            h
            for h in handlers
            if states.get(h.name) not in (HandlerStatus.SUCCEEDED, HandlerStatus.SKIPPED)
            and (states.get(h.name) != HandlerStatus.PARKED or again)
        ]

    def _run_pending(
        self, event: WebhookEvent, pending: list[Handler], held: HeldClaim, context: Any
    ) -> dict[str, str]:
        """Run every pending handler, side by side, whatever the others do: one failing integration
        never blocks another. A ``PermanentError`` parks that handler alone.

        Each handler has what is left of the invocation (less ``time_margin_ms``), not a
        share of it. One still running then is recorded FAILED and retried (its thread
        cannot be stopped; should it still finish its work, the retry runs it again: at
        least once). A non-idempotent handler that succeeds while another non-idempotent
        one still runs is checkpointed at once, so that the other's crash or timeout does
        not rerun it; idempotent ones still running do not cost a checkpoint (a crash
        while they finish reruns it: the window the sequential design had before its
        finish write, widened by their run time), which keeps a typical event at two writes.

        Returns each failed (or not started) handler's error.
        """
        remaining = context.get_remaining_time_in_millis() if context is not None else None
        if remaining is not None and remaining < self.config.time_margin_ms:
            return {h.name: f"not started: {remaining} ms left in this invocation" for h in pending}
        running = _Countdown(sum(1 for h in pending if not h.idempotent))  # non-idempotent ones
        batch = current_batch()

        def run(handler: Handler) -> None:
            if held.sealed:  # queued past the deadline: the attempt was finished; never run unclaimed
                return
            with joined_batch(batch):
                result = self._run_or_skip(handler, event)
            others_running = not handler.idempotent and running.finished()
            if not held.record(handler.name, result):
                return  # past the deadline: the attempt was finished without it
            if result.status == HandlerStatus.SUCCEEDED and others_running:
                held.checkpoint(handler.name)

        if len(pending) == 1:  # nothing to overlap with: no thread
            run(pending[0])
            return self._errors(pending, held.seal(), held)
        futures: dict[Future[None], Handler] = {}
        for handler in pending:  # a fresh context each: the logger's keys (event id) follow
            futures[self._handler_pool.submit(contextvars.copy_context().run, run, handler)] = handler
        budget = None if remaining is None else (remaining - self.config.time_margin_ms) / 1000
        done, late = wait(futures, timeout=budget)
        results = held.seal()
        for future in late:
            name = futures[future].name
            late_ms = int((budget or 0) * 1000)
            results[name] = held.results[name] = HandlerResult(
                status=HandlerStatus.FAILED, duration_ms=late_ms, error="still running at the deadline"
            )
        problem = next((f.exception() for f in done if f.exception() is not None), None)
        if problem is not None:  # a checkpoint write failed: release the claim with what we have
            raise problem
        return self._errors(pending, results, held)

    @staticmethod
    def _errors(pending: list[Handler], results: dict[str, HandlerResult], held: HeldClaim) -> dict[str, str]:
        """Each failed handler's error; a ``PermanentError`` parks its handler."""
        errors: dict[str, str] = {}
        for handler in pending:
            result = results.get(handler.name) or held.written.get(handler.name)
            if result is None or result.status in (HandlerStatus.SUCCEEDED, HandlerStatus.SKIPPED):
                continue
            if result.permanent:
                result.status = HandlerStatus.PARKED
            errors[handler.name] = result.error or "failed"
        return errors

    def _run_or_skip(self, handler: Handler, event: WebhookEvent) -> HandlerResult:
        if handler.latest_only and self._stale(handler, event):
            return HandlerResult(
                status=HandlerStatus.SKIPPED, duration_ms=0, error=f"stale: a newer event of {event.entity_key}"
            )
        return self._run_handler(handler, event)

    def _stale(self, handler: Handler, event: WebhookEvent) -> bool:
        """A ``latest_only`` handler has already handled a newer event of this entity."""
        if event.occurred_at is None or event.entity_key.startswith("event:"):
            return False  # no time or no entity to order by: run it
        return not self.store.advance_newest(handler.name, event.entity_key, iso(event.occurred_at.timestamp()))

    def _not_claimed(self, item: _Item, event: WebhookEvent, kind: str, lease_left: float, metric_type: str) -> Outcome:
        if kind == ClaimKind.DUPLICATE:
            emit("EventDuplicate", eventType=metric_type)
            return Outcome(item.message_id, event.event_id, event.type, Result.DUPLICATE)
        if kind == ClaimKind.BUSY:
            # Not finished: back to the queue. Visible again soon (a holder usually finishes
            # within seconds: the copy is then a duplicate), and never later than just after
            # the holder's lease, when it may take a dead holder's claim over.
            outcome = Outcome(
                item.message_id, event.event_id, event.type, Result.BUSY, "another worker holds the event"
            )
            outcome.not_before = min(int(lease_left) + BUSY_MARGIN_SECONDS, BUSY_RECHECK_SECONDS)
            return outcome
        # "conflict": the id is taken by a different payload. Recorded and parked under
        # the delivery's own key; the event that owns the id is not touched.
        reason = f"event id {event.event_id} already belongs to a different payload; this delivery was not run"
        return self._park_invalid(item, reason=reason, claimed_id=event.event_id, event_type=event.type)

    def _release(self, held: HeldClaim, error: str) -> int:
        """After an error while holding the claim (a throttled or failed write): record the
        attempt FAILED, with the handler results not yet written, and free the claim.

        Without this the claim stays IN_PROGRESS until its lease ends. If even this write
        fails, the retry is held back until the lease has ended (returned seconds), so
        that it can take the claim over; the handlers whose success could not be recorded
        then run again (at least once, in that double failure).
        """
        try:
            held.release(error)
        except LeaseLost:
            # Nothing of ours to release: the claim was never applied, another invocation
            # took it over, or our finish was applied before its reply was lost.
            return 0
        except Exception:
            logger.warning("could not release the claim; the retry waits out the lease", exc_info=True)
            return self.config.lease_seconds + 1
        return 0

    def _run_handler(self, handler: Handler, event: WebhookEvent) -> HandlerResult:
        started = time.perf_counter()
        try:
            handler(event)
        except Deferred as exc:  # its downstream is known to be down: not called
            emit("EventDeferred", integration=exc.integration)
            logger.info(
                "handler deferred", extra={"handler": handler.name, "integration": exc.integration, "why": str(exc)}
            )
            return HandlerResult(
                status=HandlerStatus.FAILED,
                duration_ms=int((time.perf_counter() - started) * 1000),
                error=f"deferred: {exc}",
                deferred=exc.integration,
                retry_in=exc.retry_in,
            )
        except Exception as exc:
            duration = int((time.perf_counter() - started) * 1000)
            logger.warning(
                "handler failed",
                extra={"handler": handler.name, "error": _error_text(exc), "trace": traceback.format_exc(limit=5)},
            )
            emit("HandlerFailed", handler=handler.name)
            emit("HandlerDuration", value=duration, unit=MetricUnit.Milliseconds, handler=handler.name)
            return HandlerResult(
                status=HandlerStatus.FAILED,
                duration_ms=duration,
                error=_error_text(exc),
                permanent=isinstance(exc, PermanentError),
            )
        duration = int((time.perf_counter() - started) * 1000)
        emit("HandlerDuration", value=duration, unit=MetricUnit.Milliseconds, handler=handler.name)
        return HandlerResult(status=HandlerStatus.SUCCEEDED, duration_ms=duration)

    # -- failure paths -----------------------------------------------------------------------
    def _park_invalid(
        self, item: _Item, *, reason: str | None = None, claimed_id: str | None = None, event_type: str | None = None
    ) -> Outcome:
        """Record a delivery no retry can fix under its own key, then park it in the DLQ.

        Its own key (``EventStore.invalid_key``), never the event id it names: a forged or
        broken delivery that reuses a live event's id must not overwrite that event's
        record, payload or claim. The id it named is kept as ``claimedEventId``.
        """
        body = item.record.get("body") or ""
        source = _attribute(item.record, "source") or normalize.DEFAULT_SOURCE
        key = self.store.invalid_key(source, body)
        claimed_id = claimed_id or _attribute(item.record, "eventId")
        event_type = event_type or _attribute(item.record, "eventType") or normalize.UNKNOWN_TYPE
        reason = reason or item.invalid or "invalid event"
        try:
            self.store.record_invalid(
                key,
                {
                    "eventType": event_type,
                    "source": source,
                    "payload": body[:200_000],
                    "messageId": item.message_id,
                    "claimedEventId": claimed_id,
                },
                reason,
            )
        except Exception as exc:
            logger.exception("could not record an invalid event")
            return Outcome(
                item.message_id, key, event_type, Result.FAILED, f"{reason}; not recorded: {_error_text(exc)}"
            )
        return self._send_to_dlq(item, key, event_type, reason)

    def _send_to_dlq(
        self, item: _Item, event_id: str, event_type: str, reason: str, *, headline: str = NO_RETRY_CAN_FIX
    ) -> Outcome:
        """Park a permanent failure in the DLQ now; if that fails, let SQS retry it."""
        try:
            self.queues.park(
                item.record.get("body") or "",
                event_id=_attribute(item.record, "eventId") or event_id,
                event_type=_attribute(item.record, "eventType") or event_type,
                source=_attribute(item.record, "source") or normalize.DEFAULT_SOURCE,
                reason=reason,
            )
        except Exception as exc:
            logger.exception("could not park in the DLQ")
            return Outcome(
                item.message_id, event_id, event_type, Result.FAILED, f"{reason}; not parked: {_error_text(exc)}"
            )
        emit("EventParked", eventType=event_type if event_type in normalize.KNOWN_TYPES else normalize.UNKNOWN_TYPE)
        logger.error("event parked in the DLQ", extra={"event_id": event_id, "reason": reason})
        publish_alert(
            self.sns,
            self.config.alert_topic_arn,
            headline,
            event_id=event_id,
            event_type=event_type,
            error=reason,
            status=PARKED,  # what the record says now (admin list --status PARKED)
            receiveCount=item.receive_count,
            retryAttempts=self.config.last_attempt,
        )
        return Outcome(item.message_id, event_id, event_type, Result.PARKED, reason)

    def _after_failure(self, item: _Item, outcome: Outcome) -> None:
        """Back off this record's next try.

        A record still failing at the queue's ``maxReceiveCount`` (the backstop: the
        consumer could not even record it, e.g. DynamoDB down) is alerted here and left
        for the queue's redrive to park."""
        receive_count = item.receive_count
        if receive_count >= self.config.max_receive_count and outcome.result in (Result.FAILED, Result.DEFERRED):
            self._alert(outcome, receive_count)
            # Visible again now, so the queue's redrive moves it to the DLQ at the next receive;
            # left alone it would sit invisible for the rest of the queue's visibility timeout.
            delay = 0
        elif outcome.result == Result.BUSY:
            delay = outcome.not_before  # not a failure: no backoff, just after the holder
        else:
            delay = backoff_seconds(
                receive_count,
                self.config.backoff_base_seconds,
                self.config.backoff_cap_seconds,
                self.config.backoff_jitter,
            )
            delay = min(MAX_VISIBILITY_SECONDS, max(delay, outcome.not_before))
        receipt = item.record.get("receiptHandle")
        if not receipt:
            return
        try:
            self.queues.back_off(receipt, delay)
        except Exception:
            logger.warning("could not set the backoff visibility", exc_info=True)

    def _alert(self, outcome: Outcome, receive_count: int) -> None:
        if publish_alert(
            self.sns,
            self.config.alert_topic_arn,
            "failed the queue's last allowed receive; the queue parks it in the DLQ",
            event_id=outcome.event_id,
            event_type=outcome.event_type,
            error=outcome.error,
            receiveCount=receive_count,
            maxReceiveCount=self.config.max_receive_count,
        ):
            try:  # so the DLQ sweep does not alert it again once the queue parks it
                self.store.mark_alerted(outcome.event_id)
            except Exception:
                logger.warning("could not note the alert on the event record", exc_info=True)

    @staticmethod
    def _meta(item: _Item, event: WebhookEvent) -> dict[str, Any]:
        # When ingest queued it: SQS's own SentTimestamp (ms), so ingest sends no extra attribute.
        sent = str((item.record.get("attributes") or {}).get("SentTimestamp") or "")
        received = iso(int(sent) / 1000) if sent.isdigit() else None
        return {
            "eventId": event.event_id,
            "eventType": event.type,
            "eventTypes": list(event.types),
            "source": event.source,
            "format": event.format,
            "sourceEventType": event.source_event_type,
            "entityKey": event.entity_key,
            "occurredAt": iso(event.occurred_at.timestamp()) if event.occurred_at else None,
            "receivedAt": received,
            "payload": item.record.get("body"),
            "payloadSha": normalize.payload_digest(event.payload),
        }


class _Countdown:
    """How many of an event's non-idempotent handlers are still running (thread-safe)."""

    def __init__(self, count: int) -> None:
        self._left = count
        self._lock = threading.Lock()

    def finished(self) -> bool:
        """One more finished; True while others still run."""
        with self._lock:
            self._left -= 1
            return self._left > 0


def _sort_time(event: WebhookEvent | None) -> float:
    if event is None or event.occurred_at is None:
        return float("inf")
    return event.occurred_at.timestamp()
