"""The simulated deployment: the real ingest, consumer, store and admin on the stand-ins, and the invariants.

``World`` owns one moto table, the fake queues and topic, a handler registry whose
handlers write a ledger, and the scheduler. Its operations (``deliver``, ``receive``,
``redeliver``, ``advance``, ``kill``, ``tick``, ``admin``, ``settle``) are the steps a schedule is
made of; each is logged, so a schedule replays exactly (``World.replay``). Checks run
inside the stand-ins at the moment things happen (every DynamoDB write, every message
delete, every handler start) and collect ``violations``; ``settle`` then stops the
faults, runs everything to quiet and checks the end state (``check_final``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

from devtools import samples
from mx_webhooks import admin as admin_module
from mx_webhooks import consumer as consumer_module
from mx_webhooks import ingest as ingest_module
from mx_webhooks import normalize, observability
from mx_webhooks import store as store_module
from mx_webhooks.admin import Admin, AdminConfig, AdminError
from mx_webhooks.consumer import Consumer, ConsumerConfig
from mx_webhooks.events import InvalidEvent, parse_event
from mx_webhooks.ingest import IngestConfig, Ingestor
from mx_webhooks.registry import Deferred, PermanentError, Registry
from mx_webhooks.store import COMPLETED, FAILED, IGNORED, IN_PROGRESS, QUEUED, EventStore, from_item
from tests.sim.aws import DynamoProxy, FakeSNS, FakeSQS, Message
from tests.sim.sched import FAIL, FAULT_NAMES, KILL, LOST, LOST_FINAL, OK, Actor, Scheduler, SimTime, VirtualClock

WAITING = "WAITING"  # held behind an earlier event of its entity (where the store has that status)
PARKED = "PARKED"  # in the DLQ, recorded and alerted; nobody retries it by itself
REGION = "us-east-1"
TOPIC_ARN = f"arn:aws:sns:{REGION}:123456789012:alerts"
LOCAL_SECRETS = json.dumps({"default": [samples.LOCAL_SECRET], "requests": ["requests-new", "requests-old"]})
SOURCE_SECRETS = {"default": samples.LOCAL_SECRET, "requests": "requests-new"}

# The deployed settings (template.yaml), except the retry counts: the consumer parks after
# RETRY_ATTEMPTS (where the consumer has that setting; else on the queue's last receive) and
# the queue's redrive policy moves a message after MAX_RECEIVE receives, both far lower than
# deployed so that a schedule of 80 steps reaches them. Pinned here, not read from the
# defaults, so that the regression schedules' timings keep their meaning.
LAMBDA_TIMEOUT = 60
ADMIN_TIMEOUT = 29
QUEUE_VISIBILITY = 360
LEASE_SECONDS = 90
MAX_RECEIVE = 5
RETRY_ATTEMPTS = 3
BACKOFF_BASE = 10
BACKOFF_CAP = 900
BACKOFF_JITTER = 0.2
MAX_WORKERS = 5  # concurrent consumer invocations
CONSUMER_ATTEMPTS = 6  # client_config: max_attempts 5 retries
ADMIN_ATTEMPTS = 4  # admin_handler: max_attempts 3 retries
INGEST_ATTEMPTS = 3

EVENT_TYPES = ("workorder.created", "workorder.updated", "workorder.completed", "request.created", "asset.updated")
# name, subscribed types, idempotent, may raise PermanentError. asset.updated has none: IGNORED.
HANDLERS = (
    ("crm.notify", ("workorder.created",), False, False),
    ("search.index", ("workorder.created", "workorder.updated"), True, False),
    ("history.append", ("workorder.updated",), False, False),
    ("billing.close", ("workorder.completed",), False, True),
    ("ticket.open", ("request.created",), False, True),
)
DELIVERY_KINDS = ("new", "new", "new", "dup", "forged", "conflict", "other_source", "large")
ADMIN_OPS = ("retry", "retry_force", "retry_failed", "redrive", "peek", "sweep")
FINISHED = (COMPLETED, IGNORED)

_REFUSED_PREFIX = EventStore.invalid_key("default", "").split(normalize.SCOPE_SEPARATOR)[0] + normalize.SCOPE_SEPARATOR


def moto_dynamodb() -> Any:
    """A DynamoDB client on moto (the caller has started ``moto.mock_aws``)."""
    return boto3.client(
        "dynamodb",
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106
        config=Config(parameter_validation=False, retries={"max_attempts": 0}),
    )


def table_definition() -> dict[str, Any]:
    from tests.conftest import table_definition as from_template

    return from_template()


_TABLE_DEFINITION: dict[str, Any] | None = None


@dataclass
class Delivery:
    """What a queued body is to the consumer, worked out once per body."""

    body: str
    source: str
    event_id: str  # the eventId attribute, as ingest derives it
    valid: bool
    sha: str | None
    invalid_key: str
    handlers: tuple[str, ...]  # those subscribed to its types (a valid body)


@dataclass
class Sent:
    """One accepted delivery (a message of it reached the queue)."""

    kind: str
    delivery: Delivery
    status: int


@dataclass
class Completion:
    actor: str
    epoch: int


@dataclass
class Stats:
    outcomes: Counter[str] = field(default_factory=Counter)
    reruns: int = 0  # a handler run again because its earlier success was never recorded (at-least-once window)
    faults: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    admin: Counter[str] = field(default_factory=Counter)


class Violation(AssertionError):
    pass


@dataclass(frozen=True)
class KnownBug:
    """A bug the simulation found, pinned by a regression test of that name in
    ``tests/reliability/test_state_machine.py`` (xfail, strict, until it is fixed).

    So that the property test keeps looking for other bugs, a world made with
    ``tolerate=KNOWN_BUGS`` counts (in ``tolerated``) instead of failing on a violation
    matching ``pattern``, and, where one fault sets off a cascade of violations,
    ``guard`` turns that fault into ``OK`` before it is injected. When the regression
    test starts passing, remove the bug from ``KNOWN_BUGS``.
    """

    name: str
    summary: str
    pattern: str = r"(?!)"  # matches nothing
    guard: Callable[[Actor, int], int] | None = None


# Bugs found so far are all fixed, each guarded by a passing regression test (test_state_machine.py):
# a lost-reply retry of an admin retry re-queued an event a worker had claimed since; a refused
# checkpoint dropped the handler's success; the last receives dying before the claim, or a kill
# between parking and alerting, left a parked event without an alert; retry-failed ran deliveries
# refused for reusing an id, re-sent a refused body cut to 200,000 characters (stranding the
# record QUEUED) and rewrote claimedEventId; a parked event completed later still said parked;
# the DLQ sweep took a refused delivery the queue parked for the event it names.
KNOWN_BUGS: tuple[KnownBug, ...] = ()


class InlineExecutor:
    """``ThreadPoolExecutor`` for the admin's bulk retry, run inline: one thread at a time is the rule."""

    def __init__(self, *_: Any, **__: Any) -> None:
        pass

    def __enter__(self) -> InlineExecutor:
        return self

    def __exit__(self, *_: Any) -> None:
        return None

    def map(self, fn: Any, *iterables: Any) -> Iterator[Any]:
        return iter([fn(*args) for args in zip(*iterables, strict=False)])

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from concurrent.futures import Future

        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def shutdown(self, *_: Any, **__: Any) -> None:
        return None


class World:
    def __init__(
        self,
        dynamodb: Any | None = None,
        *,
        faults: bool = True,
        sns_faults: bool = False,
        tolerate: tuple[KnownBug, ...] = (),
    ) -> None:
        global _TABLE_DEFINITION
        self.tolerate = tolerate
        self.tolerated: Counter[str] = Counter()
        self.clock = VirtualClock()
        self.scheduler = Scheduler(self.clock)
        self.faults = faults
        self.violations: list[str] = []
        self.log: list[tuple[Any, ...]] = []
        self.trace: list[tuple[str, str, str]] = []  # (actor kind, the call it was resumed at, actor): the interleaving
        self.stats = Stats()
        self.sent: list[Sent] = []
        self.deleted_ids: set[str] = set()
        self.epochs: Counter[str] = Counter()
        self.completions: dict[tuple[str, str], list[Completion]] = {}
        self.token_actor: dict[str, str] = {}
        self.admin_errors: list[tuple[str, tuple[Any, ...]]] = []
        self._deliveries: dict[tuple[str, str, str], Delivery] = {}
        self.final_records: dict[str, dict[str, Any]] = {}  # kept by callers that look after close()
        self._counter = 0
        self._closed = False

        self.dynamodb = dynamodb or moto_dynamodb()
        self.table = f"events-{uuid.uuid4().hex[:12]}"
        if _TABLE_DEFINITION is None:
            _TABLE_DEFINITION = table_definition()
        self.dynamodb.create_table(TableName=self.table, **_TABLE_DEFINITION)
        from moto.dynamodb.models import dynamodb_backends

        self._backend = dynamodb_backends["123456789012"][REGION]

        self.sqs = FakeSQS(self, self.clock, self.scheduler, attempts=CONSUMER_ATTEMPTS)
        self.dlq_url = self.sqs.create("events-dlq", visibility_timeout=30)
        self.queue_url = self.sqs.create(
            "events", visibility_timeout=QUEUE_VISIBILITY, dlq=self.dlq_url, max_receive=MAX_RECEIVE
        )
        self.sns = FakeSNS(self, self.scheduler, self.clock, faults=sns_faults)

        self.registry = Registry()
        for name, types, idempotent, permanent in HANDLERS:
            self.registry.on(*types, name=name, idempotent=idempotent)(self._handler(name, permanent))
        config = ConsumerConfig.model_validate(
            {
                "TABLE_NAME": self.table,
                "QUEUE_URL": self.queue_url,
                "DLQ_URL": self.dlq_url,
                "ALERT_TOPIC_ARN": TOPIC_ARN,
                "MAX_RECEIVE_COUNT": MAX_RECEIVE,
                "RETRY_ATTEMPTS": RETRY_ATTEMPTS,
                "BACKOFF_BASE_SECONDS": BACKOFF_BASE,
                "BACKOFF_CAP_SECONDS": BACKOFF_CAP,
                "BACKOFF_JITTER": BACKOFF_JITTER,
                "LEASE_SECONDS": LEASE_SECONDS,
                "CONSUMER_MAX_WORKERS": 1,  # groups one after another: the interleaving is the scheduler's
            }
        )
        self.consumer = Consumer(
            config,
            EventStore(
                DynamoProxy(self, self.dynamodb, attempts=CONSUMER_ATTEMPTS), self.table, lease_seconds=LEASE_SECONDS
            ),
            self.registry,
            self.sqs,
            self.sns,
        )
        # The handlers of an event go through the consumer's handler pool (the same code path as
        # in Lambda: submit, checkpoint a success while others still run, finish), run inline:
        # one thread at a time is the rule, and the scheduler pauses each handler like any call.
        self.consumer._handler_pool = InlineExecutor()
        ingest_sqs = FakeSQS.__new__(FakeSQS)
        ingest_sqs.__dict__.update({**self.sqs.__dict__, "attempts": INGEST_ATTEMPTS})
        self.ingestor = Ingestor(
            IngestConfig.from_env({"QUEUE_URL": self.queue_url, "LOCAL_WEBHOOK_SECRETS": LOCAL_SECRETS}), ingest_sqs
        )
        admin_sqs = FakeSQS.__new__(FakeSQS)
        admin_sqs.__dict__.update({**self.sqs.__dict__, "attempts": ADMIN_ATTEMPTS})
        admin_config = AdminConfig.model_validate(
            {
                "TABLE_NAME": self.table,
                "QUEUE_URL": self.queue_url,
                "DLQ_URL": self.dlq_url,
                "ALERT_TOPIC_ARN": TOPIC_ARN,
            }
        )
        self.stalled_after = int(getattr(admin_config, "stalled_after_seconds", 900))
        self.admin_api = Admin(
            admin_config,
            DynamoProxy(self, self.dynamodb, attempts=ADMIN_ATTEMPTS),
            admin_sqs,
            sns=self.sns,
            clock=self.clock.time,
        )
        self.has_sweep = hasattr(self.admin_api, "sweep_stalled")
        self._patches = contextlib.ExitStack()
        self._patch()

    # -- environment ------------------------------------------------------------------------------
    def _patch(self) -> None:
        fake_time = SimTime(self.clock)
        for module in (store_module, consumer_module, admin_module, ingest_module, *_optional_modules()):
            self._setattr(module, "time", fake_time)
        self._setattr(admin_module, "ThreadPoolExecutor", InlineExecutor)
        self._setattr(observability, "_write", lambda documents: None)
        # moto counts an attribute's old value as well as its new one when a SET replaces it,
        # so a claim's if_not_exists(payload) on a 230 KB payload "exceeds" 400 KB, and the
        # SET actions before it stay applied (not atomic). DynamoDB counts the item as it
        # would be after the write.
        from moto.dynamodb.models.dynamo_type import LimitedSizeDict

        self._setattr(LimitedSizeDict, "__setitem__", _item_size_checked_setitem)
        level = observability.logger.log_level
        observability.logger.setLevel("CRITICAL")
        self._patches.callback(observability.logger.setLevel, level)

    def _setattr(self, target: Any, name: str, value: Any) -> None:
        if not hasattr(target, name):
            return
        old = getattr(target, name)
        setattr(target, name, value)
        self._patches.callback(setattr, target, name, old)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.scheduler.close()
        finally:
            self._patches.close()
            with contextlib.suppress(Exception):
                self._backend.delete_table(self.table)

    def __enter__(self) -> World:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    # -- reading the truth (no pause, no fault) -------------------------------------------------
    def raw(self, key: str) -> dict[str, Any] | None:
        item = self._backend.get_item(self.table, {"eventId": {"S": key}})
        return from_item(item.to_json()["Attributes"]) if item is not None else None

    def records(self) -> dict[str, dict[str, Any]]:
        table = self._backend.get_table(self.table)
        out = {}
        for item in table.items.values():
            record = from_item(item.to_json()["Attributes"])
            out[record["eventId"]] = record
        return out

    def delivery(self, body: str, source: str, event_id_attr: str | None) -> Delivery:
        cache_key = (source, event_id_attr or "", hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest())
        known = self._deliveries.get(cache_key)
        if known is not None:
            return known
        invalid_key = EventStore.invalid_key(source, body)
        try:
            event = parse_event(body, event_id=event_id_attr, source=source)
        except InvalidEvent:
            found = Delivery(body, source, event_id_attr or invalid_key, False, None, invalid_key, ())
        else:
            handlers = tuple(h.name for h in self.registry.handlers_for(event.types))
            found = Delivery(
                body, source, event.event_id, True, normalize.payload_digest(event.payload), invalid_key, handlers
            )
        self._deliveries[cache_key] = found
        return found

    def delivery_of(self, message: Message) -> Delivery:
        attributes = {k: v.get("StringValue") for k, v in message.attributes.items()}
        return self.delivery(message.body, attributes.get("source") or "default", attributes.get("eventId"))

    def key_of(self, delivery: Delivery) -> str:
        """The record that says what became of this delivery: its event's, or its own when refused."""
        if not delivery.valid:
            return delivery.invalid_key
        record = self.raw(delivery.event_id)
        if record is not None and record.get("payloadSha") not in (None, delivery.sha):
            return delivery.invalid_key
        return delivery.event_id

    @staticmethod
    def settled(record: dict[str, Any] | None) -> bool:
        if record is None:
            return False
        return record.get("status") in (*FINISHED, PARKED)

    def copies(self, key: str, *, besides: Message | None = None) -> list[Message]:
        found = []
        for url in (self.queue_url, self.dlq_url):
            for message in self.sqs.all_messages(url):
                if message is not besides and self.key_of(self.delivery_of(message)) == key:
                    found.append(message)
        return found

    def violation(self, text: str) -> None:
        for bug in self.tolerate:
            if re.search(bug.pattern, text):
                self.tolerated[bug.name] += 1
                return
        actor = self.scheduler.current()
        self.violations.append(f"[t={self.clock.now - 1_800_000_000:.0f}s {actor.name if actor else 'main'}] {text}")

    # -- checks at the moment things happen ------------------------------------------------------
    def on_send(self, url: str, message: Message) -> None:
        self._sends_in_call += 1 if url == self.queue_url else 0

    _sends_in_call = 0

    def on_redrive_policy(self, old: Message, moved: Message) -> None:
        self.stats.outcomes["moved to DLQ by the redrive policy"] += 1

    def on_delete(self, url: str, message: Message) -> None:
        """Invariant 1: a message is never deleted while its event is unfinished, unparked, and
        this is its last copy (in the queue, in flight, or in the DLQ)."""
        key = self.key_of(self.delivery_of(message))
        record = self.raw(key)
        if self.settled(record):
            return
        if record is not None and record.get("status") == QUEUED:
            return  # an operator's retry took the event over: it sends its own message (checked at the end)
        if self.copies(key, besides=message):
            return
        where = "the queue" if url == self.queue_url else "the DLQ"
        state = "no record" if record is None else f"{record.get('status')} parked={record.get('parked', False)}"
        self.violation(f"invariant 1: deleted the last message of {key} from {where} while it is {state}")

    _ALLOWED = {
        None: {IN_PROGRESS, IGNORED, PARKED, WAITING},  # PARKED: an invalid delivery, the DLQ sweep
        IN_PROGRESS: {IN_PROGRESS, COMPLETED, FAILED, PARKED, QUEUED, IGNORED, WAITING},  # WAITING: deferred
        FAILED: {FAILED, IN_PROGRESS, QUEUED, IGNORED, WAITING, PARKED},  # PARKED: by the queue, the sweep
        QUEUED: {QUEUED, IN_PROGRESS, IGNORED, PARKED, WAITING},  # PARKED: an invalid delivery, the sweep
        WAITING: {WAITING, IN_PROGRESS, IGNORED, QUEUED, PARKED},
        PARKED: {PARKED, IN_PROGRESS, QUEUED, WAITING},  # back by a redrive or an operator's retry
        COMPLETED: {COMPLETED, QUEUED},  # QUEUED: only by a forced retry
        IGNORED: {IGNORED, QUEUED},
    }
    _FROZEN = ("payloadSha", "payload", "eventType", "source", "firstSeenAt", "claimedEventId")

    def after_write(
        self, key: str, call: dict[str, Any], before_item: dict[str, Any] | None, after_item: dict[str, Any] | None
    ) -> None:
        """Invariant 3, checked at every applied write: no record goes back to an earlier state."""
        if key.startswith((f"sweep{normalize.SCOPE_SEPARATOR}", EventStore.BREAKER_PREFIX)):
            # the stalled-claim sweep's watermark (EventStore.advance_sweep_mark), a circuit
            # breaker's last transition (EventStore.record_breaker): not event records
            return
        actor = self.scheduler.current()
        who = actor.name if actor else "main"
        if after_item is None:
            self.violation(f"invariant 3: {key} deleted by {call.get('UpdateExpression', 'a write')}")
            return
        b, a = before_item or {}, after_item
        self._check_status(key, b, a)
        self._check_live_claim(key, call, b, a, who)
        after_ok = self._check_successes(key, b, a)
        token = a.get("claimToken")
        if token and token != b.get("claimToken") and actor is not None:
            self.token_actor[str(token)] = who
        expression = str(call.get("UpdateExpression", ""))
        final = (
            "claimToken = :token" in str(call.get("ConditionExpression", ""))
            and "leaseUntil" in expression.split("REMOVE", 1)[-1]
        )
        if final and actor is not None:
            self._check_attempt_recorded(key, who, a.get("status"), after_ok)

    def _check_status(self, key: str, b: dict[str, Any], a: dict[str, Any]) -> None:
        bs, as_ = b.get("status"), a.get("status")
        if as_ not in self._ALLOWED.get(bs, set()):
            self.violation(f"invariant 3: {key} went {bs} -> {as_}")
        if bs == COMPLETED and as_ == QUEUED and (a.get("handlers") or {}):
            self.violation(f"invariant 3: {key} went COMPLETED -> QUEUED without force (handlers kept)")
        if as_ == PARKED and not a.get("parked"):
            self.violation(f"invariant 3: {key} went {bs} -> PARKED without its parked flag")
        if as_ in FINISHED and a.get("parked") and not (bs in FINISHED and b.get("parked")):
            self.violation(f"invariant 3: {key} went {bs} -> {as_} but is still marked parked")
        if int(a.get("attempts", 0)) < int(b.get("attempts", 0)):
            self.violation(f"invariant 3: {key} attempts went {b.get('attempts')} -> {a.get('attempts')}")
        for name in self._FROZEN:
            if name in b and a.get(name) != b[name]:
                self.violation(
                    f"invariant 3: {key} {name} changed ({str(b[name])[:60]!r} -> {str(a.get(name))[:60]!r})"
                )

    def _check_live_claim(self, key: str, call: dict[str, Any], b: dict[str, Any], a: dict[str, Any], who: str) -> None:
        """An IN_PROGRESS record with a live lease is changed by its holder only."""
        now = int(self.clock.now)
        if b.get("status") != IN_PROGRESS or int(b.get("leaseUntil", 0)) < now:
            return
        holder = self.token_actor.get(str(b.get("claimToken")))
        if holder != who:
            self.violation(
                f"invariant 3: {key} IN_PROGRESS with a live lease (until {int(b.get('leaseUntil', 0)) - now}s "
                f"from now, held by {holder}) changed to {a.get('status')} by {who} "
                f"({str(call.get('UpdateExpression', ''))[:90]})"
            )

    def _check_successes(self, key: str, b: dict[str, Any], a: dict[str, Any]) -> set[str]:
        """A recorded handler success is never lost, but to an operator's forced retry (a new epoch)."""
        before_ok = {h for h, r in (b.get("handlers") or {}).items() if r.get("status") == "SUCCEEDED"}
        after_ok = {h for h, r in (a.get("handlers") or {}).items() if r.get("status") == "SUCCEEDED"}
        if before_ok - after_ok:
            if a.get("status") == QUEUED and not after_ok and not (a.get("handlers") or {}):
                self.epochs[key] += 1  # an operator's forced retry: every handler runs again
            else:
                self.violation(
                    f"invariant 3: {key} lost recorded successes {sorted(before_ok - after_ok)} "
                    f"({b.get('status')} -> {a.get('status')})"
                )
        return after_ok

    def _check_attempt_recorded(self, key: str, who: str, status: Any, after_ok: set[str]) -> None:
        """At an attempt's last write (finish or release), every handler it ran to success is
        recorded, or its retry runs that handler again."""
        epoch = self.epochs[key]
        for (event_id, name), runs in self.completions.items():
            if event_id != key or not any(c.actor == who and c.epoch == epoch for c in runs):
                continue
            if name not in after_ok:
                self.violation(
                    f"invariant 2: {who} ended its attempt on {key} ({status}) without recording that {name} "
                    "succeeded: its retry will run it again"
                )

    # -- handlers ---------------------------------------------------------------------------------
    def _handler(self, name: str, permanent: bool) -> Any:
        def handler(event: Any) -> None:
            decision = self.scheduler.checkpoint(f"handler {name} {event.event_id}")
            self._on_handler_start(name, event)
            if decision == LOST:
                raise RuntimeError(f"{name}: downstream answered 503")
            if decision == LOST_FINAL:
                if permanent:
                    raise PermanentError(f"{name}: downstream refused the data (422)")
                # its integration's circuit breaker is open: not called, deferred (not an attempt)
                raise Deferred(name, 30.0, f"{name}: circuit open; not called")
            if decision == FAIL:
                raise RuntimeError(f"{name}: downstream error page <html>" + "x" * 300_000 + "</html>")
            self._on_handler_done(name, event)

        return handler

    def _on_handler_start(self, name: str, event: Any) -> None:
        """Invariant 2, at the moment it could break: a handler runs only under a live claim of
        its runner's, never after its success was recorded, and only on the event's own payload."""
        actor = self.scheduler.current()
        record = self.raw(event.event_id) or {}
        holder = self.token_actor.get(str(record.get("claimToken")))
        if record.get("status") != IN_PROGRESS or actor is None or holder != actor.name:
            self.violation(
                f"invariant 2: {name} started on {event.event_id} without holding it "
                f"(status {record.get('status')}, claim held by {holder})"
            )
        elif int(record.get("leaseUntil", 0)) < int(self.clock.now):
            self.violation(f"invariant 2: {name} started on {event.event_id} after its lease ended")
        if ((record.get("handlers") or {}).get(name) or {}).get("status") == "SUCCEEDED":
            self.violation(f"invariant 2: {name} started on {event.event_id} although its success is recorded")
        sha = normalize.payload_digest(event.payload)
        if record.get("payloadSha") not in (None, sha):
            self.violation(f"invariant 2: {name} ran {event.event_id} on a payload that is not the event's")
        if event.event_id.startswith(_REFUSED_PREFIX):
            self.violation(f"invariant 2: {name} ran a delivery that was refused (recorded as {event.event_id})")

    def _on_handler_done(self, name: str, event: Any) -> None:
        actor = self.scheduler.current()
        epoch = self.epochs[event.event_id]
        runs = self.completions.setdefault((event.event_id, name), [])
        if any(c.epoch == epoch for c in runs):
            # Allowed only in the at-least-once window: the earlier run's success never reached
            # the table (its invocation died, or every write after it failed). A rerun while the
            # earlier runner holds the claim, or after its success was recorded, fails the
            # checks at the handler's start instead.
            self.stats.reruns += 1
            earlier = self.scheduler.by_name.get(runs[-1].actor)
            why = "its runner died" if earlier is not None and earlier.killed else "its runner's writes failed"
            self.stats.outcomes[f"rerun: {why}"] += 1
        runs.append(Completion(actor.name if actor else "main", epoch))

    # -- operations (the steps of a schedule) -----------------------------------------------------
    def do(self, operation: str, *args: Any) -> Any:
        self.log.append((operation, *args))
        return getattr(self, "op_" + operation)(*args)

    def replay(self, schedule: list[tuple[Any, ...]]) -> None:
        for step in schedule:
            self.do(*step)

    def op_deliver(self, kind: str, pick: int, fault: int = OK) -> int:
        """A delivery reaches ingest (signed, with the virtual time); ``fault`` is its SQS send's."""
        self._counter += 1
        n = self._counter
        source = "default"
        generic = [s for s in self.sent if s.delivery.source == "default" and s.kind in ("new", "conflict", "large")]
        generic = [s for s in generic if json.loads(s.delivery.body).get("id") is not None]
        if kind == "dup" and self.sent:
            previous = self.sent[pick % len(self.sent)].delivery
            body, source = previous.body, previous.source
        elif kind == "forged" and generic:
            target = json.loads(generic[pick % len(generic)].delivery.body)["id"]
            body = json.dumps({"id": target, "type": "workorder.created", "data": [1]}, separators=(",", ":"))
        elif kind == "conflict" and generic:
            target = json.loads(generic[pick % len(generic)].delivery.body)["id"]
            payload = samples.generic_payload("workorder.updated", event_id=target, work_order_id=f"wo{pick % 3}")
            payload["data"]["note"] = f"another payload {n}"
            payload["createdAt"] = _iso(self.clock.now + n / 1000)
            if pick % 4 == 3:  # a large one now and then
                payload["data"]["description"] = "y" * (200_000 + (pick * 7919) % 35_000)
            body = samples.encode(payload).decode()
        elif kind == "other_source" and generic:
            body, source = generic[pick % len(generic)].delivery.body, "requests"
        elif kind == "large":
            payload = samples.generic_payload("workorder.created", event_id=f"big-{n}", work_order_id=f"wo{pick % 3}")
            payload["data"]["description"] = "x" * (150_000 + (pick * 7919) % 85_000)
            payload["createdAt"] = _iso(self.clock.now + n / 1000)
            body = samples.encode(payload).decode()
        else:
            kind = "new"
            event_type = EVENT_TYPES[(pick // 2) % len(EVENT_TYPES)]
            if pick % 2:
                occurred = _iso(self.clock.now + n / 1000)
                body = samples.encode(
                    samples.maintainx_payload(event_type, work_order_id=9000 + pick % 3, occurred_at=occurred)
                ).decode()
            else:
                payload = samples.generic_payload(event_type, event_id=f"evt-{n}", work_order_id=f"wo{pick % 3}")
                payload["createdAt"] = _iso(self.clock.now + n / 1000)  # the virtual time: the same body every run
                if isinstance(payload["data"].get("completedAt"), str):
                    payload["data"]["completedAt"] = payload["createdAt"]
                body = samples.encode(payload).decode()
        raw = body.encode()
        fmt = "maintainx" if "eventType" in json.loads(body) else "generic"
        headers = samples.signed_headers(raw, SOURCE_SECRETS[source], fmt, int(self.clock.now))
        event = samples.api_event(raw, headers, source=None if source == "default" else source)
        self.scheduler.main_decision = fault if self.faults else OK
        self._sends_in_call = 0
        answer = self.ingestor.handle(event, now=self.clock.now)
        self.scheduler.main_decision = OK
        if self._sends_in_call:
            attributes_id = normalize.derive_event_id(json.loads(body), source)
            self.sent.append(Sent(kind, self.delivery(body, source, attributes_id), answer["statusCode"]))
        self.stats.outcomes[f"ingest {answer['statusCode']}"] += 1
        return int(answer["statusCode"])

    def _worker(self, records: list[dict[str, Any]]) -> Actor:
        world = self

        class Context:
            def __init__(self, actor: Actor) -> None:
                self.actor = actor

            def get_remaining_time_in_millis(self) -> int:
                deadline = self.actor.deadline or (world.clock.now + LAMBDA_TIMEOUT)
                return int((deadline - world.clock.now) * 1000)

        def body(actor: Actor) -> None:
            result = world.consumer.process_batch({"Records": records}, Context(actor))
            actor.info["result"] = result
            # The function returned; Lambda's event source mapping deletes what succeeded.
            actor.deadline = world.clock.now + 30
            failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
            done = [r for r in records if r["messageId"] not in failed]
            for start in range(0, len(done), 10):
                entries = [
                    {"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(done[start : start + 10])
                ]
                with contextlib.suppress(ClientError, ConnectionClosedError):
                    world.sqs.delete_message_batch(QueueUrl=world.queue_url, Entries=entries)

        actor = self.scheduler.spawn("worker", body, deadline=self.clock.now + LAMBDA_TIMEOUT)
        actor.info["messages"] = [r["messageId"] for r in records]
        return actor

    def workers(self) -> int:
        return sum(1 for a in self.scheduler.live if a.kind == "worker")

    def op_receive(self, batch: int, rotate: int = 0) -> int:
        """Lambda's poller receives a batch and invokes a consumer with it (an invocation starts)."""
        from tests.reliability.conftest import message_to_record

        if self.workers() >= MAX_WORKERS:
            return 0
        messages = self.sqs.poll(self.queue_url, batch, rotate=rotate)
        if messages:
            self._worker([message_to_record(m) for m in messages])
        return len(messages)

    def op_redeliver(self, pick: int) -> int:
        """At-least-once: a message already in flight is delivered again, to another invocation."""
        from tests.reliability.conftest import message_to_record

        candidates = [m for m in self.sqs.in_flight(self.queue_url) if m.receive_count < MAX_RECEIVE]
        if not candidates or self.workers() >= MAX_WORKERS:
            return 0
        message = candidates[pick % len(candidates)]
        self._worker([message_to_record(self.sqs.redeliver(message))])
        self.stats.outcomes["redelivered"] += 1
        return 1

    def _actor(self, index: int) -> Actor | None:
        live = self.scheduler.live
        return live[index % len(live)] if live else None

    def op_advance(self, index: int, fault: int = OK) -> None:
        """Resume one actor until its next external call; ``fault`` decides the call it was paused at."""
        actor = self._actor(index)
        if actor is None:
            return
        fault = fault if self.faults else OK
        for bug in self.tolerate:
            if bug.guard is not None:
                fault = bug.guard(actor, fault)
        if fault == KILL:
            self.op_kill(index)
            return
        self.trace.append((actor.kind, actor.pending.split(" ")[0], actor.name))
        if fault:
            self.stats.faults[f"{actor.pending.split(' ')[0]} {FAULT_NAMES[fault]}"] += 1
        self.scheduler.step(actor, fault)
        if actor.done:
            self._finished(actor)

    def op_kill(self, index: int) -> None:
        """The invocation crashes (or is stopped) where it is paused: nothing after it runs."""
        actor = self._actor(index)
        if actor is None:
            return
        self.trace.append((actor.kind, "kill", actor.name))
        self.stats.kills += 1
        self.scheduler.kill(actor)
        self._finished(actor)

    def op_tick(self, seconds: float) -> None:
        self.clock.advance(seconds)
        for actor in self.scheduler.expire():
            self.stats.kills += 1
            self._finished(actor)

    def op_admin(self, operation: str, pick: int = 0) -> None:
        """An operator's command, run as an actor (it interleaves with the consumers)."""
        args: tuple[Any, ...]
        if operation in ("retry", "retry_force"):
            keys = self.known_keys()
            if not keys:
                return
            args = (keys[pick % len(keys)], operation == "retry_force")
        elif operation == "sweep" and not self.has_sweep:
            return
        else:
            args = ()
        self._spawn_admin(operation, args)

    def _spawn_admin(self, operation: str, args: tuple[Any, ...]) -> Actor:
        world = self

        def body(actor: Actor) -> Any:
            api = world.admin_api
            if operation in ("retry", "retry_force"):
                return api.retry(args[0], force=args[1])
            if operation == "retry_failed":
                return api.retry_failed(since="30d")
            if operation == "redrive":
                return api.redrive_dlq(deadline=actor.deadline - 5 if actor.deadline else None)
            if operation == "peek":
                return api.peek_dlq(10)
            if operation == "sweep":
                return api.sweep_stalled()  # type: ignore[attr-defined]
            raise ValueError(operation)

        actor = self.scheduler.spawn("admin", body, deadline=self.clock.now + ADMIN_TIMEOUT)
        actor.info["command"] = (operation, args)
        self.stats.admin[operation] += 1
        return actor

    def _finished(self, actor: Actor) -> None:
        if actor.kind == "worker":
            if actor.error is not None:
                self.violation(f"the consumer raised instead of answering its batch: {actor.error!r}"[:300])
            for outcome, n in _outcomes(actor).items():
                self.stats.outcomes[outcome] += n
            return
        command = actor.info.get("command")
        if actor.killed or (actor.error is not None and not isinstance(actor.error, AdminError)):
            # The operator saw an error (or a timeout): they run the command again, later.
            self.admin_errors.append((command[0], command[1]))
        result = actor.result if isinstance(actor.result, dict) else {}
        for skipped in result.get("skipped") or []:
            if "Error" in skipped.get("reason", "") or "injected" in skipped.get("reason", ""):
                self.admin_errors.append(("retry", (skipped["eventId"], False)))

    def known_keys(self) -> list[str]:
        keys: list[str] = []
        for sent in self.sent:
            for key in (sent.delivery.event_id, sent.delivery.invalid_key):
                if key not in keys:
                    keys.append(key)
        return keys

    def op_settle(self) -> None:
        """Quiet everything now (as at the end), then carry on with faults as before."""
        faults = self.faults
        self.settle()
        self.faults = faults

    # -- the end ----------------------------------------------------------------------------------
    def settle(self, *, rounds: int = 80) -> None:
        """Faults off; run every actor to its end, deliver everything, sweep, until quiet."""
        self.faults = False
        for actor in list(self.scheduler.live):
            self.scheduler.run_to_end(actor)
            self._finished(actor)
        if self.admin_errors:  # the operator comes back to a command that failed, once it is stranded
            self.clock.advance(int(getattr(admin_module, "STRANDED_AFTER_SECONDS", 900)) + 60)
        for operation, args in self.admin_errors:
            actor = self._spawn_admin(operation, args)
            self.scheduler.run_to_end(actor)
        self.admin_errors.clear()
        swept = False
        for _ in range(rounds):
            messages = self.sqs.all_messages(self.queue_url)
            if not messages:
                if self.has_sweep and not swept:
                    self.clock.advance(self.stalled_after + LEASE_SECONDS + 60)
                    actor = self._spawn_admin("sweep", ())
                    self.scheduler.run_to_end(actor)
                    swept = True
                    continue
                return
            swept = False
            soonest = min(m.visible_at for m in messages)
            if soonest > self.clock.now:
                self.clock.advance(soonest - self.clock.now)
            while self.sqs.visible(self.queue_url):
                before = len(self.sqs.visible(self.queue_url))
                self.op_receive(10)
                for actor in list(self.scheduler.live):
                    self.scheduler.run_to_end(actor)
                    self._finished(actor)
                if len(self.sqs.visible(self.queue_url)) >= before and not self.sqs.in_flight(self.queue_url):
                    break
        self.violation(f"did not settle in {rounds} rounds: {len(self.sqs.all_messages(self.queue_url))} messages left")

    def check_final(self) -> None:
        """Invariant 2 at the end: every accepted delivery ran each handler once, or is parked, recorded and alerted."""
        alerted = {a.event_id for a in self.sns.alerts}
        dlq = {self.key_of(self.delivery_of(m)) for m in self.sqs.all_messages(self.dlq_url)}
        seen: set[str] = set()
        for sent in self.sent:
            key = self.key_of(sent.delivery)
            if key in seen:
                continue
            seen.add(key)
            record = self.raw(key)
            status = (record or {}).get("status")
            self.stats.outcomes[f"end {status or 'no record'}{' parked' if (record or {}).get('parked') else ''}"] += 1
            if status == COMPLETED:
                self._check_completed(key, sent, record or {})
            elif status == IGNORED:
                if sent.delivery.handlers:
                    self.violation(f"invariant 2: {key} is IGNORED but has handlers {sent.delivery.handlers}")
            elif status == PARKED:
                if key not in alerted:
                    self.violation(f"invariant 2: {key} was parked by the consumer (PARKED) but no alert names it")
            elif status in (None, FAILED, WAITING) and key in dlq:
                if key not in alerted:
                    self.violation(
                        f"invariant 2: {key} reached the DLQ through the queue's redrive policy "
                        f"({status or 'no record'}, not parked) and no alert names it"
                    )
            else:
                where = [m.queue.rsplit("/", 1)[-1] for m in self.copies(key)]
                self.violation(
                    f"invariant 2: {key} ({sent.kind}) ended {status} parked={(record or {}).get('parked', False)} "
                    f"with messages in {where or 'no queue'}, alert={'yes' if key in alerted else 'no'}"
                )

    def _check_completed(self, key: str, sent: Sent, record: dict[str, Any]) -> None:
        """Each handler of a COMPLETED event ran (in the current epoch) and its success is recorded."""
        epoch = self.epochs[key]
        for name in sent.delivery.handlers:
            runs = [c for c in self.completions.get((key, name), []) if c.epoch == epoch]
            result = (record.get("handlers") or {}).get(name) or {}
            if result.get("status") == "SKIPPED":  # a latest_only handler, stale: not run by design
                continue
            if not runs or result.get("status") != "SUCCEEDED":
                self.violation(
                    f"invariant 2: {key} is COMPLETED but {name} ran {len(runs)} times (recorded {result.get('status')})"
                )

    def assert_ok(self) -> None:
        if self.violations:
            raise Violation("\n".join(self.violations[:10]))


def _optional_modules() -> list[Any]:
    """Modules that read the clock and may or may not exist in this version of the layer."""
    import importlib

    found = []
    for name in ("mx_webhooks.queues", "mx_webhooks.alerts"):
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            continue
    return found


def _item_size_checked_setitem(self: dict[str, Any], key: str, value: Any) -> None:
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.utilities import bytesize

    def size(name: str, item: Any) -> int:
        return bytesize(name) + (item.size() if type(item) is DynamoType else bytesize(str(item)))

    if sum(size(k, v) for k, v in self.items() if k != key) + size(key, value) > 405_000:
        raise ItemSizeTooLarge
    dict.__setitem__(self, key, value)


def _outcomes(actor: Actor) -> Counter[str]:
    counts: Counter[str] = Counter()
    if actor.killed:
        counts["invocation killed"] += 1
    result = actor.info.get("result")
    if result is not None:
        counts["records returned"] += len(result.get("batchItemFailures", []))
    return counts


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
