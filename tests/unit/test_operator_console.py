"""The operator console's page logic without a browser or a server: chart, timeline, filters, stats cache."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from devtools.operator_console import views
from devtools.operator_console.client import ApiUnreachable
from devtools.operator_console.stats import StatsCache


def test_the_chart_scales_to_a_round_top_and_draws_each_series_through_every_hour():
    series = [{"hour": f"2026-09-14T{h:02d}:00:00Z", "received": h + 1, "processed": h, "failed": 1} for h in range(24)]

    chart = views.hourly_chart(series, width=300, height=100)

    assert chart.top == 50  # the next 1/2/5 step above the peak of 24
    assert [line["key"] for line in chart.lines] == ["received", "processed", "failed"]
    assert all(len(line["points"].split()) == 24 for line in chart.lines)
    assert {line["key"]: line["total"] for line in chart.lines} == {"received": 300, "processed": 276, "failed": 24}
    # the peak sits at 24/50 of the plot's height above its bottom
    x, y = map(float, chart.lines[0]["points"].split()[-1].split(","))
    plot = chart.plot
    assert x == pytest.approx(plot["right"]) and y == pytest.approx(
        plot["bottom"] - (plot["bottom"] - plot["top"]) * 24 / 50, abs=0.1
    )
    assert [tick["label"] for tick in chart.ticks] == ["00:00", "06:00", "12:00", "18:00", "23:00"]


def test_an_empty_day_draws_flat_lines_on_a_scale_of_one():
    chart = views.hourly_chart([{"hour": "2026-09-14T00:00:00Z"}, {"hour": "2026-09-14T01:00:00Z"}])
    assert chart.top == 1 and all(line["total"] == 0 for line in chart.lines)


def test_the_timeline_orders_every_recorded_time_and_each_handler_result():
    event = {
        "status": "COMPLETED",
        "occurredAt": "2026-09-14T10:00:00+00:00",
        "receivedAt": "2026-09-14T10:00:01.000Z",
        "firstSeenAt": "2026-09-14T10:00:02.000Z",
        "retryRequestedAt": "2026-09-14T11:00:00.000Z",
        "updatedAt": "2026-09-14T11:00:05.000Z",
        "expiresAt": "2026-10-14T10:00:00.000Z",
        "handlers": {
            "sync": {"status": "SUCCEEDED", "at": "2026-09-14T11:00:04.000Z"},
            "notify": {"status": "FAILED", "at": "2026-09-14T10:00:03.000Z", "error": "Slack: 503"},
        },
    }

    rows = views.timeline(event)

    assert [row["what"] for row in rows] == [
        "occurred at MaintainX",
        "received by ingest",
        "first taken by the consumer",
        "handler notify: FAILED",
        "retry requested by an operator",
        "handler sync: SUCCEEDED",
        "last change: now COMPLETED",
    ]
    assert rows[0]["at"] == "2026-09-14T10:00:00.000Z" and rows[3]["detail"] == "Slack: 503"


@pytest.mark.parametrize(
    ("key", "link"),
    [
        ("workorder:42", ("workorder", "42")),
        ("request:7", ("request", "7")),
        ("event:mx_1", None),
        (None, None),
        ("asset:", None),
    ],
)
def test_entity_links_only_for_work_orders_requests_and_assets(key, link):
    assert views.entity_link(key) == link


def test_the_status_filter_offers_parked_only_where_the_api_counts_it():
    assert "PARKED" not in views.filter_statuses(None)
    assert views.filter_statuses(["FAILED", "PARKED", "SETTLED", "NEW"]) == [
        "FAILED",
        "PARKED",
        "COMPLETED",
        "IGNORED",
        "NEW",
    ]


def test_a_payload_is_indented_json_and_text_stays_text():
    assert views.pretty_payload({"a": "<b>"}) == '{\n  "a": "<b>"\n}'
    assert views.pretty_payload("not json <script>") == "not json <script>"


class FakeApi:
    def __init__(self) -> None:
        self.calls = 0
        self.fail = False
        self.gate = threading.Event()
        self.gate.set()

    def stats(self, hours: int) -> dict[str, Any]:
        self.gate.wait(5)
        self.calls += 1
        if self.fail:
            raise ApiUnreachable("down")
        return {"total": self.calls, "counts": {"COMPLETED": self.calls}}


def test_the_overview_numbers_are_served_from_memory_and_refreshed_behind_the_page():
    api, now = FakeApi(), [1000.0]
    cache = StatsCache(api, max_age=30, clock=lambda: now[0])  # type: ignore[arg-type]

    # the first load waits for an answer; a load within max_age costs no call
    assert cache.get() == ({"total": 1, "counts": {"COMPLETED": 1}}, 0.0)
    now[0] += 10
    assert cache.get()[0]["total"] == 1 and api.calls == 1

    # older than max_age: the old numbers at once (with their age), one refresh behind them
    now[0] += 25
    api.gate.clear()
    value, age = cache.get()
    assert value["total"] == 1 and age == 35
    cache.get()  # a second load meanwhile starts no second refresh
    api.gate.set()
    cache._refreshing.join(5)  # type: ignore[union-attr]
    assert api.calls == 2 and cache.get()[0]["total"] == 2

    # a failed refresh keeps the old numbers and says why; "refresh now" raises it
    now[0] += 60
    api.fail = True
    cache.get()
    cache._refreshing.join(5)  # type: ignore[union-attr]
    assert cache.get()[0]["total"] == 2 and isinstance(cache.last_problem, ApiUnreachable)
    with pytest.raises(ApiUnreachable):
        cache.get(fresh=True)
    assert cache.known_statuses() == ["COMPLETED"]


class TimelineApi:
    """The entity timeline route's contract (issue 13): ``items`` in occurredAt order and a cursor."""

    where = "fake"
    observe = None

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str | None]] = []

    def entity_events(self, kind: str, entity_id: str, cursor: str | None = None) -> dict[str, Any]:
        self.asked.append((kind, entity_id, cursor))
        items = [
            {
                "eventId": "mx_1",
                "eventType": "workorder.status_changed",
                "occurredAt": "2026-09-14T10:00:00.000Z",
                "status": "COMPLETED",
                "attempts": 1,
                "statusChange": {"from": "OPEN", "to": "IN_PROGRESS"},
                "handlers": {"sync": {"status": "SUCCEEDED"}},
            },
            {
                "eventId": "mx_2",
                "eventType": "workorder.status_changed",
                "occurredAt": "2026-09-14T11:00:00.000Z",
                "status": "FAILED",
                "attempts": 2,
                "statusChange": {"from": "IN_PROGRESS", "to": "DONE"},
                "handlers": {"sync": {"status": "FAILED", "error": "CMMS: 503"}},
                "lastError": "sync: CMMS: 503",
            },
        ]
        return {"items": items, "nextCursor": None if cursor else "c2"}


def test_the_timeline_page_lists_the_entitys_events_in_the_apis_order_with_its_cursor():
    from devtools.operator_console.app import create_app

    api = TimelineApi()
    client = create_app(api).test_client()  # type: ignore[arg-type]

    page = client.get("/entities/workorder/42")
    html = page.get_data(as_text=True)

    assert page.status_code == 200 and api.asked == [("workorder", "42", None)]
    assert html.index("mx_1") < html.index("mx_2")  # the API's order, kept
    assert "OPEN &rarr; IN_PROGRESS" in html and "sync: CMMS: 503" in html
    assert 'href="/entities/workorder/42?cursor=c2"' in html
    assert client.get("/entities/nothing/42").status_code == 404
    assert client.get("/entities?kind=request&id=7").headers["location"] == "/entities/request/7"
