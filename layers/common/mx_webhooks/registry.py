"""Handler registry: ``@on("workorder.created")``, several handlers per type, ``*`` for all.

A handler is a plain function taking a ``WebhookEvent``; the handlers of one event run
side by side in the consumer's threads, whatever the others do. The consumer records each
handler's success, and no retry, duplicate or redrive reruns a recorded success. What no
design closes: an invocation that dies after a handler returned and before its success
was written (a kill, a timeout, DynamoDB down for the whole attempt) runs it again. So a
handler with an outside effect is exactly once only with its own dedup key (the built-in
work-order creation uses one); otherwise it is at least once. A handler that is safe to
run twice can say ``idempotent=True``; it then saves the checkpoint write made after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

WILDCARD = "*"
HandlerFunc = Callable[[Any], Any]


class PermanentError(Exception):
    """Raised by a handler when no retry can succeed (bad data, 4xx): park at once."""


class Deferred(Exception):
    """Raised instead of calling a downstream that is known to be down (its circuit breaker is
    open, ``mx_webhooks.breaker``): the handler did not run. The consumer records the event
    WAITING with this reason, brings it back no sooner than ``retry_in`` seconds (and on the
    backoff schedule), and does not count the attempt towards the retry limit."""

    def __init__(self, integration: str, retry_in: float, reason: str) -> None:
        super().__init__(reason)
        self.integration = integration
        self.retry_in = retry_in


@dataclass(frozen=True, slots=True)
class Handler:
    name: str
    func: HandlerFunc
    types: tuple[str, ...]
    idempotent: bool = False
    # Wants only the newest state of its entity: never run with an event older than one it
    # already handled for the same work order or request (then recorded SKIPPED, stale).
    latest_only: bool = False

    def __call__(self, event: Any) -> Any:
        return self.func(event)


class Registry:
    def __init__(self) -> None:
        self._handlers: list[Handler] = []

    def on(
        self, *event_types: str, name: str | None = None, idempotent: bool = False, latest_only: bool = False
    ) -> Callable[[HandlerFunc], HandlerFunc]:
        """Register the decorated function for ``event_types`` (``"*"`` = every event).

        ``latest_only``: across batches and retries, the handler never sees an event of a
        work order or request older (by ``occurredAt``) than one it already handled for it.
        """
        if not event_types:
            raise ValueError("on() needs at least one event type")

        def decorator(func: HandlerFunc) -> HandlerFunc:
            handler_name = name or f"{func.__module__.rsplit('.', 1)[-1]}.{func.__name__}"
            if any(h.name == handler_name for h in self._handlers):
                raise ValueError(f"a handler named {handler_name!r} is already registered")
            self._handlers.append(Handler(handler_name, func, tuple(event_types), idempotent, latest_only))
            return func

        return decorator

    def handlers_for(self, event_types: Iterable[str]) -> list[Handler]:
        """Handlers subscribed to any of ``event_types`` or to ``*``: idempotent ones first.

        Each group keeps registration order. Handlers of one event are independent
        (each runs once, a failure does not stop the record of the others' success)
        and the consumer runs them side by side, starting them in this order. A
        non-idempotent handler's success is checkpointed only when it finishes while
        another non-idempotent one still runs, which keeps a typical event (one handler
        with an outside effect, any number of idempotent ones) at two DynamoDB writes.
        """
        wanted = set(event_types) | {WILDCARD}
        matching = [h for h in self._handlers if wanted.intersection(h.types)]
        return sorted(matching, key=lambda h: not h.idempotent)

    def names(self) -> list[str]:
        return [h.name for h in self._handlers]


registry = Registry()
on = registry.on
