"""The local stack as a user runs it: ready fast, a CLI delivery processed fast, Ctrl-C leaves nothing behind."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from devtools import samples
from devtools.local_stack import ROOT, LocalStackProcess
from devtools.local_stack.process import python_env

pytestmark = pytest.mark.e2e

READY_WITHIN_S = 30
PROCESSED_WITHIN_S = 2.0


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False  # something still answers
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a restarted `make run` binds
        server.bind(("127.0.0.1", port))
    return True


def _stop(stack: LocalStackProcess, signum: int) -> tuple[int, float]:
    process = stack.process
    assert process is not None
    started = time.monotonic()
    process.send_signal(signum)
    code = process.wait(timeout=20)
    return code, time.monotonic() - started


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="checks child processes through /proc")
def test_ready_fast_a_cli_delivery_processed_fast_and_ctrl_c_leaves_nothing():
    # Given the local stack started as `make run` starts it
    stack = LocalStackProcess()
    stack.start()
    try:
        pid = stack.process.pid
        http_port = int(stack.url.rsplit(":", 1)[1])
        moto_port = int(stack.endpoint_url.rsplit(":", 1)[1])

        # Then it is ready well within the promise, and prints what a user needs
        assert stack.ready_seconds < READY_WITHIN_S
        banner = stack.log_text()
        assert stack.info["webhook_url"] in banner and "local-dev-secret" in banner and "devtools.send" in banner

        # When a delivery is sent with the sender CLI
        sent = subprocess.run(
            [sys.executable, "-m", "devtools.send", "--url", stack.info["webhook_url"], "--format", "generic"],
            cwd=ROOT,
            env=python_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        accepted_at = time.monotonic()

        # Then the CLI reports the 202, and the event is processed within two seconds of it
        assert sent.returncode == 0, sent.stdout + sent.stderr
        line = sent.stdout.strip().splitlines()[0]
        assert line.startswith("202")
        event_id = json.loads(line[line.index("{") :])["eventId"]
        dynamodb = stack.client("dynamodb")
        while True:
            item = dynamodb.get_item(
                TableName=stack.outputs["EventsTableName"], Key={"eventId": {"S": event_id}}, ConsistentRead=True
            ).get("Item")
            if item and item.get("status", {}).get("S") == "COMPLETED":
                break
            assert time.monotonic() - accepted_at < PROCESSED_WITHIN_S, stack.log_text()[-2000:]
            time.sleep(0.02)
        assert f"processed  {event_id}" in _wait_text(stack, f"processed  {event_id}")
        # two processes: moto (a service of its own, as DynamoDB and SQS are), and the stack
        # (the API, the functions and the pollers are threads)
        (moto_pid,) = _children(pid)
        assert b"devtools.local_stack.moto_server" in Path(f"/proc/{moto_pid}/cmdline").read_bytes()

        # When a genuine delivery that is not an event arrives (parked at once, alerted)
        invalid = json.dumps({"id": "evt_alert_watch", "type": "workorder.created", "data": [1]}).encode()
        request = urllib.request.Request(  # noqa: S310 - the local stack over http
            stack.info["webhook_url"],
            data=invalid,
            headers=samples.signed_headers(invalid, samples.LOCAL_SECRET, "generic"),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - the local stack
            assert answer.status == 202

        # Then the alert AWS would send is printed as a console line, with how to show the event
        assert "alert     invalid~" in _wait_text(stack, "alert     invalid~", timeout=15)

        # When the user presses Ctrl-C
        code, took = _stop(stack, signal.SIGINT)

        # Then it exits cleanly and promptly, and both ports are free again
        assert code == 0, stack.log_text()[-2000:]
        assert took < 10
        assert not Path(f"/proc/{pid}").exists() and not Path(f"/proc/{moto_pid}").exists()
        assert _port_is_free(http_port) and _port_is_free(moto_port)
        assert stack.log_text().rstrip().endswith("stopped.")
    finally:
        stack.stop()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="checks child processes through /proc")
def test_a_killed_stack_leaves_no_moto_behind():
    # Given the local stack, and the moto process it started
    stack = LocalStackProcess()
    stack.start()
    try:
        (moto_pid,) = _children(stack.process.pid)
        moto_port = int(stack.endpoint_url.rsplit(":", 1)[1])

        # When the stack is killed outright (no Ctrl-C, no cleanup of its own)
        stack.stop(signum=signal.SIGKILL)

        # Then moto goes too (its stdin, a pipe from the stack, closed), and its port is free
        deadline = time.monotonic() + 10
        while Path(f"/proc/{moto_pid}").exists() and _state(moto_pid) != "Z":
            assert time.monotonic() < deadline, "moto outlived the stack"
            time.sleep(0.05)
        assert _port_is_free(moto_port)
    finally:
        stack.stop()


def _state(pid: int) -> str:
    """A process's state letter (Z: exited, not yet reaped), or "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def _wait_text(stack: LocalStackProcess, text: str, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    while text not in (log := stack.log_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return log
