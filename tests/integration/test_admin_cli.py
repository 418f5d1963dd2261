"""The admin CLI against moto: readable tables and the exit codes scripts rely on."""

from __future__ import annotations

import io
import json

import boto3
import pytest

from devtools import admin_cli
from mx_webhooks.store import FAILED
from tests.conftest import REGION


@pytest.fixture
def cli(stack):
    def run(*argv: str) -> tuple[int, str]:
        out = io.StringIO()
        where = ["--table", stack.table_name, "--queue-url", stack.queue_url, "--dlq-url", stack.dlq_url]
        return admin_cli.main([*where, *argv], out=out), out.getvalue()

    return run


def _failed_event(store, event_id: str, error: str) -> None:
    claim = store.claim({"eventId": event_id, "eventType": "workorder.created", "source": "default", "payload": "{}"})
    store.finish(event_id, claim.token, status=FAILED, results={}, error=error)


def test_list_prints_a_table_with_the_failure_and_its_error(cli, store):
    _failed_event(store, "evt_pump", "sync: CMMS timed out")

    code, text = cli("list", "--status", "FAILED")

    assert code == 0
    header, rule, row, *_ = text.splitlines()
    assert header.split()[:3] == ["FIRST", "SEEN", "(UTC)"] and set(rule) <= {"-", " "}
    assert "FAILED" in row and "evt_pump" in row and "sync: CMMS timed out" in row
    assert "1 event(s)" in text


def test_exit_codes_for_not_found_conflict_bad_arguments_and_success(cli, store, capsys):
    _failed_event(store, "evt_pump", "boom")

    assert cli("show", "evt_nope")[0] == admin_cli.EXIT_NOT_FOUND
    assert cli("list", "--since", "yesterday-ish")[0] == admin_cli.EXIT_USAGE
    code, text = cli("--json", "retry", "evt_pump")
    assert code == 0 and json.loads(text)["status"] == "QUEUED"
    assert cli("retry", "evt_pump")[0] == 0  # QUEUED may be retried again
    claim = store.claim({"eventId": "evt_done", "eventType": "workorder.created", "payload": "{}"})
    store.finish("evt_done", claim.token, status="COMPLETED", results={})
    assert cli("retry", "evt_done")[0] == admin_cli.EXIT_CONFLICT
    assert cli("retry", "evt_done", "--force")[0] == 0
    assert "error:" in capsys.readouterr().err


def test_dlq_redrive_reports_the_count(cli, stack):
    sqs = boto3.client("sqs", region_name=REGION)
    for n in range(2):
        sqs.send_message(
            QueueUrl=stack.dlq_url,
            MessageBody=json.dumps({"id": f"evt_{n}", "type": "asset.updated"}),
            MessageAttributes={"eventId": {"DataType": "String", "StringValue": f"evt_{n}"}},
        )

    peek_code, peeked = cli("dlq", "peek")
    code, text = cli("dlq", "redrive")

    assert peek_code == 0 and "evt_0" in peeked and "~2 message(s)" in peeked
    assert code == 0 and "moved 2 message(s)" in text and "~0 left" in text


def test_a_missing_stack_is_exit_5(aws, capsys):
    code = admin_cli.main(["--stack-name", "no-such-stack", "--region", REGION, "list"], out=io.StringIO())

    assert code == admin_cli.EXIT_AWS
    assert "no-such-stack" in capsys.readouterr().err
