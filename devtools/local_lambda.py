"""Run a template's Lambda functions in this process: load each handler module fresh, invoke it.

Each function's module is imported under its own name (``<module>__<LogicalId>``),
with the environment the template gives that function set while it imports: our
entry modules read their configuration and build their clients at import, as the
style guide asks. Stack-wide variables (the moto endpoint, fake credentials, the
region) stay set for the life of the stack, because boto3 clients created lazily
(Powertools parameters) read them on first use. What differs from Lambda, and why
it does not matter here: functions share one interpreter, so modules of the shared
layer (the handler registry, the logger) are imported once; the timeout is reported,
not enforced (a thread cannot be killed).
"""

from __future__ import annotations

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

    def load(self) -> None:
        """Import the handler module fresh, with this function's environment in place."""
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

    def invoke(self, event: Any) -> Any:
        """Call the handler like Lambda does; the caller decides what an exception means."""
        if self._entry is None:
            self.load()
        context = LambdaContext(self)
        started = time.monotonic()
        try:
            return self._entry(event, context)
        finally:
            elapsed = time.monotonic() - started
            if elapsed > self.timeout_s:
                log.warning(
                    "%s ran %.1f s, over its %d s timeout (Lambda would have stopped it)",
                    self.logical_id,
                    elapsed,
                    self.timeout_s,
                )


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
