"""JSON over HTTPS with timeouts and bounded retries that honour ``Retry-After``.

Why our own loop over urllib3 instead of ``urllib3.Retry`` or requests/httpx:

- urllib3 ships with botocore in the Lambda runtime, so the layer stays light and
  its pool keeps TLS connections to MaintainX and Slack open across invocations
  (thread-safe, the consumer runs handlers in threads).
- ``urllib3.Retry`` sleeps for whatever ``Retry-After`` says (an hour, if asked), and
  retries POSTs blindly. A handler must not outlive the Lambda timeout, and a
  create call that may have reached the server must not be sent twice. So: every
  call has a time budget; a wait that does not fit in it raises ``TransientHttpError``
  at once and the queue's backoff retries the event later; a request that may have
  been received (read timeout, dropped connection, 5xx) is only resent when the
  caller says it is safe (``idempotent=True``).

Each service's calls go through its circuit breaker (``mx_webhooks.breaker``), checked
before every attempt, retries included: while Slack or MaintainX is known to be down,
nothing is sent and the handler is deferred (``CircuitOpen``).

Errors never carry the URL or headers (a Slack webhook URL is a credential);
callers pass a ``label`` for messages and logs instead.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError

from mx_webhooks.breaker import CircuitOpen, breaker_for
from mx_webhooks.observability import logger
from mx_webhooks.registry import PermanentError

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class HttpCallError(Exception):
    """A call failed; ``status`` is the last HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientHttpError(HttpCallError):
    """429, 5xx or a network error that outlasted the retry budget: retry the event later."""


class PermanentHttpError(HttpCallError, PermanentError):
    """A 4xx other than 429: no retry can fix the request; the event is parked."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 4
    budget_seconds: float = 20.0  # the most one call may take, waits included
    base_delay: float = 0.5  # backoff without Retry-After: base * 2**n, jittered
    max_delay: float = 8.0
    connect_timeout: float = 3.05
    read_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def retry_after_seconds(value: str | None, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date (RFC 9110); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now()).total_seconds())


_POOL = urllib3.PoolManager(num_pools=4, maxsize=10, retries=False)


class JsonHttp:
    """One service's HTTP calls: ``request`` sends, waits, retries within the budget."""

    def __init__(
        self,
        service: str,
        policy: RetryPolicy | None = None,
        *,
        pool: urllib3.PoolManager | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.policy = policy or RetryPolicy()
        self._pool = pool or _POOL
        self._sleep = sleep
        self._clock = clock

    def request(
        self,
        method: str,
        url: str,
        *,
        label: str,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        idempotent: bool = True,
    ) -> HttpResponse:
        """Send; return a 2xx/3xx response or raise ``TransientHttpError`` / ``PermanentHttpError``.

        ``idempotent=False`` (a create): only a 429 or a connection that was never
        made is retried here; anything after which the server may have acted raises
        ``TransientHttpError`` for the caller's own recovery.
        """
        policy = self.policy
        body = json.dumps(json_body, separators=(",", ":")).encode() if json_body is not None else None
        all_headers = {"Accept": "application/json", **(headers or {})}
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        deadline = self._clock() + policy.budget_seconds
        what = f"{self.service} {label}"
        breaker = breaker_for(self.service)
        attempt, problem, status = 0, "", None
        while True:
            attempt += 1
            try:  # an open circuit: CircuitOpen, the handler is deferred, nothing sent
                breaker.before_call()
            except CircuitOpen:
                if attempt == 1:
                    raise
                # This call did reach the downstream and fail: a failed attempt, not a deferral.
                raise TransientHttpError(f"{what} {problem}; not retried: its circuit is now open", status) from None
            answer = self._send_once(method, url, body, all_headers, deadline, idempotent)
            if isinstance(answer, HttpResponse):
                breaker.succeeded()  # it answered; a 4xx is the request's fault, not an outage
                if answer.status < 400:
                    return answer
                raise PermanentHttpError(f"{what} answered {answer.status}: {_snippet(answer.body)}", answer.status)
            problem, status, retry_after, safe = answer
            delay = retry_after if retry_after is not None else _backoff(policy, attempt)
            remaining = deadline - self._clock()
            giving_up = not safe or attempt >= policy.max_attempts or delay > remaining
            # A Retry-After this call cannot wait out sets how long the breaker stays open.
            breaker.failed(retry_after if giving_up else None, reason=f"{what} {problem}")
            if not safe:
                raise TransientHttpError(f"{what} {problem}; not resent, it may have been received", status)
            if attempt >= policy.max_attempts:
                raise TransientHttpError(f"{what} {problem} after {attempt} attempts", status)
            if delay > remaining:
                raise TransientHttpError(
                    f"{what} {problem}; the next try in {delay:.1f} s would not fit in the {remaining:.1f} s left",
                    status,
                )
            logger.info(
                "retrying an HTTP call",
                extra={"service": self.service, "call": label, "status": status, "attempt": attempt, "delay_s": delay},
            )
            self._sleep(delay)

    def _send_once(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        deadline: float,
        idempotent: bool,
    ) -> HttpResponse | tuple[str, int | None, float | None, bool]:
        """One request: the response (2xx-4xx but 429), or (problem, status, Retry-After, safe to resend)."""
        policy = self.policy
        remaining = deadline - self._clock()
        timeout = urllib3.Timeout(
            connect=min(policy.connect_timeout, max(0.1, remaining)),
            read=min(policy.read_timeout, max(0.1, remaining)),
        )
        try:
            raw = self._pool.request(
                method,
                url,
                body=body,
                headers=dict(headers),
                timeout=timeout,
                retries=False,
                redirect=False,
                preload_content=True,
            )
        except (NewConnectionError, ConnectTimeoutError) as exc:
            # Never connected: nothing was sent, so even a create may be retried.
            return f"could not connect ({type(exc).__name__})", None, None, True
        except HTTPError as exc:
            return f"no answer ({type(exc).__name__})", None, None, idempotent
        response = HttpResponse(raw.status, dict(raw.headers), raw.data or b"")
        if raw.status not in RETRYABLE_STATUSES:
            return response
        retry_after = retry_after_seconds(response.headers.get("Retry-After") or response.headers.get("retry-after"))
        safe = idempotent or raw.status == 429  # a 429 was not processed
        return f"answered {raw.status}: {_snippet(response.body)}", raw.status, retry_after, safe


def _backoff(policy: RetryPolicy, attempt: int) -> float:
    delay = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
    return delay * (0.5 + random.random() / 2)


def _snippet(body: bytes, limit: int = 300) -> str:
    text = body.decode("utf-8", "replace").strip()
    return (text[:limit] + "...") if len(text) > limit else (text or "(empty body)")
