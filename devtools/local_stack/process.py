"""``python -m devtools.local_stack`` in a child process: nothing leaks into the caller."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from devtools.local_stack.resources import REGION
from devtools.local_stack.template import ROOT
from devtools.samples import LOCAL_SECRET


def python_env() -> dict[str, str]:
    """This environment, with the layer and the repository importable: a child's, as ``make`` sets it."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "common"), str(ROOT)])}


class LocalStackProcess:
    """``python -m devtools.local_stack`` in a child process, for tests and tools.

    ``start()`` waits until the child has written its info file (the same dict as
    ``LocalStack.info``), ``stop()`` sends SIGINT and waits for it to exit.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        params: Mapping[str, str] | None = None,
        handler_modules: Sequence[str] = (),
        secret: str = LOCAL_SECRET,
        secret_values: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 60,
    ) -> None:
        self.args = ["--port", str(port), "--secret", secret, *extra_args]
        for key, value in (params or {}).items():
            self.args += ["--param", f"{key}={value}"]
        for key, value in (secret_values or {}).items():
            self.args += ["--secret-value", f"{key}={value}"]
        if handler_modules:
            self.args += ["--handler-modules", ",".join(handler_modules)]
        self.env = dict(env or {})
        self.ready_timeout = ready_timeout
        self.info: dict[str, Any] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="local-stack-")
        self.log_path = Path(self._dir.name) / "stack.log"
        self.function_log_path = Path(self._dir.name) / "functions.log"
        self.ready_seconds = 0.0

    def __enter__(self) -> LocalStackProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return str(self.info["url"])

    @property
    def endpoint_url(self) -> str:
        return str(self.info["endpoint_url"])

    @property
    def outputs(self) -> dict[str, Any]:
        return dict(self.info["outputs"])

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
        )

    def log_text(self) -> str:
        """What the stack printed: the banner and one line per request and per consumed record."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def function_log_text(self) -> str:
        """The functions' JSON logs and EMF metrics (CloudWatch Logs, locally)."""
        return self.function_log_path.read_text(errors="replace") if self.function_log_path.exists() else ""

    def start(self) -> dict[str, Any]:
        ready = Path(self._dir.name) / "ready.json"
        env = {**python_env(), "PYTHONUNBUFFERED": "1", **self.env}
        started = time.perf_counter()
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "devtools.local_stack",
                    *self.args,
                    "--log-file",
                    str(self.function_log_path),
                    "--ready-file",
                    str(ready),
                ],
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + self.ready_timeout
        while not ready.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"the local stack exited with {self.process.returncode}:\n{self.log_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the local stack was not ready in {self.ready_timeout} s:\n{self.log_text()}")
            time.sleep(0.05)
        self.ready_seconds = time.perf_counter() - started
        self.info = json.loads(ready.read_text())
        return self.info

    def stop(self, timeout: float = 15, signum: int = signal.SIGINT) -> int | None:
        """Signal the stack (Ctrl-C by default) and wait for it; its exit code (0 = clean)."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signum)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode
