"""The overview's numbers, served from memory and refreshed behind the page (stale-while-revalidate).

``GET /admin/stats`` reads every event of the last 24 hours from the listing indexes
(every shard of ``Recent`` and ``Attention``, a projection of a few attributes).
Measured on the local stack with 5,000 events in the table: about 2.3 s (the browser
tier's ``first_overview_s``; it was 9 to 15 s before the local stack's moto read only the
partition a Query asks for); on DynamoDB a busy day is still tens of Query pages. An
overview that waited for that on every load would be slow exactly when someone looks at
it during an incident. So the console keeps the last answer: a page
load gets it at once (saying how old it is), and when it is older than ``max_age`` one
background refresh is started; the next load shows the new numbers. The first load
waits for the first answer; ``fresh`` (the page's "refresh now") waits for a new one.
Nothing polls: with nobody looking, nothing is read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from devtools.operator_console.client import AdminApi, ApiProblem


class StatsCache:
    def __init__(self, api: AdminApi, *, max_age: float = 30, clock: Callable[[], float] = time.time) -> None:
        self.api = api
        self.max_age = max_age
        self.clock = clock
        self._lock = threading.Lock()
        self._value: dict[str, Any] | None = None
        self._at = 0.0
        self._refreshing: threading.Thread | None = None
        self.last_problem: ApiProblem | None = None

    def get(self, *, fresh: bool = False) -> tuple[dict[str, Any], float]:
        """The stats and their age in seconds; raises the API's problem when there is no answer to show."""
        with self._lock:
            value, at = self._value, self._at
        if fresh or value is None:
            return self._load(), 0.0
        if self.clock() - at > self.max_age:
            self._refresh_in_background()
        return value, self.clock() - at

    def known_statuses(self) -> list[str] | None:
        """The statuses the API counted last time (those it accepts as a filter), if it has answered."""
        with self._lock:
            return list(self._value["counts"]) if self._value and "counts" in self._value else None

    def invalidate(self) -> None:
        """After a retry or redrive: the next load starts a refresh (and shows the old numbers meanwhile)."""
        with self._lock:
            self._at = 0.0

    def _load(self) -> dict[str, Any]:
        value = self.api.stats(24)
        with self._lock:
            self._value, self._at, self.last_problem = value, self.clock(), None
        return value

    def _refresh_in_background(self) -> None:
        with self._lock:
            if self._refreshing is not None and self._refreshing.is_alive():
                return
            self._refreshing = threading.Thread(target=self._refresh, name="stats-refresh", daemon=True)
            self._refreshing.start()

    def _refresh(self) -> None:
        try:
            self._load()
        except ApiProblem as exc:  # shown on the page beside the old numbers
            self.last_problem = exc
