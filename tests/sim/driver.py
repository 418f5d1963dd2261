"""A seeded random driver for the simulation: what ``make soak`` runs, run after run.

Each run is one ``World``: ``steps`` random steps (weighted toward resuming actors, so
invocations get somewhere between crashes), then ``settle`` and the final checks. A
run is fully determined by its seed: ``run(seed)`` again replays it step for step, and
its ``World.log`` is the schedule to paste into a regression test.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.sim.sched import FAIL, KILL, LOST, LOST_FINAL, OK
from tests.sim.world import ADMIN_OPS, DELIVERY_KINDS, KNOWN_BUGS, KnownBug, World

# (operation, weight): resuming actors dominates, so most invocations reach their end.
WEIGHTS = (
    ("advance", 60),
    ("deliver", 10),
    ("receive", 10),
    ("redeliver", 2),
    ("tick", 8),
    ("admin", 4),
)
FAULTS = (OK,) * 14 + (LOST, LOST_FINAL, FAIL, KILL)
TICKS = (1, 1, 2, 5, 10, 10, 30, 61, 95, 400, 1000)


def random_step(rng: random.Random, world: World) -> tuple[Any, ...]:
    """One step that can happen now, drawn from ``rng``."""
    live = bool(world.scheduler.live)
    visible = bool(world.sqs.visible(world.queue_url))
    choices = [
        (name, weight)
        for name, weight in WEIGHTS
        if (name != "advance" or live) and (name != "receive" or visible) and (name != "redeliver" or live)
    ]
    name = rng.choices([n for n, _ in choices], weights=[w for _, w in choices])[0]
    if name == "advance":
        return ("advance", rng.randrange(8), rng.choice(FAULTS))
    if name == "deliver":
        return ("deliver", rng.choice(DELIVERY_KINDS), rng.randrange(100), rng.choice(FAULTS[:-1]))
    if name == "receive":
        return ("receive", rng.randint(1, 10), rng.randrange(10))
    if name == "redeliver":
        return ("redeliver", rng.randrange(10))
    if name == "tick":
        return ("tick", rng.choice(TICKS))
    return ("admin", rng.choice(ADMIN_OPS), rng.randrange(100))


@dataclass
class RunResult:
    seed: int
    steps: int
    violations: list[str]
    schedule: list[tuple[Any, ...]]
    schedule_hash: str
    interleaving_hash: str
    pairs: set[tuple[str, str, str, str]] = field(default_factory=set)
    tolerated: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    reruns: int = 0
    seconds: float = 0.0
    error: str | None = None


def run(seed: int, steps: int = 80, *, tolerate: tuple[KnownBug, ...] = KNOWN_BUGS) -> RunResult:
    """One run: ``steps`` random steps, then settle and check. Needs ``moto.mock_aws`` started."""
    rng = random.Random(seed)
    random.seed(seed)  # the consumer's backoff jitter draws from the global generator
    started = time.perf_counter()
    world = World(tolerate=tolerate)
    error = None
    try:
        for _ in range(steps):
            world.do(*random_step(rng, world))
            if world.violations:
                break
        if not world.violations:
            world.settle()
            world.check_final()
    except Exception as exc:  # the simulation itself broke: report it with the seed
        error = f"{type(exc).__name__}: {exc}"
    finally:
        world.close()
    return RunResult(
        seed=seed,
        steps=len(world.log),
        violations=list(world.violations),
        schedule=list(world.log),
        schedule_hash=_digest(world.log),
        interleaving_hash=_digest(world.trace),
        pairs=interleaving_pairs(world.trace),
        tolerated=world.tolerated,
        outcomes=world.stats.outcomes,
        reruns=world.stats.reruns,
        seconds=time.perf_counter() - started,
        error=error,
    )


def interleaving_pairs(trace: list[tuple[str, str, str]]) -> set[tuple[str, str, str, str]]:
    """Each (call, call) of two different actors resumed one right after the other: how many
    distinct ones a soak has seen says how much of the interleaving space it has covered."""
    return {(a[0], a[1], b[0], b[1]) for a, b in zip(trace, trace[1:], strict=False) if a[2] != b[2]}


def _digest(items: list[Any]) -> str:
    return hashlib.sha256(repr(items).encode()).hexdigest()[:16]


def format_schedule(schedule: list[tuple[Any, ...]]) -> str:
    """The schedule as Python, for ``World.replay`` in a regression test."""
    return "[\n" + "".join(f"    {step!r},\n" for step in schedule) + "]"
