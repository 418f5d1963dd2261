"""Data access for the two queues: EventsQueue and its dead-letter queue, EventsDLQ.

Everything that sends, backs off, parks, peeks at or redrives a message goes through
``EventQueues``, with the one attribute contract of ``mx_webhooks.message``. Takes a
client, never creates one (no boto3 import: ingest's cold start stays small).

DLQ redrive is a receive -> send -> delete loop instead of SQS's
``StartMessageMoveTask``: that task is asynchronous (the caller would not learn how
many messages moved) and is rate-limited per queue; the loop reports the count
synchronously, stops before the caller's deadline and can be run again. Each message
is sent before it is deleted from the DLQ, so a failure in between duplicates (the
consumer's claim absorbs that), never loses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mx_webhooks.message import PARKED_REASON, message_attributes
from mx_webhooks.observability import logger

# SQS refuses a SendMessageBatch whose bodies and attributes add up to more than its
# batch limit (BatchRequestTooLong; 256 KiB on queues that keep the classic maximum);
# a batch is cut below that, with room for the request's framing.
MAX_BATCH_BYTES = 250_000
PEEK_VISIBILITY_SECONDS = 30  # so one peek does not see a message twice
SHOWN_BODY_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Redriven:
    moved: int
    failed: int


class EventQueues:
    def __init__(self, sqs: Any, queue_url: str, dlq_url: str = "") -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.dlq_url = dlq_url

    # -- the events queue ------------------------------------------------------------------
    def send_event(self, body: str, *, event_id: str, event_type: str, source: str) -> None:
        """Queue an event for the consumer (ingest, an admin retry)."""
        attributes = message_attributes(event_id, event_type, source)
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body, MessageAttributes=attributes)

    def back_off(self, receipt_handle: str, seconds: int) -> None:
        """Keep a record the consumer hands back invisible for ``seconds`` (its retry's backoff)."""
        self.sqs.change_message_visibility(
            QueueUrl=self.queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
        )

    # -- the DLQ ---------------------------------------------------------------------------
    def park(self, body: str, *, event_id: str, event_type: str, source: str, reason: str) -> None:
        """Put a message no retry can fix in the DLQ now, with why."""
        self.sqs.send_message(
            QueueUrl=self.dlq_url,
            MessageBody=body or "-",
            MessageAttributes=message_attributes(event_id, event_type, source, parked_reason=reason),
        )

    def dlq_depth(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes.get("ApproximateNumberOfMessages", 0))

    def peek(self, most: int, *, raw: bool = False) -> list[dict[str, Any]]:
        """Up to ``most`` parked messages, described, and left in the DLQ (visible again at once).

        ``raw`` adds each whole body as ``rawBody`` (the description cuts it)."""
        seen: dict[str, dict[str, Any]] = {}
        handles: list[str] = []
        empty_polls = 0
        while len(seen) < most and empty_polls < 2:
            batch = self.sqs.receive_message(
                QueueUrl=self.dlq_url,
                MaxNumberOfMessages=min(10, most - len(seen)),
                VisibilityTimeout=PEEK_VISIBILITY_SECONDS,
                WaitTimeSeconds=0,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                empty_polls += 1
            for message in batch:
                handles.append(message["ReceiptHandle"])
                shown = describe(message)
                if raw:
                    shown["rawBody"] = message.get("Body") or ""
                seen.setdefault(message["MessageId"], shown)
        self._make_visible(handles)
        return list(seen.values())

    def _make_visible(self, handles: list[str]) -> None:
        for chunk in range(0, len(handles), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for i, handle in enumerate(handles[chunk : chunk + 10])
            ]
            try:
                self.sqs.change_message_visibility_batch(QueueUrl=self.dlq_url, Entries=entries)
            except Exception:
                logger.warning("could not release peeked DLQ messages; they reappear in 30 s", exc_info=True)

    def redrive(self, most: int, *, deadline: float | None = None, clock: Callable[[], float] = time.time) -> Redriven:
        """Move up to ``most`` parked messages back to the events queue, in size-bounded batches."""
        moved = failed = 0
        while moved + failed < most and (deadline is None or clock() < deadline):
            batch = self.sqs.receive_message(
                QueueUrl=self.dlq_url,
                MaxNumberOfMessages=min(10, most - moved - failed),
                VisibilityTimeout=60,
                WaitTimeSeconds=1,  # a long poll asks every SQS server: an empty answer means empty
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                break
            for chunk in size_batches(batch):
                sent_ok, not_sent = self._requeue(chunk)
                moved += sent_ok
                failed += not_sent
        return Redriven(moved, failed)

    def _requeue(self, chunk: list[dict[str, Any]]) -> tuple[int, int]:
        """Send one chunk to the events queue, then delete what was sent from the DLQ."""
        by_id = {str(i): message for i, message in enumerate(chunk)}
        sent = self.sqs.send_message_batch(
            QueueUrl=self.queue_url,
            Entries=[
                {"Id": i, "MessageBody": m["Body"], "MessageAttributes": requeue_attributes(m)}
                for i, m in by_id.items()
            ],
        )
        ok = [entry["Id"] for entry in sent.get("Successful", [])]
        if ok:
            self.sqs.delete_message_batch(
                QueueUrl=self.dlq_url,
                Entries=[{"Id": i, "ReceiptHandle": by_id[i]["ReceiptHandle"]} for i in ok],
            )
        return len(ok), len(sent.get("Failed", []))


def describe(message: dict[str, Any]) -> dict[str, Any]:
    """A parked message as the admin shows it."""
    attributes = {k: v.get("StringValue") for k, v in (message.get("MessageAttributes") or {}).items()}
    sent = (message.get("Attributes") or {}).get("SentTimestamp")
    body = message.get("Body") or ""
    return {
        "messageId": message["MessageId"],
        "eventId": attributes.get("eventId"),
        "eventType": attributes.get("eventType"),
        "source": attributes.get("source"),
        "parkedReason": attributes.get(PARKED_REASON),
        "sentAt": _iso(int(sent) / 1000) if sent else None,
        "body": body if len(body) <= SHOWN_BODY_CHARS else body[:SHOWN_BODY_CHARS] + "...",
    }


def requeue_attributes(message: dict[str, Any]) -> dict[str, Any]:
    """A parked message's attributes without the DLQ's own (``parkedReason``)."""
    attributes = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        if name == PARKED_REASON or value.get("StringValue") is None:
            continue
        attributes[name] = {"DataType": value["DataType"], "StringValue": value["StringValue"]}
    return attributes


def message_bytes(message: dict[str, Any]) -> int:
    """What SQS counts toward its size limits: the body plus each resent attribute's name, type and value."""
    size = len((message.get("Body") or "").encode())
    for name, value in requeue_attributes(message).items():
        size += len(name.encode()) + len(value["DataType"].encode()) + len(value["StringValue"].encode())
    return size


def size_batches(messages: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Cut a receive's messages into SendMessageBatch calls under ``MAX_BATCH_BYTES`` each.

    Ingest accepts bodies up to 240,000 bytes, so two large parked messages already
    exceed the batch limit together; a message that large goes in a batch of its own.
    """
    batches: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    total = 0
    for message in messages:
        size = message_bytes(message)
        if current and total + size > MAX_BATCH_BYTES:
            batches.append(current)
            current, total = [], 0
        current.append(message)
        total += size
    if current:
        batches.append(current)
    return batches


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
