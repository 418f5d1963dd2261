"""The functions' structured log records, read for the console's one line per delivery."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

# Outcome fields the functions log (Powertools ``extra``) that the delivery lines show.
TAP_FIELDS = ("event_id", "event_type", "outcome", "duration_ms", "error", "reason", "status", "receive_count")


def _invoking_thread() -> threading.Thread:
    """The thread a record belongs to: the one that invoked the function.

    The local Lambda runtime runs each invocation in a worker thread of its own (to
    enforce the timeout) and marks it with ``invoker``, the thread waiting for it (the
    HTTP request's): records from the worker count as that request's.
    """
    current = threading.current_thread()
    invoker = getattr(current, "invoker", None)
    return invoker if isinstance(invoker, threading.Thread) else current


class LogTap(logging.Handler):
    """Reads the functions' structured log records for the one-line-per-delivery log.

    The consumer logs one record per event with ``outcome`` (processed, duplicate,
    ignored, failed, parked...); those are kept by event id. Anything else with one
    of the fields above is kept per invoking thread, for the HTTP request running in it.
    """

    def __init__(self, on_circuit: Callable[[str, str, str], None] | None = None) -> None:
        super().__init__(level=logging.INFO)
        # A circuit breaker's transition (``mx_webhooks.breaker`` logs "circuit open" with
        # ``integration`` and ``why``): (integration, state, why), printed at once.
        self.on_circuit = on_circuit
        self._lock = threading.Lock()
        self._outcomes: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._by_thread: dict[threading.Thread, list[dict[str, Any]]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = str(record.msg)
        if self.on_circuit is not None and message.startswith("circuit ") and hasattr(record, "integration"):
            self.on_circuit(str(record.integration), message.removeprefix("circuit "), str(getattr(record, "why", "")))
            return
        fields = {k: getattr(record, k) for k in TAP_FIELDS if hasattr(record, k)}
        if not fields:
            return
        with self._lock:
            if "outcome" in fields and "event_id" in fields:
                bucket = self._outcomes[str(fields["event_id"])]
            else:
                if len(self._by_thread) > 256:  # threads gone without taking theirs
                    self._by_thread = {t: seen for t, seen in self._by_thread.items() if t.is_alive()}
                bucket = self._by_thread.setdefault(_invoking_thread(), [])
            bucket.append(fields)
            del bucket[:-20]

    def take_thread(self) -> list[dict[str, Any]]:
        """The records of the calling thread's invocations since the last call (then forgotten)."""
        with self._lock:
            return self._by_thread.pop(threading.current_thread(), [])

    def take_outcome(self, event_id: str) -> dict[str, Any] | None:
        with self._lock:
            bucket = self._outcomes.get(event_id)
            if not bucket:
                return None
            found = bucket.pop(0)
            if not bucket:
                del self._outcomes[event_id]
            return found
