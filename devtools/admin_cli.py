"""Operate the webhook pipeline from a terminal: list, show, retry, DLQ peek and redrive.

Talks to DynamoDB and SQS with boto3 directly, under the operator's own credentials
(the same operations as the admin API: both are ``mx_webhooks.admin``)::

    make admin ARGS="list --status FAILED --since 12h"
    make admin ARGS="show mx_3f2a..."
    make admin ARGS="history workorder 90001"   (every event of a work order / request / asset)
    make admin ARGS="retry mx_3f2a... [--force | --handler NAME]"
    make admin ARGS="retry-failed --since 2026-09-14T00:00:00Z --limit 200 [--dry-run]"
    make admin ARGS="dlq peek"   /   make admin ARGS="dlq redrive"
    make admin ARGS="integrations"   (each integration's circuit breaker: state, since, until)

Where: ``--stack-name`` (default ``$MX_STACK_NAME``, else samconfig's
``maintainx-webhooks-dev``) reads the table and queues from the stack's outputs;
``--endpoint-url`` (or ``$AWS_ENDPOINT_URL``) points at the local stack, whose stack is
``maintainx-webhooks-local``; ``--local`` finds the stack ``make run`` started (its moto
endpoint is in ``.local-stack/stack-<PORT>.json``, PORT from ``$PORT``, else 3000);
``--table``/``--queue-url``/``--dlq-url`` skip the lookup. ``--json`` prints the raw
answer (one JSON document) instead of tables. These global options go before or after
the subcommand: ``list --local --json`` and ``--local --json list`` are the same.

Output: stdout carries only the answer. The admin code's own log lines and metric
documents (JSON, as in Lambda) go to stderr; ``--quiet`` drops them (errors stay).

Exit codes: 0 done; 1 done in part (some retries skipped, some messages not moved);
2 bad arguments; 3 not found; 4 conflict (e.g. already completed: use --force);
5 AWS unreachable, no credentials, or no such stack.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from mx_webhooks.admin import Admin, AdminConfig, AdminError, BadRequest, Conflict, NotFound

DEFAULT_STACK = "maintainx-webhooks-dev"
LOCAL_STACK = "maintainx-webhooks-local"
ROOT = Path(__file__).resolve().parent.parent
EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_AWS = 0, 1, 2, 3, 4, 5


class CliError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, int]], out: TextIO) -> None:
    """A plain text table: (key, header, max width); long cells are cut with an ellipsis."""

    def cell(row: dict[str, Any], key: str, width: int) -> str:
        value = row.get(key)
        text = "" if value is None else str(value).replace("\n", " ")
        return text if len(text) <= width else text[: width - 1] + "…"

    cells = [[cell(row, key, width) for key, _, width in columns] for row in rows]
    widths = [max([len(header)] + [len(r[i]) for r in cells]) for i, (_, header, _) in enumerate(columns)]
    print("  ".join(h.ljust(w) for (_, h, _), w in zip(columns, widths, strict=True)).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=out)


LIST_COLUMNS = [
    ("firstSeenAt", "FIRST SEEN (UTC)", 24),
    ("status", "STATUS", 11),
    ("eventType", "TYPE", 20),
    ("source", "SOURCE", 12),
    ("attempts", "TRIES", 5),
    ("entityKey", "ENTITY", 18),
    ("eventId", "EVENT ID", 46),
    ("lastError", "LAST ERROR", 60),
]
HISTORY_COLUMNS = [
    ("occurredAt", "OCCURRED (UTC)", 24),
    ("eventType", "TYPE", 20),
    ("change", "STATUS CHANGE", 24),
    ("status", "STATUS", 11),
    ("attempts", "TRIES", 5),
    ("outcomes", "HANDLERS", 60),
    ("marks", "MARKS", 30),
    ("eventId", "EVENT ID (admin show <id>)", 46),
]
INTEGRATION_COLUMNS = [
    ("name", "INTEGRATION", 12),
    ("shown", "BREAKER", 24),
    ("since", "SINCE (UTC)", 24),
    ("until", "OPEN UNTIL (UTC)", 24),
    ("reason", "REASON", 70),
]
DLQ_COLUMNS = [
    ("sentAt", "PARKED (UTC)", 24),
    ("eventType", "TYPE", 20),
    ("eventId", "EVENT ID", 46),
    ("parkedReason", "REASON", 70),
]


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every subcommand takes, before or after it.

    The main parser holds the defaults; each subparser declares the same options with
    ``SUPPRESS`` defaults, so a value given after the subcommand wins and an absent
    one does not overwrite the value given before it.
    """

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    env = os.environ.get
    where = parser.add_argument_group("where (before or after the subcommand)")
    where.add_argument("--stack-name", default=default(env("MX_STACK_NAME")), help="read resources from its outputs")
    where.add_argument("--endpoint-url", default=default(env("AWS_ENDPOINT_URL")), help="e.g. the local stack's moto")
    where.add_argument(
        "--local",
        action="store_true",
        default=default(False),
        help="the stack `make run` started (moto endpoint from .local-stack/stack-$PORT.json; PORT default 3000)",
    )
    where.add_argument("--region", default=default(env("AWS_REGION") or env("AWS_DEFAULT_REGION")))
    where.add_argument("--table", default=default(env("TABLE_NAME")), help="EventsTable name")
    where.add_argument("--queue-url", default=default(env("QUEUE_URL")), help="EventsQueue URL")
    where.add_argument("--dlq-url", default=default(env("DLQ_URL")), help="EventsDLQ URL")
    output = parser.add_argument_group("output (before or after the subcommand)")
    output.add_argument("--json", action="store_true", default=default(False), help="print the raw answer as JSON")
    output.add_argument(
        "--quiet", "-q", action="store_true", default=default(False), help="no log lines on stderr (errors stay)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="admin_cli", description=__doc__.split("\n\n")[0])
    _global_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(parent: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = parent.add_parser(name, **kwargs)
        _global_options(sub, defaults=False)
        return sub

    listing = command(commands, "list", help="events, newest first")
    listing.add_argument("--status", help="IN_PROGRESS, COMPLETED, FAILED, PARKED, WAITING, IGNORED or QUEUED")
    listing.add_argument("--type", dest="event_type", help="e.g. workorder.created")
    listing.add_argument("--source")
    listing.add_argument("--since", help="ISO 8601 or an age: 90m, 12h, 2d")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--cursor", help="nextCursor of the previous page")
    listing.add_argument("--all", action="store_true", help="follow the cursor to the end")

    history = command(commands, "history", help="every event of one work order, request or asset, by occurredAt")
    history.add_argument("kind", choices=["workorder", "request", "asset"])
    history.add_argument("entity_id", metavar="id")
    history.add_argument("--since", help="first seen since: ISO 8601 or an age (default: the retention period)")
    history.add_argument("--limit", type=int, default=50)
    history.add_argument("--cursor", help="nextCursor of the previous page")
    history.add_argument("--all", action="store_true", help="follow the cursor to the end")

    show = command(commands, "show", help="everything recorded about one event")
    show.add_argument("event_id")

    retry = command(commands, "retry", help="re-enqueue one event (succeeded handlers are skipped)")
    retry.add_argument("event_id")
    retry.add_argument("--force", action="store_true", help="rerun every handler, also on a COMPLETED event")
    retry.add_argument("--handler", help="rerun this one handler only (e.g. the one parked by a PermanentError)")

    bulk = command(
        commands,
        "retry-failed",
        help="re-enqueue every FAILED or PARKED (or stranded QUEUED, or stalled IN_PROGRESS) event since a time",
    )
    bulk.add_argument("--since", required=True, help="ISO 8601 or an age: 12h, 1d")
    bulk.add_argument("--limit", type=int, default=100)
    bulk.add_argument("--dry-run", action="store_true")

    command(commands, "sweep", help="park and alert events a stopped consumer left IN_PROGRESS (runs every 5 min)")

    command(commands, "integrations", help="each integration's circuit breaker, as the consumers last recorded it")

    dlq = command(commands, "dlq", help="the dead-letter queue")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    peek = command(dlq_commands, "peek", help="show parked messages, leave them there")
    peek.add_argument("--max", type=int, default=10)
    redrive = command(dlq_commands, "redrive", help="move every parked message back to the events queue")
    redrive.add_argument("--max", type=int, default=1000)
    return parser


def local_endpoint(port: str | None = None) -> str:
    """The moto endpoint of the stack ``make run`` started on ``port`` (default ``$PORT``, else 3000)."""
    return str(local_stack_info(port, "endpoint_url")["endpoint_url"])


def local_stack_info(port: str | None = None, *required: str) -> dict[str, Any]:
    """The ready file of the stack ``make run`` started on ``port`` (``stack.info``: ``url``,
    ``endpoint_url``, ``outputs``...), holding the ``required`` keys; the operator console
    finds the local admin API through it too."""
    port = port or os.environ.get("PORT") or "3000"
    ready = ROOT / ".local-stack" / f"stack-{port}.json"
    try:
        info = json.loads(ready.read_text())
        for key in required:
            info[key]  # noqa: B018 - a KeyError names the missing key
        return dict(info)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CliError(
            f"--local: no local stack found for port {port} ({ready.relative_to(ROOT)}: {exc.__class__.__name__});"
            " start one with `make run` (or give --endpoint-url)",
            EXIT_AWS,
        ) from exc


def make_admin(args: argparse.Namespace) -> Admin:
    if args.local:
        args.endpoint_url = local_endpoint()
    session = boto3.session.Session(region_name=args.region)
    if args.endpoint_url and session.get_credentials() is None:
        # the local stack's moto accepts any key; spare the operator exporting fake ones
        session = boto3.session.Session(
            region_name=args.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106
        )
    region = session.region_name or "us-east-1"

    def client(service: str) -> Any:
        return session.client(service, region_name=region, endpoint_url=args.endpoint_url)

    table_name, queue_url, dlq_url = args.table, args.queue_url, args.dlq_url
    topic_arn = ""
    if not (table_name and queue_url and dlq_url):
        stack = args.stack_name or (LOCAL_STACK if args.endpoint_url else DEFAULT_STACK)
        try:
            described = client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
        except ClientError as exc:
            raise CliError(f"stack {stack!r}: {exc.response['Error']['Message']}", EXIT_AWS) from exc
        outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
        if not {"EventsTableName", "EventsQueueUrl", "EventsDLQUrl"} <= set(outputs):
            # moto's CloudFormation (the local stack) leaves outputs empty; the physical
            # ids of the resources are the same values (a queue's is its URL)
            pages = client("cloudformation").get_paginator("list_stack_resources").paginate(StackName=stack)
            physical = {
                r["LogicalResourceId"]: r["PhysicalResourceId"] for p in pages for r in p["StackResourceSummaries"]
            }
            outputs = {
                "EventsTableName": physical.get("EventsTable"),
                "EventsQueueUrl": physical.get("EventsQueue"),
                "EventsDLQUrl": physical.get("EventsDLQ"),
                "AlertsTopicArn": physical.get("AlertsTopic"),
                **outputs,
            }
        table_name = table_name or outputs.get("EventsTableName")
        queue_url = queue_url or outputs.get("EventsQueueUrl")
        dlq_url = dlq_url or outputs.get("EventsDLQUrl")
        topic_arn = outputs.get("AlertsTopicArn") or ""
        if not (table_name and queue_url and dlq_url):
            raise CliError(f"stack {stack!r} lacks the EventsTableName/EventsQueueUrl/EventsDLQUrl outputs", EXIT_AWS)
    config = AdminConfig.model_validate(
        {"TABLE_NAME": table_name, "QUEUE_URL": queue_url, "DLQ_URL": dlq_url, "ALERT_TOPIC_ARN": topic_arn}
    )
    return Admin(config, client("dynamodb"), client("sqs"), sns=client("sns") if topic_arn else None)


def _dump(answer: Any, out: TextIO) -> None:
    print(json.dumps(answer, indent=2, default=str), file=out)


def _list(args: argparse.Namespace, admin: Admin, out: TextIO) -> int:
    cursor, items = args.cursor, []
    while True:
        page = admin.list_events(
            status=args.status,
            event_type=args.event_type,
            source=args.source,
            since=args.since,
            limit=args.limit,
            cursor=cursor,
        )
        items += page["items"]
        cursor = page["nextCursor"]
        if not (args.all and cursor):
            break
    if args.json:
        _dump({"items": items, "nextCursor": cursor}, out)
    else:
        table(items, LIST_COLUMNS, out)
        print(f"\n{len(items)} event(s)" + (f"; next page: --cursor {cursor}" if cursor else ""), file=out)
    return EXIT_OK


def _history(args: argparse.Namespace, admin: Admin, out: TextIO) -> int:
    cursor, items = args.cursor, []
    while True:
        page = admin.entity_events(args.kind, args.entity_id, since=args.since, limit=args.limit, cursor=cursor)
        items += page["items"]
        cursor = page["nextCursor"]
        if not (args.all and cursor):
            break
    if args.json:
        _dump({"items": items, "nextCursor": cursor}, out)
        return EXIT_OK
    rows = [_history_row(item) for item in items]
    table(rows, HISTORY_COLUMNS, out)
    print(f"\n{len(items)} event(s) of {args.kind} {args.entity_id}, by occurredAt", file=out)
    if items:
        print(f"more on one: admin show {items[-1]['eventId']}", file=out)
    if cursor:
        print(f"next page: --cursor {cursor}", file=out)
    return EXIT_OK


def _history_row(item: dict[str, Any]) -> dict[str, Any]:
    change = item.get("statusChange") or {}
    outcomes = ", ".join(
        f"{name.rsplit('.', 1)[-1]}={result.get('status')}" for name, result in item["handlers"].items()
    )
    marks = [m for m, on in (("parked", item.get("parked")), ("stale", item.get("stale"))) if on]
    if item.get("waitingFor"):
        marks.append(f"waiting for {item['waitingFor']}")
    return {
        **item,
        "change": f"{change.get('from') or '?'} -> {change.get('to') or '?'}" if change else "",
        "outcomes": outcomes,
        "marks": ", ".join(marks),
    }


def _show(args: argparse.Namespace, admin: Admin, out: TextIO) -> int:
    event = admin.get_event(args.event_id)
    if args.json:
        _dump(event, out)
    else:
        show_event(event, out)
    return EXIT_OK


def _retry(args: argparse.Namespace, admin: Admin, out: TextIO) -> int:
    answer = admin.retry(args.event_id, force=args.force, handler=args.handler)
    if args.json:
        _dump(answer, out)
    else:
        print(f"{answer['eventId']}: {answer['previousStatus']} -> {answer['status']} (re-enqueued)", file=out)
    return EXIT_OK


def _retry_failed(args: argparse.Namespace, admin: Admin, out: TextIO) -> int:
    answer = admin.retry_failed(since=args.since, limit=args.limit, dry_run=args.dry_run)
    if args.json:
        _dump(answer, out)
    elif args.dry_run:
        print(
            f"would re-enqueue {len(answer['wouldRetry'])} event(s) first seen since {answer['since']}",
            file=out,
        )
        for event_id in answer["wouldRetry"]:
            print(f"  {event_id}", file=out)
    else:
        print(f"re-enqueued {len(answer['retried'])} event(s) first seen since {answer['since']}", file=out)
        for skipped in answer["skipped"]:
            print(f"  skipped {skipped['eventId']}: {skipped['reason']}", file=out)
    if answer["more"] and not args.json:
        print(f"more FAILED or PARKED events remain beyond --limit {args.limit}; run again", file=out)
    return EXIT_PARTIAL if answer.get("skipped") else EXIT_OK


def _sweep(args: argparse.Namespace, admin: Admin, out: TextIO) -> int:
    answer = admin.sweep_stalled()
    if args.json:
        _dump(answer, out)
    else:
        print(f"parked {len(answer['marked'])} stalled event(s)", file=out)
        for event_id in answer["marked"]:
            print(f"  {event_id}", file=out)
    return EXIT_OK


def _integrations(args: argparse.Namespace, admin: Admin, out: TextIO) -> int:
    answer = admin.integrations()
    if args.json:
        _dump(answer, out)
        return EXIT_OK
    rows = [
        {
            **item,
            "shown": item["state"] + (" (expired: probes next)" if item["expired"] else ""),
            "since": iso_time(item["since"]) or "never opened",
        }
        for item in answer["items"]
    ]
    table(rows, INTEGRATION_COLUMNS, out)
    return EXIT_OK


def _dlq_peek(args: argparse.Namespace, admin: Admin, out: TextIO) -> int:
    answer = admin.peek_dlq(args.max)
    if args.json:
        _dump(answer, out)
    else:
        table(answer["messages"], DLQ_COLUMNS, out)
        print(f"\n~{answer['approximateDepth']} message(s) in the DLQ", file=out)
    return EXIT_OK


def _dlq_redrive(args: argparse.Namespace, admin: Admin, out: TextIO) -> int:
    answer = admin.redrive_dlq(max_messages=args.max)
    if args.json:
        _dump(answer, out)
    else:
        print(f"moved {answer['moved']} message(s) back to the events queue; ~{answer['remaining']} left", file=out)
        if answer["failed"]:
            print(f"{answer['failed']} could not be sent and stay in the DLQ", file=out)
    return EXIT_PARTIAL if answer["failed"] else EXIT_OK


# (command, dlq sub-command or None) -> what runs it
COMMANDS: dict[tuple[str, str | None], Callable[[argparse.Namespace, Admin, TextIO], int]] = {
    ("list", None): _list,
    ("history", None): _history,
    ("show", None): _show,
    ("retry", None): _retry,
    ("retry-failed", None): _retry_failed,
    ("sweep", None): _sweep,
    ("integrations", None): _integrations,
    ("dlq", "peek"): _dlq_peek,
    ("dlq", "redrive"): _dlq_redrive,
}


def run(args: argparse.Namespace, admin: Admin, out: TextIO) -> int:
    command = COMMANDS.get((args.command, getattr(args, "dlq_command", None) if args.command == "dlq" else None))
    if command is None:
        raise CliError(f"unknown command {args.command}", EXIT_USAGE)  # argparse prevents this
    return command(args, admin, out)


def iso_time(value: Any) -> str:
    """A recorded time as ISO 8601 UTC with milliseconds and ``Z``, whichever way it was stored.

    The record keeps most times as ISO text, ``receivedAt`` as epoch seconds (text), and
    ``occurredAt`` with ``+00:00``: the CLI shows them all one way. Anything else as is.
    """
    if value is None or value == "":
        return ""
    moment: datetime | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(float(value), UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromtimestamp(float(value), UTC)
        except ValueError:
            with contextlib.suppress(ValueError):
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment is None:
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# The event's fields in reading order: (key, label, is a time). The rest follow as they are.
SHOW_FIELDS = [
    ("status", "status", False),
    ("attempts", "attempts", False),
    ("eventType", "type", False),
    ("eventTypes", "all types", False),
    ("sourceEventType", "source type", False),
    ("format", "format", False),
    ("source", "source", False),
    ("entityKey", "entity", False),
    ("occurredAt", "occurred", True),
    ("receivedAt", "received", True),
    ("firstSeenAt", "first seen", True),
    ("updatedAt", "updated", True),
    ("finishedAt", "finished", True),
    ("leaseUntil", "lease until", True),
    ("stalledAt", "stalled", True),
    ("parked", "parked in DLQ", False),
    ("expiresAt", "expires", True),
    ("lastError", "last error", False),
]


def show_event(event: dict[str, Any], out: TextIO) -> None:
    """One event for a person: its fields, one handler a line, then the payload."""
    print(str(event.get("eventId", "")), file=out)
    known = {key for key, _, _ in SHOW_FIELDS} | {"eventId", "handlers", "payload"}
    # a lease matters while the event is IN_PROGRESS; on a finished event it is a leftover
    hidden = {"leaseUntil"} if event.get("status") != "IN_PROGRESS" else set()
    rows = [(label, event[key], is_time) for key, label, is_time in SHOW_FIELDS if key in event and key not in hidden]
    rows += [(key, event[key], key.endswith("At")) for key in sorted(event) if key not in known]
    width = max([len(label) for label, _, _ in rows] + [len("handlers")])
    for label, value, is_time in rows:
        if is_time:
            text = iso_time(value)
        elif isinstance(value, list | dict):
            text = ", ".join(map(str, value)) if isinstance(value, list) else json.dumps(value, default=str)
        else:
            text = str(value)
        print(f"  {label.ljust(width)}  {text}", file=out)
    handlers = event.get("handlers") or {}
    print(f"  {'handlers'.ljust(width)}  {'(none ran)' if not handlers else ''}".rstrip(), file=out)
    name_width = max([len(name) for name in handlers] + [0])
    for name, result in sorted(handlers.items()):
        result = result if isinstance(result, dict) else {"status": result}
        line = f"    {name.ljust(name_width)}  {str(result.get('status', '')):<9}"
        if result.get("durationMs") is not None:
            line += f"  {result['durationMs']:>6} ms"
        if result.get("at"):
            line += f"  at {iso_time(result['at'])}"
        if result.get("error"):
            line += f"  {str(result['error']).replace(chr(10), ' ')}"
        print(line.rstrip(), file=out)
    if "payload" in event:
        payload = event["payload"]
        text = payload if isinstance(payload, str) else json.dumps(payload, indent=2, default=str)
        print("  payload", file=out)
        for line in text.splitlines() or [""]:
            print(f"    {line}", file=out)


@contextlib.contextmanager
def logs_to_stderr(quiet: bool) -> Iterator[None]:
    """Keep stdout for the answer: the admin code's log lines and EMF documents go to stderr.

    ``mx_webhooks.observability`` logs as a Lambda function does, to stdout: the
    Powertools logger's handler holds a stream, and metric documents are written with
    ``sys.stdout.write``. For this call, the handlers' stream is stderr (and their level
    WARNING with ``quiet``) and ``sys.stdout`` is stderr; both are put back after. The
    stream is assigned, not ``setStream()``: that flushes the old one, which may be closed.
    """
    from mx_webhooks.observability import logger

    target = logging.getLogger(logger.name)
    saved: list[tuple[logging.StreamHandler[Any], Any, int]] = []
    for handler in target.handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            saved.append((handler, handler.stream, handler.level))
            handler.stream = sys.stderr
            if quiet:
                handler.setLevel(logging.WARNING)
    sink: TextIO = open(os.devnull, "w") if quiet else sys.stderr  # noqa: SIM115 - closed below
    try:
        with contextlib.redirect_stdout(sink):
            yield
    finally:
        for handler, stream, level in saved:
            handler.stream = stream
            handler.setLevel(level)
        if quiet:
            sink.close()


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout  # taken before stdout is pointed at stderr for the logs
    args = build_parser().parse_args(argv)
    codes = {BadRequest: EXIT_USAGE, NotFound: EXIT_NOT_FOUND, Conflict: EXIT_CONFLICT}
    try:
        with logs_to_stderr(args.quiet):
            return run(args, make_admin(args), out)
    except AdminError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return codes.get(type(exc), EXIT_USAGE)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except (ClientError, BotoCoreError) as exc:
        hint = " (is `make run` still running?)" if args.local else ""
        print(f"error: AWS: {exc}{hint}", file=sys.stderr)
        return EXIT_AWS


if __name__ == "__main__":
    sys.exit(main())
