"""The sample events: the committed ones in events/, and fresh signatures (``make events``).

- ``events/ingest/*.json``: API Gateway HTTP API (payload v2) events, one per event
  type in each format, plus bad-signature ones, signed with the local secret. A
  signature is accepted for ``SIGNATURE_TOLERANCE_SECONDS`` (300 s by default);
  ``events/env.json``'s local-only tolerance accepts the committed ones for years.
- ``events/consumer/*.json``: SQS batch events as the event source mapping delivers
  them to the consumer (fixed ids and times, so they never go stale).
- ``events/env.json``: the environment for ``sam local invoke --env-vars``.

    python -m devtools.sample_events --sign       # make events: the ingest events signed now,
                                                  # in .local-stack/events/ingest/ (git-ignored)
    python -m devtools.sample_events --check      # exit 1 if a file of events/ is out of date
    python -m devtools.sample_events --write      # after changing the samples: update events/
                                                  # (a file whose content is unchanged is left as is)

Only ``--write`` touches ``events/``, and only the files whose content (signatures
aside) changed, so running any of these on an up-to-date checkout leaves ``git status``
clean.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from devtools import samples
from mx_webhooks.normalize import derive_event_id, primary_type

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
FIXED_TIME = "2026-09-14T13:03:18.971Z"
ACCOUNT = "123456789012"
REGION = "us-east-1"
# The names the sample-event tests create in moto; sam local invoke users point these
# at their own dev stack's resources (README, "Trying the functions with `sam local invoke`").
LOCAL_NAMES = {
    "queue": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/maintainx-webhooks-events",
    "dlq": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/maintainx-webhooks-events-dlq",
    "table": "maintainx-webhooks-events",
    "topic": f"arn:aws:sns:{REGION}:{ACCOUNT}:maintainx-webhooks-alerts",
}
TEN_YEARS = 10 * 365 * 86400


def _slug(event_type: str) -> str:
    return event_type.replace(".", "-")


def _fixed_payload(event_type: str, fmt: str) -> dict[str, Any]:
    """A sample payload with fixed times and ids, so regenerating changes only signatures."""
    if fmt == "maintainx":
        return samples.maintainx_payload(event_type, occurred_at=FIXED_TIME)
    body = samples.generic_payload(event_type, event_id=f"evt_sample_{_slug(event_type).replace('-', '_')}")
    body["createdAt"] = FIXED_TIME
    if "completedAt" in body["data"]:
        body["data"]["completedAt"] = FIXED_TIME
    return body


def ingest_events(now: int) -> dict[str, dict[str, Any]]:
    events: dict[str, dict[str, Any]] = {}
    for fmt in samples.FORMATS:
        for event_type in samples.EVENT_TYPES:
            body = samples.encode(_fixed_payload(event_type, fmt))
            headers = samples.signed_headers(body, samples.LOCAL_SECRET, fmt, now)
            events[f"{fmt}-{_slug(event_type)}.json"] = samples.api_event(body, headers, domain="localhost:3000")
        body = samples.encode(_fixed_payload("workorder.created", fmt))
        headers = samples.signed_headers(body, "not-the-secret", fmt, now)
        events[f"{fmt}-bad-signature.json"] = samples.api_event(body, headers, domain="localhost:3000")
    for event in events.values():  # stable, readable request metadata
        event["requestContext"]["requestId"] = "sample-request"
        event["requestContext"]["timeEpoch"] = now * 1000
        event["requestContext"]["time"] = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))
    return events


def _record(
    body: dict[str, Any] | str, index: int, *, source: str = "default", receive_count: int = 1
) -> dict[str, Any]:
    text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
    attributes: dict[str, Any] = {"source": {"stringValue": source, "dataType": "String"}}
    if isinstance(body, dict):
        attributes |= {
            "eventId": {"stringValue": derive_event_id(body), "dataType": "String"},
            "eventType": {"stringValue": primary_type(body), "dataType": "String"},
        }
    for value in attributes.values():
        value.update({"stringListValues": [], "binaryListValues": []})
    return {
        "messageId": f"00000000-0000-4000-8000-{index:012d}",
        "receiptHandle": f"sample-receipt-{index}",
        "body": text,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": "1789391000000",
            "SenderId": "AROAEXAMPLE:ingest",
            "ApproximateFirstReceiveTimestamp": "1789391000100",
        },
        "messageAttributes": attributes,
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:maintainx-webhooks-events",
        "awsRegion": REGION,
    }


def consumer_events() -> dict[str, dict[str, Any]]:
    mixed = [
        _record(_fixed_payload(event_type, fmt), i)
        for i, (fmt, event_type) in enumerate((f, t) for f in samples.FORMATS for t in samples.EVENT_TYPES)
    ]
    created = _fixed_payload("workorder.created", "maintainx")
    return {
        "batch-mixed.json": {"Records": mixed},
        "batch-duplicate.json": {"Records": [_record(created, 100), _record(created, 101)]},
        "batch-poison.json": {
            "Records": [
                _record(_fixed_payload("workorder.updated", "maintainx"), 200),
                _record("{this is not json", 201),
                _record({"id": "evt_sample_no_type", "data": {}}, 202),
            ]
        },
        "batch-unknown-type.json": {
            "Records": [
                _record(
                    {"eventType": "PART_QUANTITY_CHANGE", "occurredAt": FIXED_TIME, "orgId": 4711, "partId": 12}, 300
                )
            ]
        },
    }


def env_json() -> dict[str, Any]:
    common = {
        "POWERTOOLS_SERVICE_NAME": "maintainx-webhooks",
        "POWERTOOLS_METRICS_NAMESPACE": "MaintainXWebhooks",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    return {
        "IngestFunction": {
            **common,
            "QUEUE_URL": LOCAL_NAMES["queue"],
            "WEBHOOK_SECRET_ARN": "",
            "LOCAL_WEBHOOK_SECRETS": json.dumps({"default": [samples.LOCAL_SECRET]}),
            "SIGNATURE_TOLERANCE_SECONDS": str(TEN_YEARS),
        },
        "ConsumerFunction": {
            **common,
            "TABLE_NAME": LOCAL_NAMES["table"],
            "QUEUE_URL": LOCAL_NAMES["queue"],
            "DLQ_URL": LOCAL_NAMES["dlq"],
            "ALERT_TOPIC_ARN": LOCAL_NAMES["topic"],
            "MAX_RECEIVE_COUNT": "5",
            "HANDLER_MODULES": "mx_webhooks.handlers.examples",
        },
    }


def all_files(now: int) -> dict[Path, Any]:
    files: dict[Path, Any] = {EVENTS / "env.json": env_json()}
    files |= {EVENTS / "ingest" / name: event for name, event in ingest_events(now).items()}
    files |= {EVENTS / "consumer" / name: event for name, event in consumer_events().items()}
    return files


def signed_dir() -> Path:
    """Where ``make events`` writes: git-ignored, beside the local stack's files."""
    return ROOT / ".local-stack" / "events"


def _show(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--sign", action="store_true", help="write the ingest events signed now to --out (events/ is not touched)"
    )
    mode.add_argument("--write", action="store_true", help="update the files of events/ whose content changed")
    mode.add_argument("--check", action="store_true", help="exit 1 when a file would change beyond its signature")
    parser.add_argument("--out", type=Path, help="with --sign: the folder (default .local-stack/events)")
    args = parser.parse_args(argv)
    now = int(time.time())
    if args.sign:
        folder = (args.out or signed_dir()) / "ingest"
        folder.mkdir(parents=True, exist_ok=True)
        events = ingest_events(now)
        for name, event in events.items():
            (folder / name).write_text(json.dumps(event, indent=2) + "\n")
        print(
            f"wrote {len(events)} ingest events signed now to {_show(folder)}/"
            f" (valid for 300 s by default; events/ is unchanged)"
        )
        return 0
    files = all_files(now)
    stale = [p for p, c in files.items() if not p.exists() or _unsigned(json.loads(p.read_text())) != _unsigned(c)]
    if args.write:
        for path in stale:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(files[path], indent=2) + "\n")
            print(f"updated {_show(path)}")
        print(f"{len(stale)} of {len(files)} files under {_show(EVENTS)}/ updated (the rest were up to date)")
        return 0
    for path in stale:
        print(f"out of date: {_show(path)} (python -m devtools.sample_events --write)", file=sys.stderr)
    return 1 if stale else 0


def _unsigned(content: Any) -> Any:
    """The content without what changes with the signing time."""
    if isinstance(content, dict) and "requestContext" in content:
        content = json.loads(json.dumps(content))
        content["requestContext"].pop("time", None)
        content["requestContext"].pop("timeEpoch", None)
        for header in ("x-maintainx-webhook-body-signature", "x-maintainx-signature", "x-maintainx-timestamp"):
            content["headers"].pop(header, None)
    return content


if __name__ == "__main__":
    raise SystemExit(main())
