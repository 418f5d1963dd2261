"""The MaintainX REST API: the calls the built-in handlers need, and models of the fields they use.

``GET /v1/workorders/{id}``, ``GET /v1/workrequests/{id}``, ``POST /v1/workorders`` and
``GET /v1/workorders`` (list, cursor pages) with ``Authorization: Bearer <api key>``.
Responses are read tolerantly: a resource either bare or wrapped
(``{"workOrder": {...}}``), an asset or location as an expanded object or only an id,
unknown fields ignored. 4xx other than 429 raise ``PermanentHttpError`` (the event is
parked), 429/5xx are retried within the budget (see ``http``), then raise
``TransientHttpError`` (the event is retried by the queue).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mx_webhooks.integrations.http import JsonHttp, PermanentHttpError

EntityId = int | str


class UnexpectedResponse(PermanentHttpError):
    """The API answered 2xx with a body we cannot read."""


class NamedRef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: EntityId | None = None
    name: str | None = None


class _Resource(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: EntityId
    title: str = ""
    description: str | None = None
    priority: str | None = None
    status: str | None = None
    asset_id: EntityId | None = Field(default=None, alias="assetId")
    location_id: EntityId | None = Field(default=None, alias="locationId")
    asset: NamedRef | None = None
    location: NamedRef | None = None

    @field_validator("asset", "location", mode="before")
    @classmethod
    def _ref(cls, value: Any) -> Any:
        return {"id": value} if isinstance(value, int | str) else value

    @field_validator("title", mode="before")
    @classmethod
    def _title(cls, value: Any) -> Any:
        return "" if value is None else value

    @property
    def asset_name(self) -> str | None:
        return _ref_name(self.asset, self.asset_id, "Asset")

    @property
    def location_name(self) -> str | None:
        return _ref_name(self.location, self.location_id, "Location")

    @property
    def asset_ref(self) -> EntityId | None:
        return self.asset_id if self.asset_id is not None else (self.asset.id if self.asset else None)

    @property
    def location_ref(self) -> EntityId | None:
        return self.location_id if self.location_id is not None else (self.location.id if self.location else None)


class WorkOrder(_Resource):
    requires_follow_up: bool | None = Field(default=None, alias="requiresFollowUp")
    extra_fields: dict[str, Any] = Field(default_factory=dict, alias="extraFields")

    @field_validator("extra_fields", mode="before")
    @classmethod
    def _extra(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else {}

    def flag(self, name: str) -> bool:
        """A yes/no field by name: the API field (``requiresFollowUp``) or a custom field."""
        if name == "requiresFollowUp" and self.requires_follow_up is not None:
            return self.requires_follow_up
        return _truthy(self.extra_fields.get(name))


class WorkRequest(_Resource):
    pass


class NewWorkOrder(BaseModel):
    """The body of ``POST /v1/workorders`` (the fields we set)."""

    model_config = ConfigDict(populate_by_name=True)

    title: str = Field(min_length=1, max_length=300)
    description: str | None = None
    priority: str | None = None
    asset_id: EntityId | None = Field(default=None, alias="assetId")
    location_id: EntityId | None = Field(default=None, alias="locationId")

    def body(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class MaintainXClient:
    def __init__(
        self,
        http: JsonHttp,
        api_key: Callable[[], str],
        *,
        base_url: str = "https://api.getmaintainx.com",
        app_url: str = "https://app.getmaintainx.com",
    ) -> None:
        self._http = http
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.app_url = app_url.rstrip("/")

    def work_order_url(self, work_order_id: EntityId) -> str:
        """Where a person opens the work order in MaintainX."""
        return f"{self.app_url}/workorders/{quote(str(work_order_id), safe='')}"

    def get_work_order(self, work_order_id: EntityId) -> WorkOrder:
        path = f"/v1/workorders/{quote(str(work_order_id), safe='')}"
        body = self._get(path, {"expand": ["asset", "location"]}, label="GET /v1/workorders/{id}")
        return _parse(WorkOrder, _unwrap(body, "workOrder"), "work order")

    def get_work_request(self, work_request_id: EntityId) -> WorkRequest:
        path = f"/v1/workrequests/{quote(str(work_request_id), safe='')}"
        body = self._get(path, None, label="GET /v1/workrequests/{id}")
        return _parse(WorkRequest, _unwrap(body, "workRequest"), "work request")

    def create_work_order(self, new: NewWorkOrder) -> EntityId:
        """Create; return the new id. Not retried after the request may have arrived (see ``work_orders``)."""
        response = self._http.request(
            "POST",
            self.base_url + "/v1/workorders",
            label="POST /v1/workorders",
            headers=self._headers(),
            json_body=new.body(),
            idempotent=False,
        )
        body = _unwrap(response.json(), "workOrder")
        if not isinstance(body, dict) or not isinstance(body.get("id"), int | str):
            raise UnexpectedResponse("MaintainX POST /v1/workorders answered without an id", response.status)
        return body["id"]

    def find_work_order_with_marker(self, marker: str, *, pages: int = 5, page_size: int = 100) -> EntityId | None:
        """The id of a work order whose description contains ``marker``, looking at up to ``pages`` pages.

        Only used to recover from a crash during a create (rare); the newest work
        orders come first in MaintainX's list, and the one we look for is recent.
        """
        cursor: str | None = None
        for _ in range(pages):
            query: dict[str, Any] = {"limit": page_size}
            if cursor:
                query["cursor"] = cursor
            body = self._get("/v1/workorders", query, label="GET /v1/workorders")
            items = body.get("workOrders") if isinstance(body, dict) else body
            for item in items or []:
                if isinstance(item, dict) and marker in str(item.get("description") or ""):
                    return item.get("id")
            cursor = body.get("nextCursor") if isinstance(body, dict) else None
            if not cursor:
                return None
        return None

    def _get(self, path: str, query: dict[str, Any] | None, *, label: str) -> Any:
        url = self.base_url + path + ("?" + urlencode(query, doseq=True) if query else "")
        return self._http.request("GET", url, label=label, headers=self._headers()).json()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key()}"}


def _unwrap(body: Any, key: str) -> Any:
    if isinstance(body, dict) and isinstance(body.get(key), dict):
        return body[key]
    return body


def _parse[M: BaseModel](model: type[M], body: Any, what: str) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise UnexpectedResponse(f"MaintainX answered an unreadable {what}: {exc.errors()[0]['msg']}") from exc


def _ref_name(ref: NamedRef | None, ref_id: EntityId | None, kind: str) -> str | None:
    if ref is not None and ref.name:
        return ref.name
    the_id = ref.id if ref is not None and ref.id is not None else ref_id
    return f"{kind} #{the_id}" if the_id is not None else None


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "y", "1")
    if isinstance(value, int | float):
        return value != 0
    return False
