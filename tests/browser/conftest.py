"""The browser tier: the operator console in headless Chromium against the local stack.

- the local stack in a subprocess on free ports (``LocalStackProcess``, as tests/e2e), with
  ``tests.e2e.admin_e2e_handlers`` loaded: they fail on demand (files in a temp folder)
  and retry backoff is an hour, so the only retries are the ones the tests click;
- the console in a subprocess too (``python -m devtools.operator_console``, as
  ``make console`` starts it), on a free port of 127.0.0.1;
- Debian's Chromium (``make install-browser``), driven by Playwright for Python with
  ``executable_path``: Playwright's own browser download is not used.

Screenshots of each page go to ``test-output/console/`` (gitignored), with the page-load
figures (``page-load.json``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools import samples
from devtools.local_stack import LocalStackProcess
from devtools.local_stack.process import python_env
from tests.conftest import ROOT
from tests.e2e.conftest import deliver

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
SHOTS = ROOT / "test-output" / "console"
PARAMS = {"BackoffBaseSeconds": "3600", "BackoffCapSeconds": "3600", "BackoffJitter": "0"}

pytestmark = pytest.mark.browser


@pytest.fixture(scope="session")
def shots() -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


@pytest.fixture(scope="session")
def handler_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the test handlers look: ``broken`` (retried failure), ``permanent`` (parked at once)."""
    return tmp_path_factory.mktemp("console-handlers")


@pytest.fixture(autouse=True)
def healthy_handlers(handler_state: Path) -> Iterator[None]:
    """Each test starts and ends with the test handlers working (a failed test leaves no flag)."""
    yield
    for flag in ("broken", "permanent"):
        (handler_state / flag).unlink(missing_ok=True)


@dataclass
class Stack:
    process: LocalStackProcess
    state: Path

    @property
    def url(self) -> str:
        return self.process.url

    def admin(self, method: str, path: str) -> tuple[int, Any]:
        request = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - http://127.0.0.1
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def send(self, work_order_id: int, **extra: Any) -> str:
        """One signed workorder.created delivery; its event id."""
        payload = {**samples.maintainx_payload("workorder.created", work_order_id=work_order_id), **extra}
        return deliver(self.process.info["webhook_url"], payload)

    def wait_status(self, event_id: str, *statuses: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            code, shown = self.admin("GET", f"/admin/webhooks/{event_id}")
            if code == 200 and shown.get("status") in statuses:
                return dict(shown)
            if time.monotonic() > deadline:
                raise AssertionError(f"{event_id} not {statuses}: {code} {shown}\n{self.process.log_text()[-2000:]}")
            time.sleep(0.2)

    def set_handler(self, *, broken: bool = False, permanent: bool = False) -> None:
        for name, on in (("broken", broken), ("permanent", permanent)):
            flag = self.state / name
            if on:
                flag.touch()
            else:
                flag.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def stack(handler_state: Path) -> Iterator[Stack]:
    with LocalStackProcess(
        params=PARAMS, handler_modules=["tests.e2e.admin_e2e_handlers"], env={"ADMIN_E2E_DIR": str(handler_state)}
    ) as process:
        yield Stack(process, handler_state)


class Console:
    """``python -m devtools.operator_console`` in a subprocess; ``url`` once it serves."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None
        self.ready = Path(os.environ.get("TMPDIR", "/tmp")) / f"console-{os.getpid()}-{id(self)}.json"  # noqa: S108

    def __enter__(self) -> Console:
        self.ready.unlink(missing_ok=True)
        env = python_env()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devtools.operator_console",
                "--port",
                "0",
                "--ready-file",
                str(self.ready),
                *self.args,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while not self.ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                output = self.proc.stdout.read() if self.proc.stdout else ""
                raise AssertionError(f"the console did not start (exit {self.proc.poll()}):\n{output}")
            time.sleep(0.05)
        self.url = json.loads(self.ready.read_text())["url"]
        return self

    def __exit__(self, *_: Any) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=10)
        finally:
            self.ready.unlink(missing_ok=True)
            if self.proc.stdout:
                self.proc.stdout.close()
        assert code == 0, f"the console exited {code}"


@pytest.fixture(scope="session")
def console(stack: Stack) -> Iterator[Console]:
    with Console("--api-url", stack.url) as running:
        yield running


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: `make install-browser` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (own cookies) that accepts every confirmation dialog."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(20_000)
    opened = context.new_page()
    opened.on("dialog", lambda dialog: dialog.accept())
    yield opened
    context.close()
