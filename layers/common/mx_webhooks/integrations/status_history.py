"""Work-order status history in IntegrationsTable: one item per transition, stale events ignored.

Items of one work order share ``pk = "wo#<id>"``:

- ``sk = "#latest"``: the newest transition recorded (``lastOccurredAt``, ``status``);
- ``sk = "t#<occurredAt>#<eventId>"``: one per transition, so a Query on the pk
  returns the history in time order;
- ``sk = "stale#<occurredAt>#<eventId>"``: an event older than ``#latest`` when it
  arrived; kept for the record, it changed nothing.

One ``TransactWriteItems`` does both writes, each with its condition: ``#latest``
moves only forward (``lastOccurredAt <= :t``), the transition item is written only if
absent. So a late event cannot overwrite a newer status, a redelivered one is not
recorded twice, and two consumers racing on one work order cannot both win.
Timestamps are stored as fixed-width UTC ISO strings, which compare like times.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal

from botocore.exceptions import ClientError

from mx_webhooks.store import from_item, to_item

LATEST = "#latest"
Result = Literal["recorded", "duplicate", "stale"]


def sortable_time(value: datetime) -> str:
    """``2026-09-14T13:03:18.971000+00:00``: same width for every time, so strings sort as times."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _now_iso() -> str:
    return datetime.fromtimestamp(time.time(), UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class StatusHistory:
    def __init__(self, dynamodb_client: Any, table_name: str) -> None:
        self._ddb = dynamodb_client
        self._table = table_name

    def record(
        self,
        *,
        work_order_id: int | str,
        event_id: str,
        occurred_at: datetime,
        old_status: str | None,
        new_status: str,
        source_event_type: str = "",
    ) -> Result:
        pk = f"wo#{work_order_id}"
        at = sortable_time(occurred_at)
        details = {
            "workOrderId": str(work_order_id),
            "eventId": event_id,
            "occurredAt": at,
            "fromStatus": old_status,
            "toStatus": new_status,
            "sourceEventType": source_event_type,
            "recordedAt": _now_iso(),
        }
        try:
            self._ddb.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": to_item({"pk": pk, "sk": LATEST}),
                            "UpdateExpression": (
                                "SET lastOccurredAt = :t, lastEventId = :e, #s = :to, fromStatus = :from, "
                                "updatedAt = :now ADD transitions :one"
                            ),
                            "ConditionExpression": "attribute_not_exists(lastOccurredAt) OR lastOccurredAt <= :t",
                            "ExpressionAttributeNames": {"#s": "status"},
                            "ExpressionAttributeValues": to_item(
                                {
                                    ":t": at,
                                    ":e": event_id,
                                    ":to": new_status,
                                    ":from": old_status,
                                    ":now": details["recordedAt"],
                                    ":one": 1,
                                }
                            ),
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": to_item({"pk": pk, "sk": f"t#{at}#{event_id}", **details}),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
            if len(reasons) != 2 or "ConditionalCheckFailed" not in reasons:
                raise  # a conflict or throttling: the event is retried
            if reasons[1] == "ConditionalCheckFailed":
                return "duplicate"
            self._record_stale(pk, at, details)
            return "stale"
        return "recorded"

    def _record_stale(self, pk: str, at: str, details: dict[str, Any]) -> None:
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=to_item({"pk": pk, "sk": f"stale#{at}#{details['eventId']}", **details}),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    def latest(self, work_order_id: int | str) -> dict[str, Any] | None:
        item = self._ddb.get_item(
            TableName=self._table, Key=to_item({"pk": f"wo#{work_order_id}", "sk": LATEST}), ConsistentRead=True
        ).get("Item")
        return from_item(item) if item else None

    def transitions(self, work_order_id: int | str) -> list[dict[str, Any]]:
        return self._query(work_order_id, "t#")

    def stale(self, work_order_id: int | str) -> list[dict[str, Any]]:
        return self._query(work_order_id, "stale#")

    def _query(self, work_order_id: int | str, prefix: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :p)",
            "ExpressionAttributeValues": to_item({":pk": f"wo#{work_order_id}", ":p": prefix}),
            "ConsistentRead": True,
        }
        while True:
            page = self._ddb.query(**kwargs)
            items.extend(from_item(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
