"""EventStore: the event log and the idempotency record, one DynamoDB item per event.

Why not Powertools' idempotency utility: it keeps its own record per call and
stores the function's return value; we need the same item to be the event log the
admin API lists (payload, status, attempts, errors, per-handler results), handler
checkpoints inside it, and a claim that costs one write. Two tables and two write
paths for one fact would drift. The claim follows the same conditional-write idea:

    attribute_not_exists(eventId)                       -- new
    OR status IN (FAILED, QUEUED, WAITING, PARKED)      -- failed, retry asked, held, redriven
    OR (status = IN_PROGRESS AND leaseUntil < now)      -- the holder died

Every later write is conditional on the claim's token, so a worker whose lease was
taken over cannot overwrite the new holder's record.

Every conditional write here is safe to retry after a lost reply (DynamoDB documents
that a 500 may have been applied; botocore retries it with the same parameters): the
caller makes the token before the call, and a condition failure whose returned item
already holds that token is the write's own earlier success, not a refusal. The claim
also refuses an event id that the table holds for a different payload (``payloadSha``):
"conflict", recorded under its own key by the consumer, never run on the other's record.

DynamoDB calls: a new event costs 2 (claim, finish), plus one checkpoint per
non-idempotent handler that succeeds while another non-idempotent one still runs, plus one
watermark write per ``latest_only`` handler; a duplicate costs 1 (the failed claim
returns the old item); an event with no handler costs 1.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from mx_webhooks.normalize import SCOPE_SEPARATOR


class Status(StrEnum):
    """An event's status, derived from its handlers' states. FAILED (some will be retried),
    QUEUED (an operator asked for a retry), WAITING and PARKED may be claimed; IN_PROGRESS
    only once its lease has ended; COMPLETED and IGNORED are final (a forced admin retry
    aside). PARKED: in the DLQ, nobody will retry it by itself (a redrive or an operator's
    retry will); the record also keeps ``parked`` set until it completes, so the attempt
    that claims it back knows to rerun its parked handlers."""

    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    IGNORED = "IGNORED"
    QUEUED = "QUEUED"
    WAITING = "WAITING"  # held behind an earlier event of its entity, or by an open circuit (``waitingFor``)
    PARKED = "PARKED"  # given up on: nobody retries it by itself


class HandlerStatus(StrEnum):
    """One handler's state on an event: each handler of an event is independent."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"  # will be retried
    PARKED = "PARKED"  # given up on: a PermanentError, or out of retries
    SKIPPED = "SKIPPED"  # stale: a newer event of its entity was already handled (``latest_only``)


class ClaimKind(StrEnum):
    CLAIMED = "claimed"
    DUPLICATE = "duplicate"  # finished before: nothing to do
    BUSY = "busy"  # another worker holds a live lease: try again after it
    CONFLICT = "conflict"  # the id belongs to a different payload


IN_PROGRESS = Status.IN_PROGRESS
COMPLETED = Status.COMPLETED
FAILED = Status.FAILED
IGNORED = Status.IGNORED
QUEUED = Status.QUEUED
WAITING = Status.WAITING
PARKED = Status.PARKED
STATUSES = tuple(Status)

INVALID_PREFIX = f"invalid{SCOPE_SEPARATOR}"

# The listing indexes (template.yaml, EventsTable; access patterns and costs in
# docs/data-model.md):
# - ``Recent`` (``listShard`` / ``firstSeenAt``): every event, entered once at its first
#   write. Its keys and projected attributes never change afterwards (all written with
#   ``if_not_exists``), so the finish of an event costs that index nothing. ``listShard``
#   is a hash of the event's entity (work order, request, asset) into ``SHARDS`` values:
#   no partition takes more than ~1/SHARDS of the writes, and one entity's events share one
#   shard, so its timeline reads one shard.
# - ``Attention`` (``attention`` / ``firstSeenAt``): sparse. ``attention`` (the event's own
#   shard) is SET by every write that leaves the event in an ``ATTENTION_STATUSES`` status and
#   REMOVEd by the one that settles it (COMPLETED, IGNORED). A first claim does not touch it:
#   an event that succeeds at its first attempt never enters this index.
RECENT_INDEX = "Recent"
ATTENTION_INDEX = "Attention"
LIST_INDEXES = (RECENT_INDEX, ATTENTION_INDEX)
SHARDS = 32
# Statuses an operator or a sweep looks for: listed from the Attention index. IN_PROGRESS
# is there only for an event that needed attention before (a retry, a takeover of a
# failed event); a first attempt that stalls keeps its message, which comes back and is
# taken over, or reaches the DLQ, which the DLQ sweep reads.
ATTENTION_STATUSES = (Status.FAILED, Status.PARKED, Status.WAITING, Status.QUEUED, Status.IN_PROGRESS)
SETTLED_STATUSES = frozenset({Status.COMPLETED, Status.IGNORED})
# What the Recent index projects: the columns a listing can filter on without reading the
# item (tests/template ties it to the projection). Everything else a listing shows
# (status, attempts, errors) is read from the items of the page (``Admin._fetch``).
RECENT_PROJECTED = (
    "eventId",
    "firstSeenAt",
    "listShard",
    "eventType",
    "eventTypes",
    "source",
    "entityKey",
    "occurredAt",
)
LISTED = (
    "eventId",
    "status",
    "eventType",
    "source",
    "attempts",
    "firstSeenAt",
    "updatedAt",
    "occurredAt",
    "entityKey",
    "lastError",
    "parked",
)

_ser = TypeSerializer()
_deser = TypeDeserializer()


def iso(ts: float) -> str:
    """Epoch seconds as the ISO 8601 UTC text every time in the event record uses."""
    return _iso(ts)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def shard_of(key: str) -> str:
    """``key``'s shard of the listing indexes: a stable hash into ``SHARDS`` two-digit values.

    The ``Recent`` index is keyed by the shard of the event's entity (``entityKey``), the
    ``Attention`` index by the shard of the event id. Written in the same update as the
    rest of the event (no extra DynamoDB call).
    """
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=4).digest()
    return f"{int.from_bytes(digest, 'big') % SHARDS:02d}"


def list_shard(meta: dict[str, Any]) -> str:
    """The ``Recent`` shard of an event: its entity's, else its own id's."""
    return shard_of(str(meta.get("entityKey") or meta.get("eventId") or ""))


def attention_value(event_id: str, status: str) -> str | None:
    """The ``attention`` attribute a write leaving the event in ``status`` sets (None: REMOVE it)."""
    return None if status in SETTLED_STATUSES else shard_of(event_id)


def all_shards() -> list[str]:
    return [f"{index:02d}" for index in range(SHARDS)]


def _first_sight(meta: dict[str, Any], names: dict[str, str], values: dict[str, Any]) -> list[str]:
    """SET clauses writing an event's descriptive attributes only where the item lacks them
    (the first write to see the event sets them; later ones never change them)."""
    sets = []
    for index, (key, value) in enumerate(sorted(meta.items())):
        if value is None or key == "eventId":
            continue
        names[f"#m{index}"] = key
        values[f":m{index}"] = value
        sets.append(f"#m{index} = if_not_exists(#m{index}, :m{index})")
    return sets


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in values.items()}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _deser.deserialize(v) for k, v in item.items()}


@dataclass(slots=True)
class Claim:
    """The outcome of ``EventStore.claim``."""

    kind: ClaimKind
    item: dict[str, Any]
    token: str = ""

    @property
    def succeeded_handlers(self) -> set[str]:
        handlers = self.item.get("handlers") or {}
        return {name for name, result in handlers.items() if result.get("status") == HandlerStatus.SUCCEEDED}

    @property
    def attempts(self) -> int:
        return int(self.item.get("attempts", 0))

    @property
    def handler_states(self) -> dict[str, HandlerStatus]:
        handlers = self.item.get("handlers") or {}
        return {name: HandlerStatus(result.get("status")) for name, result in handlers.items()}

    def lease_left(self, now: float) -> float:
        """Seconds until the holder's lease ends (0 when there is none)."""
        return max(0.0, float(self.item.get("leaseUntil", 0)) - now)


def is_refused(event_id: str) -> bool:
    """A record of a refused delivery (``EventStore.invalid_key``), not of an event."""
    return event_id.startswith(INVALID_PREFIX)


def new_token() -> str:
    """A claim or request token, made before the write so a retried write can recognise itself."""
    return uuid.uuid4().hex


@dataclass(slots=True)
class HandlerResult:
    status: HandlerStatus
    duration_ms: int
    error: str | None = None
    permanent: bool = False  # raised PermanentError: park, don't retry (not stored)
    deferred: str | None = None  # not called: this integration's circuit is open (not stored)
    retry_in: float = 0.0  # ...until then, in seconds (not stored)
    at: str = field(default_factory=lambda: _iso(time.time()))

    def to_value(self) -> dict[str, Any]:
        value: dict[str, Any] = {"status": str(self.status), "durationMs": self.duration_ms, "at": self.at}
        if self.error:
            value["error"] = self.error[:1000]
        return value


class LeaseLost(Exception):
    """Our claim was taken over (our lease expired): stop writing, let SQS retry."""


class EventStore:
    """Data access for EventsTable. Thread-safe: uses a low-level client only."""

    def __init__(self, client: Any, table_name: str, *, lease_seconds: int = 960, ttl_days: int = 30) -> None:
        self.client = client
        self.table = table_name
        self.lease_seconds = lease_seconds
        self.ttl_days = ttl_days

    def _update_if(self, **request: Any) -> bool:
        """One conditional UpdateItem: True when applied, False when its condition refused it."""
        try:
            self.client.update_item(**request)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # -- claim -------------------------------------------------------------------------
    def claim(
        self, meta: dict[str, Any], *, token: str | None = None, now: float | None = None, ignored: bool = False
    ) -> Claim:
        """Take the event for processing with one conditional write.

        ``meta`` holds the event's descriptive attributes (type, source, payload,
        ``payloadSha``...), written on first sight only. With ``ignored`` (no handler
        subscribed) the event is recorded as IGNORED in the same write. ``token``: made
        by the caller (``new_token``) so that, should this call fail after being applied,
        the caller can still release the claim it may hold.
        """
        now = time.time() if now is None else now
        token = token or new_token()
        status = IGNORED if ignored else IN_PROGRESS
        names = {"#s": "status", "#ttl": "ttl"}
        values: dict[str, Any] = {
            ":status": status,
            ":in_progress": IN_PROGRESS,
            ":failed": FAILED,
            ":queued": QUEUED,
            ":waiting": WAITING,
            ":parked": PARKED,
            ":now": int(now),
            ":now_iso": _iso(now),
            ":shard": list_shard(meta),
            ":lease": int(now + self.lease_seconds),
            ":token": token,
            ":zero": 0,
            ":one": 1,
            ":empty": {},
            ":ttl": int(now + self.ttl_days * 86400),
        }
        sets = [
            "#s = :status",
            "leaseUntil = :lease",
            "claimToken = :token",
            "attempts = if_not_exists(attempts, :zero) + :one",
            "updatedAt = :now_iso",
            "firstSeenAt = if_not_exists(firstSeenAt, :now_iso)",
            "listShard = if_not_exists(listShard, :shard)",
            "handlers = if_not_exists(handlers, :empty)",
            "#ttl = :ttl",
        ]
        sets += _first_sight(meta, names, values)
        removes = ""
        if ignored:  # final at once: no lease to hold
            sets.remove("leaseUntil = :lease")
            del values[":lease"]
            sets.append("finishedAt = :now_iso")
            removes = " REMOVE leaseUntil, attention"  # settled: out of the Attention index
        if meta.get("payloadSha"):
            same_payload = "(attribute_not_exists(payloadSha) OR payloadSha = :sha)"
            values[":sha"] = meta["payloadSha"]
        else:  # DynamoDB has no TRUE literal: an always-true comparison
            same_payload = "(:zero = :zero)"
        try:
            result = self.client.update_item(
                TableName=self.table,
                Key={"eventId": {"S": meta["eventId"]}},
                UpdateExpression="SET " + ", ".join(sets) + removes,
                ConditionExpression=(
                    "attribute_not_exists(eventId) OR ("
                    + same_payload
                    + " AND (#s IN (:failed, :queued, :waiting, :parked) OR (#s = :in_progress AND leaseUntil < :now)))"
                ),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item(values),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old = from_item(exc.response.get("Item") or {})
            return self._entered(Claim(kind=self._refusal(old, meta, token, now), item=old, token=token))
        return self._entered(Claim(kind=ClaimKind.CLAIMED, item=from_item(result["Attributes"]), token=token))

    def _entered(self, claim: Claim) -> Claim:
        """Put a claimed event that is not on its first attempt into the Attention index.

        A first claim leaves it out (the happy path writes no attention entry); a retry of
        a failed event is there already. What remains is a takeover of a claim whose holder
        was stopped: entered here, by one more write, so that the stalled-claim sweep finds
        it if this attempt is stopped too. Conditional on our token: safe to retry, and a
        no-op once someone else has taken the event over.
        """
        item = claim.item
        if claim.kind != ClaimKind.CLAIMED or claim.attempts <= 1 or item.get("attention"):
            return claim
        if item.get("status") != IN_PROGRESS:
            return claim
        event_id = str(item["eventId"])
        shard = attention_value(event_id, IN_PROGRESS)
        if self._update_if(
            TableName=self.table,
            Key={"eventId": {"S": event_id}},
            UpdateExpression="SET attention = :a",
            ConditionExpression="claimToken = :token",
            ExpressionAttributeValues=to_item({":a": shard, ":token": claim.token}),
        ):
            item["attention"] = shard
        return claim

    @staticmethod
    def _refusal(old: dict[str, Any], meta: dict[str, Any], token: str, now: float) -> ClaimKind:
        """What a failed claim condition means, given the item it returned."""
        if old.get("claimToken") == token:
            return ClaimKind.CLAIMED  # our own write, applied before its reply was lost
        sha = meta.get("payloadSha")
        if sha and old.get("payloadSha") not in (None, sha):
            return ClaimKind.CONFLICT
        if old.get("status") == IN_PROGRESS and float(old.get("leaseUntil", 0)) >= int(now):
            return ClaimKind.BUSY
        return ClaimKind.DUPLICATE

    # -- progress ----------------------------------------------------------------------
    def checkpoint(self, event_id: str, token: str, handler: str, result: HandlerResult) -> None:
        """Record one handler's result now, so a crash after it does not rerun it."""
        self._update_owned(event_id, token, {handler: result}, extra_sets={}, now=time.time())

    def finish(
        self,
        event_id: str,
        token: str,
        *,
        status: str,
        results: dict[str, HandlerResult],
        error: str | None = None,
        parked: bool = False,
        waiting_for: str | None = None,
        deferred: bool = False,
        now: float | None = None,
    ) -> None:
        """Record the outcome of this attempt and release the lease.

        ``deferred``: the attempt ran nothing (every handler left waits for an open circuit);
        its claim token joins ``deferredClaims`` (a set: a lost reply's retry adds it once),
        whose size the consumer takes off the receive count before deciding to park.
        Parking or completing forgets them (a redriven or retried message counts afresh).
        """
        now = time.time() if now is None else now
        extra: dict[str, Any] = {
            "status": status,
            "finishedAt": _iso(now),
            "lastError": error[:2000] if error else None,
        }
        # None removes it: an event completed by a redrive or a retry is no longer parked
        extra["parked"] = True if parked else None
        extra["waitingFor"] = waiting_for
        extra["attention"] = attention_value(event_id, status)
        if status in (COMPLETED, PARKED):
            extra["deferredClaims"] = None
        self._update_owned(event_id, token, results, extra_sets=extra, now=now, release=True, add_claim=deferred)

    def release(self, event_id: str, token: str, *, results: dict[str, HandlerResult], error: str) -> None:
        """After an error while holding the claim: record this attempt FAILED and free the claim.

        Only while the event is still IN_PROGRESS under our token: when the error was a
        lost reply of a finish that DynamoDB applied (the event is COMPLETED already),
        the release must not turn it back to FAILED. Raises ``LeaseLost`` when there is
        nothing of ours to release.
        """
        now = time.time()
        extra = {
            "status": FAILED,
            "finishedAt": _iso(now),
            "lastError": error[:2000] or None,
            "attention": attention_value(event_id, FAILED),
        }
        self._update_owned(event_id, token, results, extra_sets=extra, now=now, release=True, only_in_progress=True)

    def _update_owned(
        self,
        event_id: str,
        token: str,
        results: dict[str, HandlerResult],
        *,
        extra_sets: dict[str, Any],
        now: float,
        release: bool = False,
        only_in_progress: bool = False,
        add_claim: bool = False,
    ) -> None:
        # "#h" only when used: DynamoDB rejects unused names, and a finish with no new
        # results (every pending handler already succeeded) is legitimate.
        names: dict[str, str] = {"#h": "handlers"} if results else {}
        values: dict[str, Any] = {":token": token, ":now_iso": _iso(now)}
        sets = ["updatedAt = :now_iso"]
        removes = ["leaseUntil"] if release else []
        for index, (name, result) in enumerate(results.items()):
            names[f"#h{index}"] = name
            values[f":h{index}"] = result.to_value()
            sets.append(f"#h.#h{index} = :h{index}")
        for index, (key, value) in enumerate(extra_sets.items()):
            names[f"#x{index}"] = key
            if value is None:
                removes.append(f"#x{index}")
            else:
                values[f":x{index}"] = value
                sets.append(f"#x{index} = :x{index}")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        if add_claim:  # a set: adding the same token again (a lost reply's retry) changes nothing
            names["#dc"] = "deferredClaims"
            values[":dc"] = {token}
            expression += " ADD #dc :dc"
        condition = "claimToken = :token"
        if only_in_progress:
            names["#st"] = "status"
            values[":in_progress"] = IN_PROGRESS
            condition += " AND #st = :in_progress"
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"eventId": {"S": event_id}},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item(values),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise LeaseLost(event_id) from exc
            raise

    # -- permanent failures --------------------------------------------------------------
    @staticmethod
    def invalid_key(source: str, body: str) -> str:
        """The key an invalid delivery is recorded under: its own, never a valid event's.

        Derived from the delivery (so its redeliveries share one record), and holding the
        scope separator, which no accepted event id holds: an invalid delivery that names
        a live event's id cannot overwrite that event's record or its claim.
        """
        digest = hashlib.sha256(f"{source}\n{body}".encode("utf-8", "surrogatepass")).hexdigest()
        return f"{INVALID_PREFIX}{digest[:40]}"

    def record_invalid(self, event_id: str, meta: dict[str, Any], reason: str, now: float | None = None) -> None:
        """Record a delivery no retry can fix as PARKED, under ``invalid_key``.

        One write, safe to repeat (a lost reply's retry rewrites the same values; the
        attempts count may then read one high). A completed record is never overwritten.
        """
        now = time.time() if now is None else now
        values = {
            **{k: v for k, v in meta.items() if v is not None and k != "eventId"},
            "status": PARKED,
            "parked": True,
            "attention": attention_value(event_id, PARKED),
            "lastError": reason[:2000],
            "updatedAt": _iso(now),
            "finishedAt": _iso(now),
            "ttl": int(now + self.ttl_days * 86400),
        }
        names = {f"#a{i}": k for i, k in enumerate(values)}
        expression = "SET " + ", ".join(f"#a{i} = :a{i}" for i in range(len(values)))
        expression += (
            ", attempts = if_not_exists(attempts, :zero) + :one, firstSeenAt = if_not_exists(firstSeenAt, :now)"
            ", listShard = if_not_exists(listShard, :shard)"
        )
        attr_values = {f":a{i}": v for i, v in enumerate(values.values())}
        attr_values.update(
            {":zero": 0, ":one": 1, ":now": _iso(now), ":shard": shard_of(event_id), ":completed": COMPLETED}
        )
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"eventId": {"S": event_id}},
                UpdateExpression=expression,
                ConditionExpression="attribute_not_exists(eventId) OR #st <> :completed",
                ExpressionAttributeNames={**names, "#st": "status"},
                ExpressionAttributeValues=to_item(attr_values),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    # -- retry requested by an operator ------------------------------------------------------
    def request_retry(
        self,
        event_id: str,
        *,
        observed: dict[str, Any],
        token: str,
        force: bool = False,
        rerun: tuple[str, ...] = (),
        now: float | None = None,
    ) -> bool:
        """Set the event QUEUED for a retry, if it is still as ``observed``; True if it is now ours to send.

        Safe to retry after a lost reply: ``retryToken`` marks our own write, and a
        condition failure that finds it is our success. ``force`` clears the handler
        results so that every handler runs again.
        """
        now = time.time() if now is None else now
        sets = ["#s = :queued", "updatedAt = :now", "retryRequestedAt = :now", "retryToken = :rt", "attention = :attn"]
        values: dict[str, Any] = {":queued": QUEUED, ":now": _iso(now), ":rt": token}
        values[":attn"] = attention_value(event_id, QUEUED)
        values[":observed"] = observed.get("status")
        names = {"#s": "status"}
        removes = ["parked", "leaseUntil", "stalledAt"]
        if force:
            sets.append("handlers = :empty")
            values[":empty"] = {}
        else:  # the handlers to run again (parked ones, or the one asked for): forget their result
            for index, name in enumerate(rerun):
                names[f"#r{index}"] = name
                removes.append(f"handlers.#r{index}")
        condition = "#s = :observed"
        if observed.get("status") == IN_PROGRESS:
            condition += " AND leaseUntil < :epoch"
            values[":epoch"] = int(now)
        if observed.get("retryToken"):  # unchanged since it was read, not merely the same status
            condition += " AND retryToken = :seen"
            values[":seen"] = observed["retryToken"]
        else:
            condition += " AND attribute_not_exists(retryToken)"
        return self._update_if(
            TableName=self.table,
            Key={"eventId": {"S": event_id}},
            UpdateExpression="SET " + ", ".join(sets) + " REMOVE " + ", ".join(removes),
            # Our own earlier write (a lost reply's retry) only while nobody has claimed
            # the event since: re-applied over a live claim, it would free the event for a
            # second worker while the first runs its handlers.
            ConditionExpression=f"({condition}) OR (retryToken = :rt AND #s = :queued)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item(values),
        )

    # -- stalled claims --------------------------------------------------------------------
    def stalled(self, *, older_than: float, limit: int = 100) -> list[dict[str, Any]]:
        """IN_PROGRESS events whose lease ended before ``older_than`` (epoch s): their holder
        was stopped (a Lambda timeout, a crash) and no redelivery has taken them over since.

        Queries each shard of the sparse ``Attention`` index (an event is there from its first
        attempt that did not settle it: a retry, a takeover of a failed event). A first
        attempt that stalls is not: its message comes back after the visibility timeout and
        the next claim takes it over, or the queue moves it to the DLQ, which the DLQ sweep
        reads (``Admin._sweep_dlq``).
        """
        items: list[dict[str, Any]] = []
        for shard in all_shards():
            start: dict[str, Any] | None = None
            while len(items) < limit:
                page, start = self.query_index(
                    ATTENTION_INDEX,
                    "attention = :shard",
                    {"#s": "status"},
                    {":shard": shard, ":in_progress": IN_PROGRESS, ":cutoff": int(older_than)},
                    filter_expr="#s = :in_progress AND leaseUntil < :cutoff",
                    limit=limit,
                    start=start,
                    forward=True,
                )
                items.extend(page)
                if not start:
                    break
        return items[:limit]

    def mark_stalled(self, event_id: str, claim_token: str, *, reason: str, now: float | None = None) -> bool:
        """Record a stalled claim as PARKED, if nobody has taken it over; True if marked.

        Conditional on the stalled holder's token and an ended lease, so a live holder is
        never touched; a retry after a lost reply rewrites the same values.
        """
        now = time.time() if now is None else now
        values = {
            ":parked": PARKED,
            ":true": True,
            ":reason": reason[:2000],
            ":now": _iso(now),
            ":token": claim_token,
            ":epoch": int(now),
            ":attn": attention_value(event_id, PARKED),
        }
        return self._update_if(
            TableName=self.table,
            Key={"eventId": {"S": event_id}},
            UpdateExpression=(
                "SET #s = :parked, parked = :true, lastError = :reason, updatedAt = :now, "
                "finishedAt = :now, stalledAt = :now, alertedAt = :now, attention = :attn"
            ),
            ConditionExpression="claimToken = :token AND leaseUntil < :epoch",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=to_item(values),
        )

    # -- newest state per entity ------------------------------------------------------------
    def advance_newest(self, handler: str, entity_key: str, occurred_at: str, now: float | None = None) -> bool:
        """Move a ``latest_only`` handler's watermark for an entity to ``occurred_at``; False when
        it already handled a newer event of that entity (this one is stale).

        One item per (handler, entity) in this table, keyed ``newest~<handler>~<entity>``:
        outside both listing indexes (no listShard, no attention), expiring with the events.
        Equal times pass, so a retry of the same event (or a lost reply's retry) runs.
        """
        now = time.time() if now is None else now
        return self._update_if(
            TableName=self.table,
            Key={"eventId": {"S": f"newest{SCOPE_SEPARATOR}{handler}{SCOPE_SEPARATOR}{entity_key}"}},
            UpdateExpression="SET newest = :t, updatedAt = :now, #ttl = :ttl",
            ConditionExpression="attribute_not_exists(newest) OR newest <= :t",
            ExpressionAttributeNames={"#ttl": "ttl"},
            ExpressionAttributeValues=to_item(
                {":t": occurred_at, ":now": _iso(now), ":ttl": int(now + self.ttl_days * 86400)}
            ),
        )

    # -- held for ordering ----------------------------------------------------------------------
    def mark_waiting(self, meta: dict[str, Any], *, waiting_for: str, now: float | None = None) -> bool:
        """Record an event held behind an earlier, unfinished event of its entity: WAITING, with
        the id it waits for, so the wait is listed and shown (``admin list --status WAITING``).

        Only over a record nobody holds or finished (new, FAILED, QUEUED, WAITING, PARKED and
        redriven); the same values again after a lost reply. Returns False when the record
        was not changed.
        """
        now = time.time() if now is None else now
        names = {"#s": "status", "#ttl": "ttl"}
        values: dict[str, Any] = {
            ":waiting": WAITING,
            ":failed": FAILED,
            ":queued": QUEUED,
            ":parked": PARKED,
            ":for": waiting_for,
            ":now": _iso(now),
            ":shard": list_shard(meta),
            ":attn": attention_value(meta["eventId"], WAITING),
            ":empty": {},
            ":ttl": int(now + self.ttl_days * 86400),
        }
        sets = [
            "#s = :waiting",
            "waitingFor = :for",
            "attention = :attn",
            "updatedAt = :now",
            "firstSeenAt = if_not_exists(firstSeenAt, :now)",
            "listShard = if_not_exists(listShard, :shard)",
            "handlers = if_not_exists(handlers, :empty)",
            "#ttl = if_not_exists(#ttl, :ttl)",
        ]
        sets += _first_sight(meta, names, values)
        same_payload = "(:for = :for)"
        if meta.get("payloadSha"):
            same_payload = "(attribute_not_exists(payloadSha) OR payloadSha = :sha)"
            values[":sha"] = meta["payloadSha"]
        return self._update_if(
            TableName=self.table,
            Key={"eventId": {"S": meta["eventId"]}},
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression=(
                f"attribute_not_exists(eventId) OR ({same_payload} AND #s IN (:failed, :queued, :waiting, :parked))"
            ),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item(values),
        )

    # -- alerts ------------------------------------------------------------------------------
    def mark_alerted(self, event_id: str, now: float | None = None) -> None:
        """Note that an alert named this event, so the DLQ sweep does not alert it again."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"eventId": {"S": event_id}},
                UpdateExpression="SET alertedAt = :now",
                ConditionExpression="attribute_exists(eventId)",
                ExpressionAttributeValues=to_item({":now": _iso(time.time() if now is None else now)}),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def park_by_queue(self, event_id: str, meta: dict[str, Any], *, reason: str, now: float | None = None) -> bool:
        """Record an event whose message the queue itself moved to the DLQ as PARKED and alerted
        (the DLQ sweep, after publishing the alert); True if recorded.

        Not over a finished event, nor over a live claim. Safe to repeat after a lost reply:
        the values are the same, and PARKED satisfies the condition again.
        """
        now = time.time() if now is None else now
        values: dict[str, Any] = {
            ":failed": FAILED,
            ":queued": QUEUED,
            ":waiting": WAITING,
            ":parked": PARKED,
            ":in_progress": IN_PROGRESS,
            ":true": True,
            ":reason": reason[:2000],
            ":now": _iso(now),
            ":epoch": int(now),
            ":shard": list_shard({"eventId": event_id, **meta}),
            ":attn": attention_value(event_id, PARKED),
            ":ttl": int(now + self.ttl_days * 86400),
        }
        names = {"#s": "status", "#ttl": "ttl"}
        sets = [
            "#s = :parked",
            "parked = :true",
            "attention = :attn",
            "alertedAt = :now",
            "updatedAt = :now",
            "lastError = if_not_exists(lastError, :reason)",
            "firstSeenAt = if_not_exists(firstSeenAt, :now)",
            "listShard = if_not_exists(listShard, :shard)",
            "#ttl = if_not_exists(#ttl, :ttl)",
        ]
        sets += _first_sight(meta, names, values)
        return self._update_if(
            TableName=self.table,
            Key={"eventId": {"S": event_id}},
            UpdateExpression="SET " + ", ".join(sets) + " REMOVE leaseUntil",
            ConditionExpression=(
                "attribute_not_exists(eventId) OR #s IN (:failed, :queued, :waiting, :parked) "
                "OR (#s = :in_progress AND leaseUntil < :epoch)"
            ),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item(values),
        )

    # -- reads -----------------------------------------------------------------------------
    def query_index(
        self,
        index: str,
        key_expr: str,
        names: dict[str, str],
        values: dict[str, Any],
        *,
        filter_expr: str | None = None,
        limit: int,
        start: dict[str, Any] | None = None,
        forward: bool = False,
        projection: str | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One Query page of a listing index: the items and the key to continue from.

        ``projection``: only these attributes (a ProjectionExpression, its names in ``names``).
        """
        args: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": index,
            "KeyConditionExpression": key_expr,
            "ExpressionAttributeValues": to_item(values),
            "ScanIndexForward": forward,
            "Limit": limit,
        }
        if names:
            args["ExpressionAttributeNames"] = names
        if filter_expr:
            args["FilterExpression"] = filter_expr
        if projection:
            args["ProjectionExpression"] = projection
        if start:
            args["ExclusiveStartKey"] = to_item(start)
        result = self.client.query(**args)
        last = result.get("LastEvaluatedKey")
        return [from_item(i) for i in result.get("Items", [])], (from_item(last) if last else None)

    def items(
        self, event_ids: list[str], *, consistent: bool = False, attributes: tuple[str, ...] = ()
    ) -> list[dict[str, Any]]:
        """The items of ``event_ids`` (those that exist), 100 keys per BatchGetItem, eventually
        consistent unless ``consistent``; only ``attributes`` when given (with ``eventId``)."""
        found: list[dict[str, Any]] = []
        shape: dict[str, Any] = {"ConsistentRead": consistent}
        if attributes:
            names = {f"#a{n}": name for n, name in enumerate(dict.fromkeys(("eventId", *attributes)))}
            shape.update(ProjectionExpression=", ".join(names), ExpressionAttributeNames=names)
        for offset in range(0, len(event_ids), 100):
            keys = [{"eventId": {"S": event_id}} for event_id in dict.fromkeys(event_ids[offset : offset + 100])]
            request: dict[str, Any] = {self.table: {"Keys": keys, **shape}}
            for _ in range(10):
                result = self.client.batch_get_item(RequestItems=request)
                found.extend(from_item(i) for i in result.get("Responses", {}).get(self.table, []))
                request = result.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(0.05)
        return found

    # -- the stalled-claim sweep's watermark --------------------------------------------------
    _SWEEP_MARK = f"sweep{SCOPE_SEPARATOR}first-attempts"

    def sweep_mark(self) -> str | None:
        """The ``firstSeenAt`` up to which the sweep has seen every first attempt (None: never ran)."""
        result = self.client.get_item(
            TableName=self.table, Key={"eventId": {"S": self._SWEEP_MARK}}, ConsistentRead=True
        )
        value = (result.get("Item") or {}).get("checkedUpTo", {}).get("S")
        return str(value) if value else None

    def advance_sweep_mark(self, checked_up_to: str, now: float | None = None) -> None:
        """Move the watermark forward (never back: two sweeps may race). Outside both indexes.

        Safe to retry after a lost reply: equal values pass the condition."""
        now = time.time() if now is None else now
        self._update_if(
            TableName=self.table,
            Key={"eventId": {"S": self._SWEEP_MARK}},
            UpdateExpression="SET checkedUpTo = :w, updatedAt = :now",
            ConditionExpression="attribute_not_exists(checkedUpTo) OR checkedUpTo <= :w",
            ExpressionAttributeValues=to_item({":w": checked_up_to, ":now": _iso(now)}),
        )

    # -- circuit breaker transitions (mx_webhooks.breaker) --------------------------------------
    BREAKER_PREFIX = f"breaker{SCOPE_SEPARATOR}"

    @classmethod
    def breaker_key(cls, integration: str) -> str:
        return f"{cls.BREAKER_PREFIX}{integration}"

    def record_breaker(
        self,
        integration: str,
        state: str,
        *,
        at: float,
        open_until: float | None = None,
        reason: str = "",
        retry_after: float | None = None,
    ) -> bool:
        """Record a breaker's transition: one UpdateItem, only on a transition, never per call.

        One item per integration, keyed ``breaker~<integration>`` (like the sweep's watermark:
        no listShard, no attention, so outside both indexes and every listing; no TTL, so
        the last transition stays readable). It holds the latest transition of any
        container: the condition keeps a later ``changedAt`` from being overwritten by an
        earlier one that arrives late (another container, another thread), and lets equal
        times pass, so a retry after a lost reply rewrites the same values. False when a
        later transition is already recorded.
        """
        values: dict[str, Any] = {
            ":state": state,
            ":at": _iso(at),
            ":name": integration,
            ":reason": reason[:500],
        }
        sets = ["breakerState = :state", "changedAt = :at", "integration = :name", "reason = :reason"]
        removes = []
        for attribute, value in (
            ("openUntil", _iso(open_until) if open_until else None),
            ("retryAfterSeconds", round(retry_after) if retry_after else None),
        ):
            if value is None:
                removes.append(attribute)
            else:
                values[f":{attribute}"] = value
                sets.append(f"{attribute} = :{attribute}")
        return self._update_if(
            TableName=self.table,
            Key={"eventId": {"S": self.breaker_key(integration)}},
            UpdateExpression="SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else ""),
            ConditionExpression="attribute_not_exists(changedAt) OR changedAt <= :at",
            ExpressionAttributeValues=to_item(values),
        )

    def breaker_records(self, integrations: list[str]) -> dict[str, dict[str, Any]]:
        """The recorded transition of each of ``integrations`` that has one: one BatchGetItem."""
        found = self.items([self.breaker_key(name) for name in integrations])
        return {str(item.get("integration")): item for item in found if item.get("integration")}

    def item(self, event_id: str) -> dict[str, Any] | None:
        """One event's item by a Query on the table key (what a listing page reads per item:
        the cost of a GetItem, and the timeline stays Query calls only)."""
        result = self.client.query(
            TableName=self.table,
            KeyConditionExpression="eventId = :id",
            ExpressionAttributeValues={":id": {"S": event_id}},
            ConsistentRead=True,
        )
        items = result.get("Items") or []
        return from_item(items[0]) if items else None

    def get(self, event_id: str) -> dict[str, Any] | None:
        result = self.client.get_item(TableName=self.table, Key={"eventId": {"S": event_id}}, ConsistentRead=True)
        item = result.get("Item")
        return from_item(item) if item else None
