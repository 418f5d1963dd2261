"""Docker for the ``sam local`` tier: a dockerd of our own, the Lambda image, the local stack.

Everything runs in a network namespace this fixture creates (``ip netns add``): dockerd,
its bridge and containers, ``make run`` (the local stack) and the SAM CLI. A ``sam local``
container reaches the stack's moto through Docker's bridge (``host.docker.internal``,
``--add-host host.docker.internal:host-gateway``), so that bridge, and every address the
tier talks to, is one this run made; nothing else on the machine sees it, and ports do
not collide with other stacks on the machine. The test process itself talks into the
namespace from one thread that has entered it (:class:`Netns`), since a network
namespace is per thread.

Steps, each timed into the session's ``timings`` (the tier's budget is ~3 minutes):

1. dockerd missing: ``apt-get install -y docker.io`` (CI runs as root);
2. the namespace, and dockerd in it with its own socket, state and data folders;
3. the Lambda base image: the machines of this project cannot pull
   ``public.ecr.aws/lambda/python:3.13``, so ``../shared/tools/lambda-python-image.sh``
   (beside the project, not part of it) builds a stand-in under that name; every
   ``sam local`` command then gets ``--skip-pull-image``;
4. ``make run`` in the namespace, on a port of its own (its env file for ``--env-vars``).

The fixtures are per module (the tier is one module), so nothing of it outlives the tier
in a full run. It skips, saying why, only where Docker cannot run at all: not root (no namespace, no
dockerd of our own), docker.io not installable, or dockerd not starting. A missing
stand-in script fails: CI has it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import ROOT
from tests.conftest import SAMLOCAL_TIMINGS as TIMINGS_FILE
from tests.e2e.test_readme_commands import bash_commands, readme_blocks, without_comment

IMAGE_SCRIPT = ROOT.parent / "shared" / "tools" / "lambda-python-image.sh"
README_ENV_FILE = ".local-stack/sam-env-3000.json"  # as the README writes it (make run's default port)
STACK_PORT = 3990  # inside the namespace: no other stack there; the files are .local-stack/*-3990.*
T = TypeVar("T")


class Netns:
    """A network namespace of our own: ``run`` calls functions in a thread that has entered it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = f"/run/netns/{name}"
        self._pool: ThreadPoolExecutor | None = None

    def create(self) -> None:
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        self.command(["ip", "link", "set", "lo", "up"], check=True)
        fd = os.open(self.path, os.O_RDONLY)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=self.name, initializer=os.setns, initargs=(fd, 0))

    def prefix(self) -> list[str]:
        """Run a command in the namespace, nothing else changed (``ip netns exec`` would remount /sys)."""
        return ["nsenter", f"--net={self.path}"]

    def command(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix(), *argv], capture_output=True, text=True, **kwargs)

    def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        assert self._pool is not None
        return self._pool.submit(function, *args, **kwargs).result()

    def delete(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        subprocess.run(["ip", "netns", "delete", self.name], check=False, capture_output=True)


@dataclass
class Docker:
    netns: Netns
    socket: str
    env: dict[str, str]  # for every sam and docker command: DOCKER_HOST, the README's PATH
    timings: dict[str, float] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    stack: tuple[subprocess.Popen[bytes], Path, float] | None = None  # make run: process, log, start time

    def start(self, argv: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
        """A long-running command in the namespace, in its own process group (stopped at the end)."""
        process = subprocess.Popen(
            [*self.netns.prefix(), *argv],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=kwargs.pop("env", self.env),
            cwd=kwargs.pop("cwd", ROOT),
            **kwargs,
        )
        self.processes.append(process)
        return process


def _clean_env() -> dict[str, str]:
    """The caller's environment less what the tests and an outer make set (as a user's shell)."""
    dropped = ("AWS_", "POWERTOOLS_", "MAKE", "MFLAGS", "PYTHONPATH", "VIRTUAL_ENV", "PYTEST_", "DOCKER_")
    return {k: v for k, v in os.environ.items() if not k.startswith(dropped)}


def _install_docker(timings: dict[str, float]) -> str | None:
    """dockerd's path, installing Debian's docker.io when it is missing; None if that fails."""
    if shutil.which("dockerd"):
        return shutil.which("dockerd")
    if not shutil.which("apt-get"):
        return None
    started = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "docker.io"]
    if subprocess.run(install, capture_output=True, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, check=False)
        subprocess.run(install, capture_output=True, env=env, check=False)
    timings["apt-get install docker.io"] = time.monotonic() - started
    return shutil.which("dockerd")


def _stop(process: subprocess.Popen[bytes], signum: int = signal.SIGINT, timeout: float = 30) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signum)
        process.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _wait(check: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise TimeoutError(f"{what}: not ready in {timeout:.0f} s\n{tail}")
        time.sleep(0.2)


def readme_sam_commands() -> list[tuple[str, str]]:
    """(command, its comment) of every ``sam local`` and ``make send`` line of the README's sam-local section."""
    found = []
    for block in readme_blocks():
        if block.section == "sam local" and block.lang == "bash":
            for line in bash_commands(block.text):
                if line.startswith(("sam local", "make send")):
                    comment = line[len(without_comment(line)) :].strip().lstrip("#").strip()
                    found.append((without_comment(line), comment))
    return found


def as_run_here(command: str, stack: StackInfo, api_port: int | None = None) -> str:
    """The README's command with this run's env file (and start-api port), on the stand-in image."""
    assert README_ENV_FILE in command or command.startswith("make send"), command
    command = command.replace(README_ENV_FILE, str(stack.env_file.relative_to(ROOT)))
    if api_port is not None:
        command = command.replace("--port 3001", f"--port {api_port}").replace("PORT=3001", f"PORT={api_port}")
    return command + (" --skip-pull-image" if command.startswith("sam local") else "")


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docker]:
    if not (ROOT / ".aws-sam" / "build" / "template.yaml").exists():
        message = "sam local tier: no .aws-sam/build: run `make build` first (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    if os.geteuid() != 0:
        pytest.skip("sam local tier: Docker cannot run here: it needs root for a dockerd of its own (CI runs as root)")
    if not shutil.which("ip") or not shutil.which("nsenter"):
        pytest.skip("sam local tier: Docker cannot run here: no `ip` (iproute2) or `nsenter` for its network namespace")
    if not IMAGE_SCRIPT.exists():
        pytest.fail(
            f"sam local tier: {IMAGE_SCRIPT} is missing. It builds the stand-in Lambda image and lives beside "
            "the project (../shared/tools/ from its root), as in CI; run the tier from a checkout that has it."
        )
    timings: dict[str, float] = {}
    dockerd = _install_docker(timings)
    if dockerd is None:
        pytest.skip("sam local tier: Docker cannot run here: dockerd missing and `apt-get install docker.io` failed")

    name = f"mxw-samlocal-{os.getpid()}"
    work = Path("/run") / name  # sockets and state; the data folder needs a disk overlayfs works on
    data = Path("/var/lib/mxw-samlocal") / name
    logs = tmp_path_factory.mktemp("samlocal")
    netns = Netns(name)
    netns.create()
    socket = f"unix://{work}/docker.sock"
    env = {
        **_clean_env(),
        "DOCKER_HOST": socket,
        "SAM_CLI_TELEMETRY": "0",
        # the README's `export PATH="$PWD/.venv-sam/bin:$PATH"`
        "PATH": f"{ROOT}/.venv-sam/bin:{os.environ.get('PATH', '/usr/bin:/bin')}",
    }
    session = Docker(netns, socket, env, timings)
    started = time.monotonic()
    daemon = session.start(
        [
            dockerd,
            "--host",
            socket,
            "--pidfile",
            f"{work}/docker.pid",
            "--exec-root",
            f"{work}/exec",
            "--data-root",
            str(data),
        ],
        logs / "dockerd.log",
    )
    try:
        try:
            _wait(
                lambda: (
                    daemon.poll() is not None
                    or subprocess.run(["docker", "info"], env=env, capture_output=True).returncode == 0
                ),
                60,
                "dockerd",
                logs / "dockerd.log",
            )
        except TimeoutError as exc:
            pytest.skip(f"sam local tier: Docker cannot run here: {exc}")
        if daemon.poll() is not None:
            tail = (logs / "dockerd.log").read_text(errors="replace")[-1500:]
            pytest.skip(f"sam local tier: Docker cannot run here: dockerd exited {daemon.returncode}:\n{tail}")
        timings["dockerd start"] = time.monotonic() - started

        session.stack = _start_stack(session, logs)  # meanwhile: it needs the bridge, not the image
        started = time.monotonic()
        built = subprocess.run(["bash", str(IMAGE_SCRIPT)], env=env, capture_output=True, text=True, check=False)
        assert built.returncode == 0, f"{IMAGE_SCRIPT} failed:\n{built.stdout}\n{built.stderr[-3000:]}"
        timings["stand-in image"] = time.monotonic() - started
        yield session
    finally:
        started = time.monotonic()
        # the containers first, at once: the SAM CLI would stop each gracefully, seconds apiece
        containers = subprocess.run(["docker", "ps", "-aq"], env=env, capture_output=True, text=True).stdout.split()
        if containers:
            subprocess.run(["docker", "rm", "-f", *containers], env=env, capture_output=True, check=False)
        for process in reversed(session.processes[1:]):
            _stop(process)
        _stop(daemon, signal.SIGTERM)
        timings["teardown"] = time.monotonic() - started
        TIMINGS_FILE.parent.mkdir(parents=True, exist_ok=True)
        TIMINGS_FILE.write_text(json.dumps(timings))
        netns.delete()
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class StackInfo:
    port: int
    info: dict[str, Any]
    env_file: Path
    log: Path
    servers: dict[str, tuple[subprocess.Popen[bytes], int, Path]] = field(default_factory=dict)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _start_stack(docker: Docker, logs: Path) -> tuple[subprocess.Popen[bytes], Path, float]:
    """``make run`` as the README runs it, in the namespace (where Docker's bridge is)."""
    for stale in (
        ROOT / ".local-stack" / f"stack-{STACK_PORT}.json",
        ROOT / ".local-stack" / f"sam-env-{STACK_PORT}.json",
    ):
        stale.unlink(missing_ok=True)
    log = logs / "make-run.log"
    return docker.start(["make", "run", f"PORT={STACK_PORT}"], log), log, time.monotonic()


@pytest.fixture(scope="module")
def local_stack(docker: Docker) -> StackInfo:
    """The stack ``make run`` started in the namespace, once it is ready."""
    assert docker.stack is not None
    process, log, started = docker.stack
    ready = ROOT / ".local-stack" / f"stack-{STACK_PORT}.json"
    _wait(lambda: ready.exists() or process.poll() is not None, 120, "make run", log)
    assert process.poll() is None, f"make run exited {process.returncode}:\n{log.read_text()}"
    docker.timings["make run, ready after (started before the image build)"] = time.monotonic() - started
    info = json.loads(ready.read_text())
    assert info["docker_bridge"], f"make run found no Docker bridge in the namespace:\n{log.read_text()}"
    stack = StackInfo(STACK_PORT, info, ROOT / ".local-stack" / f"sam-env-{STACK_PORT}.json", log)
    stack.servers = start_servers(docker, stack, log.parent)
    return stack


def start_servers(docker: Docker, stack: StackInfo, logs: Path) -> dict[str, tuple[subprocess.Popen[bytes], int, Path]]:
    """``sam local start-lambda`` and the README's ``start-api``, started now (they take half a
    minute to listen, mostly waiting on Docker) while the first tests run; ``servers`` waits."""
    (start_api,) = [c for c, _ in readme_sam_commands() if c.startswith("sam local start-api")]
    lambda_port, api_port = free_port_in(docker.netns), free_port_in(docker.netns)
    commands = {
        "start-lambda": (
            as_run_here(
                f"sam local start-lambda --port {lambda_port} --warm-containers LAZY --env-vars {README_ENV_FILE} "
                "--add-host host.docker.internal:host-gateway",
                stack,
            ),
            lambda_port,
        ),
        "start-api": (as_run_here(start_api, stack, api_port), api_port),
    }
    return {
        name: (docker.start(["bash", "-c", "exec " + command], logs / f"{name}.log"), port, logs / f"{name}.log")
        for name, (command, port) in commands.items()
    }


def free_port_in(netns: Netns) -> int:
    import socket

    def pick() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    return netns.run(pick)
