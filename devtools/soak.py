"""Soak the pipeline's state-machine simulation: random schedules for as long as asked.

    python -m devtools.soak --minutes 10            # or: make soak MINUTES=10
    python -m devtools.soak --steps 50000 --seed 7  # a fixed budget, reproducible
    python -m devtools.soak --replay 1234           # one run again, its schedule printed

Each run is one simulated deployment (``tests/sim``: the real ingest, consumer, store
and admin on moto's DynamoDB and in-memory SQS/SNS, several workers, crashes, lost
replies, operators) driven by ``random.Random(seed)`` for ``--run-steps`` steps, then
drained and checked; run ``i`` uses seed ``base + i``, so any failure is replayed by
its seed alone. Prints progress (runs, steps, steps/s, distinct schedules and distinct
interleavings explored) and, on a violation, the seed and the schedule to paste into a
regression test. Known bugs (``tests.sim.world.KNOWN_BUGS``) are counted, not failed,
unless ``--strict``. Exit status 1 when a run broke an invariant.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESTART_MOTO_EVERY = 100  # runs


def _environment() -> None:
    for path in (ROOT / "layers" / "common", ROOT):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",  # noqa: S105 (moto's fake credentials)
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="run for this long (default 1)")
    budget.add_argument("--steps", type=int, help="run until this many steps in all")
    budget.add_argument("--replay", type=int, metavar="SEED", help="run one seed and print its schedule")
    parser.add_argument("--seed", type=int, help="the first run's seed (default: from the clock)")
    parser.add_argument("--run-steps", type=int, default=80, help="steps per run before the drain (default 80)")
    parser.add_argument("--strict", action="store_true", help="fail on known bugs too")
    parser.add_argument("--keep-going", action="store_true", help="report every failing run, do not stop")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between progress lines")
    args = parser.parse_args(argv)

    _environment()
    from moto import mock_aws

    from tests.sim.driver import format_schedule, run
    from tests.sim.world import KNOWN_BUGS

    tolerate = () if args.strict else KNOWN_BUGS
    if args.replay is not None:
        with mock_aws():
            result = run(args.replay, args.run_steps, tolerate=tolerate)
        print(f"seed {result.seed}: {result.steps} steps, {result.seconds:.2f} s")
        print("schedule (World.replay):\n" + format_schedule(result.schedule))
        for line in result.violations:
            print("VIOLATION", line)
        if result.error:
            print("ERROR", result.error)
        print("tolerated known bugs:", dict(result.tolerated) or "none")
        return 1 if result.violations or result.error else 0

    base = args.seed if args.seed is not None else int(time.time()) % 1_000_000
    deadline = time.monotonic() + 60 * (args.minutes if args.minutes is not None else 1.0)
    print(
        f"soak: seeds from {base}, {args.run_steps} steps a run, "
        + (f"{args.steps} steps in all" if args.steps else f"until {args.minutes or 1.0:g} min have passed")
    )
    started = time.monotonic()
    last_report = started
    runs = steps = failed = reruns = 0
    schedules: set[str] = set()
    interleavings: set[str] = set()
    pairs: set[tuple[str, str, str, str]] = set()
    tolerated: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    moto = mock_aws()
    moto.start()
    try:
        while (steps < args.steps) if args.steps else (time.monotonic() < deadline):
            seed = base + runs
            if runs and runs % RESTART_MOTO_EVERY == 0:  # moto keeps a little of every request: start afresh
                moto.stop()
                moto = mock_aws()
                moto.start()
            result = run(seed, args.run_steps, tolerate=tolerate)
            runs += 1
            steps += result.steps
            schedules.add(result.schedule_hash)
            interleavings.add(result.interleaving_hash)
            pairs |= result.pairs
            tolerated.update(result.tolerated)
            outcomes.update(result.outcomes)
            reruns += result.reruns
            if result.violations or result.error:
                failed += 1
                print(f"\nFAILED: seed {seed} (replay: python -m devtools.soak --replay {seed})")
                for line in result.violations[:10]:
                    print("  ", line)
                if result.error:
                    print("   ERROR", result.error)
                print("schedule (World.replay):\n" + format_schedule(result.schedule))
                if not args.keep_going:
                    break
            now = time.monotonic()
            if now - last_report >= args.every:
                last_report = now
                _progress(runs, steps, now - started, schedules, interleavings, pairs, failed)
    finally:
        moto.stop()
    print()
    _progress(runs, steps, time.monotonic() - started, schedules, interleavings, pairs, failed)
    why = ", ".join(f"{k[7:]} {v}" for k, v in sorted(outcomes.items()) if k.startswith("rerun: "))
    print(f"handler reruns in the at-least-once window (a success that never reached the table): {reruns} ({why})")
    ends = {k: v for k, v in sorted(outcomes.items()) if k.startswith("end ")}
    print("events at the end of their runs:", ", ".join(f"{k[4:]} {v}" for k, v in ends.items()) or "none")
    print("known bugs met (tolerated):", ", ".join(f"{k} x{v}" for k, v in tolerated.items()) or "none")
    return 1 if failed else 0


def _progress(
    runs: int,
    steps: int,
    elapsed: float,
    schedules: set[str],
    interleavings: set[str],
    pairs: set[tuple[str, str, str, str]],
    failed: int,
) -> None:
    rate = steps / elapsed if elapsed else 0.0
    print(
        f"{elapsed:7.0f} s  runs {runs}  steps {steps}  {rate:.0f} steps/s  distinct schedules {len(schedules)}  "
        f"interleavings {len(interleavings)} (call pairs across workers {len(pairs)})  failed {failed}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
