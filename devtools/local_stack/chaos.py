"""Fault injection for the local stack: lost DynamoDB replies and duplicate SQS deliveries.

``python -m devtools.local_stack --chaos dynamodb-lost-replies=0.02,sqs-duplicates=0.05
--chaos-seed 7`` switches on two faults that AWS documents and a test on moto never
meets by itself:

``dynamodb-lost-replies=P``
    A share ``P`` of the functions' DynamoDB ``UpdateItem`` / ``PutItem`` requests is
    sent to moto for real (so it is **applied**, or refused by its condition), and then
    the reply is lost: the SDK sees a dropped connection (``ConnectionClosedError``) or
    a ``500 InternalServerError`` (each half the time, at random), and its retry policy
    sends the identical request again. DynamoDB documents that a request answered with
    a 500 may have been applied, and the SDKs retry it. The second request then meets
    the state the first one left (a claim whose token is already ours, a finish
    already written).
``sqs-duplicates=P``
    A share ``P`` of the messages the SQS event source receives is made visible again
    at once (``ChangeMessageVisibility`` 0, right after the receive), so the next
    receive hands the same message to another invocation, usually while the first one
    still runs: SQS's at-least-once delivery. Done in ``devtools.local_stack.sqs_source``
    (``SqsEventSource(redelivery=...)``); this module decides which and counts them.

With either fault, two invocations routinely write the same item at the same moment
(a claim and its duplicate's claim, a lost reply's retry and a concurrent copy).
DynamoDB evaluates a condition and applies the write as one atomic step; moto's
backend does not lock, so two concurrent claims could both pass
``attribute_not_exists`` there, and a handler would run twice because of the
stand-in, not of our code. :func:`atomic_item_writes` serialises moto's item writes
(the local stack applies it whenever it runs, as ``tests/conftest.py``'s
``atomic_dynamodb`` does for the in-process tests).

Every injected fault is logged (logger ``devtools.local_stack.chaos``, WARNING, with the event id)
and counted; the counts and the faults themselves are written to a JSON report
(``--chaos-report``, default ``chaos.json`` next to the functions' log) after each one,
so a test reads them while the stack runs.

Why hand-written rather than a library: what is needed is "apply, then lose the
reply", for one service's write operations, inside botocore's own retry loop.
``botocore.stub.Stubber`` answers instead of the service, so nothing is applied;
moto has no lost-reply fault; a TCP-level proxy (toxiproxy and the like) can cut
connections but knows neither which request is a write nor whether moto applied
it, and would need a proxy between the functions and moto that the local stack
does not have; fault-injection services (AWS FIS, chaos Lambda layers) act on real
AWS. botocore's ``before-send`` event is its hook for answering a request in place
of the HTTP layer, so a handler there can send the request itself, drop the reply
and let botocore's own retry policy (the one the functions configure) do the rest:
a hundred-odd lines, no new dependency.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("devtools.local_stack.chaos")

# The DynamoDB operations whose replies may be lost: the writes the consumer makes.
WRITE_OPERATIONS = ("UpdateItem", "PutItem")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_MAX_FAULTS_KEPT = 20_000  # in the report; the counts go on


@dataclass(frozen=True)
class ChaosSpec:
    """What to inject, parsed from ``--chaos`` (``name=share,...``)."""

    dynamodb_lost_replies: float = 0.0
    sqs_duplicates: float = 0.0

    NAMES = {"dynamodb-lost-replies": "dynamodb_lost_replies", "sqs-duplicates": "sqs_duplicates"}

    @classmethod
    def parse(cls, text: str) -> ChaosSpec:
        values: dict[str, float] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            name, sep, share = part.partition("=")
            field = cls.NAMES.get(name.strip())
            if field is None or not sep:
                raise ValueError(f"unknown chaos {part!r}: expected {', '.join(f'{n}=SHARE' for n in cls.NAMES)}")
            value = float(share)
            if not 0 <= value <= 1:
                raise ValueError(f"{name}: a share between 0 and 1, got {share}")
            values[field] = value
        return cls(**values)

    def __bool__(self) -> bool:
        return bool(self.dynamodb_lost_replies or self.sqs_duplicates)

    def text(self) -> str:
        return ",".join(f"{name}={getattr(self, field)}" for name, field in self.NAMES.items())


class _Raw:
    """The body of a made-up HTTP response, as ``AWSResponse`` reads it."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


class Chaos:
    """The faults of one local stack: decisions (seeded), counts, report."""

    def __init__(self, spec: ChaosSpec, *, seed: int | None = None, report: Path | str | None = None) -> None:
        self.spec = spec
        self.seed = seed
        self.report_path = Path(report) if report else None
        self._lock = threading.Lock()
        # One stream per fault, so turning one on does not change which calls the other hits.
        self._rng_dynamodb = random.Random(f"{seed}-dynamodb")
        self._rng_sqs = random.Random(f"{seed}-sqs")
        self.counts: Counter[str] = Counter()
        self.faults: list[dict[str, Any]] = []
        self._http: Any = None
        self._installed_on: Any = None
        self._started = time.time()

    # -- DynamoDB: lost replies --------------------------------------------------------------
    def install(self, events: Any = None) -> None:
        """Register the lost-reply hook on an event system (a session's or a client's ``meta.events``).

        By default on boto3's default session: every client created from it afterwards
        (the functions build theirs with ``boto3.client`` at import) copies the hook.
        ``register_first``: it answers before any other ``before-send`` handler.
        """
        if not self.spec.dynamodb_lost_replies:
            return
        if events is None:
            import boto3

            events = boto3._get_default_session().events  # noqa: SLF001 - the session boto3.client() uses
        import urllib3

        self._http = urllib3.PoolManager(maxsize=16)
        for operation in WRITE_OPERATIONS:
            events.register_first(
                f"before-send.dynamodb.{operation}", self._before_send, unique_id=f"chaos-{operation}"
            )
        self._installed_on = events

    def uninstall(self) -> None:
        """Unregister the hook (clients created meanwhile keep their copy of it)."""
        events, self._installed_on = self._installed_on, None
        for operation in WRITE_OPERATIONS if events is not None else ():
            events.unregister(f"before-send.dynamodb.{operation}", unique_id=f"chaos-{operation}")

    def _before_send(self, request: Any, event_name: str = "", **_: Any) -> Any:
        with self._lock:
            hit = self._rng_dynamodb.random() < self.spec.dynamodb_lost_replies
            as_500 = self._rng_dynamodb.random() < 0.5
        if not hit or urlsplit(request.url).hostname not in _LOOPBACK:
            return None  # sent as usual (and never anything but the local moto)
        body = request.body
        if isinstance(body, str):
            body = body.encode()
        if not isinstance(body, bytes | bytearray):
            return None  # a streamed body cannot be sent twice; not a DynamoDB write
        operation = event_name.rsplit(".", 1)[-1]
        # Applied for real: the same method, URL, headers and body the SDK was about to send.
        response = self._http.request(
            request.method,
            request.url,
            body=bytes(body),
            headers={k: v for k, v in request.headers.items()},
            retries=False,
            timeout=30,
        )
        error_type = ""
        if response.status >= 300:
            try:
                error_type = str(json.loads(response.data).get("__type", "")).rsplit("#", 1)[-1]
            except ValueError:
                error_type = "?"
        fault = {
            "fault": "dynamodb-lost-reply",
            "operation": operation,
            "event_id": _event_id(body),
            "condition": _condition(body),
            "status": response.status,
            "applied": response.status < 300,
            "error": error_type or None,
            "reported_as": "500 InternalServerError" if as_500 else "ConnectionClosedError",
            "at": round(time.time() - self._started, 3),
        }
        self._count(
            fault,
            "dynamodb_lost_replies",
            f"dynamodb_lost_replies.{operation}",
            "dynamodb_lost_replies.applied" if fault["applied"] else "dynamodb_lost_replies.refused",
            "dynamodb_lost_replies.as_500" if as_500 else "dynamodb_lost_replies.as_connection_closed",
        )
        log.warning(
            "chaos: %s %s for %s %s, reply lost (%s)",
            operation,
            "applied" if fault["applied"] else f"refused ({error_type})",
            fault["event_id"],
            request.url,
            fault["reported_as"],
        )
        if as_500:
            from botocore.awsrequest import AWSResponse

            payload = b'{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal error"}'
            headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "chaos"}
            return AWSResponse(request.url, 500, headers, _Raw(payload))
        from botocore.exceptions import ConnectionClosedError

        raise ConnectionClosedError(endpoint_url=request.url)

    # -- SQS: duplicate deliveries (devtools.local_stack.sqs_source.Redelivery) ------------------------
    def should_redeliver(self, message: Mapping[str, Any]) -> bool:
        """Whether SQS delivers this just-received message once more, at once."""
        if not self.spec.sqs_duplicates:
            return False
        with self._lock:
            hit = self._rng_sqs.random() < self.spec.sqs_duplicates
        if hit:
            fault = {
                "fault": "sqs-duplicate",
                "message_id": message.get("MessageId"),
                "event_id": _message_event_id(message),
                "receive_count": int((message.get("Attributes") or {}).get("ApproximateReceiveCount", "1")),
                "at": round(time.time() - self._started, 3),
            }
            self._count(fault, "sqs_duplicates")
            log.warning("chaos: message %s (%s) delivered again", fault["message_id"], fault["event_id"])
        return hit

    def received_again(self, message: Mapping[str, Any], *, while_in_flight: bool) -> None:
        """A redelivered message was received: counted as concurrent if its first delivery still runs."""
        self._count(
            None, "sqs_duplicates_received", f"sqs_duplicates_received.{'concurrent' if while_in_flight else 'after'}"
        )

    # -- counts and report ---------------------------------------------------------------
    def _count(self, fault: dict[str, Any] | None, *keys: str) -> None:
        with self._lock:
            self.counts.update(keys)
            if fault is not None and len(self.faults) < _MAX_FAULTS_KEPT:
                self.faults.append(fault)
            self._write()

    def snapshot(self) -> dict[str, Any]:
        return {
            "spec": self.spec.text(),
            "seed": self.seed,
            "counts": dict(sorted(self.counts.items())),
            "faults": list(self.faults),
        }

    def _write(self) -> None:
        """The report, replaced atomically (called under the lock)."""
        if self.report_path is None:
            return
        tmp = self.report_path.with_name(self.report_path.name + ".tmp")
        tmp.write_text(json.dumps(self.snapshot()))
        tmp.replace(self.report_path)

    def write_report(self) -> None:
        with self._lock:
            self._write()


@contextmanager
def atomic_item_writes() -> Iterator[None]:
    """Make moto's DynamoDB item writes atomic, as DynamoDB's are, while the block runs.

    One re-entrant lock around moto's write methods (``transact_write_items`` calls
    the others): a condition and its write are one step, as on DynamoDB. moto serves
    one process on the GIL anyway, so this costs no throughput worth measuring.
    """
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    names = ("put_item", "update_item", "delete_item", "transact_write_items")
    originals = {name: DynamoDBBackend.__dict__[name] for name in names}

    def locked(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def write(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return original(*args, **kwargs)

        return write

    for name, original in originals.items():
        setattr(DynamoDBBackend, name, locked(original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(DynamoDBBackend, name, original)


def _event_id(body: bytes | bytearray) -> str | None:
    """The item's key as text (``eventId`` in this project's tables), for the fault log."""
    try:
        request = json.loads(body)
        key = request.get("Key") or request.get("Item") or {}
        value = key.get("eventId") or next(iter(key.values()))
        return str(next(iter(value.values())))
    except (ValueError, KeyError, TypeError, AttributeError, StopIteration):
        return None


def _condition(body: bytes | bytearray) -> str | None:
    """The write's condition (which of the caller's writes it was: a claim, a finish...)."""
    try:
        return str(json.loads(body).get("ConditionExpression") or "")[:300] or None
    except (ValueError, AttributeError):
        return None


def _message_event_id(message: Mapping[str, Any]) -> str | None:
    attribute = (message.get("MessageAttributes") or {}).get("eventId") or {}
    value = attribute.get("StringValue")
    return str(value) if value is not None else None


def read_report(path: Path | str) -> dict[str, Any]:
    """A chaos report (``{"counts": {}, "faults": []}`` when none was written: nothing injected)."""
    path = Path(path)
    if not path.exists():
        return {"counts": {}, "faults": []}
    return dict(json.loads(path.read_text()))
