"""Every file in events/ through its handler, in-process, with events/env.json.

This is what `sam local invoke -e <file> --env-vars events/env.json` runs, minus the
container: the same entry modules, the same environment, moto for AWS.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from devtools import sample_events
from tests.conftest import EVENTS, REGION, LambdaContext, load_event, load_template, receive_all, table_definition

INGEST_FILES = sorted(p.name for p in (EVENTS / "ingest").glob("*.json"))
ENV = json.loads((EVENTS / "env.json").read_text())


@pytest.fixture
def local_resources(aws: None) -> dict[str, str]:
    """The resources env.json names, created in moto under those names."""
    sqs = boto3.client("sqs", region_name=REGION)
    names = sample_events.LOCAL_NAMES
    sqs.create_queue(QueueName=names["dlq"].rsplit("/", 1)[1])
    sqs.create_queue(QueueName=names["queue"].rsplit("/", 1)[1])
    boto3.client("dynamodb", region_name=REGION).create_table(TableName=names["table"], **table_definition())
    boto3.client("sns", region_name=REGION).create_topic(Name=names["topic"].rsplit(":", 1)[1])
    return names


def entry_module(name: str, function: str, monkeypatch: pytest.MonkeyPatch, **overrides: str) -> ModuleType:
    """Import a function's entry module afresh with its env.json environment."""
    for key, value in {**ENV[function], **overrides}.items():
        monkeypatch.setenv(key, value)
    sys.modules.pop(name, None)
    return importlib.import_module(name)


def test_env_json_covers_every_function_the_events_target():
    assert set(ENV) == {"IngestFunction", "ConsumerFunction"}


def test_env_json_sets_only_variables_the_template_declares():
    # `sam local invoke --env-vars` overrides declared variables and silently drops the rest
    template = load_template()
    globals_env = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for function, values in ENV.items():
        declared = globals_env | set(template["Resources"][function]["Properties"]["Environment"]["Variables"])
        assert set(values) <= declared, f"{function}: {sorted(set(values) - declared)} would be ignored"
    assert json.loads(ENV["IngestFunction"]["LOCAL_WEBHOOK_SECRETS"]) == {"default": ["local-dev-secret"]}


@pytest.mark.parametrize("name", INGEST_FILES)
def test_each_ingest_event_gives_its_expected_answer(name, local_resources, monkeypatch):
    # Given the ingest function configured as sam local invoke would configure it
    ingest = entry_module("ingest_handler", "IngestFunction", monkeypatch)

    # When it is invoked with the sample event
    response = ingest.lambda_handler(load_event(f"ingest/{name}"), LambdaContext())

    # Then genuine events are queued and bad signatures refused
    queued = receive_all(local_resources["queue"])
    if "bad-signature" in name:
        assert response["statusCode"] == 401
        assert queued == []
    else:
        assert response["statusCode"] == 202, response
        assert len(queued) == 1
        assert json.loads(response["body"])["eventId"] == queued[0]["MessageAttributes"]["eventId"]["StringValue"]


def test_regenerated_events_pass_with_the_default_300_second_window(local_resources, monkeypatch, tmp_path):
    # Given events re-signed now (what `make events` writes) and no long local tolerance
    events = sample_events.ingest_events(int(time.time()))
    ingest = entry_module("ingest_handler", "IngestFunction", monkeypatch, SIGNATURE_TOLERANCE_SECONDS="300")

    for name, event in events.items():
        status = ingest.lambda_handler(event, LambdaContext())["statusCode"]
        assert status == (401 if "bad-signature" in name else 202), name


def test_old_signatures_fail_with_the_default_window_so_the_local_setting_is_needed(local_resources, monkeypatch):
    stale = sample_events.ingest_events(int(time.time()) - 3600)["maintainx-workorder-created.json"]
    ingest = entry_module("ingest_handler", "IngestFunction", monkeypatch, SIGNATURE_TOLERANCE_SECONDS="300")

    assert ingest.lambda_handler(stale, LambdaContext())["statusCode"] == 401


def test_the_write_command_rewrites_the_files_and_check_accepts_them(monkeypatch, tmp_path):
    monkeypatch.setattr(sample_events, "EVENTS", tmp_path)
    monkeypatch.setattr(sample_events, "ROOT", tmp_path.parent)

    assert sample_events.main(["--write"]) == 0
    assert sample_events.main(["--check"]) == 0
    (tmp_path / "consumer" / "batch-mixed.json").write_text("{}")
    assert sample_events.main(["--check"]) == 1


def test_committed_events_are_up_to_date():
    assert sample_events.main(["--check"]) == 0, "run `make events` and commit events/"


def _consume(name: str, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], Any]:
    consumer = entry_module("consumer_handler", "ConsumerFunction", monkeypatch)
    return consumer.lambda_handler(load_event(f"consumer/{name}"), LambdaContext()), consumer


def _items(table: str) -> dict[str, dict[str, Any]]:
    client = boto3.client("dynamodb", region_name=REGION)
    items = client.scan(TableName=table)["Items"]
    return {i["eventId"]["S"]: {k: next(iter(v.values())) for k, v in i.items()} for i in items}


def test_consumer_batch_mixed_processes_every_type_in_both_formats(local_resources, monkeypatch):
    result, _ = _consume("batch-mixed.json", monkeypatch)

    assert result == {"batchItemFailures": []}
    items = _items(local_resources["table"])
    assert len(items) == 14
    assert {i["status"] for i in items.values()} == {"COMPLETED"}


def test_consumer_batch_duplicate_runs_the_handlers_once(local_resources, monkeypatch):
    result, _ = _consume("batch-duplicate.json", monkeypatch)

    assert result == {"batchItemFailures": []}
    (item,) = _items(local_resources["table"]).values()
    assert item["status"] == "COMPLETED" and item["attempts"] == "1"


def test_consumer_batch_poison_parks_the_bad_records_and_processes_the_good_one(local_resources, monkeypatch):
    result, _ = _consume("batch-poison.json", monkeypatch)

    assert result == {"batchItemFailures": []}
    statuses = sorted(i["status"] for i in _items(local_resources["table"]).values())
    assert statuses == ["COMPLETED", "PARKED", "PARKED"]
    assert len(receive_all(local_resources["dlq"])) == 2


def test_consumer_batch_unknown_type_is_recorded_ignored(local_resources, monkeypatch):
    result, _ = _consume("batch-unknown-type.json", monkeypatch)

    assert result == {"batchItemFailures": []}
    (item,) = _items(local_resources["table"]).values()
    assert item["status"] == "IGNORED"


def test_every_events_file_is_exercised():
    covered = {f"ingest/{n}" for n in INGEST_FILES} | {
        f"consumer/{n}"
        for n in ("batch-mixed.json", "batch-duplicate.json", "batch-poison.json", "batch-unknown-type.json")
    }
    on_disk = {str(p.relative_to(EVENTS)) for p in Path(EVENTS).rglob("*.json")} - {"env.json"}

    assert on_disk == covered
