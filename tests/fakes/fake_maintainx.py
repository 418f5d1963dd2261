"""A fake MaintainX REST API: work orders and work requests in memory, bearer-key auth.

``GET /v1/workorders/{id}`` -> ``{"workOrder": {...}}`` (asset and location expanded),
``GET /v1/workorders`` -> newest first, ``{"workOrders": [...], "nextCursor": ...}``,
``POST /v1/workorders`` -> 201 ``{"id": n}``, ``GET /v1/workrequests/{id}`` ->
``{"workRequest": {...}}``. Unknown ids are 404, a wrong key 401.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from tests.fakes.server import Answer, Call, FakeServer

API_KEY = "mx-test-api-key"


class FakeMaintainX(FakeServer):
    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.work_orders: dict[int, dict[str, Any]] = {}
        self.work_requests: dict[int, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self._ids = itertools.count(500_001)
        self._data_lock = threading.Lock()

    def add_work_order(self, work_order_id: int, **fields: Any) -> dict[str, Any]:
        item = {"id": work_order_id, "status": "OPEN", "priority": "NONE", "title": "", **fields}
        with self._data_lock:
            self.work_orders[work_order_id] = item
        return item

    def add_work_request(self, work_request_id: int, **fields: Any) -> dict[str, Any]:
        item = {"id": work_request_id, "status": "PENDING", **fields}
        with self._data_lock:
            self.work_requests[work_request_id] = item
        return item

    def route(self, call: Call) -> Answer:
        if call.headers.get("authorization") != f"Bearer {self.api_key}":
            return Answer(401, {"errors": [{"message": "Unauthorized"}]})
        parts = [p for p in call.path.split("/") if p]
        with self._data_lock:
            if parts[:2] == ["v1", "workorders"]:
                if len(parts) == 2 and call.method == "POST":
                    return self._create(call)
                if len(parts) == 2 and call.method == "GET":
                    return self._list(call)
                if len(parts) == 3 and call.method == "GET":
                    item = self.work_orders.get(_int(parts[2]))
                    return (
                        Answer(200, {"workOrder": item})
                        if item
                        else Answer(404, {"errors": [{"message": "Not found"}]})
                    )
            if parts[:2] == ["v1", "workrequests"] and len(parts) == 3 and call.method == "GET":
                item = self.work_requests.get(_int(parts[2]))
                return (
                    Answer(200, {"workRequest": item}) if item else Answer(404, {"errors": [{"message": "Not found"}]})
                )
        return Answer(404, {"errors": [{"message": "No route"}]})

    def _create(self, call: Call) -> Answer:
        body = call.json() or {}
        if not isinstance(body.get("title"), str) or not body["title"]:
            return Answer(400, {"errors": [{"message": "title is required"}]})
        new_id = next(self._ids)
        item = {"id": new_id, "status": "OPEN", **body}
        self.work_orders[new_id] = item
        self.created.append(item)
        return Answer(201, {"id": new_id})

    def _list(self, call: Call) -> Answer:
        limit = int(call.query.get("limit", ["100"])[0])
        start = int(call.query.get("cursor", ["0"])[0])
        ordered = sorted(self.work_orders.values(), key=lambda wo: wo["id"], reverse=True)
        page = ordered[start : start + limit]
        more = start + limit < len(ordered)
        return Answer(200, {"workOrders": page, "nextCursor": str(start + limit) if more else None})


def _int(text: str) -> int:
    return int(text) if text.isdigit() else -1
