"""What the pages show, computed from the admin API's JSON: the chart, the event's timeline, tidy values.

Pure functions (no Flask, no HTTP), so the pages' logic is tested without a browser.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from devtools.admin_cli import iso_time

# The statuses in the order an operator reads them (the API may add more: they follow)
STATUS_ORDER = ("FAILED", "PARKED", "IN_PROGRESS", "QUEUED", "WAITING", "COMPLETED", "IGNORED", "SETTLED")
# Overview buckets that are no status an event has, so no filter of the list: the stats'
# SETTLED is "COMPLETED or IGNORED (or on a first attempt)", read from the indexes alone
NOT_FILTERS = {"SETTLED"}
STATUS_HELP = {"SETTLED": "completed or ignored (or on its first attempt right now)"}
SERIES = (("received", "Received"), ("processed", "Processed"), ("failed", "Failed"))
ENTITY_KINDS = ("workorder", "request", "asset")

# Times recorded on an event, and what each one says (other ``*At`` fields follow with their own name)
TIME_LABELS = {
    "occurredAt": "occurred at MaintainX",
    "receivedAt": "received by ingest",
    "firstSeenAt": "first taken by the consumer",
    "retryRequestedAt": "retry requested by an operator",
    "stalledAt": "found stalled (its consumer was stopped)",
    "alertedAt": "alert sent",
    "finishedAt": "finished",
    "updatedAt": "last change",
}


def filter_statuses(known: list[str] | None) -> list[str]:
    """The status filter's choices: the API's own statuses when known (PARKED only where the
    stack has it), else the statuses every version of the API accepts."""
    if known is None:
        return [status for status in STATUS_ORDER if status not in NOT_FILTERS | {"PARKED"}]
    known = [status for status in known if status not in NOT_FILTERS] + ["COMPLETED", "IGNORED"]
    return [status for status in STATUS_ORDER if status in known] + sorted(set(known) - set(STATUS_ORDER))


def ordered_counts(counts: dict[str, int]) -> list[tuple[str, int]]:
    known = [(status, counts.get(status, 0)) for status in STATUS_ORDER if status in counts]
    return known + sorted((status, n) for status, n in counts.items() if status not in STATUS_ORDER)


@dataclass
class Chart:
    """An hourly line chart as SVG coordinates: the template draws it, the browser never computes."""

    width: int
    height: int
    lines: list[dict[str, Any]]  # key, label, points ("x,y x,y ..."), total
    ticks: list[dict[str, Any]]  # x, label (the hour, UTC)
    top: int  # the y axis' largest value
    plot: dict[str, int]  # left, right, top, bottom


def hourly_chart(series: list[dict[str, Any]], *, width: int = 760, height: int = 220) -> Chart:
    left, right, top, bottom = 44, width - 12, 12, height - 28
    peak = max([int(point.get(key, 0)) for point in series for key, _ in SERIES] + [1])
    scale_top = _nice_ceiling(peak)
    step = (right - left) / max(len(series) - 1, 1)

    def y(value: int) -> float:
        return bottom - (bottom - top) * value / scale_top

    lines = [
        {
            "key": key,
            "label": label,
            "points": " ".join(f"{left + i * step:.1f},{y(int(p.get(key, 0))):.1f}" for i, p in enumerate(series)),
            "total": sum(int(p.get(key, 0)) for p in series),
        }
        for key, label in SERIES
    ]
    ticks = [
        {"x": round(left + i * step, 1), "label": str(p.get("hour", ""))[11:16]}
        for i, p in enumerate(series)
        if i % 6 == 0 or i == len(series) - 1
    ]
    return Chart(width, height, lines, ticks, scale_top, {"left": left, "right": right, "top": top, "bottom": bottom})


def _nice_ceiling(value: int) -> int:
    """The next 1, 2 or 5 times a power of ten at or above ``value``."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if factor * magnitude >= value:
                return factor * magnitude
        magnitude *= 10


def timeline(event: dict[str, Any]) -> list[dict[str, str]]:
    """The event's history from the times its record keeps, oldest first.

    The record keeps the latest time of each kind (not every transition): when it
    occurred, was received, first taken, each handler's last result, a retry request,
    when it finished and last changed. Enough to read what happened in order.
    """
    rows: list[tuple[str, str, str]] = []
    for key, value in event.items():
        if key.endswith("At") and key != "expiresAt" and value not in (None, ""):
            what = TIME_LABELS.get(key, key)
            if key == "updatedAt":
                what = f"last change: now {event.get('status', '?')}"
            rows.append((iso_time(value), what, ""))
    for name, result in (event.get("handlers") or {}).items():
        result = result if isinstance(result, dict) else {"status": result}
        if result.get("at"):
            rows.append(
                (iso_time(result["at"]), f"handler {name}: {result.get('status', '')}", result.get("error") or "")
            )
    return [{"at": at, "what": what, "detail": detail} for at, what, detail in sorted(rows, key=lambda r: r[0])]


def handler_rows(event: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, result in sorted((event.get("handlers") or {}).items()):
        result = result if isinstance(result, dict) else {"status": result}
        rows.append(
            {
                "name": name,
                "status": result.get("status", ""),
                "durationMs": result.get("durationMs"),
                "at": iso_time(result.get("at")),
                "error": result.get("error") or "",
            }
        )
    return rows


FIELDS = (
    ("status", "Status"),
    ("attempts", "Attempts"),
    ("eventType", "Type"),
    ("eventTypes", "All types"),
    ("source", "Source"),
    ("format", "Format"),
    ("entityKey", "Entity"),
    ("parked", "Parked in the DLQ"),
    ("waitingFor", "Waiting for"),
    ("lastError", "Last error"),
)


def event_fields(event: dict[str, Any]) -> list[tuple[str, str]]:
    shown = []
    for key, label in FIELDS:
        if key in event and event[key] not in (None, ""):
            value = event[key]
            shown.append((label, ", ".join(map(str, value)) if isinstance(value, list) else str(value)))
    return shown


def pretty_payload(payload: Any) -> str:
    """The payload as indented JSON (text that is not JSON as it is); the template escapes it."""
    if isinstance(payload, str):
        return payload
    return json.dumps(payload, indent=2, ensure_ascii=False, default=str)


def entity_link(entity_key: str | None) -> tuple[str, str] | None:
    """``workorder:42`` -> (kind, id) when it names a work order, request or asset."""
    if not entity_key or ":" not in entity_key:
        return None
    kind, _, entity_id = entity_key.partition(":")
    return (kind, entity_id) if kind in ENTITY_KINDS and entity_id else None


def since_label(value: str) -> str:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
