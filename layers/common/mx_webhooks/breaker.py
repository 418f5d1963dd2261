"""A circuit breaker per integration (Slack, MaintainX, EventBridge), shared by the container's threads.

When one downstream fails ``failure_threshold`` calls in a row, its breaker opens: for
a cool-down nobody calls it, and every handler that would have is *deferred* (raises
``CircuitOpen``, a ``registry.Deferred``): the consumer records the event WAITING with
the reason, puts it back on the backoff schedule (no sooner than the breaker's end), and
does not count that attempt towards ``RetryAttempts``. After the cool-down one caller,
and only one, probes: success closes the breaker, failure opens it again for twice the
cool-down (up to ``max_cool_down_seconds``). A ``Retry-After`` that a downstream sends
with a 429 or 503 sets how long the breaker stays open (when longer than the cool-down).

So during a long outage each container calls the downstream a handful of times (the
first ``failure_threshold`` failures, then one probe per cool-down, the cool-down
doubling to an hour: under 10 calls in 2 hours, tests/integration/test_breaker_outage.py),
instead of once per event per retry, and no event parks for an outage it merely waited on.

Why our own rather than ``pybreaker`` or ``purgatory`` (both looked at): purgatory is
asyncio only, and the consumer's handlers run in threads. pybreaker's open time is a
fixed ``reset_timeout``: no ``Retry-After``, no cool-down that grows while the outage
lasts (2 h of outage at its 60 s default is 120 probes), and it wraps a whole call,
while the check belongs *between* the HTTP client's own retries of one call. What is
here is small: four fields under a lock (never held during a call), a single half-open
probe, and the open time answered to the caller (``retry_in``) so that it can defer its
work exactly that long.

Each transition (opened, probing, closed) is also handed to a ``Recorder`` when one is
configured: the consumer records it in the events table (``EventStore.record_breaker``),
so that the admin API, the CLI and the operator console show each integration's state.
Only transitions, never each call; the recorder runs outside the lock, and a recorder
that raises is logged and ignored (the breaker, and the event being processed, go on).
Containers do not read that record to open early: without it each container finds an
outage by itself in ``failure_threshold`` calls (3 per container per outage, then the
same few probes), while reading it would cost a GetItem per container every few seconds
on the hot path, and would let one container's record (its own network trouble, a
skewed clock, a record left OPEN by a container that stopped) keep healthy ones off a
downstream that answers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from mx_webhooks.observability import emit, logger
from mx_webhooks.registry import Deferred

PROBE_TIMEOUT_SECONDS = 120.0  # a probe that never reported (its thread was cut off) frees the next caller
# The breakers the layer's integrations use (``JsonHttp(service)``, ``eventbridge.BREAKER``):
# what the admin API reads. An integration of your own with a breaker adds its name here.
INTEGRATIONS = ("Slack", "MaintainX", "EventBridge")


class BreakerState(IntEnum):
    """The value of the ``CircuitState`` metric (the dashboard plots its maximum per integration)."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failure_threshold: int = 3  # failed calls in a row that open the breaker
    cool_down_seconds: float = 60.0  # first open period; doubles with each failed probe
    max_cool_down_seconds: float = 3600.0


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of one breaker's state, as recorded (``EventStore.record_breaker``)."""

    integration: str
    state: BreakerState
    at: float  # epoch seconds, the breaker's clock
    open_until: float | None = None  # OPEN only
    reason: str = ""  # why: the last failure, or what closed it
    retry_after: float | None = None  # the downstream's Retry-After, when it set the open time


class Recorder(Protocol):
    def __call__(self, transition: Transition) -> None: ...


class CircuitOpen(Deferred):
    """The integration's breaker is open: its handler was not called; retry in ``retry_in`` seconds."""


class CircuitBreaker:
    """One integration's breaker. Thread-safe; the lock is never held during a call."""

    def __init__(
        self,
        name: str,
        settings: BreakerSettings,
        clock: Callable[[], float] = time.time,
        recorder: Recorder | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self._clock = clock
        self._recorder = recorder
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0  # in a row, while closed
        self._cool_down = settings.cool_down_seconds
        self._open_until = 0.0
        self._probe_since: float | None = None  # a half-open probe is out since then

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state

    def before_call(self) -> None:
        """Let the call through, or raise ``CircuitOpen`` with how long to wait."""
        now = self._clock()
        with self._lock:
            if self._state == BreakerState.CLOSED:
                return
            if self._state == BreakerState.OPEN and now >= self._open_until:
                self._state, self._probe_since = BreakerState.HALF_OPEN, now
                changed = True
            elif self._state == BreakerState.HALF_OPEN and (
                self._probe_since is None or now - self._probe_since > PROBE_TIMEOUT_SECONDS
            ):
                self._probe_since, changed = now, False
            else:
                retry_in = max(0.0, self._open_until - now)
                state = self._state
                changed = None
        if changed is None:
            # Also while it stays open, so the dashboard's per-minute maximum shows it.
            emit("CircuitState", value=int(state), integration=self.name)
            why = "open" if state == BreakerState.OPEN else "half-open, its probe call is out"
            raise CircuitOpen(self.name, retry_in, f"{self.name} circuit {why}; not called")
        if changed:
            self._report(Transition(self.name, BreakerState.HALF_OPEN, now, reason="probing"))

    def succeeded(self) -> None:
        """The downstream answered (a 2xx, or a 4xx that is the request's fault, not its own)."""
        now = self._clock()
        with self._lock:
            was = self._state
            self._state, self._failures, self._probe_since = BreakerState.CLOSED, 0, None
            self._cool_down = self.settings.cool_down_seconds
        if was != BreakerState.CLOSED:
            self._report(Transition(self.name, BreakerState.CLOSED, now, reason="the downstream answered"))

    def failed(self, retry_after: float | None = None, reason: str = "") -> None:
        """A call failed (5xx, 429, timeout, no connection). ``retry_after``: the downstream said when;
        ``reason``: what failed (recorded when this failure opens the breaker)."""
        now = self._clock()
        with self._lock:
            opened = False
            if self._state == BreakerState.HALF_OPEN:  # the probe failed: open for longer
                self._cool_down = min(self.settings.max_cool_down_seconds, self._cool_down * 2)
                opened = True
            elif self._state == BreakerState.CLOSED:
                self._failures += 1
                opened = self._failures >= self.settings.failure_threshold or bool(retry_after)
            if opened:
                self._state, self._probe_since = BreakerState.OPEN, None
                self._open_until = now + max(self._cool_down, retry_after or 0.0)
            elif self._state == BreakerState.OPEN and retry_after:
                self._open_until = max(self._open_until, now + retry_after)
            open_until = self._open_until
        if opened:
            why = f"open for {open_until - now:.0f} s" + (f": {reason}" if reason else "")
            self._report(Transition(self.name, BreakerState.OPEN, now, open_until, why, retry_after or None))

    def _report(self, transition: Transition) -> None:
        state = transition.state
        emit("CircuitState", value=int(state), integration=self.name)
        log = logger.warning if state == BreakerState.OPEN else logger.info
        log(f"circuit {state.name.lower()}", extra={"integration": self.name, "why": transition.reason})
        if self._recorder is None:
            return
        try:
            self._recorder(transition)
        except Exception as exc:  # noqa: BLE001 - a record is for operators; processing goes on
            error = f"{type(exc).__name__}: {exc}"
            logger.warning("breaker transition not recorded", extra={"integration": self.name, "error": error})


_settings = BreakerSettings()
_clock: Callable[[], float] = time.time
_recorder: Recorder | None = None
_breakers: dict[str, CircuitBreaker] = {}
_registry_lock = threading.Lock()


def configure(
    settings: BreakerSettings, clock: Callable[[], float] | None = None, recorder: Recorder | None = None
) -> None:
    """Settings (and a clock, for tests) for every breaker, and where transitions are recorded
    (None: nowhere); forgets the breakers made so far."""
    global _settings, _clock, _recorder
    with _registry_lock:
        _settings = settings
        _clock = clock or time.time
        _recorder = recorder
        _breakers.clear()


def breaker_for(integration: str) -> CircuitBreaker:
    """The container's one breaker of ``integration``, made on first use."""
    with _registry_lock:
        found = _breakers.get(integration)
        if found is None:
            found = _breakers[integration] = CircuitBreaker(integration, _settings, _clock, _recorder)
        return found


def states() -> dict[str, BreakerState]:
    """Every breaker made so far and its state (tests, the local console)."""
    with _registry_lock:
        made = list(_breakers.values())
    return {b.name: b.state for b in made}
