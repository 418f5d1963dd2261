"""The operator console's admin API client and start-up, against real sockets and moto.

The client on a real HTTP server on 127.0.0.1: each answer the admin API (or API
Gateway in front of it) gives maps to what the console tells the operator; SigV4
headers for a deployed stack. The start-up finds the local stack by its ready file
and a deployed stack by its outputs (moto's CloudFormation).
"""

from __future__ import annotations

import argparse
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from devtools import admin_cli
from devtools.admin_cli import CliError
from devtools.operator_console import cli
from devtools.operator_console.client import AdminApi, ApiError, ApiNotFound, ApiRefused, ApiUnreachable, Signer
from tests.conftest import REGION


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers from ``server.answers`` by path; records each request."""

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        )  # type: ignore[attr-defined]
        status, payload = self.server.answers.get(self.path.split("?")[0], (404, {"message": "Not Found"}))  # type: ignore[attr-defined]
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = _answer  # noqa: N815 - http.server's naming

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Any]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    httpd.seen, httpd.answers = [], {}  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    httpd.url = f"http://127.0.0.1:{httpd.server_port}"  # type: ignore[attr-defined]
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_routes_are_called_with_their_parameters_and_ids_kept_in_one_segment(server):
    server.answers = {
        "/admin/webhooks": (200, {"items": [], "nextCursor": None}),
        "/admin/webhooks/invalid~a%2Fb/retry": (200, {"status": "QUEUED"}),
    }
    api = AdminApi(server.url + "/")

    assert api.list_events(status="FAILED", type="workorder.created", source="", since="12 h", limit=50) == {
        "items": [],
        "nextCursor": None,
    }
    assert api.retry("invalid~a/b", handler="e2e.sync")["status"] == "QUEUED"

    listing, retry = server.seen
    assert listing["path"] == "/admin/webhooks?status=FAILED&type=workorder.created&since=12%20h&limit=50"
    assert retry["method"] == "POST" and json.loads(retry["body"]) == {"force": False, "handler": "e2e.sync"}


@pytest.mark.parametrize(
    ("status", "body", "problem", "needle"),
    [
        (403, {"message": "Forbidden"}, ApiRefused, "execute-api:Invoke"),
        (401, {"message": "Unauthorized"}, ApiRefused, "refused the credentials"),
        (409, {"error": "event mx_1 is COMPLETED"}, ApiError, "409 event mx_1 is COMPLETED"),
        (400, {"error": "status: expected one of"}, ApiError, "status: expected one of"),
        (500, {"message": "Internal Server Error"}, ApiError, "500 Internal Server Error"),
    ],
)
def test_each_refusal_becomes_a_problem_that_says_what_happened(server, status, body, problem, needle):
    server.answers = {"/admin/stats": (status, body)}

    with pytest.raises(problem) as raised:
        AdminApi(server.url).stats()

    assert needle in raised.value.message and raised.value.api_status == status


def test_a_missing_route_is_told_apart_from_a_missing_event(server):
    server.answers = {"/admin/webhooks/mx_gone": (404, {"error": "no event with id 'mx_gone'"})}
    api = AdminApi(server.url)

    with pytest.raises(ApiNotFound) as gone:
        api.event("mx_gone")
    with pytest.raises(ApiNotFound) as no_route:
        api.entity_events("workorder", "42")

    assert not gone.value.route_missing and "mx_gone" in gone.value.message
    assert no_route.value.route_missing
    assert api.integrations() is None  # no breakers route on this stack: nothing to show, no error


def test_nothing_listening_is_unreachable_and_names_the_address(server):
    port = server.server_port
    server.shutdown()
    server.server_close()

    with pytest.raises(ApiUnreachable) as raised:
        AdminApi(f"http://127.0.0.1:{port}", timeout=2).stats()

    assert f"127.0.0.1:{port}" in raised.value.message


def test_a_deployed_stacks_requests_are_sigv4_signed_for_execute_api(server):
    server.answers = {"/admin/dlq/redrive": (200, {"moved": 1, "failed": 0, "remaining": 0})}
    session = boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",  # noqa: S106
        aws_session_token="token",  # noqa: S106
        region_name="eu-west-1",
    )

    AdminApi(server.url, signer=Signer(session, "eu-west-1")).redrive_dlq(5)

    headers = {k.lower(): v for k, v in server.seen[0]["headers"].items()}
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in headers["authorization"]
    assert "SignedHeaders=" in headers["authorization"] and "host" in headers["authorization"]
    assert headers["x-amz-security-token"] == "token" and headers["x-amz-date"]


def test_the_console_finds_the_local_stack_by_its_ready_file(tmp_path, monkeypatch):
    monkeypatch.setattr(admin_cli, "ROOT", tmp_path)
    args = argparse.Namespace(api_url=None, stack=None, local_port="3456", region=None)

    # Given no stack started: a clear error that says how to start one
    with pytest.raises(CliError) as missing:
        cli.admin_api(args)
    assert missing.value.code == admin_cli.EXIT_AWS and "make run" in str(missing.value)

    # Given the ready file `make run` writes
    (tmp_path / ".local-stack").mkdir()
    info = {
        "url": "http://127.0.0.1:3456",
        "stack_name": "maintainx-webhooks-local",
        "outputs": {"AdminApiUrl": "http://127.0.0.1:3456"},
    }
    (tmp_path / ".local-stack" / "stack-3456.json").write_text(json.dumps(info))
    api, target = cli.admin_api(args)
    assert api.base_url == "http://127.0.0.1:3456" and api.signer is None and "local stack" in target


def test_the_console_reads_a_deployed_stacks_admin_url_and_signs(aws, monkeypatch):
    # Given a stack with the AdminApiUrl output (moto's CloudFormation)
    template = {
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {"AdminApiUrl": {"Value": "https://abc123.execute-api.us-east-1.amazonaws.com"}},
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName="mx-prod", TemplateBody=json.dumps(template)
    )

    api, target = cli.admin_api(argparse.Namespace(api_url=None, stack="mx-prod", local_port=None, region=REGION))

    assert api.base_url == "https://abc123.execute-api.us-east-1.amazonaws.com"
    assert api.signer is not None and api.signer.region == REGION and target == f"mx-prod ({REGION})"
    with pytest.raises(CliError, match="stack 'nope'"):
        cli.admin_api(argparse.Namespace(api_url=None, stack="nope", local_port=None, region=REGION))


def test_the_console_refuses_to_bind_anything_but_loopback(capsys):
    assert cli.main(["--api-url", "http://127.0.0.1:9", "--host", "0.0.0.0"]) == admin_cli.EXIT_USAGE  # noqa: S104
    assert "loopback" in capsys.readouterr().err
