"""Watch the alerts locally: what AWS would e-mail, printed as console lines.

In AWS, AlertsTopic notifies its subscribers (an e-mail address, a chat webhook). The
local stack subscribes a queue of its own to the topic (``local-alerts-inbox``, raw
delivery) and prints each alert as an ``alert`` line, with the command that shows the
event; the messages stay readable there too (its URL is in the banner and ``info``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

INBOX = "local-alerts-inbox"


class AlertWatcher:
    def __init__(self, sqs: Any, sns: Any, topic_arn: str, line: Callable[[str], None]) -> None:
        self.sqs = sqs
        self.line = line
        self.queue_url: str = sqs.create_queue(QueueName=INBOX)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self.sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                ).get("Messages", [])
            except Exception:  # moto stopping with the stack
                if self._stop.wait(1):
                    return
                continue
            for message in messages:
                self.line(describe(message.get("Body") or ""))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


def describe(body: str) -> str:
    """One console line for an alert's JSON document (or its raw text)."""
    try:
        alert = json.loads(body)
    except ValueError:
        return f"alert     {body[:200]}"
    if not isinstance(alert, dict):
        return f"alert     {body[:200]}"
    event_id = alert.get("eventId", "?")
    return (
        f"alert     {event_id}  {alert.get('eventType', '')}  {alert.get('alert', '')}"
        f'  (make admin ARGS="show {event_id} --local")'
    )
