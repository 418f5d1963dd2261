"""Operate the pipeline: list, show and retry events; peek at and redrive the DLQ.

Logic and data access in one place, used two ways: by the admin Lambda behind
IAM-authorised HTTP routes (``functions/admin``), and by the admin CLI
(``devtools/admin_cli.py``), which builds the same ``Admin`` on boto3 clients of the
operator's own credentials. Takes clients, never creates them (no boto3 import).

Listing reads the two GSIs of EventsTable, newest first, never a scan (the access
patterns and what each costs: docs/data-model.md):

- ``Attention`` (sparse: FAILED, PARKED, WAITING, QUEUED and retried IN_PROGRESS events)
  when the status asked for is one of those; it projects every listed column;
- ``Recent`` (every event) otherwise; it projects only what never changes (type, source,
  entity, times), so the page's items are then read by key for their status and errors.

Both are written in ``SHARDS`` shards: a page queries every shard (in parallel) from the
cursor's position and merges them newest first; a shard read only in part bounds what
the page may show, so a short page still carries a cursor. ``since`` always means
"first seen at or after". ``type`` and ``source`` are filter expressions on the index
query, a status other than an attention one is checked on the items read by key; the
queries one page costs are bounded (``QUERIES_PER_SHARD``).

The entity timeline (``entity_events``) reads the one ``Recent`` shard of the work order,
request or asset, filtered on ``entityKey``, sorts it by ``occurredAt``, and reads the
page's items by key (Query on the table key: Query calls only).

A retry sets the item QUEUED (the consumer may claim QUEUED events) and sends the
stored raw payload with the attributes ingest uses. Handlers that already succeeded
are skipped by the consumer as usual; ``force`` clears the per-handler results first
so every handler runs again. The update comes before the send, so a consumer never
sees the message before the item is claimable.

DLQ redrive is a receive -> send -> delete loop instead of SQS's
``StartMessageMoveTask``: that task is asynchronous (the caller would not learn how
many messages moved) and is rate-limited per queue; the loop reports the count
synchronously, stops before the Lambda's deadline and can be run again.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from mx_webhooks import normalize
from mx_webhooks.alerts import publish_alert
from mx_webhooks.breaker import INTEGRATIONS
from mx_webhooks.events import InvalidEvent, parse_event
from mx_webhooks.normalize import DEFAULT_SOURCE
from mx_webhooks.observability import emit, logger
from mx_webhooks.queues import EventQueues
from mx_webhooks.store import (
    ATTENTION_INDEX,
    ATTENTION_STATUSES,
    COMPLETED,
    FAILED,
    IGNORED,
    IN_PROGRESS,
    LISTED,
    PARKED,
    QUEUED,
    RECENT_INDEX,
    STATUSES,
    EventStore,
    HandlerStatus,
    Status,
    all_shards,
    is_refused,
    new_token,
    shard_of,
)

DEFAULT_PAGE = 50
MAX_PAGE = 200
QUERIES_PER_SHARD = 3  # bounds the reads one list request costs when filters are sparse (x SHARDS calls)
MAX_SHARD_READ = 1000  # entries one shard Query of a listing asks for at most
MAX_TIMELINE_QUERIES = 60  # pages of one Recent shard an entity timeline may read (60 x 1 MB)
SHARD_READERS = 8  # parallel shard queries of one listing page
FETCH_CHUNKS = 4  # pages of items one listing with a status reads by key at most
SWEEP_SCAN_PER_SHARD = 2000  # Recent entries per shard one stalled-claim sweep reads at most
ENTITY_KINDS = ("workorder", "request", "asset")
DEFAULT_BULK_RETRY = 100
MAX_BULK_RETRY = 500
MAX_PEEK = 50
DEFAULT_REDRIVE = 1000
MAX_REDRIVE = 10_000
STRANDED_AFTER_SECONDS = 900  # a QUEUED event this old has lost its message (its send failed)
MAX_STATS_ITEMS = 50_000  # bounds what one overview reads (a few MB of projected keys: a few Query pages a shard)
# The overview's bucket for events the Attention index does not hold: COMPLETED or IGNORED
# (or in their first attempt right now). Telling these apart would read every item by key.
SETTLED = "SETTLED"
_PROCESSED = {SETTLED, "COMPLETED", "IGNORED"}
_FAILED_STATES = {"FAILED", "PARKED"}
_INTERNAL = {"claimToken", "listDay", "listShard", "attention", "retryToken", "payloadSha"}
Position = tuple[str, str]  # (firstSeenAt or occurredAt, eventId): where a page ends
_RELATIVE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class AdminError(Exception):
    """A request the admin cannot serve; ``status`` is the HTTP status it maps to."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(AdminError):
    status = 400


class NotFound(AdminError):
    status = 404


class Conflict(AdminError):
    status = 409


class AdminConfig(BaseModel):
    """The admin function's environment (the CLI builds it from stack outputs)."""

    table_name: str = Field(alias="TABLE_NAME")
    queue_url: str = Field(alias="QUEUE_URL")
    dlq_url: str = Field(alias="DLQ_URL")
    retention_days: int = Field(default=30, ge=1, alias="EVENT_TTL_DAYS")
    alert_topic_arn: str = Field(default="", alias="ALERT_TOPIC_ARN")
    # A claim whose lease ended this long ago, with nobody taking it over, was stopped (a
    # Lambda timeout or crash) and its message is gone or parked: the sweep marks it.
    # Default: above the queue's visibility timeout (360 s), after which a redelivery
    # would have taken the claim over.
    stalled_after_seconds: int = Field(default=900, ge=60, alias="STALLED_AFTER_SECONDS")

    model_config = {"populate_by_name": True, "extra": "ignore"}


# -- parsing helpers (shared by the HTTP routes and the CLI) ------------------------------------
def parse_since(value: str | None, now: float) -> str | None:
    """``since`` as the ISO string stored in ``firstSeenAt``.

    Accepts an ISO 8601 date or date-time (naive means UTC) or a relative age such as
    ``90m``, ``12h``, ``2d``.
    """
    if value is None or value == "":
        return None
    value = value.strip()
    match = _RELATIVE.match(value)
    if match:
        moment = datetime.fromtimestamp(now, UTC) - timedelta(**{_UNITS[match[2]]: int(match[1])})
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError as exc:
            raise BadRequest(
                f"since: expected ISO 8601 (2026-09-14T10:00:00Z) or an age like 2h or 1d, got {value!r}"
            ) from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_int(value: Any, name: str, *, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"{name}: expected an integer from {low} to {high}, got {value!r}") from exc
    if not low <= number <= high:
        raise BadRequest(f"{name}: expected an integer from {low} to {high}, got {number}")
    return number


def parse_bool(value: Any, name: str) -> bool:
    if value is None or value == "" or value is False:
        return False
    if value is True:
        return True
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise BadRequest(f"{name}: expected true or false, got {value!r}")


def plain(value: Any) -> Any:
    """DynamoDB's Decimals and sets as JSON-friendly numbers and lists."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(v) for v in value]
    return value


def _iso_now(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _position(item: dict[str, Any]) -> Position:
    return (str(item.get("firstSeenAt", "")), str(item.get("eventId", "")))


def _timeline_position(item: dict[str, Any]) -> Position:
    return (str(item.get("occurredAt") or item.get("firstSeenAt") or ""), str(item.get("eventId", "")))


@dataclass
class _ShardRead:
    items: list[dict[str, Any]]
    frontier: Position | None  # the last item read when the shard was read only in part


def _key_condition(
    partition: str, shard: str, since_iso: str | None, upper: str | None
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The key condition of one shard's Query: ``firstSeenAt`` from ``since_iso`` up to ``upper``."""
    key_expr = "#pk = :shard"
    values: dict[str, Any] = {":shard": shard}
    if since_iso and upper:
        key_expr += " AND firstSeenAt BETWEEN :since AND :upper"
        values.update({":since": since_iso, ":upper": upper})
    elif upper:
        key_expr += " AND firstSeenAt <= :upper"
        values[":upper"] = upper
    elif since_iso:
        key_expr += " AND firstSeenAt >= :since"
        values[":since"] = since_iso
    return key_expr, {"#pk": partition}, values


ShardQuery = Callable[[str, int, dict[str, Any] | None], tuple[list[dict[str, Any]], dict[str, Any] | None]]


class _ShardMerge:
    """Newest first across the shards of a listing index, each read only as far as the page needs.

    A page of 50 over 32 shards takes ~1.6 entries a shard on average, so the first round
    asks each shard for a few (``first``: twice its share, plus 2), in parallel; then only
    the shards that still bound the merge are read again, for more each round. A shard's
    frontier is the last entry its reads evaluated (``LastEvaluatedKey``, filters applied
    after it): its unread entries are all older. An entry is taken only when it is at
    least as new as every open shard's frontier, so nothing is skipped or repeated; when
    the call budget (``QUERIES_PER_SHARD`` x shards) runs out first, ``resume`` is the
    newest open frontier and the next page starts there (everything newer was taken).
    Hand-written: DynamoDB has no merged Query over partitions, and no library does this.
    """

    def __init__(self, query: ShardQuery, shards: list[str], *, page: int, before: Position | None) -> None:
        self.query = query
        self.before = before
        self.first = -(-page // len(shards)) * 2 + 2
        self.rounds = 0
        self.budget = QUERIES_PER_SHARD * len(shards)
        self.stopped = False  # the budget ran out before the page was full
        self.pending: dict[str, list[dict[str, Any]]] = {shard: [] for shard in shards}
        self.start: dict[str, dict[str, Any] | None] = {}
        self.frontier: dict[str, Position | None] = dict.fromkeys(shards)  # open shards; None: not read yet

    def _read(self, shards: list[str], limit: int) -> None:
        def one(shard: str) -> tuple[str, list[dict[str, Any]], dict[str, Any] | None]:
            batch, start = self.query(shard, limit, self.start.get(shard))
            return shard, batch, start

        self.budget -= len(shards)
        with ThreadPoolExecutor(max_workers=SHARD_READERS, thread_name_prefix="shard") as pool:
            for shard, batch, start in pool.map(one, shards):
                self.pending[shard].extend(i for i in batch if self.before is None or _position(i) < self.before)
                if start is None:
                    del self.frontier[shard]
                else:
                    self.start[shard], self.frontier[shard] = start, _position(start)

    def _head(self) -> str | None:
        """The shard whose next pending entry is the newest."""
        heads = [(_position(items[0]), shard) for shard, items in self.pending.items() if items]
        return max(heads)[1] if heads else None

    def take(self, count: int) -> list[dict[str, Any]]:
        """Up to ``count`` more entries, newest first (fewer: the index has no more, or ``stopped``)."""
        taken: list[dict[str, Any]] = []
        while len(taken) < count:
            shard = self._head()
            head = _position(self.pending[shard][0]) if shard else None
            blocking = [s for s, f in self.frontier.items() if f is None or head is None or f > head]
            if shard is not None and not blocking:
                taken.append(self.pending[shard].pop(0))
                continue
            if not blocking:
                break  # every shard read to its end, every entry taken
            if self.budget < len(blocking):
                self.stopped = True
                break
            wanted = max(count - len(taken), self.first) * 2 ** max(self.rounds - 1, 0)
            self._read(blocking, self.first if self.rounds == 0 else min(wanted, MAX_SHARD_READ))
            self.rounds += 1
        return taken

    def more(self) -> bool:
        """Whether entries may be left (pending, or shards not read to their end)."""
        return bool(self.frontier) or any(self.pending.values())

    def resume(self) -> Position | None:
        """Where the next page starts after a short ``take``: None when the index has no more."""
        if not self.stopped:
            return None
        return max(f for f in self.frontier.values() if f is not None)


def _status_change(item: dict[str, Any]) -> dict[str, str] | None:
    """The work order's or request's status change the event's payload carries, if any."""
    payload = item.get("payload")
    if not isinstance(payload, str) or not payload:
        return None
    try:
        event = parse_event(payload, event_id=str(item["eventId"]), source=str(item.get("source") or DEFAULT_SOURCE))
    except InvalidEvent:
        return None
    if event.old_status is None and event.new_status is None:
        return None
    return {"from": event.old_status, "to": event.new_status}  # type: ignore[dict-item]


class Admin:
    def __init__(
        self,
        config: AdminConfig,
        dynamodb: Any,
        sqs: Any,
        *,
        sns: Any | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.dynamodb = dynamodb
        self.sqs = sqs
        self.sns = sns
        self.clock = clock
        self.store = EventStore(dynamodb, config.table_name, ttl_days=config.retention_days)
        self.queues = EventQueues(sqs, config.queue_url, config.dlq_url)

    # -- list ----------------------------------------------------------------------------------
    def list_events(
        self,
        *,
        status: str | None = None,
        event_type: str | None = None,
        source: str | None = None,
        since: str | None = None,
        limit: int | str | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """A page of events, newest first: ``{"items": [...], "nextCursor": str | None}``."""
        now = self.clock()
        page = parse_int(limit, "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)
        if status is not None and status != "":
            status = status.upper()
            if status not in STATUSES:
                raise BadRequest(f"status: expected one of {', '.join(STATUSES)}, got {status!r}")
        else:
            status = None
        since_iso = parse_since(since, now)
        filters = {"status": status, "type": event_type or None, "source": source or None, "since": since_iso}
        state = self._decode_cursor(cursor, filters)
        position = self._cursor_position(state)

        filter_expr, names, values = self._filters(event_type or None, source or None)
        if status is not None and status != IN_PROGRESS and status in ATTENTION_STATUSES:
            # every listed column is projected there: no read of the items
            names["#s"] = "status"
            values[":status"] = status
            filter_expr = " AND ".join(x for x in ("#s = :status", filter_expr) if x)
            items, next_position = self._merged_page(
                ATTENTION_INDEX, "attention", since_iso, page, position, filter_expr, names, values
            )
        else:  # Recent: then read the page's items by key, for their status, attempts, errors
            items, next_position = self._merged_page(
                RECENT_INDEX, "listShard", since_iso, page, position, filter_expr, names, values, status=status
            )
        return {
            "items": [{k: plain(item[k]) for k in LISTED if k in item} for item in items],
            "nextCursor": self._encode_cursor({"p": list(next_position)}, filters) if next_position else None,
        }

    @staticmethod
    def _cursor_position(state: dict[str, Any]) -> Position | None:
        raw = state.get("p")
        if raw is None:
            return None
        if not (isinstance(raw, list) and len(raw) == 2 and all(isinstance(x, str) for x in raw)):
            raise BadRequest("cursor: not a cursor this API returned")
        return (raw[0], raw[1])

    @staticmethod
    def _filters(event_type: str | None, source: str | None) -> tuple[str | None, dict[str, str], dict[str, Any]]:
        parts: list[str] = []
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        if event_type:
            parts.append("(eventType = :type OR contains(eventTypes, :type))")
            values[":type"] = event_type
        if source:
            parts.append("#src = :source")
            names["#src"] = "source"
            values[":source"] = source
        return (" AND ".join(parts) or None), names, values

    def _index_page(
        self,
        index: str,
        key_expr: str,
        names: dict[str, str],
        values: dict[str, Any],
        filter_expr: str | None,
        limit: int,
        start: dict[str, Any] | None,
        forward: bool = False,
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        return self.store.query_index(
            index, key_expr, names, values, filter_expr=filter_expr, limit=limit, start=start, forward=forward
        )

    def _read_shard(
        self,
        index: str,
        partition: str,
        shard: str,
        *,
        since_iso: str | None,
        before: Position | None,
        want: int,
        filter_expr: str | None,
        names: dict[str, str],
        values: dict[str, Any],
        forward: bool = False,
        queries: int = QUERIES_PER_SHARD,
        until: str | None = None,
    ) -> _ShardRead:
        """Up to ``want`` matching items of one shard, newest first (oldest first if ``forward``),
        strictly past ``before``, first seen from ``since_iso`` (to ``until``); the frontier
        says where the read stopped if it did not reach the end."""
        upper = before[0] if before and not forward else until
        key_expr, key_names, key_values = _key_condition(partition, shard, since_iso, upper)
        values = {**values, **key_values}
        names = {**key_names, **names}
        items: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        for _ in range(queries):
            limit = min(max(want, 10), 1000)
            batch, start = self._index_page(index, key_expr, names, values, filter_expr, limit, start, forward)
            items.extend(i for i in batch if before is None or _position(i) < before)
            if len(items) >= want or start is None:
                break
        return _ShardRead(items, _position(start) if start else None)

    def _merged_page(
        self,
        index: str,
        partition: str,
        since_iso: str | None,
        page: int,
        position: Position | None,
        filter_expr: str | None,
        names: dict[str, str],
        values: dict[str, Any],
        *,
        status: str | None = None,
    ) -> tuple[list[dict[str, Any]], Position | None]:
        """One page, newest first, merged from every shard of ``index``; and where the next starts.

        The shards are read a little at a time (``_ShardMerge``); with ``status`` (a Recent
        listing), items are read by key and kept when they have it.
        """

        def query(shard: str, limit: int, start: dict[str, Any] | None) -> tuple[list[dict[str, Any]], Any]:
            key_expr, key_names, key_values = _key_condition(
                partition, shard, since_iso, position[0] if position else None
            )
            return self._index_page(
                index, key_expr, {**key_names, **names}, {**values, **key_values}, filter_expr, limit, start
            )

        merge = _ShardMerge(query, all_shards(), page=page, before=position)
        if index == ATTENTION_INDEX:  # every listed column is projected: no item reads
            taken = merge.take(page)
            if len(taken) == page:
                return taken, (_position(taken[-1]) if merge.more() else None)
            return taken, merge.resume()
        kept: list[dict[str, Any]] = []
        for _ in range(FETCH_CHUNKS):  # read enough items by key for one request at most
            chunk = merge.take(page - len(kept) if status is None else page)
            for n, (entry, item) in enumerate(
                zip(chunk, self._fetch_batch([str(i["eventId"]) for i in chunk]), strict=True)
            ):
                if item and (status is None or item.get("status") == status):
                    kept.append(item)
                if len(kept) == page:
                    more = n < len(chunk) - 1 or merge.more()
                    return kept, (_position(entry) if more else None)
            if not chunk or merge.stopped:
                return kept, merge.resume()
        return kept, (_position(chunk[-1]) if merge.more() else None)

    def _fetch_batch(self, event_ids: list[str]) -> list[dict[str, Any]]:
        """The listed columns of ``event_ids``' items, in that order (missing ones as ``{}``):
        BatchGetItem, 100 keys a call, strongly consistent (a listing shows the status a retry
        just set). A projection costs the same read units; it makes the answers smaller."""
        items = self.store.items(event_ids, consistent=True, attributes=LISTED)
        found = {str(item["eventId"]): item for item in items}
        return [found.get(event_id, {}) for event_id in event_ids]

    def _fetch(self, event_ids: list[str]) -> list[dict[str, Any]]:
        """The items of ``event_ids``, in that order (missing ones as ``{}``): one Query on the
        table key each, in parallel (the same read cost as GetItem; one call type for listings)."""
        if not event_ids:
            return []
        with ThreadPoolExecutor(max_workers=SHARD_READERS, thread_name_prefix="fetch") as pool:
            return list(pool.map(lambda event_id: self.store.item(event_id) or {}, event_ids))

    # -- entity timeline -------------------------------------------------------------------------
    def entity_events(
        self,
        kind: str,
        entity_id: str,
        *,
        since: str | None = None,
        limit: int | str | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Every event of one work order, request or asset, in ``occurredAt`` order:
        ``{"items": [...], "nextCursor": str | None}`` (the same envelope as ``list_events``).

        Each item: type, status, the status change the payload carries (``from`` -> ``to``),
        each handler's outcome, attempts, the handlers skipped as stale, and ``show``, the
        admin path of the whole record.
        """
        kind = (kind or "").strip().lower()
        if kind not in ENTITY_KINDS:
            raise BadRequest(f"kind: expected one of {', '.join(ENTITY_KINDS)}, got {kind!r}")
        entity_id = (entity_id or "").strip()
        if not entity_id or len(entity_id) > 200:
            raise BadRequest("id: expected the work order's, request's or asset's id")
        if entity_id.isdigit():
            entity_id = str(int(entity_id))  # as the event stores it (ids are numbers)
        entity = f"{kind}:{entity_id}"
        page = parse_int(limit, "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)
        since_iso = parse_since(since, self.clock())
        state = self._decode_cursor(cursor, {"entity": entity, "since": since_iso})
        position = self._cursor_position(state)

        found = self._read_shard(
            RECENT_INDEX,
            "listShard",
            shard_of(entity),
            since_iso=since_iso,
            before=None,
            want=10**9,
            filter_expr="entityKey = :entity",
            names={},
            values={":entity": entity},
            forward=True,
            queries=MAX_TIMELINE_QUERIES,
        )
        if found.frontier is not None:
            raise BadRequest(
                f"{entity}: more events than one request reads ({MAX_TIMELINE_QUERIES} index pages); "
                "narrow it with since"
            )
        ordered = sorted(found.items, key=_timeline_position)
        if position is not None:
            ordered = [i for i in ordered if _timeline_position(i) > position]
        chunk = ordered[:page]
        rows = [self._timeline_row(item) for item in self._fetch([str(i["eventId"]) for i in chunk]) if item]
        more = len(ordered) > page
        next_cursor = (
            self._encode_cursor({"p": list(_timeline_position(chunk[-1]))}, {"entity": entity, "since": since_iso})
            if more
            else None
        )
        return {"items": rows, "nextCursor": next_cursor}

    @staticmethod
    def _timeline_row(item: dict[str, Any]) -> dict[str, Any]:
        event_id = str(item["eventId"])
        handlers = {
            name: {k: plain(v) for k, v in result.items() if k in ("status", "error", "at", "durationMs")}
            for name, result in sorted((item.get("handlers") or {}).items())
        }
        row: dict[str, Any] = {
            "eventId": event_id,
            "eventType": item.get("eventType"),
            "occurredAt": item.get("occurredAt"),
            "firstSeenAt": item.get("firstSeenAt"),
            "status": item.get("status"),
            "attempts": plain(item.get("attempts", 0)),
            "statusChange": _status_change(item),
            "handlers": handlers,
            "stale": sorted(n for n, r in handlers.items() if r.get("status") == HandlerStatus.SKIPPED),
            "parked": bool(item.get("parked")) or item.get("status") == Status.PARKED,
            "show": f"/admin/webhooks/{event_id}",
        }
        for key in ("lastError", "waitingFor"):
            if item.get(key):
                row[key] = item[key]
        return row

    @staticmethod
    def _encode_cursor(state: dict[str, Any], filters: dict[str, Any]) -> str:
        raw = json.dumps({**state, "f": filters}, separators=(",", ":"), default=plain)
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @staticmethod
    def _decode_cursor(cursor: str | None, filters: dict[str, Any]) -> dict[str, Any]:
        if not cursor:
            return {}
        try:
            state = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
            raise BadRequest("cursor: not a cursor this API returned") from exc
        if not isinstance(state, dict):
            raise BadRequest("cursor: not a cursor this API returned")
        if state.pop("f", None) != filters:
            raise BadRequest("cursor: it belongs to a listing with other filters; repeat the same filters")
        return state

    # -- show ----------------------------------------------------------------------------------
    def get_event(self, event_id: str) -> dict[str, Any]:
        """Everything recorded about one event, the payload decoded when it is JSON."""
        item = self._get(event_id)
        if item is None:
            raise NotFound(f"no event with id {event_id!r} (it may be older than the retention period)")
        shown = {k: plain(v) for k, v in item.items() if k not in _INTERNAL}
        if "ttl" in shown:
            shown["expiresAt"] = _iso_now(float(shown.pop("ttl")))
        if "leaseUntil" in shown:  # a lease means something only while the event is being processed
            if shown.get("status") == IN_PROGRESS:
                shown["leaseUntil"] = _iso_now(float(shown["leaseUntil"]))
            else:
                del shown["leaseUntil"]
        received = shown.get("receivedAt")
        if isinstance(received, str) and received.replace(".", "", 1).isdigit():  # records from before ISO
            shown["receivedAt"] = _iso_now(float(received))
        payload = shown.get("payload")
        if isinstance(payload, str):
            with contextlib.suppress(ValueError):  # unparseable: show the raw text it was parked for
                shown["payload"] = json.loads(payload)
        return shown

    def _get(self, event_id: str) -> dict[str, Any] | None:
        return self.store.get(event_id)

    # -- retry ---------------------------------------------------------------------------------
    def retry(self, event_id: str, *, force: bool = False, handler: str | None = None) -> dict[str, Any]:
        """Re-enqueue one event. Succeeded handlers are not rerun unless ``force``.

        A QUEUED event may be retried again: its message may have been lost (the send
        after the update failed), and a second message is harmless (the claim absorbs it).
        The update is idempotent by a retry token, so a lost reply's retry does not turn
        into a refusal that strands the event without a message.
        """
        now = self.clock()
        item = self._get(event_id)
        if item is None:
            raise NotFound(f"no event with id {event_id!r}")
        if is_refused(event_id):
            raise Conflict(
                f"{event_id} is a refused delivery (invalid, or reusing event id {item.get('claimedEventId')!r} "
                "with another payload): it is kept for inspection and cannot be retried; fix the sender"
            )
        status = item.get("status")
        lease_live = status == IN_PROGRESS and float(item.get("leaseUntil", 0)) >= now
        if lease_live:
            raise Conflict(f"event {event_id} is being processed right now; try again when its lease ends")
        if status in (COMPLETED, IGNORED) and not force and not handler:
            raise Conflict(
                f"event {event_id} is {status}; its handlers already ran. "
                "Use --force (API: force=true) to run them all again"
            )
        payload = item.get("payload")
        if not isinstance(payload, str) or not payload:
            raise Conflict(f"event {event_id} has no stored payload to re-enqueue")

        recorded = item.get("handlers") or {}
        if handler:
            if handler not in recorded:
                raise BadRequest(f"handler: {handler!r} has no result on event {event_id} (it has: {sorted(recorded)})")
            rerun: tuple[str, ...] = (handler,)
        else:  # every handler given up on (parked) runs again; failed ones always do
            rerun = tuple(name for name, result in recorded.items() if result.get("status") == HandlerStatus.PARKED)
        if not self.store.request_retry(event_id, observed=item, token=new_token(), force=force, rerun=rerun, now=now):
            raise Conflict(f"event {event_id} changed while retrying it; look at it again")
        event_type = str(item.get("eventType") or normalize.UNKNOWN_TYPE)
        self.queues.send_event(
            payload, event_id=event_id, event_type=event_type, source=str(item.get("source") or DEFAULT_SOURCE)
        )
        emit("EventRetried")
        logger.info(
            "event re-enqueued",
            extra={"event_id": event_id, "previous_status": status, "force": force, "event_type": event_type},
        )
        answer = {"eventId": event_id, "status": QUEUED, "previousStatus": status, "force": force}
        return answer | ({"handler": handler} if handler else {})

    def retry_failed(
        self, *, since: str | None, limit: int | str | None = None, dry_run: bool = False
    ) -> dict[str, Any]:
        """Re-enqueue every event that needs it, first seen since ``since``, oldest first, at most ``limit``.

        That is: FAILED and PARKED events; QUEUED ones whose retry message was lost (still QUEUED
        ``STRANDED_AFTER_SECONDS`` after the request); IN_PROGRESS ones whose holder was
        stopped (lease ended ``stalled_after_seconds`` ago, nobody took over).
        """
        now = self.clock()
        since_iso = parse_since(since, now)
        if since_iso is None:
            raise BadRequest("since is required (ISO 8601 or an age like 12h): a bulk retry must be bounded")
        most = parse_int(limit, "limit", default=DEFAULT_BULK_RETRY, low=1, high=MAX_BULK_RETRY)
        # One pass over the Attention index (only events that needed attention are there).
        filter_expr = (
            "#s IN (:failed, :parked) OR (#s = :queued AND updatedAt < :stranded) "
            "OR (#s = :in_progress AND leaseUntil < :cutoff)"
        )
        values = {
            ":failed": FAILED,
            ":parked": Status.PARKED,
            ":queued": QUEUED,
            ":stranded": _iso_now(now - STRANDED_AFTER_SECONDS),
            ":in_progress": IN_PROGRESS,
            ":cutoff": int(now - self.config.stalled_after_seconds),
        }

        def read(shard: str) -> _ShardRead:
            return self._read_shard(
                ATTENTION_INDEX,
                "attention",
                shard,
                since_iso=since_iso,
                before=None,
                want=most + 1,
                filter_expr=filter_expr,
                names={"#s": "status"},
                values=values,
                forward=True,
                queries=MAX_TIMELINE_QUERIES,
            )

        with ThreadPoolExecutor(max_workers=SHARD_READERS, thread_name_prefix="shard") as pool:
            reads = list(pool.map(read, all_shards()))
        found = [item for r in reads for item in r.items]
        found = [item for item in found if not is_refused(str(item["eventId"]))]  # kept, never retried
        found.sort(key=lambda item: str(item.get("firstSeenAt", "")))
        more = len(found) > most
        chosen = [item["eventId"] for item in found[:most]]
        if dry_run:
            return {"since": since_iso, "dryRun": True, "wouldRetry": chosen, "more": more}

        retried: list[str] = []
        skipped: list[dict[str, str]] = []

        def one(event_id: str) -> tuple[str, str | None]:
            try:
                self.retry(event_id)
            except AdminError as exc:
                return event_id, exc.message
            except Exception as exc:  # keep going: report this one, retry the rest
                logger.exception("bulk retry: one event failed", extra={"event_id": event_id})
                return event_id, f"{type(exc).__name__}: {exc}"
            return event_id, None

        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="retry") as pool:
            for event_id, error in pool.map(one, chosen):
                if error is None:
                    retried.append(event_id)
                else:
                    skipped.append({"eventId": event_id, "reason": error})
        return {"since": since_iso, "retried": retried, "skipped": skipped, "more": more}

    # -- stalled claims --------------------------------------------------------------------------
    def sweep_stalled(self, *, limit: int = 100) -> dict[str, Any]:
        """Find events whose holder was stopped and nobody took over; record them parked and alert.

        A Lambda stopped at its timeout leaves its event IN_PROGRESS; its message comes
        back after the visibility timeout and the next claim takes over. When that never
        happens (the message reached the DLQ while the event was held, or was lost), the
        event would wait unseen: no status an operator lists, no alert. Runs on a schedule
        (the admin function's ``SweepStalled`` event) and from the CLI (``sweep``).
        """
        now = self.clock()
        marked: list[str] = []
        stalled = self.store.stalled(older_than=now - self.config.stalled_after_seconds, limit=limit)
        for item in [*stalled, *self._stalled_first_attempts(now, limit)]:
            event_id = str(item["eventId"])
            if event_id in marked:
                continue
            lease_end = _iso_now(float(item.get("leaseUntil", 0)))
            reason = (
                f"stalled: its claim's lease ended at {lease_end} and no redelivery took it over "
                "(the consumer was stopped, e.g. at its timeout); retry it with admin retry"
            )
            if not self.store.mark_stalled(event_id, str(item.get("claimToken", "")), reason=reason, now=now):
                continue  # taken over (or marked) since it was read
            marked.append(event_id)
            logger.error("stalled event parked", extra={"event_id": event_id, "lease_until": lease_end})
            publish_alert(
                self.sns,
                self.config.alert_topic_arn,
                "stalled: the consumer was stopped while running it",
                event_id=event_id,
                event_type=str(item.get("eventType") or normalize.UNKNOWN_TYPE),
                error=reason,
                status=PARKED,  # what the record says now (admin list --status PARKED)
            )
        return {"marked": marked, "alertedFromDLQ": self._sweep_dlq()}

    def _stalled_first_attempts(self, now: float, limit: int) -> list[dict[str, Any]]:
        """First attempts left IN_PROGRESS with an ended lease: read once each, in order of first sight.

        A first claim does not enter the Attention index (the happy path writes no entry
        there), so this reads the Recent index from a watermark (``EventStore.sweep_mark``:
        every event first seen up to it was seen finished, stalled, or in the Attention
        index) to the events first seen ``stalled_after_seconds`` ago, and their items by
        key (BatchGetItem): each event is read by one sweep, once (docs/data-model.md).
        The watermark stops at the first event still IN_PROGRESS under a live lease.
        """
        cutoff = now - self.config.stalled_after_seconds
        upto = _iso_now(cutoff)
        mark = self.store.sweep_mark() or _iso_now(now - (self.config.retention_days + 2) * 86400)
        if mark >= upto:
            return []

        def read(shard: str) -> _ShardRead:
            return self._read_shard(
                RECENT_INDEX,
                "listShard",
                shard,
                since_iso=mark,
                before=None,
                want=SWEEP_SCAN_PER_SHARD,
                filter_expr=None,
                names={},
                values={},
                forward=True,
                queries=SWEEP_SCAN_PER_SHARD // 1000 + 1,
                until=upto,
            )

        with ThreadPoolExecutor(max_workers=SHARD_READERS, thread_name_prefix="shard") as pool:
            reads = list(pool.map(read, all_shards()))
        frontiers = [r.frontier for r in reads if r.frontier is not None]
        bound = min(frontiers) if frontiers else None  # past it a shard was not read this time
        entries = sorted((i for r in reads for i in r.items if bound is None or _position(i) <= bound), key=_position)
        found: list[dict[str, Any]] = []
        new_mark = bound[0] if bound else upto
        for item in self.store.items([str(e["eventId"]) for e in entries]):
            if item.get("status") != IN_PROGRESS or item.get("attention"):
                continue  # finished, or the Attention index has it
            if float(item.get("leaseUntil", 0)) < cutoff:
                found.append(item)
            else:  # its lease is still live: look at it again next time
                new_mark = min(new_mark, str(item.get("firstSeenAt") or new_mark))
        if len(found) <= limit:
            self.store.advance_sweep_mark(new_mark)
        return found[:limit]

    def _sweep_dlq(self) -> list[str]:
        """Alert, once, each event whose message the queue itself moved to the DLQ.

        The consumer alerts when it parks an event, but an invocation that dies on each of
        an event's last receives (a crash, a timeout, a claim DynamoDB refused) never gets
        to: the queue's redrive moves the message and only the DLQ-depth alarm fires, once
        for all. Such a message has no ``parkedReason``; its event record has no
        ``alertedAt``. Looks at up to ``MAX_PEEK`` messages per run, leaving them there.
        """
        alerted: list[str] = []
        for message in self.queues.peek(MAX_PEEK, raw=True):
            event_id = str(message.get("eventId") or "")
            if not event_id or message.get("parkedReason"):
                continue  # parked by the consumer, which alerted
            item = self.store.get(event_id) or {}
            if self._refused_in_dlq(message, item):
                if self._alert_refused(message, event_id):
                    alerted.append(EventStore.invalid_key(self._source(message), message["rawBody"]))
                continue
            if item.get("alertedAt") or item.get("status") in (COMPLETED, IGNORED):
                continue
            if item.get("status") == IN_PROGRESS and float(item.get("leaseUntil", 0)) >= self.clock():
                continue  # a copy of it is being processed right now
            reason = "the queue moved its message to the DLQ after its maxReceiveCount receives"
            if item.get("lastError"):
                reason += f"; last error: {str(item['lastError'])[:500]}"
            publish_alert(
                self.sns,
                self.config.alert_topic_arn,
                "parked by the queue after its last allowed receive",
                event_id=event_id,
                event_type=str(message.get("eventType") or item.get("eventType") or normalize.UNKNOWN_TYPE),
                error=reason,
                status=PARKED,  # what the record says now (admin list --status PARKED)
            )
            meta = {"eventType": message.get("eventType"), "source": message.get("source")}
            if self.store.park_by_queue(event_id, meta, reason=reason, now=self.clock()):
                alerted.append(event_id)
        return alerted

    @staticmethod
    def _source(message: dict[str, Any]) -> str:
        return str(message.get("source") or DEFAULT_SOURCE)

    def _refused_in_dlq(self, message: dict[str, Any], item: dict[str, Any]) -> bool:
        """A message that is not the event its ``eventId`` names: not an event at all, or another
        payload than the one recorded under that id (the consumer would have refused it)."""
        try:
            event = parse_event(message["rawBody"], event_id=str(message["eventId"]), source=self._source(message))
        except InvalidEvent:
            return True
        return item.get("payloadSha") not in (None, normalize.payload_digest(event.payload))

    def _alert_refused(self, message: dict[str, Any], claimed_id: str) -> bool:
        """Record a refused delivery the queue parked under its own key and alert it, once."""
        body = message["rawBody"]
        key = EventStore.invalid_key(self._source(message), body)
        if (self.store.get(key) or {}).get("alertedAt"):
            return False
        reason = f"a delivery naming event {claimed_id} that is not that event; the queue parked it"
        meta = {
            "eventType": message.get("eventType") or normalize.UNKNOWN_TYPE,
            "source": self._source(message),
            "payload": body[:200_000],
            "claimedEventId": claimed_id,
        }
        self.store.record_invalid(key, meta, reason, now=self.clock())
        publish_alert(
            self.sns,
            self.config.alert_topic_arn,
            "a refused delivery was parked by the queue",
            event_id=key,
            event_type=str(meta["eventType"]),
            error=reason,
            status=PARKED,  # what the record says now (admin list --status PARKED)
        )
        self.store.mark_alerted(key, now=self.clock())
        return True

    # -- stats ---------------------------------------------------------------------------------
    def stats(self, hours: int | str | None = None) -> dict[str, Any]:
        """Counts by status and an hourly series of the events first seen in the last ``hours``.

        For the operator console's overview (``GET /admin/stats``). Queries, never a scan,
        of every shard of both listing indexes, key condition ``firstSeenAt >= since``,
        reading only the attributes it counts (a ProjectionExpression: a 1 MB page holds
        thousands of events), bounded by ``MAX_STATS_ITEMS`` (``truncated`` says when it
        stopped there):

        - ``Attention`` gives each event that needs attention with its status (FAILED,
          PARKED, WAITING, QUEUED, a retried IN_PROGRESS) and ``updatedAt``;
        - ``Recent`` gives every event; those not in ``Attention`` are counted ``SETTLED``
          (COMPLETED or IGNORED, or in their first attempt right now): the index does not
          hold the status, and reading every item by key to split them would cost a read
          per event.

        Per hour: ``received`` by ``firstSeenAt``; ``processed`` (settled) by ``firstSeenAt``
        too (processing takes seconds; the index has no later time); ``failed`` (FAILED or
        PARKED) by ``updatedAt``, the write that set the status. Only events first seen in
        the window count, so an old event retried now is not in it.
        """
        now = self.clock()
        span = parse_int(hours, "hours", default=24, low=1, high=168)
        since = _iso_now(now - span * 3600)
        first_hour = int((now - span * 3600) // 3600) * 3600
        hour_keys = [_iso_now(first_hour + n * 3600)[:13] for n in range(span + 1)]
        series = {key: {"hour": key + ":00:00Z", "received": 0, "processed": 0, "failed": 0} for key in hour_keys}
        counts: dict[str, int] = {str(status): 0 for status in ATTENTION_STATUSES} | {SETTLED: 0}
        attention, complete = self._stats_read(
            ATTENTION_INDEX, "attention", since, "eventId, #s, firstSeenAt, updatedAt"
        )
        recent, complete_too = self._stats_read(RECENT_INDEX, "listShard", since, "eventId, firstSeenAt")
        by_id = {str(item["eventId"]): item for item in attention}
        for entry in recent:
            item = by_id.pop(str(entry["eventId"]), None) or {**entry, "status": SETTLED}
            self._count(item, counts, series)
        for item in by_id.values():  # entered Attention after the Recent read: still counted
            self._count(item, counts, series)
        return {
            "since": since,
            "until": _iso_now(now),
            "hours": span,
            "total": sum(counts.values()),
            "counts": counts,
            "series": list(series.values()),
            "dlqDepth": self.queues.dlq_depth(),
            "truncated": not (complete and complete_too),
        }

    def _stats_read(self, index: str, partition: str, since: str, projection: str) -> tuple[list[dict[str, Any]], bool]:
        """Every shard of ``index`` since ``since`` (projected), in parallel; and whether all was read."""
        per_shard = MAX_STATS_ITEMS // len(all_shards())

        def read(shard: str) -> tuple[list[dict[str, Any]], bool]:
            items: list[dict[str, Any]] = []
            start = None
            while len(items) < per_shard:
                batch, start = self.store.query_index(
                    index,
                    "#pk = :shard AND firstSeenAt >= :since",
                    {"#pk": partition, "#s": "status"} if "#s" in projection else {"#pk": partition},
                    {":shard": shard, ":since": since},
                    limit=per_shard - len(items),
                    start=start,
                    projection=projection,
                )
                items.extend(batch)
                if start is None:
                    return items, True
            return items, False

        with ThreadPoolExecutor(max_workers=SHARD_READERS, thread_name_prefix="stats") as pool:
            reads = list(pool.map(read, all_shards()))
        return [item for items, _ in reads for item in items], all(done for _, done in reads)

    @staticmethod
    def _count(item: dict[str, Any], counts: dict[str, int], series: dict[str, dict[str, Any]]) -> None:
        status = str(item.get("status") or "UNKNOWN")
        counts[status] = counts.get(status, 0) + 1
        received = series.get(str(item.get("firstSeenAt", ""))[:13])
        if received is not None:
            received["received"] += 1
        outcome = "processed" if status in _PROCESSED else "failed" if status in _FAILED_STATES else None
        settled = series.get(str(item.get("updatedAt") or item.get("firstSeenAt", ""))[:13])
        if outcome and settled is not None:
            settled[outcome] += 1

    # -- integrations ----------------------------------------------------------------------------
    def integrations(self) -> dict[str, Any]:
        """Each integration's circuit breaker as a consumer last recorded it (``GET /admin/integrations``).

        One BatchGetItem of the ``breaker~<name>`` items (``EventStore.record_breaker``), no
        Scan, no index. Each container has its own breaker; the record is the latest
        transition of any of them. ``state``: OPEN, HALF_OPEN (a probe is out) or CLOSED;
        an integration with no record has never opened (CLOSED, ``since`` null). ``expired``:
        OPEN, but ``until`` has passed: the next call probes, so treat it as probing.
        """
        now = self.clock()
        records = self.store.breaker_records(list(INTEGRATIONS))
        items = []
        for name in INTEGRATIONS:
            record = records.get(name) or {}
            state = str(record.get("breakerState") or "CLOSED")
            until = str(record["openUntil"]) if state == "OPEN" and record.get("openUntil") else None
            items.append(
                {
                    "name": name,
                    "state": state,
                    "since": record.get("changedAt"),
                    "until": until,
                    "expired": bool(until and until <= _iso_now(now)),
                    "reason": record.get("reason") or None,
                    "retryAfterSeconds": plain(record.get("retryAfterSeconds")),
                }
            )
        return {"at": _iso_now(now), "items": items}

    # -- DLQ -------------------------------------------------------------------------------------
    def dlq_depth(self) -> int:
        return self.queues.dlq_depth()

    def peek_dlq(self, max_messages: int | str | None = None) -> dict[str, Any]:
        """Up to ``max_messages`` parked messages, left in the DLQ (made visible again at once)."""
        most = parse_int(max_messages, "max", default=10, low=1, high=MAX_PEEK)
        messages = [self._why_parked(message) for message in self.queues.peek(most)]
        return {"approximateDepth": self.queues.dlq_depth(), "messages": messages}

    def _why_parked(self, message: dict[str, Any]) -> dict[str, Any]:
        """Why and when a DLQ message was parked.

        The consumer parks with a ``parkedReason`` attribute, and its send is the parking
        time. A message the queue itself moved (after ``maxReceiveCount`` receives) has
        neither, and keeps its first send time: its event record says why and when.
        """
        if message.get("parkedReason"):
            return {**message, "parkedAt": message.get("sentAt"), "parkedBy": "consumer"}
        item = self.store.get(str(message["eventId"])) if message.get("eventId") else None
        reason = "the queue moved it after its maxReceiveCount receives"
        if item and item.get("lastError"):
            reason += f"; last error: {str(item['lastError'])[:500]}"
        parked_at = (item or {}).get("finishedAt") or (item or {}).get("updatedAt")
        return {**message, "parkedReason": reason, "parkedAt": parked_at, "parkedBy": "queue"}

    def redrive_dlq(self, *, max_messages: int | str | None = None, deadline: float | None = None) -> dict[str, Any]:
        """Move parked messages back to the events queue; report how many moved.

        ``deadline`` (a ``clock()`` value) stops the loop early; run it again for the rest.
        """
        most = parse_int(max_messages, "max", default=DEFAULT_REDRIVE, low=1, high=MAX_REDRIVE)
        result = self.queues.redrive(most, deadline=deadline, clock=self.clock)
        if result.moved:
            emit("DLQRedriven", value=result.moved)
        remaining = self.queues.dlq_depth()
        logger.info("DLQ redriven", extra={"moved": result.moved, "failed": result.failed, "remaining": remaining})
        return {"moved": result.moved, "failed": result.failed, "remaining": remaining}
