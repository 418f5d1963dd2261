"""Run a template's Lambda functions in this process: load each handler module fresh, invoke it.

Each function's module is imported under its own name (``<module>__<LogicalId>``),
with the environment the template gives that function set while it imports: our
entry modules read their configuration and build their clients at import, as the
style guide asks. Stack-wide variables (the moto endpoint, fake credentials, the
region) stay set for the life of the stack, because boto3 clients created lazily
(Powertools parameters) read them on first use.

The function's ``Timeout`` is enforced the way Lambda enforces it. Each invocation
runs in a worker thread of its own and the caller waits at most ``timeout_s``; on
overrun the caller gets :class:`FunctionTimedOut` (logged as Lambda logs it, "Task
timed out after N seconds"), the worker is abandoned and its result, should it ever
come, is discarded; the "container" is dead, so the next invocation imports the
module again (a fresh module object: new clients, a new thread pool), as Lambda
starts a new execution environment after a timeout. The abandoned thread is stopped
as far as Python allows (see :func:`_freeze`).

What differs from Lambda, and why it does not matter here: functions share one
interpreter, so modules of the shared layer (the handler registry, the logger) are
imported once and survive a reload; concurrent invocations of one function share
one module (one "container") instead of one each; and an abandoned invocation may
keep running until its next bytecode (or longer, in its own pool threads) instead
of being frozen at once, so it can still make calls. Its outcome is never used.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

log = logging.getLogger("devtools.local_stack")
_import_lock = threading.Lock()


class FunctionTimedOut(Exception):  # noqa: N818 - Lambda's own words: "Task timed out"
    """An invocation ran past its function's timeout; Lambda reports it as ``Task timed out``.

    The caller treats it as a failed invocation (for SQS: nothing deleted, the
    records come back after their visibility timeout).
    """

    def __init__(self, function: str, timeout_s: float, request_id: str) -> None:
        super().__init__(f"Task timed out after {timeout_s:.2f} seconds")
        self.function = function
        self.timeout_s = timeout_s
        self.request_id = request_id


class InvocationAbandoned(BaseException):  # noqa: N818 - not an error: the runtime stopping the thread
    """Raised inside an abandoned invocation's thread to stop it.

    A ``BaseException`` (like ``KeyboardInterrupt``), so a handler's ``except
    Exception`` does not swallow it.
    """


class LambdaContext:
    """The context object Lambda passes to a handler, with a real deadline."""

    def __init__(self, function: LocalFunction) -> None:
        self.function_name = function.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function.arn
        self.memory_limit_in_mb = function.memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function.name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + function.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _Invocation:
    """One call of a handler in its own thread; the caller reads the outcome only if it came in time."""

    def __init__(self, entry: Any, event: Any, context: LambdaContext, name: str) -> None:
        self._entry = entry
        self._event = event
        self._context = context
        self._lock = threading.Lock()  # orders "finished" against "abandoned" (see _run and abandon)
        self._done = threading.Event()
        self._abandoned = False
        self._result: Any = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        # Whoever waits for this call (an HTTP request's thread, a poller): log readers that
        # key records by thread (the local stack's console) attribute the handler's to it.
        self.thread.invoker = threading.current_thread()  # type: ignore[attr-defined]

    def _run(self) -> None:
        try:
            try:
                result, error = self._entry(self._event, self._context), None
            except InvocationAbandoned:
                raise
            except BaseException as exc:  # handed to the caller as is, as Lambda reports any error
                result, error = None, exc
            with self._lock:
                self._result, self._error = result, error
                self._done.set()
                if self._abandoned:
                    # abandon() came first but its exception has not been raised yet: cancel it,
                    # else it would go off in threading's bootstrap code after this returns
                    _set_async_exc(threading.get_ident(), None)
        except InvocationAbandoned:
            log.info("%s: the abandoned invocation was stopped", self.thread.name)

    def run(self, timeout_s: float) -> bool:
        """Start the handler and wait for it at most ``timeout_s``; whether it finished in time."""
        self.thread.start()
        return self._done.wait(timeout_s)

    def outcome(self) -> Any:
        """The handler's result, or its exception raised (only once it has finished)."""
        if self._error is not None:
            raise self._error
        return self._result

    def abandon(self) -> bool:
        """Give up on the invocation: stop its thread as far as Python allows (see :func:`_freeze`)."""
        with self._lock:
            if self._done.is_set() or self.thread.ident is None:
                return False  # finished meanwhile: nothing to stop (its result is discarded all the same)
            self._abandoned = _freeze(self.thread.ident)
            return self._abandoned


def _set_async_exc(ident: int, exc: type[BaseException] | None) -> int:
    return int(
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc) if exc else None)
    )


def _freeze(ident: int) -> bool:
    """Stop an abandoned invocation's thread: the nearest Python gets to Lambda freezing it.

    Lambda freezes (then discards) the execution environment of an invocation that
    timed out, so nothing more of it runs. A thread cannot be killed; this delivers an
    asynchronous :class:`InvocationAbandoned` to it with
    ``ctypes.pythonapi.PyThreadState_SetAsyncExc``, which unwinds the handler through
    its ``finally`` blocks (``except Exception`` does not catch it). Limits:

    - the exception is raised at the thread's next bytecode only: a blocking call
      (a socket read, ``time.sleep``, waiting on a future or a lock) finishes first;
    - only that thread gets it: the handler's own pool threads (the consumer's
      ``ThreadPoolExecutor``) run on until their work ends;
    - a handler that catches ``BaseException`` can swallow it.

    So the abandoned invocation may still make calls after its timeout, which is why
    its result is discarded whatever happens, and why the function's next invocation
    runs in a freshly loaded module (its own clients and pool), not in this one.
    Returns whether the exception was set (False: the thread had already ended).
    """
    return _set_async_exc(ident, InvocationAbandoned) == 1


@dataclass
class LocalFunction:
    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str  # "module.function" (module may be dotted: "pkg.module.function")
    environment: dict[str, str]
    timeout_s: int = 3
    memory_mb: int = 128
    module: ModuleType | None = field(default=None, repr=False)
    _entry: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    loads: int = field(default=0, repr=False, compare=False)  # "cold starts": 1 + one per timeout

    def load(self) -> None:
        """Import the handler module fresh, with this function's environment in place.

        Every call executes the module again into a new module object (it replaces the
        previous one in ``sys.modules``): a new "container", with its own clients.
        """
        module_path, _, attr = self.handler.rpartition(".")
        file = self.code_dir.joinpath(*module_path.split(".")).with_suffix(".py")
        if not file.is_file():
            raise FileNotFoundError(f"{self.logical_id}: handler module {file} not found")
        unique = f"{module_path.replace('.', '_')}__{self.logical_id}"
        with _import_lock, _environment(self.environment):
            spec = importlib.util.spec_from_file_location(unique, file)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[unique] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(unique, None)
                raise
        self.module = module
        self._entry = getattr(module, attr)
        self.loads += 1

    def invoke(self, event: Any) -> Any:
        """Call the handler like Lambda does, within the function's timeout.

        Returns what the handler returns and raises what it raises; the caller decides
        what an exception means. A handler still running after ``timeout_s`` is
        abandoned (see :func:`_freeze`) and :class:`FunctionTimedOut` is raised; the
        next invocation loads the module again, as Lambda starts a new environment.
        """
        with self._lock:
            if self._entry is None:
                self.load()
            entry = self._entry
        context = LambdaContext(self)
        request_id = context.aws_request_id
        call = _Invocation(entry, event, context, name=f"lambda-{self.logical_id}-{request_id[:8]}")
        if call.run(self.timeout_s):
            return call.outcome()
        with self._lock:
            if self._entry is entry:
                self._entry = None  # this "container" is dead: the next invocation starts a new one
        stopped = call.abandon()
        log.error(
            "%s %s Task timed out after %.2f seconds (invocation abandoned%s; the next one loads %s afresh)",
            self.logical_id,
            request_id,
            self.timeout_s,
            "" if stopped else ", it had just finished",
            self.handler.rpartition(".")[0],
        )
        raise FunctionTimedOut(self.logical_id, self.timeout_s, request_id)


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@contextmanager
def stack_environment(values: Mapping[str, str], remove: tuple[str, ...] = ()) -> Iterator[None]:
    """Set ``values`` (and drop ``remove``) in os.environ until the block ends."""
    removed = {k: os.environ.pop(k) for k in remove if k in os.environ}
    try:
        with _environment(values):
            yield
    finally:
        os.environ.update(removed)
