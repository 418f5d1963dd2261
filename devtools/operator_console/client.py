"""The admin API over HTTP, as the console calls it: the local stack's, or a deployed stack's signed with SigV4.

The admin CLI (``devtools/admin_cli.py``) does not go through this API: it builds
``mx_webhooks.admin.Admin`` on boto3 clients of the operator's own credentials and talks
to DynamoDB and SQS. The console goes through the HTTP API instead, so it sees exactly
what the deployed admin Lambda serves (and nothing the API does not), and needs no
permission beyond ``execute-api:Invoke`` on it. Where the two meet, this module reuses
the CLI's code: ``admin_cli.local_stack_info`` finds the stack ``make run`` started.

Signing: botocore's ``SigV4Auth`` for the service ``execute-api`` with the session's
credentials, frozen per request (so expiring role or SSO credentials refresh), on the
exact URL and body that are sent. Sending: ``urllib`` (one request at a time, no
connection pool needed for one operator).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LOCAL_STACK_HINT = "start one with `make run` (or give --api-url)"


class ApiProblem(Exception):
    """The admin API did not give an answer; ``status`` is what the console answers with."""

    status = 502

    def __init__(self, message: str, *, api_status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.api_status = api_status
        self.body = body


class ApiUnreachable(ApiProblem):
    """No HTTP answer at all: nothing listens there, DNS, a timeout."""


class ApiRefused(ApiProblem):
    """401/403: the credentials were refused (or lack ``execute-api:Invoke``)."""

    status = 403


class ApiNotFound(ApiProblem):
    """404: the admin's own ``{"error"}`` (no such event) or, without it, a route the API lacks."""

    status = 404

    @property
    def route_missing(self) -> bool:
        """API Gateway (and the local stack) answer an unknown route with ``{"message": "Not Found"}``;
        the admin Lambda's own 404s carry ``{"error": ...}``."""
        return not (isinstance(self.body, dict) and "error" in self.body)


class ApiError(ApiProblem):
    """Any other 4xx/5xx; the admin's ``error`` text is the message."""


@dataclass
class Signer:
    """SigV4 for ``execute-api`` with a boto3 session's credentials."""

    session: Any  # boto3.session.Session
    region: str

    def headers(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        credentials = self.session.get_credentials()
        if credentials is None:
            raise ApiRefused("no AWS credentials found (set AWS_PROFILE, or run `aws sso login` / `aws configure`)")
        request = AWSRequest(method=method, url=url, data=body or b"", headers=headers)
        SigV4Auth(credentials.get_frozen_credentials(), "execute-api", self.region).add_auth(request)
        return dict(request.headers.items())


class AdminApi:
    """The admin routes (``functions/admin/admin_handler.py``), one method each, JSON in and out."""

    def __init__(self, base_url: str, *, signer: Signer | None = None, timeout: float = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        self.timeout = timeout
        self.observe: Callable[[float], None] | None = None  # told each call's milliseconds

    @property
    def where(self) -> str:
        return self.base_url + (" (SigV4-signed)" if self.signer else "")

    # -- the routes ------------------------------------------------------------------------------
    def stats(self, hours: int = 24) -> dict[str, Any]:
        return self.request("GET", "/admin/stats", {"hours": hours})

    def list_events(self, **filters: Any) -> dict[str, Any]:
        return self.request("GET", "/admin/webhooks", filters)

    def event(self, event_id: str) -> dict[str, Any]:
        return self.request("GET", f"/admin/webhooks/{_segment(event_id)}")

    def retry(self, event_id: str, *, handler: str | None = None, force: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"force": force} | ({"handler": handler} if handler else {})
        return self.request("POST", f"/admin/webhooks/{_segment(event_id)}/retry", body=body)

    def peek_dlq(self, most: int = 10) -> dict[str, Any]:
        return self.request("GET", "/admin/dlq", {"max": most})

    def redrive_dlq(self, most: int) -> dict[str, Any]:
        return self.request("POST", "/admin/dlq/redrive", body={"max": most})

    def entity_events(self, kind: str, entity_id: str, cursor: str | None = None) -> dict[str, Any]:
        """Every event of one work order, request or asset in ``occurredAt`` order (issue 13's route)."""
        return self.request("GET", f"/admin/entities/{_segment(kind)}/{_segment(entity_id)}/events", {"cursor": cursor})

    def integrations(self) -> dict[str, Any] | None:
        """The integrations' circuit breakers, where the stack reports them; ``None`` where it has no such route."""
        try:
            return self.request("GET", "/admin/integrations")
        except ApiNotFound as exc:
            if exc.route_missing:
                return None
            raise

    # -- HTTP ------------------------------------------------------------------------------------
    def request(
        self, method: str, path: str, params: dict[str, Any] | None = None, body: dict[str, Any] | None = None
    ) -> Any:
        query = urllib.parse.urlencode(
            {k: v for k, v in (params or {}).items() if v not in (None, "")}, quote_via=urllib.parse.quote
        )
        url = self.base_url + path + (f"?{query}" if query else "")
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        headers = {"accept": "application/json"} | ({"content-type": "application/json"} if data else {})
        if self.signer is not None:
            headers = self.signer.headers(method, url, data, headers)
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 - http(s) only
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise _problem(exc, method, path) from exc
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiUnreachable(f"the admin API at {self.where} is unreachable: {reason}") from exc
        finally:
            if self.observe is not None:
                self.observe((time.perf_counter() - started) * 1000)


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _problem(exc: urllib.error.HTTPError, method: str, path: str) -> ApiProblem:
    raw = exc.read()
    try:
        body = json.loads(raw)
    except ValueError:
        body = raw.decode(errors="replace")[:500]
    text = str(body.get("error") or body.get("message") or body) if isinstance(body, dict) else str(body)
    if exc.code in (401, 403):
        return ApiRefused(
            f"the admin API refused the credentials ({exc.code}: {text}); the console signs with your own AWS "
            "credentials, which need execute-api:Invoke on the stack's AdminApi",
            api_status=exc.code,
            body=body,
        )
    if exc.code == 404:
        return ApiNotFound(text, api_status=404, body=body)
    return ApiError(f"{method} {path}: {exc.code} {text}", api_status=exc.code, body=body)
