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


# -- global options in either place; stdout carries only the answer -----------------------------

GLOBAL_PLACES = ["before", "after"]


def _where(stack) -> list[str]:
    return ["--table", stack.table_name, "--queue-url", stack.queue_url, "--dlq-url", stack.dlq_url]


def _seed_every_kind(store, stack) -> None:
    """A FAILED event (retry, retry-failed), a COMPLETED one (show) and a parked message (dlq)."""
    _failed_event(store, "evt_failed", "sync: CMMS timed out")
    _failed_event(store, "evt_again", "sync: CMMS timed out")
    claim = store.claim({"eventId": "evt_done", "eventType": "workorder.created", "payload": '{"a": 1}'})
    store.finish("evt_done", claim.token, status="COMPLETED", results={})
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=stack.dlq_url,
        MessageBody=json.dumps({"id": "evt_parked", "type": "asset.updated"}),
        MessageAttributes={"eventId": {"DataType": "String", "StringValue": "evt_parked"}},
    )


EVERY_SUBCOMMAND = [
    ("list",),
    ("list", "--status", "FAILED", "--all"),
    ("show", "evt_done"),
    ("retry", "evt_failed"),
    ("retry", "evt_done", "--force"),
    ("retry-failed", "--since", "1h", "--dry-run"),
    ("retry-failed", "--since", "1h"),
    ("sweep",),
    ("dlq", "peek"),
    ("dlq", "redrive"),
]


@pytest.mark.parametrize("place", GLOBAL_PLACES)
def test_json_output_of_every_subcommand_is_one_json_document(place, stack, store, capsys):
    # Given one of each kind of thing to list, show, retry and redrive
    _seed_every_kind(store, stack)
    options = [*_where(stack), "--json"]

    for argv in EVERY_SUBCOMMAND:
        # When each subcommand runs with the global options before or after it, writing to the real stdout
        code = admin_cli.main([*options, *argv] if place == "before" else [*argv, *options])

        # Then stdout is exactly one JSON document: the functions' log and metric lines went to stderr
        captured = capsys.readouterr()
        assert code == admin_cli.EXIT_OK, (argv, captured.err)
        answer = json.loads(captured.out)
        assert isinstance(answer, dict) and answer, argv
        if argv[0] == "retry" or argv[:2] == ("dlq", "redrive"):
            assert '"level":"INFO"' in captured.err, argv  # the logs are kept, on stderr


def test_a_global_option_after_the_subcommand_wins_and_one_before_it_is_kept(stack, store):
    parser = admin_cli.build_parser()

    before = parser.parse_args(["--json", "--table", "t1", "list", "--status", "FAILED"])
    after = parser.parse_args(["list", "--status", "FAILED", "--json", "--table", "t1"])
    both = parser.parse_args(["--table", "t1", "--region", "eu-west-1", "dlq", "peek", "--table", "t2"])

    assert (before.json, before.table, before.status) == (True, "t1", "FAILED")
    assert (after.json, after.table, after.status) == (True, "t1", "FAILED")
    assert (both.table, both.region, both.dlq_command) == ("t2", "eu-west-1", "peek")
    assert parser.parse_args(["list"]).json is False


def test_endpoint_url_after_the_subcommand_is_accepted(capsys):
    # the first-hour failure: `make admin ARGS="list --endpoint-url http://127.0.0.1:PORT"`
    args = admin_cli.build_parser().parse_args(["list", "--endpoint-url", "http://127.0.0.1:1"])

    assert args.endpoint_url == "http://127.0.0.1:1" and args.command == "list"


def test_quiet_drops_the_log_lines_but_not_the_answer(cli_stdout):
    code, out, err = cli_stdout("retry", "evt_failed", "--quiet", "--json")

    assert code == 0 and json.loads(out)["status"] == "QUEUED"
    assert err == ""


def test_human_retry_prints_one_line_on_stdout_and_the_logs_on_stderr(cli_stdout):
    code, out, err = cli_stdout("retry", "evt_failed")

    assert code == 0
    assert out == "evt_failed: FAILED -> QUEUED (re-enqueued)\n"
    assert "event re-enqueued" in err


@pytest.fixture
def cli_stdout(stack, store, capsys):
    _seed_every_kind(store, stack)
    capsys.readouterr()

    def run(*argv: str) -> tuple[int, str, str]:
        code = admin_cli.main([*argv, *_where(stack)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_show_without_json_is_for_a_person(cli_stdout, store):
    # Given a finished event with a handler result and a payload
    claim = store.claim(
        {
            "eventId": "evt_pump",
            "eventType": "workorder.created",
            "source": "default",
            "payload": json.dumps({"id": "evt_pump", "data": {"title": "Pump"}}),
            "receivedAt": "1789391000.125",
            "occurredAt": "2026-09-14T13:03:18.971000+00:00",
        }
    )
    from mx_webhooks.store import HandlerResult

    result = HandlerResult(status="FAILED", duration_ms=12, at="2026-09-14T13:03:19.000Z", error="boom")
    store.finish("evt_pump", claim.token, status=FAILED, results={"sync.push": result}, error="sync.push: boom")

    # When it is shown without --json
    code, out, _ = cli_stdout("show", "evt_pump")

    # Then: labelled lines, every time in ISO 8601, one line per handler, the payload indented
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "evt_pump"
    fields = dict(line.strip().split(None, 1) for line in lines[1:] if line.startswith("  ") and "  " in line.strip())
    assert fields["status"] == "FAILED"
    assert fields["received"] == "2026-09-14T13:03:20.125Z"  # receivedAt is stored as epoch seconds
    assert fields["occurred"] == "2026-09-14T13:03:18.971Z"
    assert "lease until" not in out  # a finished event's lease is a leftover
    assert any(line.split()[:2] == ["sync.push", "FAILED"] and "boom" in line for line in lines)
    assert '      "title": "Pump"' in out
    assert not out.lstrip().startswith("{")


def test_iso_time_reads_every_way_a_time_is_stored():
    assert admin_cli.iso_time("1789391000.125") == "2026-09-14T13:03:20.125Z"
    assert admin_cli.iso_time(1789391000) == "2026-09-14T13:03:20.000Z"
    assert admin_cli.iso_time("2026-09-14T13:03:18.971000+00:00") == "2026-09-14T13:03:18.971Z"
    assert admin_cli.iso_time("2026-09-14T13:03:18.971Z") == "2026-09-14T13:03:18.971Z"
    assert admin_cli.iso_time("not a time") == "not a time"


def test_local_without_a_running_stack_is_one_line_and_exit_5(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(admin_cli, "ROOT", tmp_path)
    monkeypatch.setenv("PORT", "3999")

    code = admin_cli.main(["list", "--local"])

    err = capsys.readouterr().err
    assert code == admin_cli.EXIT_AWS
    assert err.count("\n") == 1 and "stack-3999.json" in err and "make run" in err


def test_local_reads_the_endpoint_make_run_wrote(tmp_path, monkeypatch):
    (tmp_path / ".local-stack").mkdir()
    (tmp_path / ".local-stack" / "stack-3001.json").write_text(json.dumps({"endpoint_url": "http://127.0.0.1:4567"}))
    monkeypatch.setattr(admin_cli, "ROOT", tmp_path)

    assert admin_cli.local_endpoint("3001") == "http://127.0.0.1:4567"
