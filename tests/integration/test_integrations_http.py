"""The integrations' HTTP client against real sockets: what is retried, what is not, what errors say."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime

import pytest

from mx_webhooks.integrations.http import (
    JsonHttp,
    PermanentHttpError,
    RetryPolicy,
    TransientHttpError,
    retry_after_seconds,
)
from mx_webhooks.registry import PermanentError
from tests.fakes import fixtures

fake_slack = fixtures.fake_slack

QUICK = RetryPolicy(max_attempts=3, budget_seconds=3, base_delay=0.01, max_delay=0.02, read_timeout=2)


def test_retry_after_is_read_as_seconds_or_as_an_http_date():
    now = datetime(2026, 9, 14, 13, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Mon, 14 Sep 2026 13:00:05 GMT", now=lambda: now) == 5.0
    assert retry_after_seconds("Mon, 14 Sep 2026 12:00:00 GMT", now=lambda: now) == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_a_server_that_is_not_listening_is_retried_then_reported_without_its_url():
    # Given a port nobody listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    http = JsonHttp("Slack", QUICK)

    # When a create (not idempotent) is sent there: never connected, so retrying it is safe
    with pytest.raises(TransientHttpError) as caught:
        http.request("POST", f"http://127.0.0.1:{port}/services/secret-path", label="incoming webhook", json_body={})

    # Then it was tried max_attempts times, and the error names the call, not the URL
    assert "could not connect" in str(caught.value) and "after 3 attempts" in str(caught.value)
    assert "secret-path" not in str(caught.value)


def test_a_4xx_is_permanent_and_carries_the_answer_but_not_the_url(fake_slack):
    http = JsonHttp("Slack", QUICK)

    with pytest.raises(PermanentHttpError) as caught:
        http.request("POST", fake_slack.url + "/services/wrong", label="incoming webhook", json_body={"text": "x"})

    assert isinstance(caught.value, PermanentError)  # the consumer parks it at once
    assert caught.value.status == 404 and "no_service" in str(caught.value)
    assert "/services/wrong" not in str(caught.value)
    assert len(fake_slack.calls) == 1


def test_5xx_gives_up_after_the_attempts_allowed(fake_slack):
    fake_slack.script(502, method="POST", times=5)
    http = JsonHttp("Slack", QUICK)

    with pytest.raises(TransientHttpError, match="answered 502"):
        http.request("POST", fake_slack.webhook_url, label="incoming webhook", json_body={"text": "x"})

    assert len(fake_slack.calls) == 3


def test_the_slack_webhook_url_is_in_no_log_line_even_at_debug(fake_slack, caplog):
    # Given every logger at DEBUG (Lambda's ApplicationLogLevel at its most verbose)
    import mx_webhooks.observability  # noqa: F401  (holds urllib3 and botocore at INFO)

    http = JsonHttp("Slack", QUICK)
    caplog.set_level(logging.DEBUG)

    # When a message is posted to the incoming webhook, and one to a wrong path
    http.request("POST", fake_slack.webhook_url, label="incoming webhook", json_body={"text": "x"})
    with pytest.raises(PermanentHttpError):
        http.request("POST", fake_slack.url + "/services/wrong", label="incoming webhook", json_body={"text": "x"})

    # Then urllib3's request lines (which hold the URL, itself the credential) were not logged
    path = fake_slack.webhook_url.split("127.0.0.1", 1)[1].split("/", 1)[1]
    assert len(fake_slack.calls) == 2
    assert not [r for r in caplog.records if path in r.getMessage() or "/services/wrong" in r.getMessage()]
