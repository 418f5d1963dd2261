"""EventStore: the event log and the idempotency record, one DynamoDB item per event.

Why not Powertools' idempotency utility: it keeps its own record per call and
stores the function's return value; we need the same item to be the event log the
admin API lists (payload, status, attempts, errors, per-handler results), handler
checkpoints inside it, and a claim that costs one write. Two tables and two write
paths for one fact would drift. The claim follows the same conditional-write idea:

    attribute_not_exists(eventId)                       -- new
    OR status IN (FAILED, QUEUED)                       -- failed before / retry asked
    OR (status = IN_PROGRESS AND leaseUntil < now)      -- the holder died

Every later write is conditional on the claim's token, so a worker whose lease was
taken over cannot overwrite the new holder's record.

DynamoDB calls: a new event costs 2 (claim, finish), plus one checkpoint after each
non-idempotent handler that is followed by another; a duplicate costs 1 (the failed
claim returns the old item); an event with no handler costs 1.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
IGNORED = "IGNORED"
QUEUED = "QUEUED"
STATUSES = (IN_PROGRESS, COMPLETED, FAILED, IGNORED, QUEUED)

_ser = TypeSerializer()
_deser = TypeDeserializer()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def list_day(ts: float) -> str:
    """The UTC day of ``firstSeenAt``: the partition key of the ``ByDay`` listing index.

    Written with ``firstSeenAt`` in the same update (no extra DynamoDB call); one
    partition per day keeps the index's writes spread out and bounds "since" queries.
    """
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in values.items()}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _deser.deserialize(v) for k, v in item.items()}


@dataclass(slots=True)
class Claim:
    """The outcome of ``EventStore.claim``."""

    kind: str  # "claimed", "duplicate" (finished before) or "busy" (another worker holds it)
    item: dict[str, Any]
    token: str = ""

    @property
    def succeeded_handlers(self) -> set[str]:
        handlers = self.item.get("handlers") or {}
        return {name for name, result in handlers.items() if result.get("status") == "SUCCEEDED"}

    @property
    def attempts(self) -> int:
        return int(self.item.get("attempts", 0))


@dataclass(slots=True)
class HandlerResult:
    status: str  # SUCCEEDED or FAILED
    duration_ms: int
    error: str | None = None
    permanent: bool = False  # raised PermanentError: park, don't retry (not stored)
    at: str = field(default_factory=lambda: _iso(time.time()))

    def to_value(self) -> dict[str, Any]:
        value: dict[str, Any] = {"status": self.status, "durationMs": self.duration_ms, "at": self.at}
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

    # -- claim -------------------------------------------------------------------------
    def claim(self, meta: dict[str, Any], *, now: float | None = None, ignored: bool = False) -> Claim:
        """Take the event for processing with one conditional write.

        ``meta`` holds the event's descriptive attributes (type, source, payload...),
        written on first sight only. With ``ignored`` (no handler subscribed) the
        event is recorded as IGNORED in the same write.
        """
        now = time.time() if now is None else now
        token = uuid.uuid4().hex
        status = IGNORED if ignored else IN_PROGRESS
        names = {"#s": "status", "#ttl": "ttl"}
        values: dict[str, Any] = {
            ":status": status,
            ":in_progress": IN_PROGRESS,
            ":failed": FAILED,
            ":queued": QUEUED,
            ":now": int(now),
            ":now_iso": _iso(now),
            ":day": list_day(now),
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
            "listDay = if_not_exists(listDay, :day)",
            "handlers = if_not_exists(handlers, :empty)",
            "#ttl = :ttl",
        ]
        for index, (key, value) in enumerate(sorted(meta.items())):
            if value is None or key == "eventId":
                continue
            names[f"#m{index}"] = key
            values[f":m{index}"] = value
            sets.append(f"#m{index} = if_not_exists(#m{index}, :m{index})")
        if ignored:
            sets.append("finishedAt = :now_iso")
        try:
            result = self.client.update_item(
                TableName=self.table,
                Key={"eventId": {"S": meta["eventId"]}},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression=(
                    "attribute_not_exists(eventId) OR #s IN (:failed, :queued) "
                    "OR (#s = :in_progress AND leaseUntil < :now)"
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
            kind = "busy" if old.get("status") == IN_PROGRESS else "duplicate"
            return Claim(kind=kind, item=old)
        return Claim(kind="claimed", item=from_item(result["Attributes"]), token=token)

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
        now: float | None = None,
    ) -> None:
        """Record the outcome of this attempt and release the lease."""
        now = time.time() if now is None else now
        extra: dict[str, Any] = {
            "status": status,
            "finishedAt": _iso(now),
            "lastError": error[:2000] if error else None,
        }
        if parked:
            extra["parked"] = True
        self._update_owned(event_id, token, results, extra_sets=extra, now=now, release=True)

    def _update_owned(
        self,
        event_id: str,
        token: str,
        results: dict[str, HandlerResult],
        *,
        extra_sets: dict[str, Any],
        now: float,
        release: bool = False,
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
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"eventId": {"S": event_id}},
                UpdateExpression=expression,
                ConditionExpression="claimToken = :token",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item(values),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise LeaseLost(event_id) from exc
            raise

    # -- permanent failures --------------------------------------------------------------
    def record_invalid(self, event_id: str, meta: dict[str, Any], reason: str, now: float | None = None) -> None:
        """Record an event no retry can fix as FAILED and parked (one unconditional-ish write).

        A completed event is never overwritten.
        """
        now = time.time() if now is None else now
        values = {
            **{k: v for k, v in meta.items() if v is not None and k != "eventId"},
            "status": FAILED,
            "parked": True,
            "lastError": reason[:2000],
            "updatedAt": _iso(now),
            "finishedAt": _iso(now),
            "ttl": int(now + self.ttl_days * 86400),
        }
        names = {f"#a{i}": k for i, k in enumerate(values)}
        expression = "SET " + ", ".join(f"#a{i} = :a{i}" for i in range(len(values)))
        expression += (
            ", attempts = if_not_exists(attempts, :zero) + :one, firstSeenAt = if_not_exists(firstSeenAt, :now)"
            ", listDay = if_not_exists(listDay, :day)"
        )
        attr_values = {f":a{i}": v for i, v in enumerate(values.values())}
        attr_values.update({":zero": 0, ":one": 1, ":now": _iso(now), ":day": list_day(now), ":completed": COMPLETED})
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

    # -- reads -----------------------------------------------------------------------------
    def get(self, event_id: str) -> dict[str, Any] | None:
        result = self.client.get_item(TableName=self.table, Key={"eventId": {"S": event_id}}, ConsistentRead=True)
        item = result.get("Item")
        return from_item(item) if item else None
