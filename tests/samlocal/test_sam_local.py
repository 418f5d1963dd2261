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
import socket
import subprocess
import time
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.conftest import EVENTS, REGION, ROOT
from tests.samlocal.conftest import README_ENV_FILE, Docker, StackInfo, _wait, as_run_here, readme_sam_commands
from tests.template.test_build import HANDLERS, PINS, _function_env

pytestmark = [pytest.mark.slow]

IMAGE = "public.ecr.aws/lambda/python:3.13"
# sys.path as Lambda's python3.13 runtime orders it (and the stand-in image's bootstrap sets it)
LAMBDA_PYTHONPATH = "/var/task:/opt/python/lib/python3.13/site-packages:/opt/python:/var/runtime"

INGEST_FILES = sorted(p.name for p in (EVENTS / "ingest").glob("*.json"))
CONSUMER_FILES = sorted(p.name for p in (EVENTS / "consumer").glob("*.json"))
# What the consumer batches record (as tests/integration/test_sample_events.py checks in-process)
BATCH_STATUSES = {
    "batch-mixed.json": {"COMPLETED"},
    "batch-duplicate.json": {"COMPLETED"},
    "batch-unknown-type.json": {"IGNORED"},
    "batch-poison.json": {"COMPLETED"},  # the one good record; the two poison ones are parked
}
BATCH_PARKED = {"batch-poison.json": 2}


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
    before = _lines(local_stack)
    started = time.monotonic()
    # all at once: each is a SAM CLI start, a container start and a cold start, mostly waiting
    running = [
        (
            as_run_here(command, local_stack),
            note,
            subprocess.Popen(
                [*docker.netns.prefix(), "bash", "-c", as_run_here(command, local_stack)],
                env=docker.env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for command, note in invokes
    ]
    for run, note, process in running:
        stdout, stderr = process.communicate(timeout=240)
        assert process.returncode == 0, f"{run}\nexited {process.returncode}\n{stdout}\n{stderr[-3000:]}"
        answer = _last_json(stdout)
        if "ConsumerFunction" in run:
            assert answer == {"batchItemFailures": []}, (run, answer)
            continue
        expected = int(note) if note.isdigit() else 202
        assert answer["statusCode"] == expected, (run, answer)
        if expected == 202:
            assert_processed_by_the_stack(docker, local_stack, json.loads(answer["body"])["eventId"], before)
    docker.timings["README's sam local invoke commands, at once"] = time.monotonic() - started


# -- the SAM CLI's local servers -------------------------------------------------------------------
@pytest.fixture(scope="module")
def servers(docker: Docker, local_stack: StackInfo) -> dict[str, Any]:
    """``sam local start-lambda`` (a boto3 Lambda client for it) and the README's ``start-api``,
    started with the stack (``conftest.start_servers``), once both listen."""
    started = time.monotonic()
    for name, (process, port, log) in local_stack.servers.items():
        _wait(lambda p=process, n=port: p.poll() is not None or _port_open(docker, n), 180, f"sam local {name}", log)
        assert process.poll() is None, log.read_text()
    docker.timings["start-lambda and start-api, waited for"] = time.monotonic() - started
    client = boto3.client(
        "lambda",
        endpoint_url=f"http://127.0.0.1:{local_stack.servers['start-lambda'][1]}",
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(read_timeout=120, retries={"max_attempts": 0}),
    )
    _, api_port, api_log = local_stack.servers["start-api"]
    return {"lambda": client, "api_port": api_port, "api_log": api_log}


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
def test_every_ingest_sample_through_the_emulator(name, docker: Docker, local_stack: StackInfo, servers):
    # Given a sample delivery and the stack's consumer output so far
    event = json.loads((EVENTS / "ingest" / name).read_text())
    before = _lines(local_stack)

    # When the ingest function runs it in the Lambda emulator
    answer = docker.netns.run(_invoke, servers["lambda"], "IngestFunction", event)

    # Then a bad signature is refused and a genuine delivery accepted, then processed by the stack
    if "bad-signature" in name:
        assert answer["statusCode"] == 401, answer
        return
    assert answer["statusCode"] == 202, answer
    assert_processed_by_the_stack(docker, local_stack, json.loads(answer["body"])["eventId"], before)


@pytest.mark.parametrize("name", CONSUMER_FILES)
def test_every_consumer_batch_through_the_emulator(name, docker: Docker, local_stack: StackInfo, servers):
    # Given a sample SQS batch, and the stack's DLQ before it
    batch = json.loads((EVENTS / "consumer" / name).read_text())
    parked_before = docker.netns.run(_dlq_depth, local_stack)

    # When the consumer runs it in the Lambda emulator, against the stack's table and queues
    answer = docker.netns.run(_invoke, servers["lambda"], "ConsumerFunction", batch)

    # Then no record is retried, each valid one is recorded as documented, poison is parked
    assert answer == {"batchItemFailures": []}
    ids = [r["messageAttributes"]["eventId"]["stringValue"] for r in batch["Records"] if _is_event(r)]
    assert ids, f"{name}: no record with an event id"
    statuses = docker.netns.run(_statuses, local_stack, ids)
    assert set(statuses.values()) == BATCH_STATUSES[name], statuses
    assert docker.netns.run(_dlq_depth, local_stack) - parked_before == BATCH_PARKED.get(name, 0)


# -- the webhook route over HTTP --------------------------------------------------------------------
def test_start_api_serves_the_webhook_route_to_the_sender(docker: Docker, local_stack: StackInfo, servers):
    # Given the README's start-api serving the template's routes, and its sender command
    (send,) = [c for c, _ in readme_sam_commands() if c.startswith("make send")]
    before = _lines(local_stack)

    # When the sender posts a signed delivery to it over HTTP
    run = as_run_here(send, local_stack, servers["api_port"])
    done = docker.netns.command(["bash", "-c", run], env=docker.env, cwd=ROOT, timeout=120)

    # Then the route answers 202 and the stack processes the delivery
    assert done.returncode == 0, f"{run}\n{done.stdout}\n{done.stderr}\n{servers['api_log'].read_text()[-3000:]}"
    assert re.search(r"(?m)^202\s", done.stdout), done.stdout
    (event_id,) = re.findall(r'"eventId":"([^"]+)"', done.stdout)
    assert_processed_by_the_stack(docker, local_stack, event_id, before)


def test_the_tier_runs_the_readme_commands_it_claims():
    commands = [c for c, _ in readme_sam_commands()]
    assert sum(c.startswith("sam local invoke") for c in commands) >= 3
    assert any(c.startswith("sam local start-api") for c in commands)
    assert all(README_ENV_FILE in c for c in commands if c.startswith("sam local"))
    assert (ROOT / "events" / "consumer").is_dir() and INGEST_FILES and CONSUMER_FILES
    assert subprocess.run(["git", "check-ignore", "-q", ".local-stack/x.json"], cwd=ROOT).returncode == 0


# -- the built artifacts in the Lambda image itself ---------------------------------------------------
@pytest.mark.parametrize("function", ["IngestFunction", "ConsumerFunction"])
def test_in_the_lambda_image_a_function_imports_the_layers_sdk_from_bytecode(function, docker: Docker):
    # Given the build mounted read-only where Lambda mounts it, and the image's own boto3 (the runtime's)
    build = ROOT / ".aws-sam" / "build"
    env = _function_env(function, PYTHONPATH=LAMBDA_PYTHONPATH)
    env.pop("PATH")
    probe = (
        f"import {HANDLERS[function]}, boto3, botocore, json\n"
        "print(json.dumps({m.__name__: [m.__version__, m.__file__] for m in (boto3, botocore)}))\n"
    )
    argv = ["docker", "run", "--rm", "-v", f"{build / function}:/var/task:ro", "-v", f"{build / 'SharedLayer'}:/opt:ro"]
    argv += [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    argv += ["--entrypoint", "/var/lang/bin/python3.13", IMAGE, "-B", "-v", "-c", probe]

    # When a fresh interpreter in the image imports the entry module
    done = subprocess.run(argv, env=docker.env, capture_output=True, text=True, timeout=120)

    # Then boto3 and botocore are the layer's pinned pair, and nothing of /opt or /var/task compiles from source
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.splitlines()[-1])
    assert {name: version for name, (version, _) in got.items()} == {name: PINS[name] for name in ("boto3", "botocore")}
    assert all(file.startswith("/opt/python/") for _, file in got.values()), got
    compiled = re.findall(r"^# code object from (/(?:opt|var/task)/\S+\.py)$", done.stderr, flags=re.MULTILINE)
    assert compiled == []
