"""The functions in the real SAM CLI and Lambda emulator (Docker), against the local stack.

What the README's "Trying the functions with `sam local invoke`" section promises, run
as written (its commands are read from the README; the only changes are the env file's
port, the start-api port and ``--skip-pull-image`` for the stand-in image):

- each ``sam local invoke`` of the README answers as its comment says, and an accepted
  delivery is then processed by the stack's own consumer (``make run``'s line for it);
- every file of ``events/ingest`` through ``sam local start-lambda`` (warm containers,
  invoked with boto3: one container start for all, where ``invoke`` starts one each):
  202 for the genuine ones, 401 for the bad signatures, and each accepted one processed
  by the stack (its ``EventsTable`` record, read from the stack's moto, and the
  consumer's line);
- every consumer batch of ``events/consumer``: ``{"batchItemFailures": []}``, with the
  records the integration tests expect (completed, ignored, poison parked in the DLQ);
- ``sam local start-api`` serving the webhook route to ``make send`` over HTTP.

The fixtures (``conftest.py``) start Docker in a network namespace of the run's own;
without root or Docker the tier skips, saying so in pytest's summary.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.conftest import EVENTS, REGION, ROOT
from tests.e2e.test_readme_commands import bash_commands, readme_blocks, without_comment
from tests.samlocal.conftest import Docker, StackInfo, _stop, _wait, free_port_in

pytestmark = [pytest.mark.slow]

INGEST_FILES = sorted(p.name for p in (EVENTS / "ingest").glob("*.json"))
CONSUMER_FILES = sorted(p.name for p in (EVENTS / "consumer").glob("*.json"))
README_ENV_FILE = ".local-stack/sam-env-3000.json"
# What the consumer batches record (as tests/integration/test_sample_events.py checks in-process)
BATCH_STATUSES = {
    "batch-mixed.json": {"COMPLETED"},
    "batch-duplicate.json": {"COMPLETED"},
    "batch-unknown-type.json": {"IGNORED"},
    "batch-poison.json": {"COMPLETED"},  # the one good record; the two poison ones are parked
}
BATCH_PARKED = {"batch-poison.json": 2}


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


# -- the local stack, seen from the namespace -------------------------------------------------------
def _stack_client(stack: StackInfo, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=stack.info["endpoint_url"],
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _statuses(stack: StackInfo, event_ids: list[str]) -> dict[str, str | None]:
    dynamodb = _stack_client(stack, "dynamodb")
    table = stack.info["outputs"]["EventsTableName"]
    found: dict[str, str | None] = {}
    for event_id in event_ids:
        item = dynamodb.get_item(TableName=table, Key={"eventId": {"S": event_id}}, ConsistentRead=True).get("Item")
        found[event_id] = item["status"]["S"] if item else None
    return found


def _dlq_depth(stack: StackInfo) -> int:
    sqs = _stack_client(stack, "sqs")
    url = sqs.get_queue_url(QueueName=stack.info["outputs"]["EventsDLQUrl"].rsplit("/", 1)[1])["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def assert_processed_by_the_stack(docker: Docker, stack: StackInfo, event_id: str, lines_before: int) -> None:
    """The stack's consumer took the message (its line for the id) and the record is done."""

    def consumed() -> bool:
        new = stack.output().splitlines()[lines_before:]
        return any(re.search(rf"\bconsumer\s+\w+\s+{re.escape(event_id)}\b", line) for line in new)

    _wait(consumed, 30, f"make run's consumer line for {event_id}", stack.log)
    assert docker.netns.run(_statuses, stack, [event_id]) == {event_id: "COMPLETED"}


def _lines(stack: StackInfo) -> int:
    return len(stack.output().splitlines())


def _port_open(docker: Docker, port: int) -> bool:
    def probe() -> bool:
        with socket.socket() as sock:
            sock.settimeout(1)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    return docker.netns.run(probe)


def _last_json(output: str) -> Any:
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no JSON answer in:\n{output[-3000:]}")


# -- the README's commands, as written -------------------------------------------------------------
def test_the_readme_sam_local_invoke_commands_answer_as_documented(docker: Docker, local_stack: StackInfo):
    invokes = [(c, note) for c, note in readme_sam_commands() if c.startswith("sam local invoke")]
    assert len(invokes) >= 3, "the README's sam local invoke commands are gone"
    for command, note in invokes:
        run = as_run_here(command, local_stack)
        before = _lines(local_stack)
        done = docker.netns.command(["bash", "-c", run], env=docker.env, cwd=ROOT, timeout=180)
        assert done.returncode == 0, f"{run}\nexited {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
        answer = _last_json(done.stdout)
        if "ConsumerFunction" in command:
            assert answer == {"batchItemFailures": []}, (run, answer)
            continue
        expected = int(note) if note.isdigit() else 202
        assert answer["statusCode"] == expected, (run, answer)
        if expected == 202:
            assert_processed_by_the_stack(docker, local_stack, json.loads(answer["body"])["eventId"], before)


# -- every sample through sam local start-lambda -----------------------------------------------------
@pytest.fixture(scope="module")
def start_lambda(docker: Docker, local_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``sam local start-lambda`` with a warm container per function; a boto3 Lambda client for it."""
    port = free_port_in(docker.netns)
    log = tmp_path_factory.mktemp("start-lambda") / "sam.log"
    command = as_run_here(
        f"sam local start-lambda --port {port} --warm-containers EAGER --env-vars {README_ENV_FILE} "
        "--add-host host.docker.internal:host-gateway",
        local_stack,
    )
    started = time.monotonic()
    process = docker.start(shlex.split(command), log)
    _wait(lambda: process.poll() is not None or _port_open(docker, port), 180, "sam local start-lambda", log)
    assert process.poll() is None, log.read_text()
    docker.timings["start-lambda (warm containers)"] = time.monotonic() - started
    client = boto3.client(
        "lambda",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(read_timeout=120, retries={"max_attempts": 0}),
    )
    yield client
    _stop(process)


def _is_event(record: dict[str, Any]) -> bool:
    """A record carrying a MaintainX event (either format) under its own id; poison ones do not."""
    try:
        body = json.loads(record["body"])
    except ValueError:
        return False
    return "eventId" in record["messageAttributes"] and ("eventType" in body or "type" in body)


def _invoke(client: Any, function: str, event: dict[str, Any]) -> Any:
    response = client.invoke(FunctionName=function, Payload=json.dumps(event).encode())
    assert "FunctionError" not in response, response["Payload"].read()
    return json.loads(response["Payload"].read())


@pytest.mark.parametrize("name", INGEST_FILES)
def test_every_ingest_sample_through_the_emulator(name, docker: Docker, local_stack: StackInfo, start_lambda):
    # Given a sample delivery and the stack's consumer output so far
    event = json.loads((EVENTS / "ingest" / name).read_text())
    before = _lines(local_stack)

    # When the ingest function runs it in the Lambda emulator
    answer = docker.netns.run(_invoke, start_lambda, "IngestFunction", event)

    # Then a bad signature is refused and a genuine delivery accepted, then processed by the stack
    if "bad-signature" in name:
        assert answer["statusCode"] == 401, answer
        return
    assert answer["statusCode"] == 202, answer
    assert_processed_by_the_stack(docker, local_stack, json.loads(answer["body"])["eventId"], before)


@pytest.mark.parametrize("name", CONSUMER_FILES)
def test_every_consumer_batch_through_the_emulator(name, docker: Docker, local_stack: StackInfo, start_lambda):
    # Given a sample SQS batch, and the stack's DLQ before it
    batch = json.loads((EVENTS / "consumer" / name).read_text())
    parked_before = docker.netns.run(_dlq_depth, local_stack)

    # When the consumer runs it in the Lambda emulator, against the stack's table and queues
    answer = docker.netns.run(_invoke, start_lambda, "ConsumerFunction", batch)

    # Then no record is retried, each valid one is recorded as documented, poison is parked
    assert answer == {"batchItemFailures": []}
    ids = [r["messageAttributes"]["eventId"]["stringValue"] for r in batch["Records"] if _is_event(r)]
    assert ids, f"{name}: no record with an event id"
    statuses = docker.netns.run(_statuses, local_stack, ids)
    assert set(statuses.values()) == BATCH_STATUSES[name], statuses
    assert docker.netns.run(_dlq_depth, local_stack) - parked_before == BATCH_PARKED.get(name, 0)


# -- the webhook route over HTTP --------------------------------------------------------------------
def test_start_api_serves_the_webhook_route_to_the_sender(docker: Docker, local_stack: StackInfo, tmp_path: Path):
    commands = dict(readme_sam_commands())
    (start_api,) = [c for c in commands if c.startswith("sam local start-api")]
    (send,) = [c for c in commands if c.startswith("make send")]
    port = free_port_in(docker.netns)
    log = tmp_path / "start-api.log"
    started = time.monotonic()
    process = docker.start(["bash", "-c", "exec " + as_run_here(start_api, local_stack, port)], log)
    try:
        _wait(lambda: process.poll() is not None or _port_open(docker, port), 180, "sam local start-api", log)
        assert process.poll() is None, log.read_text()
        docker.timings["start-api"] = time.monotonic() - started
        before = _lines(local_stack)

        done = docker.netns.command(["bash", "-c", as_run_here(send, local_stack, port)], env=docker.env, cwd=ROOT)

        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{log.read_text()[-3000:]}"
        (event_id,) = re.findall(r'"eventId":"([^"]+)"', done.stdout)
        assert re.search(r"(?m)^202\s", done.stdout), done.stdout
        assert_processed_by_the_stack(docker, local_stack, event_id, before)
    finally:
        _stop(process)


def test_the_tier_runs_the_readme_commands_it_claims():
    commands = [c for c, _ in readme_sam_commands()]
    assert sum(c.startswith("sam local invoke") for c in commands) >= 3
    assert any(c.startswith("sam local start-api") for c in commands)
    assert all(README_ENV_FILE in c for c in commands if c.startswith("sam local"))
    assert (ROOT / "events" / "consumer").is_dir() and INGEST_FILES and CONSUMER_FILES
    assert subprocess.run(["git", "check-ignore", "-q", ".local-stack/x.json"], cwd=ROOT).returncode == 0
