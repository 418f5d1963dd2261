"""The virtual clock and the cooperative scheduler the simulation runs the real code on.

Every actor (a consumer invocation, an admin command) is a real thread running the
real code, but only one thread runs at a time: an actor runs until its next external
call (a DynamoDB, SQS or SNS call, or a handler), announces it at ``checkpoint`` and
waits there until the scheduler resumes it. So an interleaving is a sequence of
``step(actor, fault)`` calls, reproducible exactly, and the fault chosen for a step
decides how the call the actor is paused at goes (``OK``, ``LOST``...).
"""

from __future__ import annotations

import threading
import time as _real_time
from collections.abc import Callable
from typing import Any

# What happens to the external call an actor is paused at, chosen by the step that resumes it.
OK = 0
LOST = 1  # applied, its reply lost; the SDK retries the identical call (a handler: fails, transient)
LOST_FINAL = 2  # applied, its reply lost; the SDK gives up (a handler: PermanentError where it can, else deferred by an open circuit)
FAIL = 3  # refused, not applied (throttled, 500); the SDK gives up (a handler: fails with a huge error text)
KILL = 4  # the invocation dies here, before the call (a crash, or Lambda stopping it)
FAULT_NAMES = {OK: "ok", LOST: "lost", LOST_FINAL: "lost_final", FAIL: "fail", KILL: "kill"}


class Killed(BaseException):
    """The invocation was stopped (a crash or the Lambda timeout): nothing after it runs.

    A BaseException, so the code under test's ``except Exception`` cannot catch it,
    as it cannot catch Lambda freezing and discarding its container."""


class VirtualClock:
    """The one clock: it moves only when the simulation moves it."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SimTime:
    """A stand-in for the ``time`` module, patched over ``mx_webhooks.{store,consumer,admin,ingest}.time``.

    ``perf_counter``/``monotonic`` read the virtual clock too (durations are 0 unless a
    step moves it); ``sleep`` moves it. Anything else is the real module's.
    """

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock

    def time(self) -> float:
        return self._clock.now

    def perf_counter(self) -> float:
        return self._clock.now

    def monotonic(self) -> float:
        return self._clock.now

    def time_ns(self) -> int:
        return int(self._clock.now * 1e9)

    def sleep(self, seconds: float) -> None:
        self._clock.advance(max(0.0, float(seconds)))

    def __getattr__(self, name: str) -> Any:
        return getattr(_real_time, name)


class Actor:
    """One invocation (or admin command) on its own thread, paused between external calls."""

    def __init__(self, scheduler: Scheduler, name: str, kind: str, body: Callable[[Actor], Any]) -> None:
        self.scheduler = scheduler
        self.name = name
        self.kind = kind
        self.body = body
        self.deadline: float | None = None
        self.pending = "start"  # the external call it is paused before
        self.decision = OK
        self.kill_requested = False
        self.dying = False
        self.done = False
        self.killed = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.info: dict[str, Any] = {}
        self._resume = threading.Semaphore(0)
        self.thread = threading.Thread(target=self._run, name=f"sim-{name}", daemon=True)

    def _run(self) -> None:
        self.scheduler._register(self)
        try:
            self.scheduler.checkpoint("start")
            self.result = self.body(self)
        except Killed:
            self.killed = True
        except BaseException as exc:  # the code under test raised: recorded, judged by the world
            self.error = exc
        finally:
            self.done = True
            self.scheduler._back.release()

    def __repr__(self) -> str:
        return f"<{self.name} at {self.pending}>"


class Scheduler:
    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.live: list[Actor] = []
        self.by_name: dict[str, Actor] = {}
        self._by_thread: dict[int, Actor] = {}
        self._back = threading.Semaphore(0)
        self._count = 0
        self.main_decision = OK  # the fault for the next external call made by the main thread (ingest)
        self.on_pause: Callable[[Actor], None] | None = None

    def _register(self, actor: Actor) -> None:
        self._by_thread[threading.get_ident()] = actor

    def current(self) -> Actor | None:
        return self._by_thread.get(threading.get_ident())

    def spawn(self, kind: str, body: Callable[[Actor], Any], *, deadline: float | None = None) -> Actor:
        """A new actor, paused before it does anything."""
        self._count += 1
        actor = Actor(self, f"{kind}{self._count}", kind, body)
        actor.deadline = deadline
        actor.thread.start()
        self._back.acquire()  # paused at "start"
        self.live.append(actor)
        self.by_name[actor.name] = actor
        return actor

    def checkpoint(self, label: str) -> int:
        """Called before every external call: pause here; return the fault chosen for the call."""
        actor = self.current()
        if actor is None:  # the main thread (ingest, the checks): never paused
            decision, self.main_decision = self.main_decision, OK
            return decision
        if actor.dying:
            raise Killed
        actor.pending = label
        self._back.release()
        actor._resume.acquire()
        if actor.kill_requested or (actor.deadline is not None and self.clock.now >= actor.deadline):
            actor.dying = True
            raise Killed
        decision, actor.decision = actor.decision, OK
        return decision

    def step(self, actor: Actor, decision: int = OK) -> None:
        """Resume ``actor`` until its next external call (or its end)."""
        assert not actor.done and threading.get_ident() not in self._by_thread
        actor.decision = decision
        actor._resume.release()
        self._back.acquire()
        if actor.done:
            self.live.remove(actor)
            actor.thread.join()

    def kill(self, actor: Actor) -> None:
        actor.kill_requested = True
        self.step(actor)

    def expire(self) -> list[Actor]:
        """Stop every actor whose deadline has passed (Lambda stops it at its timeout)."""
        gone = [a for a in self.live if a.deadline is not None and self.clock.now >= a.deadline]
        for actor in gone:
            self.kill(actor)
        return gone

    def run_to_end(self, actor: Actor, *, limit: int = 10_000) -> None:
        for _ in range(limit):
            if actor.done:
                return
            self.step(actor)
        raise RuntimeError(f"{actor} did not finish in {limit} steps")

    def close(self) -> None:
        """Stop every live actor (no checks): used when a run ends early."""
        for actor in list(self.live):
            if not actor.done:
                self.kill(actor)
