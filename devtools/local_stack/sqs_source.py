"""An SQS event source mapping, locally: poll the queue, invoke the function, delete what succeeded.

Follows Lambda's documented behaviour for SQS:

- receive with the queue's own visibility timeout; collect up to ``BatchSize``
  records, waiting at most ``MaximumBatchingWindowInSeconds`` after the first one;
- invoke the function with the records shaped as Lambda shapes them;
- with ``ReportBatchItemFailures``: delete every record not listed in
  ``batchItemFailures``; a malformed response (not a dict, an empty or unknown
  ``itemIdentifier``) fails the whole batch, as Lambda does;
- without it: delete the batch when the invocation returns;
- an invocation that raises deletes nothing: the records come back when their
  visibility timeout ends;
- so does an invocation that runs past the function's timeout: ``LocalFunction.invoke``
  abandons it and raises ``FunctionTimedOut`` (whatever the abandoned handler later
  returns reaches no one), and nothing is deleted and no visibility changed here: the
  records come back when their visibility timeout ends, and the redrive below parks
  them after ``maxReceiveCount`` receives, as with Lambda;
- the queue's redrive policy moves a message to the DLQ on the receive after its
  ``maxReceiveCount``-th one. That is the queue's job, and moto's SQS does it on
  receive exactly so; nothing here copies messages to the DLQ.

Up to ``concurrency`` invocations run side by side (Lambda's ``ScalingConfig`` caps the same).

Duplicate deliveries (off by default; ``devtools.local_stack.chaos``, ``--chaos sqs-duplicates=P``):
with ``redelivery``, each received message it picks is made visible again at once
(``ChangeMessageVisibility`` 0 right after the receive), so the next receive hands the
same message (a new receipt handle, ``ApproximateReceiveCount`` + 1) to another
invocation, usually while the first one still runs, as SQS's at-least-once delivery may.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from devtools.local_stack.lambda_runtime import FunctionTimedOut, LocalFunction

log = logging.getLogger("devtools.local_stack")
RECEIVE_MAX = 10  # SQS returns at most 10 messages per ReceiveMessage


@dataclass
class Delivery:
    """What happened to one record of a batch, for the delivery log."""

    message_id: str
    attributes: dict[str, str]  # the message attributes' string values
    receive_count: int
    deleted: bool
    duration_ms: float
    error: str | None = None


class Redelivery(Protocol):
    """Which received messages SQS delivers once more (``devtools.local_stack.chaos.Chaos`` is one)."""

    def should_redeliver(self, message: dict[str, Any]) -> bool: ...

    def received_again(self, message: dict[str, Any], *, while_in_flight: bool) -> None: ...


class SqsEventSource:
    def __init__(
        self,
        sqs: Any,
        *,
        queue_url: str,
        queue_arn: str,
        function: LocalFunction,
        batch_size: int = 10,
        batching_window_s: float = 0,
        report_batch_item_failures: bool = False,
        concurrency: int = 2,
        region: str = "us-east-1",
        on_batch: Callable[[list[Delivery]], None] | None = None,
        redelivery: Redelivery | None = None,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.function = function
        self.batch_size = max(1, batch_size)
        self.window = max(0.0, batching_window_s)
        self.report_failures = report_batch_item_failures
        self.concurrency = max(1, concurrency)
        self.region = region
        self.on_batch = on_batch
        self._stop = threading.Event()
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._threads: list[threading.Thread] = []
        self.invocations = 0
        self.redelivery = redelivery
        self.redelivered = 0  # messages made visible again at once (duplicate deliveries)
        self._flight_lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()  # message id -> invocations holding it now
        self._awaiting_again: set[str] = set()  # redelivered, not received again yet

    def start(self) -> None:
        self._slots = threading.BoundedSemaphore(self.concurrency)
        thread = threading.Thread(target=self._run, name=f"esm-{self.function.logical_id}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 5) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        """One receiver, up to ``concurrency`` invocations at once.

        One receiver because moto's ReceiveMessage is not atomic across threads (two
        concurrent receives can take the same message). A batch is only received when
        an invocation slot is free, so no message's visibility timeout runs while it
        waits for a slot.
        """
        while not self._stop.is_set():
            if not self._slots.acquire(timeout=0.5):
                continue
            try:
                messages = self._collect()
            except Exception:
                self._slots.release()
                if self._stop.is_set():
                    return
                log.exception("event source %s: poll failed; retrying in 1 s", self.function.logical_id)
                self._stop.wait(1)
                continue
            if not messages:
                self._slots.release()
                continue
            try:
                self._received(messages)
            except Exception:  # bookkeeping only: the batch is delivered all the same
                log.exception("event source %s: duplicate-delivery bookkeeping failed", self.function.logical_id)
            worker = threading.Thread(
                target=self._invoke_and_release,
                args=(messages,),
                name=f"invoke-{self.function.logical_id}",
                daemon=True,
            )
            self._threads.append(worker)
            worker.start()
            self._threads = [t for t in self._threads if t.is_alive() or t is worker]

    def _invoke_and_release(self, messages: list[dict[str, Any]]) -> None:
        try:
            self._invoke(messages)
        except Exception:
            log.exception("event source %s: invocation bookkeeping failed", self.function.logical_id)
        finally:
            with self._flight_lock:
                self._in_flight.subtract(m["MessageId"] for m in messages)
                self._in_flight += Counter()  # drop the zeros
            self._slots.release()

    def _received(self, messages: list[dict[str, Any]]) -> None:
        """Note the batch as in flight; with ``redelivery``, deliver some of it once more, at once."""
        again: list[tuple[dict[str, Any], bool]] = []
        with self._flight_lock:
            for message in messages:
                message_id = message["MessageId"]
                if message_id in self._awaiting_again:
                    self._awaiting_again.discard(message_id)
                    again.append((message, self._in_flight[message_id] > 0))
                self._in_flight[message_id] += 1
        if self.redelivery is None:
            return
        for message, while_in_flight in again:
            self.redelivery.received_again(message, while_in_flight=while_in_flight)
        for message in messages:
            if not self.redelivery.should_redeliver(message):
                continue
            try:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            except Exception:
                log.warning("event source %s: could not deliver a message again", self.function.logical_id)
                continue
            with self._flight_lock:
                self._awaiting_again.add(message["MessageId"])
            self.redelivered += 1

    def _receive(self, count: int, wait_s: int) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(RECEIVE_MAX, count)),
            WaitTimeSeconds=wait_s,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    def _collect(self) -> list[dict[str, Any]]:
        """One batch: long-poll for the first records, then fill up until the window closes."""
        messages = self._receive(self.batch_size, wait_s=1)  # 1 s long polls keep stop() quick
        if not messages or self.window == 0:
            return messages
        deadline = time.monotonic() + self.window
        while len(messages) < self.batch_size and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            more = self._receive(self.batch_size - len(messages), wait_s=int(remaining) if remaining >= 1 else 0)
            if more:
                messages.extend(more)
            else:
                self._stop.wait(min(0.05, max(0.0, deadline - time.monotonic())))
        return messages

    def record(self, message: dict[str, Any]) -> dict[str, Any]:
        """A message as a record of Lambda's SQS event."""
        attributes = {
            name: {
                "stringValue": value.get("StringValue"),
                "stringListValues": value.get("StringListValues", []),
                "binaryListValues": value.get("BinaryListValues", []),
                "dataType": value["DataType"],
                **({"binaryValue": value["BinaryValue"]} if "BinaryValue" in value else {}),
            }
            for name, value in (message.get("MessageAttributes") or {}).items()
        }
        record = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message.get("Body", ""),
            "attributes": dict(message.get("Attributes") or {}),
            "messageAttributes": attributes,
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.region,
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        return record

    def _invoke(self, messages: list[dict[str, Any]]) -> None:
        records = [self.record(m) for m in messages]
        started = time.perf_counter()
        error: str | None = None
        failed: set[str]
        self.invocations += 1
        try:
            result = self.function.invoke({"Records": records})
        except FunctionTimedOut as exc:
            log.warning(
                "%s timed out; the batch of %d comes back after its visibility timeout",
                self.function.logical_id,
                len(records),
            )
            error = f"{type(exc).__name__}: {exc}"
            failed = {r["messageId"] for r in records}
        except Exception as exc:
            log.exception("%s raised; the batch comes back after its visibility timeout", self.function.logical_id)
            error = f"{type(exc).__name__}: {exc}"
            failed = {r["messageId"] for r in records}
        else:
            failed = self._failures(result, records) if self.report_failures else set()
        elapsed = (time.perf_counter() - started) * 1000
        succeeded = [m for m in messages if m["MessageId"] not in failed]
        self._delete(succeeded)
        if self.on_batch is not None:
            self.on_batch(
                [
                    Delivery(
                        message_id=m["MessageId"],
                        attributes={k: v.get("StringValue", "") for k, v in (m.get("MessageAttributes") or {}).items()},
                        receive_count=int((m.get("Attributes") or {}).get("ApproximateReceiveCount", "1")),
                        deleted=m["MessageId"] not in failed,
                        duration_ms=elapsed,
                        error=error,
                    )
                    for m in messages
                ]
            )

    def _failures(self, result: Any, records: list[dict[str, Any]]) -> set[str]:
        everything = {r["messageId"] for r in records}
        if result is None:
            return set()  # Lambda: an empty response means the whole batch succeeded
        if not isinstance(result, dict):
            log.warning("%s: response is not a partial batch response; the whole batch fails", self.function.logical_id)
            return everything
        items = result.get("batchItemFailures") or []
        failed: set[str] = set()
        for item in items:
            identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
            if not identifier or identifier not in everything:
                log.warning("%s: invalid itemIdentifier %r; the whole batch fails", self.function.logical_id, item)
                return everything
            failed.add(identifier)
        return failed

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), RECEIVE_MAX):
            chunk = messages[start : start + RECEIVE_MAX]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
            response = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            for failure in response.get("Failed", []):
                log.warning("could not delete a processed message: %s", failure)
