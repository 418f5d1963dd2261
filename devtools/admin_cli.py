"""Operate the webhook pipeline from a terminal: list, show, retry, DLQ peek and redrive.

Talks to DynamoDB and SQS with boto3 directly, under the operator's own credentials
(the same operations as the admin API: both are ``mx_webhooks.admin``)::

    make admin ARGS="list --status FAILED --since 12h"
    make admin ARGS="show mx_3f2a..."
    make admin ARGS="retry mx_3f2a... [--force]"
    make admin ARGS="retry-failed --since 2026-09-14T00:00:00Z --limit 200 [--dry-run]"
    make admin ARGS="dlq peek"   /   make admin ARGS="dlq redrive"

Where: ``--stack-name`` (default ``$MX_STACK_NAME``, else samconfig's
``maintainx-webhooks-dev``) reads the table and queues from the stack's outputs;
``--endpoint-url`` (or ``$AWS_ENDPOINT_URL``) points at the local stack, whose stack is
``maintainx-webhooks-local``; ``--table``/``--queue-url``/``--dlq-url`` skip the lookup.
``--json`` prints the raw answer instead of tables.

Exit codes: 0 done; 1 done in part (some retries skipped, some messages not moved);
2 bad arguments; 3 not found; 4 conflict (e.g. already completed: use --force);
5 AWS unreachable, no credentials, or no such stack.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from mx_webhooks.admin import Admin, AdminConfig, AdminError, BadRequest, Conflict, NotFound

DEFAULT_STACK = "maintainx-webhooks-dev"
LOCAL_STACK = "maintainx-webhooks-local"
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
DLQ_COLUMNS = [
    ("sentAt", "PARKED (UTC)", 24),
    ("eventType", "TYPE", 20),
    ("eventId", "EVENT ID", 46),
    ("parkedReason", "REASON", 70),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="admin_cli", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack-name", default=os.environ.get("MX_STACK_NAME"), help="read resources from its outputs")
    parser.add_argument(
        "--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"), help="e.g. the local stack's moto"
    )
    parser.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    parser.add_argument("--table", default=os.environ.get("TABLE_NAME"), help="EventsTable name")
    parser.add_argument("--queue-url", default=os.environ.get("QUEUE_URL"), help="EventsQueue URL")
    parser.add_argument("--dlq-url", default=os.environ.get("DLQ_URL"), help="EventsDLQ URL")
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer")
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="events, newest first")
    listing.add_argument("--status", help="IN_PROGRESS, COMPLETED, FAILED, IGNORED or QUEUED")
    listing.add_argument("--type", dest="event_type", help="e.g. workorder.created")
    listing.add_argument("--source")
    listing.add_argument("--since", help="ISO 8601 or an age: 90m, 12h, 2d")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--cursor", help="nextCursor of the previous page")
    listing.add_argument("--all", action="store_true", help="follow the cursor to the end")

    show = commands.add_parser("show", help="everything recorded about one event")
    show.add_argument("event_id")

    retry = commands.add_parser("retry", help="re-enqueue one event (succeeded handlers are skipped)")
    retry.add_argument("event_id")
    retry.add_argument("--force", action="store_true", help="rerun every handler, also on a COMPLETED event")

    bulk = commands.add_parser(
        "retry-failed", help="re-enqueue every FAILED (or stranded QUEUED, or stalled IN_PROGRESS) event since a time"
    )
    bulk.add_argument("--since", required=True, help="ISO 8601 or an age: 12h, 1d")
    bulk.add_argument("--limit", type=int, default=100)
    bulk.add_argument("--dry-run", action="store_true")

    commands.add_parser("sweep", help="park and alert events a stopped consumer left IN_PROGRESS (runs every 5 min)")

    dlq = commands.add_parser("dlq", help="the dead-letter queue")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    peek = dlq_commands.add_parser("peek", help="show parked messages, leave them there")
    peek.add_argument("--max", type=int, default=10)
    redrive = dlq_commands.add_parser("redrive", help="move every parked message back to the events queue")
    redrive.add_argument("--max", type=int, default=1000)
    return parser


def make_admin(args: argparse.Namespace) -> Admin:
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
    config = AdminConfig(TABLE_NAME=table_name, QUEUE_URL=queue_url, DLQ_URL=dlq_url, ALERT_TOPIC_ARN=topic_arn)
    return Admin(config, client("dynamodb"), client("sqs"), sns=client("sns") if topic_arn else None)


def run(args: argparse.Namespace, admin: Admin, out: TextIO) -> int:
    def dump(answer: Any) -> None:
        print(json.dumps(answer, indent=2, default=str), file=out)

    if args.command == "list":
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
            dump({"items": items, "nextCursor": cursor})
        else:
            table(items, LIST_COLUMNS, out)
            print(f"\n{len(items)} event(s)" + (f"; next page: --cursor {cursor}" if cursor else ""), file=out)
        return EXIT_OK

    if args.command == "show":
        dump(admin.get_event(args.event_id))
        return EXIT_OK

    if args.command == "retry":
        answer = admin.retry(args.event_id, force=args.force)
        if args.json:
            dump(answer)
        else:
            print(f"{answer['eventId']}: {answer['previousStatus']} -> {answer['status']} (re-enqueued)", file=out)
        return EXIT_OK

    if args.command == "retry-failed":
        answer = admin.retry_failed(since=args.since, limit=args.limit, dry_run=args.dry_run)
        if args.json:
            dump(answer)
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
            print(f"more FAILED events remain beyond --limit {args.limit}; run again", file=out)
        return EXIT_PARTIAL if answer.get("skipped") else EXIT_OK

    if args.command == "sweep":
        answer = admin.sweep_stalled()
        if args.json:
            dump(answer)
        else:
            print(f"parked {len(answer['marked'])} stalled event(s)", file=out)
            for event_id in answer["marked"]:
                print(f"  {event_id}", file=out)
        return EXIT_OK

    if args.command == "dlq" and args.dlq_command == "peek":
        answer = admin.peek_dlq(args.max)
        if args.json:
            dump(answer)
        else:
            table(answer["messages"], DLQ_COLUMNS, out)
            print(f"\n~{answer['approximateDepth']} message(s) in the DLQ", file=out)
        return EXIT_OK

    if args.command == "dlq" and args.dlq_command == "redrive":
        answer = admin.redrive_dlq(max_messages=args.max)
        if args.json:
            dump(answer)
        else:
            print(f"moved {answer['moved']} message(s) back to the events queue; ~{answer['remaining']} left", file=out)
            if answer["failed"]:
                print(f"{answer['failed']} could not be sent and stay in the DLQ", file=out)
        return EXIT_PARTIAL if answer["failed"] else EXIT_OK
    raise CliError(f"unknown command {args.command}", EXIT_USAGE)  # argparse prevents this


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    codes = {BadRequest: EXIT_USAGE, NotFound: EXIT_NOT_FOUND, Conflict: EXIT_CONFLICT}
    try:
        return run(args, make_admin(args), out)
    except AdminError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return codes.get(type(exc), EXIT_USAGE)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except (ClientError, BotoCoreError) as exc:
        print(f"error: AWS: {exc}", file=sys.stderr)
        return EXIT_AWS


if __name__ == "__main__":
    sys.exit(main())
