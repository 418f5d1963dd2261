"""The local stack's Lambda runner enforces the function timeout the way Lambda does.

A handler still running at its timeout is abandoned: the caller gets FunctionTimedOut
within the timeout (plus a little), the thread is stopped at its next bytecode, and
the next invocation runs in a freshly loaded module (a new "container").
"""

from __future__ import annotations

import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from devtools.local_stack.lambda_runtime import FunctionTimedOut, LocalFunction

HANDLER = textwrap.dedent(
    """
    import time

    INVOCATIONS = 0  # module state: starts again in a new "container"

    def handler(event, context):
        global INVOCATIONS
        INVOCATIONS += 1
        mode = event.get("mode")
        if mode == "raise":
            raise ValueError("bad input")
        if mode == "raise-timeout":  # the handler's own TimeoutError (a socket's, say) is not the function's
            raise TimeoutError("read timed out")
        if mode == "loop":  # busy: the abandoning exception stops it at its next bytecode
            try:
                while True:
                    event["spins"] = event.get("spins", 0) + 1
            except Exception:  # an application's catch-all must not swallow the runtime stopping it
                event["swallowed"] = True
            finally:
                event["unwound"] = time.monotonic()
        if mode == "sleep":  # blocked: the sleep ends first, then the exception goes off
            try:
                time.sleep(event["seconds"])
                event["slept"] = True
                return {"late": True}
            finally:
                event["unwound"] = time.monotonic()
        return {"invocations": INVOCATIONS, "remaining_ms": context.get_remaining_time_in_millis()}
    """
)


@pytest.fixture
def function(tmp_path: Path) -> LocalFunction:
    (tmp_path / "slow_handler.py").write_text(HANDLER)
    return LocalFunction(
        logical_id="SlowFunction",
        name="slow",
        arn="arn:aws:lambda:us-east-1:123456789012:function:slow",
        code_dir=tmp_path,
        handler="slow_handler.handler",
        environment={},
        timeout_s=1,
    )


def _wait_for(probe: Any, seconds: float = 2) -> Any:
    deadline = time.monotonic() + seconds
    while not (value := probe()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return value


def test_a_handler_that_finishes_in_time_returns_its_value_and_keeps_its_container(function):
    assert function.invoke({})["invocations"] == 1
    second = function.invoke({})

    assert second["invocations"] == 2 and function.loads == 1  # warm: same module
    assert 0 < second["remaining_ms"] <= 1000


def test_a_handlers_exception_reaches_the_caller_and_the_container_lives_on(function):
    with pytest.raises(ValueError, match="bad input"):
        function.invoke({"mode": "raise"})
    with pytest.raises(TimeoutError, match="read timed out"):
        function.invoke({"mode": "raise-timeout"})

    assert function.invoke({})["invocations"] == 3 and function.loads == 1


def test_an_overrunning_handler_is_stopped_and_the_next_invocation_gets_a_fresh_module(function, caplog):
    # Given a warm function (one invocation so far, in its first module)
    assert function.invoke({})["invocations"] == 1
    first_module = function.module

    # When a handler spins past the 1 s timeout
    event: dict[str, Any] = {"mode": "loop"}
    started = time.monotonic()
    with caplog.at_level("INFO", logger="devtools.local_stack"), pytest.raises(FunctionTimedOut) as raised:
        function.invoke(event)
    waited = time.monotonic() - started

    # Then the caller hears of it at the timeout, in Lambda's words
    assert 1.0 <= waited < 1.5
    assert str(raised.value) == "Task timed out after 1.00 seconds" and raised.value.function == "SlowFunction"
    assert "Task timed out after 1.00 seconds" in caplog.text
    # and the abandoned thread was stopped, through its finally but not its `except Exception`
    assert _wait_for(lambda: "unwound" in event)
    assert event["unwound"] - started < 1.5 and "swallowed" not in event
    spins = event["spins"]
    time.sleep(0.05)
    assert event["spins"] == spins  # not spinning any more
    assert not [t for t in threading.enumerate() if t.name.startswith("lambda-SlowFunction")]

    # And the next invocation runs in a new "container": a new module object whose state starts again
    assert function.invoke({})["invocations"] == 1
    assert function.module is not first_module and function.loads == 2


def test_a_blocked_handler_is_abandoned_and_its_late_result_is_discarded(function):
    event: dict[str, Any] = {"mode": "sleep", "seconds": 1.3}
    started = time.monotonic()

    with pytest.raises(FunctionTimedOut):
        function.invoke(event)
    assert time.monotonic() - started < 1.5

    # The new container answers while the old one still sleeps
    assert function.invoke({})["invocations"] == 1
    # the sleep (a blocking call) ends before the abandoning exception can go off; then it unwinds
    assert _wait_for(lambda: "unwound" in event)
    assert event["unwound"] - started >= 1.3
    # whatever it did, nothing of it came back: the function is on its second module, untouched
    assert function.invoke({})["invocations"] == 2 and function.loads == 2
