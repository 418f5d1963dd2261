"""The local stack's terminal console: a line for each circuit breaker transition, as it happens."""

from __future__ import annotations

import io
import logging

import pytest

from devtools.local_stack.console import Console
from devtools.local_stack.logtap import LogTap
from mx_webhooks.breaker import BreakerSettings, CircuitBreaker, CircuitOpen
from mx_webhooks.observability import SERVICE


def test_each_breaker_transition_prints_one_line_and_deferred_calls_none():
    # Given the console reading the functions' log, as the local stack wires it
    out = io.StringIO()
    tap = LogTap()
    console = Console(out, tap)
    tap.on_circuit = console.print_circuit
    functions_log = logging.getLogger(SERVICE)
    functions_log.addHandler(tap)
    now = [1_000.0]
    breaker = CircuitBreaker("Slack", BreakerSettings(failure_threshold=1, cool_down_seconds=60), lambda: now[0])
    try:
        # When Slack's breaker opens, defers a call, probes and closes
        breaker.failed(reason="Slack post answered 503")
        with pytest.raises(CircuitOpen):
            breaker.before_call()  # deferred: no transition, no line
        now[0] += 60
        breaker.before_call()
        breaker.succeeded()
    finally:
        functions_log.removeHandler(tap)

    # Then three lines: opened (with why), probing, closed
    lines = [line.split("  ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == [
        "breaker   open       Slack  open for 60 s: Slack post answered 503",
        "breaker   half_open  Slack  probing",
        "breaker   closed     Slack  the downstream answered",
    ]
