"""The HTTP API, locally: requests -> API Gateway HTTP API payload v2 events -> the real handlers.

Routes come from the template (every ``HttpApi`` event of every function). A route
with ``Auth: {Authorizer: AWS_IAM}`` gets an IAM authorizer context as API Gateway
would fill it, but no SigV4 check is made locally. Mapping rules follow API Gateway:
static segments win over ``{param}``, ``{proxy+}`` is greedy, ``ANY`` matches every
method, the body is base64-encoded unless its content type is text, a handler that
returns a dict without ``statusCode`` is sent as ``200`` JSON, and an exception is a
``500 {"message":"Internal Server Error"}``.

Throttling follows API Gateway too: each API's ``$default`` stage throttle from the
template (``DefaultRouteSettings``, and ``RouteSettings`` for a route given its own)
is a token bucket (capacity = ``ThrottlingBurstLimit``, refilled at
``ThrottlingRateLimit`` per second); a request that finds no token is answered
``429 {"message":"Too Many Requests"}`` and the function is not invoked. The
stage's default is one bucket per API here, shared by its routes; the account-level
limit (10,000/s in AWS) is not modelled.

Standard library only (``ThreadingHTTPServer``): one thread per request, like
concurrent Lambda invocations.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from devtools.local_stack.lambda_runtime import LocalFunction

TEXT_TYPES = ("text/", "json", "xml", "javascript", "x-www-form-urlencoded", "yaml", "csv")
MAX_BODY = 10 * 1024 * 1024  # API Gateway's payload limit
TOO_MANY_REQUESTS = b'{"message":"Too Many Requests"}'  # API Gateway's answer to a throttled request


@dataclass
class Route:
    method: str  # POST, GET, ..., or ANY
    path: str  # /webhooks/maintainx/{source}
    function: LocalFunction
    iam_auth: bool = False
    api: str = ""  # the logical id of its HTTP API (whose stage throttle applies)

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.method not in ("ANY", method):
            return None
        found = self._regex().fullmatch(path)
        return None if found is None else {k: v for k, v in found.groupdict().items()}

    def _regex(self) -> re.Pattern[str]:
        parts = []
        for segment in self.path.strip("/").split("/"):
            greedy = re.fullmatch(r"\{(\w+)\+\}", segment)
            param = re.fullmatch(r"\{(\w+)\}", segment)
            if greedy:
                parts.append(f"(?P<{greedy.group(1)}>.+)")
            elif param:
                parts.append(f"(?P<{param.group(1)}>[^/]+)")
            else:
                parts.append(re.escape(segment))
        return re.compile("/" + "/".join(parts))

    def specificity(self) -> tuple[int, int, int]:
        """API Gateway picks the most specific route: more literal segments, then fewer greedy ones."""
        segments = self.path.strip("/").split("/")
        literal = sum(1 for s in segments if not s.startswith("{"))
        greedy = sum(1 for s in segments if s.endswith("+}"))
        return (literal, -greedy, 0 if self.method == "ANY" else 1)


_ROUNDING = 1e-6  # a millionth of a token: what float arithmetic on clock readings may lose


class TokenBucket:
    """A token bucket: ``burst`` tokens at most, refilled at ``rate`` per second; one per request.

    API Gateway throttles this way (its documentation: "the token bucket algorithm,
    where a token counts for a request"). The bucket starts full, so a quiet API
    takes a burst of ``burst`` requests at once, then ``rate`` a second.

    Hand-written, not a dependency: what this needs is a non-blocking ``take()``
    that is exact under concurrency (the HTTP front runs a thread per request, and a
    burst test counts 202s to the request) with an injectable clock (so that a unit
    test steps time instead of sleeping). The closest library, ``token-bucket``,
    leaves its in-memory bucket unlocked on purpose (a burst may pass a token or two
    more or fewer) and reads ``time.monotonic`` itself; the others are asyncio-only,
    decorators that sleep, or window counters. A lock and a dozen lines do it.
    """

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate < 0 or burst < 0:
            raise ValueError(f"rate and burst must be >= 0, got {rate} and {burst}")
        self.rate = float(rate)
        self.capacity = float(burst)
        self._clock = clock
        self._tokens = self.capacity
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Spend one token if there is one (True); False means the request is throttled."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + max(0.0, now - self._last) * self.rate)
            self._last = max(self._last, now)
            if self._tokens >= 1 - _ROUNDING:
                self._tokens -= 1
                return True
            return False

    @property
    def tokens(self) -> float:
        """Tokens left as of the last ``take()`` (for tests and the banner)."""
        return self._tokens


@dataclass
class Throttle:
    """One API's resolved stage throttle: ``(rate, burst)`` by default, and by route key for routes of their own.

    ``default`` None: the stage sets no default, so only routes with their own settings are throttled.
    """

    default: tuple[float, float] | None
    routes: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass
class Exchange:
    """One request and its answer, for the delivery log."""

    method: str
    path: str
    status: int
    duration_ms: float
    route: Route | None
    request_body: bytes
    response_body: bytes


class HttpFront:
    def __init__(
        self,
        routes: list[Route],
        *,
        host: str = "127.0.0.1",
        port: int = 3000,
        account_id: str = "123456789012",
        on_exchange: Callable[[Exchange], None] | None = None,
        throttles: dict[str, Throttle] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.routes = sorted(routes, key=lambda r: r.specificity(), reverse=True)
        self.account_id = account_id
        self.on_exchange = on_exchange
        self.throttles = dict(throttles or {})
        # one bucket per API for its stage default, one per route that has settings of its own
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        for api, throttle in self.throttles.items():
            if throttle.default is not None:
                self._buckets[(api, "")] = TokenBucket(*throttle.default, clock=clock)
            for route_key, (rate, burst) in throttle.routes.items():
                self._buckets[(api, route_key)] = TokenBucket(rate, burst, clock=clock)
        front = self

        class Handler(_RequestHandler):
            owner = front

        self.server = _Server((host, port), Handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, name="local-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def admit(self, route: Route) -> bool:
        """Whether the route's throttle has a token for one more request (True if unthrottled)."""
        bucket = self._buckets.get((route.api, route.route_key)) or self._buckets.get((route.api, ""))
        return bucket is None or bucket.take()

    def find(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, params
        return None

    def event_for(
        self,
        route: Route,
        params: dict[str, str],
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        source_ip: str,
    ) -> dict[str, Any]:
        """The payload v2 event API Gateway would send for this request."""
        split = urlsplit(target)
        merged: dict[str, str] = {}
        cookies: list[str] = []
        for name, value in headers:
            key = name.lower()
            if key == "cookie":
                cookies.extend(c.strip() for c in value.split(";") if c.strip())
                continue
            merged[key] = f"{merged[key]},{value}" if key in merged else value
        query: dict[str, str] = {}
        for key, value in parse_qsl(split.query, keep_blank_values=True):
            query[key] = f"{query[key]},{value}" if key in query else value
        host = merged.get("host", "127.0.0.1")
        now = datetime.now(UTC)
        context: dict[str, Any] = {
            "accountId": self.account_id,
            "apiId": "local",
            "domainName": host,
            "domainPrefix": host.split(".")[0],
            "http": {
                "method": method,
                "path": split.path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": route.route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        }
        if route.iam_auth:
            context["authorizer"] = {
                "iam": {
                    "accessKey": "LOCALACCESSKEY",
                    "accountId": self.account_id,
                    "callerId": "LOCALCALLER",
                    "principalOrgId": None,
                    "userArn": f"arn:aws:iam::{self.account_id}:user/local-developer",
                    "userId": "LOCALCALLER",
                    "cognitoIdentity": None,
                }
            }
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.route_key,
            "rawPath": split.path,
            "rawQueryString": split.query,
            "headers": merged,
            "requestContext": context,
            "isBase64Encoded": False,
        }
        if cookies:
            event["cookies"] = cookies
        if query:
            event["queryStringParameters"] = query
        if params:
            event["pathParameters"] = params
        if body:
            if _is_text(merged.get("content-type", ""), body):
                event["body"] = body.decode("utf-8")
            else:
                event["body"] = base64.b64encode(body).decode("ascii")
                event["isBase64Encoded"] = True
        return event


def _is_text(content_type: str, body: bytes) -> bool:
    if not any(t in content_type.lower() for t in TEXT_TYPES):
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def http_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """A handler's return value as API Gateway (payload v2) turns it into an HTTP response."""
    if not (isinstance(result, dict) and "statusCode" in result):
        body = json.dumps(result).encode()
        return 200, [("content-type", "application/json")], body
    headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
    headers += [("set-cookie", str(c)) for c in result.get("cookies") or []]
    raw = result.get("body")
    if raw is None:
        body = b""
    elif result.get("isBase64Encoded"):
        body = base64.b64decode(raw)
    else:
        body = raw.encode() if isinstance(raw, str) else json.dumps(raw).encode()
    if not any(k.lower() == "content-type" for k, _ in headers) and body:
        headers.append(("content-type", "application/json"))
    return int(result["statusCode"]), headers, body


class _Server(ThreadingHTTPServer):
    # The standard library listens with a backlog of 5: a burst of concurrent connections
    # overflows it and the kernel resets some (a client sees "connection reset"), which
    # API Gateway never does. A burst should meet the throttle, not the listen queue.
    request_queue_size = 1024


class _RequestHandler(BaseHTTPRequestHandler):
    owner: HttpFront
    protocol_version = "HTTP/1.1"
    server_version = "local-http-api"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass  # the stack prints one line per delivery itself

    def _handle(self) -> None:
        started = time.perf_counter()
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY:
            self._send(413, [("content-type", "application/json")], b'{"message":"Request Entity Too Large"}')
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        found = self.owner.find(self.command, path)
        route: Route | None = None
        if found is None:
            status, headers, payload = 404, [("content-type", "application/json")], b'{"message":"Not Found"}'
        elif not self.owner.admit(found[0]):
            route = found[0]
            status, headers, payload = 429, [("content-type", "application/json")], TOO_MANY_REQUESTS
        else:
            route, params = found
            event = self.owner.event_for(
                route, params, self.command, self.path, list(self.headers.items()), body, self.client_address[0]
            )
            try:
                status, headers, payload = http_response(route.function.invoke(event))
            except Exception:
                import logging

                logging.getLogger("devtools.local_stack").exception("%s raised", route.function.logical_id)
                status, headers = 500, [("content-type", "application/json")]
                payload = b'{"message":"Internal Server Error"}'
        self._send(status, headers, payload)
        if self.owner.on_exchange is not None:
            elapsed = (time.perf_counter() - started) * 1000
            self.owner.on_exchange(Exchange(self.command, path, status, elapsed, route, body, payload))

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection"):
                self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.send_header("apigw-requestid", uuid.uuid4().hex[:16])
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _handle
