"""Stand-ins for the AWS clients the code calls, over the virtual clock and the scheduler.

- ``DynamoProxy``: moto's DynamoDB (real conditional writes, ``ReturnValuesOnConditionCheckFailure``,
  GSIs) behind a client proxy that pauses before every attempt and applies the fault the
  step chose: ``LOST`` applies the call, loses the reply and makes the identical call
  again (botocore's retry, up to the client's attempt budget); ``LOST_FINAL`` applies it
  and raises (the SDK gave up); ``FAIL`` raises without applying it.
- ``FakeSQS``: standard queues in memory: visibility timeouts, receive counts, redrive
  to the DLQ on the receive after ``maxReceiveCount``, at-least-once delivery (the world
  may deliver an in-flight message again), 256 KiB limits per message and per batch with
  SQS's error codes. A delete with any receipt handle the message was ever given deletes
  it: SQS documents that only the latest handle is sure to, and the stricter reading
  would hide a stale worker's delete.
- ``FakeSNS``: captures every published alert; refuses messages over 256 KiB as SNS does.
"""

from __future__ import annotations

import itertools
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError, ConnectionClosedError

from tests.sim.sched import FAIL, LOST, LOST_FINAL, OK, Scheduler, VirtualClock

if TYPE_CHECKING:
    from tests.sim.world import World

MAX_MESSAGE_BYTES = 262_144  # SQS: one message (body + attributes), and a whole batch
MAX_SNS_BYTES = 262_144


def client_error(operation: str, code: str, message: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


def lost_reply(operation: str, attempt: int) -> Exception:
    """A reply lost after the call was applied: a dropped connection or a 500 (alternately)."""
    if attempt % 2:
        return ConnectionClosedError(endpoint_url=f"https://sim.invalid/{operation}")
    return client_error(operation, "InternalServerError", "injected: applied, reply lost", 500)


def refused(operation: str) -> Exception:
    return client_error(operation, "ProvisionedThroughputExceededException", "injected: refused, not applied")


def _with_faults(
    scheduler: Scheduler, label: str, operation: str, attempts: int, call: Any, *, retried_on_lost: bool = True
) -> Any:
    """One SDK call through the scheduler: pause before each attempt, apply the chosen fault."""
    attempt = 0
    while True:
        attempt += 1
        decision = scheduler.checkpoint(label if attempt == 1 else f"{label} (SDK retry {attempt})")
        if decision == FAIL:
            raise refused(operation)
        outcome, error = call()
        if decision == LOST and retried_on_lost and attempt < attempts:
            continue  # the SDK retries the identical request
        if decision in (LOST, LOST_FINAL):
            raise lost_reply(operation, attempt)
        if error is not None:
            raise error
        return outcome


class DynamoProxy:
    """A DynamoDB client: moto underneath, faults and pauses on top, every write reported to the world."""

    WRITES = frozenset({"update_item", "put_item", "delete_item"})

    def __init__(self, world: World, client: Any, *, attempts: int) -> None:
        self._world = world
        self._client = client
        self._attempts = attempts

    def __getattr__(self, operation: str) -> Any:
        def call(**kwargs: Any) -> Any:
            return self._call(operation, kwargs)

        return call

    def _call(self, operation: str, kwargs: dict[str, Any]) -> Any:
        key = ((kwargs.get("Key") or kwargs.get("Item") or {}).get("eventId") or {}).get("S")
        label = f"dynamodb.{operation}[{write_kind(kwargs)}]" if operation in self.WRITES else f"dynamodb.{operation}"
        label += f" {key}" if key else ""
        world = self._world

        def once() -> tuple[Any, Exception | None]:
            before = world.raw(key) if key and operation in self.WRITES else None
            try:
                result = getattr(self._client, operation)(**kwargs)
            except ClientError as exc:
                if key and operation in self.WRITES and world.raw(key) != before:
                    world.violation(f"stand-in artefact: moto changed {key} although {operation} failed: {exc}")
                return None, exc
            if key and operation in self.WRITES:
                world.after_write(key, kwargs, before, world.raw(key))
            return result, None

        return _with_faults(world.scheduler, label, operation, self._attempts, once)


def write_kind(call: dict[str, Any]) -> str:
    """Which of the store's writes an UpdateItem is, read from its expressions (for labels and guards)."""
    condition = str(call.get("ConditionExpression", ""))
    expression = str(call.get("UpdateExpression", ""))
    if call.get("ReturnValuesOnConditionCheckFailure"):
        return "claim"
    if "retryToken" in condition:
        return "retry"
    if "stalledAt" in expression and "claimToken" in condition:
        return "mark_stalled"
    if "claimToken = :token" in condition:
        return "finish" if "leaseUntil" in expression.split("REMOVE", 1)[-1] else "checkpoint"
    if "parked" in expression:
        return "record_invalid"
    return "write"


@dataclass
class Message:
    id: str
    body: str
    attributes: dict[str, Any]
    sent_at: float
    queue: str
    receive_count: int = 0
    visible_at: float = 0.0
    first_receive_at: float | None = None
    handles: set[str] = field(default_factory=set)


@dataclass
class Queue:
    name: str
    url: str
    visibility_timeout: int
    dlq: str | None = None  # url
    max_receive_count: int = 0
    messages: OrderedDict[str, Message] = field(default_factory=OrderedDict)


def message_bytes(body: str, attributes: dict[str, Any] | None) -> int:
    size = len(body.encode("utf-8", "surrogatepass"))
    for name, value in (attributes or {}).items():
        size += len(name.encode()) + len(str(value.get("DataType", "")).encode())
        size += len(str(value.get("StringValue") or "").encode())
    return size


class FakeSQS:
    """Standard queues, in memory, on the virtual clock. Thread use: one actor at a time."""

    def __init__(self, world: World, clock: VirtualClock, scheduler: Scheduler, *, attempts: int = 4) -> None:
        self.world = world
        self.clock = clock
        self.scheduler = scheduler
        self.attempts = attempts
        self.queues: dict[str, Queue] = {}
        self._ids = itertools.count(1)

    # -- setup and inspection (not client calls: no pause, no fault) ---------------------------
    def create(self, name: str, *, visibility_timeout: int = 30, dlq: str | None = None, max_receive: int = 0) -> str:
        url = f"https://sqs.sim.invalid/123456789012/{name}"
        self.queues[url] = Queue(name, url, visibility_timeout, dlq, max_receive)
        return url

    def all_messages(self, url: str) -> list[Message]:
        return list(self.queues[url].messages.values())

    def visible(self, url: str) -> list[Message]:
        now = self.clock.now
        return [m for m in self.queues[url].messages.values() if m.visible_at <= now]

    def in_flight(self, url: str) -> list[Message]:
        now = self.clock.now
        return [m for m in self.queues[url].messages.values() if m.visible_at > now]

    def poll(self, url: str, most: int, visibility: int | None = None, rotate: int = 0) -> list[dict[str, Any]]:
        """A receive by Lambda's poller (not the function): no fault."""
        return self._receive(self.queues[url], most, visibility, rotate)

    def redeliver(self, message: Message) -> dict[str, Any]:
        """At-least-once: deliver a message that is in flight once more, as another receive."""
        queue = self.queues[message.queue]
        return self._deliver(queue, message, queue.visibility_timeout)

    # -- the client API -------------------------------------------------------------------------
    def _api(self, operation: str, label: str, call: Any) -> Any:
        def once() -> tuple[Any, Exception | None]:
            try:
                return call(), None
            except ClientError as exc:
                return None, exc

        return _with_faults(self.scheduler, f"sqs.{operation} {label}", operation, self.attempts, once)

    def _queue(self, url: str, operation: str) -> Queue:
        queue = self.queues.get(url)
        if queue is None:
            raise client_error(operation, "AWS.SimpleQueueService.NonExistentQueue", f"no queue {url}")
        return queue

    def send_message(self, *, QueueUrl: str, MessageBody: str, MessageAttributes: Any = None, **_: Any) -> Any:  # noqa: N803
        queue = self._queue(QueueUrl, "SendMessage")
        return self._api("send_message", queue.name, lambda: self._send(queue, MessageBody, MessageAttributes))

    def _send(self, queue: Queue, body: str, attributes: Any) -> dict[str, Any]:
        if not body:
            raise client_error(
                "SendMessage", "InvalidParameterValue", "The request must contain the parameter MessageBody."
            )
        if message_bytes(body, attributes) > MAX_MESSAGE_BYTES:
            raise client_error(
                "SendMessage",
                "InvalidParameterValue",
                f"One or more parameters are invalid. Reason: Message must be shorter than {MAX_MESSAGE_BYTES} bytes.",
            )
        message = Message(f"m{next(self._ids)}", body, dict(attributes or {}), self.clock.now, queue.url)
        message.visible_at = self.clock.now
        queue.messages[message.id] = message
        self.world.on_send(queue.url, message)
        return {"MessageId": message.id, "MD5OfMessageBody": ""}

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]], **_: Any) -> Any:  # noqa: N803
        queue = self._queue(QueueUrl, "SendMessageBatch")

        def call() -> dict[str, Any]:
            self._check_batch("SendMessageBatch", Entries)
            total = sum(message_bytes(e.get("MessageBody") or "", e.get("MessageAttributes")) for e in Entries)
            if total > MAX_MESSAGE_BYTES:
                raise client_error(
                    "SendMessageBatch",
                    "AWS.SimpleQueueService.BatchRequestTooLong",
                    f"Batch requests cannot be longer than {MAX_MESSAGE_BYTES} bytes. You have sent {total} bytes.",
                )
            ok, failed = [], []
            for entry in Entries:
                try:
                    sent = self._send(queue, entry.get("MessageBody") or "", entry.get("MessageAttributes"))
                except ClientError as exc:
                    failed.append({"Id": entry["Id"], "SenderFault": True, "Code": exc.response["Error"]["Code"]})
                    continue
                ok.append({"Id": entry["Id"], "MessageId": sent["MessageId"]})
            return {"Successful": ok, "Failed": failed}

        return self._api("send_message_batch", queue.name, call)

    @staticmethod
    def _check_batch(operation: str, entries: list[dict[str, Any]]) -> None:
        if not entries:
            raise client_error(operation, "AWS.SimpleQueueService.EmptyBatchRequest", "no entries")
        if len(entries) > 10:
            raise client_error(operation, "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", "at most 10")
        if len({e["Id"] for e in entries}) != len(entries):
            raise client_error(operation, "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", "ids repeat")

    def receive_message(
        self,
        *,
        QueueUrl: str,  # noqa: N803
        MaxNumberOfMessages: int = 1,  # noqa: N803
        VisibilityTimeout: int | None = None,  # noqa: N803
        **_: Any,
    ) -> Any:
        queue = self._queue(QueueUrl, "ReceiveMessage")
        return self._api(
            "receive_message",
            queue.name,
            lambda: {"Messages": self._receive(queue, MaxNumberOfMessages, VisibilityTimeout, 0)},
        )

    def _receive(self, queue: Queue, most: int, visibility: int | None, rotate: int) -> list[dict[str, Any]]:
        now = self.clock.now
        candidates = [m for m in queue.messages.values() if m.visible_at <= now]
        if candidates and rotate:
            cut = rotate % len(candidates)
            candidates = candidates[cut:] + candidates[:cut]
        out: list[dict[str, Any]] = []
        for message in candidates:
            if len(out) >= max(1, min(10, most)):
                break
            if queue.dlq and queue.max_receive_count and message.receive_count >= queue.max_receive_count:
                self._move_to_dlq(queue, message)  # the queue's redrive policy
                continue
            out.append(self._deliver(queue, message, queue.visibility_timeout if visibility is None else visibility))
        return out

    def _move_to_dlq(self, queue: Queue, message: Message) -> None:
        assert queue.dlq is not None
        del queue.messages[message.id]
        dlq = self.queues[queue.dlq]
        moved = Message(message.id, message.body, message.attributes, message.sent_at, dlq.url)
        moved.visible_at = self.clock.now
        dlq.messages[moved.id] = moved
        self.world.on_redrive_policy(message, moved)

    def _deliver(self, queue: Queue, message: Message, visibility: int) -> dict[str, Any]:
        now = self.clock.now
        message.receive_count += 1
        message.first_receive_at = message.first_receive_at or now
        message.visible_at = now + visibility
        handle = f"{message.id}#{message.receive_count}#{next(self._ids)}"
        message.handles.add(handle)
        return {
            "MessageId": message.id,
            "ReceiptHandle": handle,
            "Body": message.body,
            "MD5OfBody": "",
            "Attributes": {
                "ApproximateReceiveCount": str(message.receive_count),
                "SentTimestamp": str(int(message.sent_at * 1000)),
                "ApproximateFirstReceiveTimestamp": str(int(message.first_receive_at * 1000)),
                "SenderId": "AIDASIM",
            },
            "MessageAttributes": json.loads(json.dumps(message.attributes)),
        }

    def _by_handle(self, queue: Queue, handle: str) -> Message | None:
        message_id = handle.split("#", 1)[0]
        message = queue.messages.get(message_id)
        if message is not None and handle in message.handles:
            return message
        return None

    def delete_message(self, *, QueueUrl: str, ReceiptHandle: str, **_: Any) -> Any:  # noqa: N803
        queue = self._queue(QueueUrl, "DeleteMessage")

        def call() -> dict[str, Any]:
            self._delete(queue, ReceiptHandle)
            return {}

        return self._api("delete_message", queue.name, call)

    def _delete(self, queue: Queue, handle: str) -> None:
        message = self._by_handle(queue, handle)
        if message is None:
            if handle.split("#", 1)[0] in self.world.deleted_ids:
                return  # deleting a deleted message succeeds
            raise client_error("DeleteMessage", "ReceiptHandleIsInvalid", f"handle {handle} is invalid")
        del queue.messages[message.id]
        self.world.deleted_ids.add(message.id)
        self.world.on_delete(queue.url, message)

    def delete_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]], **_: Any) -> Any:  # noqa: N803
        queue = self._queue(QueueUrl, "DeleteMessageBatch")

        def call() -> dict[str, Any]:
            self._check_batch("DeleteMessageBatch", Entries)
            ok, failed = [], []
            for entry in Entries:
                try:
                    self._delete(queue, entry["ReceiptHandle"])
                except ClientError as exc:
                    failed.append({"Id": entry["Id"], "SenderFault": True, "Code": exc.response["Error"]["Code"]})
                    continue
                ok.append({"Id": entry["Id"]})
            return {"Successful": ok, "Failed": failed}

        return self._api("delete_message_batch", queue.name, call)

    def change_message_visibility(self, *, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int, **_: Any) -> Any:  # noqa: N803
        queue = self._queue(QueueUrl, "ChangeMessageVisibility")

        def call() -> dict[str, Any]:
            self._change(queue, ReceiptHandle, VisibilityTimeout)
            return {}

        return self._api("change_message_visibility", queue.name, call)

    def _change(self, queue: Queue, handle: str, timeout: int) -> None:
        if not 0 <= int(timeout) <= 43_200:
            raise client_error("ChangeMessageVisibility", "InvalidParameterValue", f"VisibilityTimeout {timeout}")
        message = self._by_handle(queue, handle)
        if message is None:
            raise client_error("ChangeMessageVisibility", "ReceiptHandleIsInvalid", f"handle {handle} is invalid")
        if message.visible_at <= self.clock.now:
            raise client_error("ChangeMessageVisibility", "AWS.SimpleQueueService.MessageNotInflight", "not in flight")
        message.visible_at = self.clock.now + int(timeout)

    def change_message_visibility_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]], **_: Any) -> Any:  # noqa: N803
        queue = self._queue(QueueUrl, "ChangeMessageVisibilityBatch")

        def call() -> dict[str, Any]:
            self._check_batch("ChangeMessageVisibilityBatch", Entries)
            ok, failed = [], []
            for entry in Entries:
                try:
                    self._change(queue, entry["ReceiptHandle"], entry["VisibilityTimeout"])
                except ClientError as exc:
                    failed.append({"Id": entry["Id"], "SenderFault": True, "Code": exc.response["Error"]["Code"]})
                    continue
                ok.append({"Id": entry["Id"]})
            return {"Successful": ok, "Failed": failed}

        return self._api("change_message_visibility_batch", queue.name, call)

    def get_queue_attributes(self, *, QueueUrl: str, AttributeNames: Any = None, **_: Any) -> Any:  # noqa: N803
        queue = self._queue(QueueUrl, "GetQueueAttributes")

        def call() -> dict[str, Any]:
            return {
                "Attributes": {
                    "ApproximateNumberOfMessages": str(len(self.visible(queue.url))),
                    "ApproximateNumberOfMessagesNotVisible": str(len(self.in_flight(queue.url))),
                    "VisibilityTimeout": str(queue.visibility_timeout),
                }
            }

        return self._api("get_queue_attributes", queue.name, call)


@dataclass
class Alert:
    event_id: str
    subject: str
    message: dict[str, Any]
    at: float


class FakeSNS:
    """Captures alerts. Never fails unless ``faults`` (the code logs a failed publish and goes on)."""

    def __init__(self, world: World, scheduler: Scheduler, clock: VirtualClock, *, faults: bool = False) -> None:
        self.world = world
        self.scheduler = scheduler
        self.clock = clock
        self.faults = faults
        self.alerts: list[Alert] = []

    def publish(
        self, *, TopicArn: str, Message: str, Subject: str | None = None, MessageAttributes: Any = None, **_: Any
    ) -> Any:  # noqa: N803
        decision = self.scheduler.checkpoint("sns.publish")
        if self.faults and decision != OK:
            raise client_error("Publish", "InternalError", "injected", 500)
        size = message_bytes(Message, MessageAttributes)
        if size > MAX_SNS_BYTES:
            raise client_error("Publish", "InvalidParameter", "Invalid parameter: Message too long")
        if Subject is not None and (len(Subject) > 100 or not Subject.strip()):
            raise client_error("Publish", "InvalidParameter", "Invalid parameter: Subject")
        try:
            body = json.loads(Message)
        except ValueError:
            body = {"text": Message}
        event_id = str(body.get("eventId") or ((MessageAttributes or {}).get("eventId") or {}).get("StringValue") or "")
        self.alerts.append(Alert(event_id, Subject or "", body, self.clock.now))
        return {"MessageId": f"alert{len(self.alerts)}"}


__all__ = ["DynamoProxy", "FakeSNS", "FakeSQS", "Message", "OK", "LOST", "LOST_FINAL", "FAIL"]
