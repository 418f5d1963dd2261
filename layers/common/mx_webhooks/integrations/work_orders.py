"""Create a MaintainX work order exactly once per (event, purpose), across retries and crashes.

The consumer reruns a handler that did not record success. A create call has three
places to die: before the POST, after MaintainX created the work order but before
we heard back (timeout, dropped connection), and after we heard back but before
anything was recorded (Lambda killed). Only the first is harmless to redo. So:

1. **Intent.** One atomic DynamoDB update on ``pk = "intent#<purpose>#<eventId>"``
   creates the intent (``PENDING``) or returns the existing one, counting attempts.
   ``DONE`` -> the work order exists already: return its id, create nothing.
2. **Look before creating again.** An intent seen before (attempts > 1) means an
   earlier attempt may have created the work order. Every work order we create
   carries a deterministic marker in its description (``Ref: mxwh-<hash of
   purpose + event id>``), so the earlier one is found by listing recent work
   orders (``MaintainXClient.find_work_order_with_marker``), and recorded instead
   of creating a second.
3. **Create** with the marker, then mark the intent ``DONE`` with the new id.

The POST itself is never resent after it may have reached MaintainX (``http``
only resends it on 429 or when no connection was made); recovery always goes
through step 2. The happy path costs two DynamoDB writes and one POST; the list
call is only made after a failure.

Limit: step 2 looks at the newest few pages of work orders. A retry that comes
after more than that many new work orders in the organisation, or before
MaintainX's list shows the new one, can still create a second. The queue's
backoff (seconds to minutes) keeps both unlikely.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from mx_webhooks.integrations.maintainx_api import EntityId, MaintainXClient, NewWorkOrder
from mx_webhooks.observability import logger
from mx_webhooks.store import from_item, to_item

PENDING = "PENDING"
DONE = "DONE"
INTENT_TTL_DAYS = 90


def marker_for(event_id: str, purpose: str) -> str:
    """The same text for the same event and purpose, on every attempt and every container."""
    digest = hashlib.sha256(f"{purpose}\n{event_id}".encode()).hexdigest()[:24]
    return f"mxwh-{digest}"


@dataclass(frozen=True, slots=True)
class Intent:
    status: str
    attempts: int
    work_order_id: EntityId | None = None


class IntentStore:
    """Intents in IntegrationsTable (``sk = "intent"``), expiring after ``INTENT_TTL_DAYS``."""

    def __init__(self, dynamodb_client: Any, table_name: str) -> None:
        self._ddb = dynamodb_client
        self._table = table_name

    @staticmethod
    def _key(event_id: str, purpose: str) -> dict[str, Any]:
        return to_item({"pk": f"intent#{purpose}#{event_id}", "sk": "intent"})

    def begin(self, event_id: str, purpose: str, marker: str) -> Intent:
        now = int(time.time())
        item = self._ddb.update_item(
            TableName=self._table,
            Key=self._key(event_id, purpose),
            UpdateExpression=(
                "SET #s = if_not_exists(#s, :pending), marker = :marker, eventId = :e, purpose = :p, "
                "startedAt = if_not_exists(startedAt, :now), #ttl = :ttl ADD attempts :one"
            ),
            ExpressionAttributeNames={"#s": "status", "#ttl": "ttl"},
            ExpressionAttributeValues=to_item(
                {
                    ":pending": PENDING,
                    ":marker": marker,
                    ":e": event_id,
                    ":p": purpose,
                    ":now": now,
                    ":ttl": now + INTENT_TTL_DAYS * 86_400,
                    ":one": 1,
                }
            ),
            ReturnValues="ALL_NEW",
        )["Attributes"]
        values = from_item(item)
        return Intent(str(values["status"]), int(values["attempts"]), _id(values.get("workOrderId")))

    def complete(self, event_id: str, purpose: str, work_order_id: EntityId, *, created: bool) -> None:
        self._ddb.update_item(
            TableName=self._table,
            Key=self._key(event_id, purpose),
            UpdateExpression="SET #s = :done, workOrderId = :wo, completedAt = :now, recoveredByLookup = :found",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=to_item(
                {":done": DONE, ":wo": str(work_order_id), ":now": int(time.time()), ":found": not created}
            ),
        )

    def get(self, event_id: str, purpose: str) -> dict[str, Any] | None:
        item = self._ddb.get_item(TableName=self._table, Key=self._key(event_id, purpose), ConsistentRead=True).get(
            "Item"
        )
        return from_item(item) if item else None


@dataclass(frozen=True, slots=True)
class Created:
    work_order_id: EntityId
    created: bool  # False: it existed already (recorded, or found by its marker)


class WorkOrderCreator:
    def __init__(self, api: MaintainXClient, intents: IntentStore) -> None:
        self._api = api
        self._intents = intents

    def create_once(self, *, event_id: str, purpose: str, new: NewWorkOrder) -> Created:
        marker = marker_for(event_id, purpose)
        intent = self._intents.begin(event_id, purpose, marker)
        if intent.status == DONE and intent.work_order_id is not None:
            return Created(intent.work_order_id, created=False)
        if intent.attempts > 1:
            found = self._api.find_work_order_with_marker(marker)
            if found is not None:
                logger.info(
                    "work order found from an earlier attempt; not creating another",
                    extra={"purpose": purpose, "work_order_id": found, "attempts": intent.attempts},
                )
                self._intents.complete(event_id, purpose, found, created=False)
                return Created(found, created=False)
        description = f"{new.description}\n\nRef: {marker}" if new.description else f"Ref: {marker}"
        work_order_id = self._api.create_work_order(new.model_copy(update={"description": description}))
        self._intents.complete(event_id, purpose, work_order_id, created=True)
        return Created(work_order_id, created=True)


def _id(value: Any) -> EntityId | None:
    if value is None:
        return None
    text = str(value)
    return int(text) if text.isdigit() else text
