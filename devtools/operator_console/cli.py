"""``make console`` / ``python -m devtools.operator_console``: find the admin API, serve the console.

    python -m devtools.operator_console                 # the stack `make run` started (port $PORT, else 3000)
    python -m devtools.operator_console --stack NAME    # a deployed stack, signed with your AWS credentials
    python -m devtools.operator_console --api-url URL   # any admin API, unsigned (e.g. a local stack on another port)

Serves on http://127.0.0.1:8080 (``--port``; 0 picks a free one). Exit codes as the
admin CLI's: 2 bad arguments, 5 no local stack / no such stack / no credentials.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

from devtools.admin_cli import EXIT_AWS, EXIT_OK, EXIT_USAGE, CliError, local_stack_info
from devtools.operator_console.app import create_app
from devtools.operator_console.client import AdminApi, Signer

DEFAULT_PORT = 8080


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="operator_console", description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--stack", help="a deployed stack's name (make console STACK=...)")
    where.add_argument("--api-url", help="the admin API's base URL, unsigned")
    parser.add_argument(
        "--local-port", default=None, help="the port of the stack `make run` started ($PORT, else 3000)"
    )
    parser.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address only (the console has no login)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("CONSOLE_PORT") or DEFAULT_PORT))
    parser.add_argument("--ready-file", help=argparse.SUPPRESS)  # tests: where the URL is written once serving
    return parser


def admin_api(args: argparse.Namespace) -> tuple[AdminApi, str]:
    """The admin API to talk to, and a name for it in the page header."""
    if args.api_url:
        return AdminApi(args.api_url), args.api_url
    if args.stack:
        return _deployed(args.stack, args.region)
    info = local_stack_info(args.local_port, "url")
    url = (info.get("outputs") or {}).get("AdminApiUrl") or info["url"]
    return AdminApi(str(url)), f"local stack {info.get('stack_name', '')} at {url}"


def _deployed(stack: str, region: str | None) -> tuple[AdminApi, str]:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    session = boto3.session.Session(region_name=region)
    if session.get_credentials() is None:
        raise CliError("no AWS credentials found (set AWS_PROFILE, or run `aws sso login` / `aws configure`)", EXIT_AWS)
    region = session.region_name or "us-east-1"
    try:
        described = session.client("cloudformation", region_name=region).describe_stacks(StackName=stack)
    except ClientError as exc:
        raise CliError(f"stack {stack!r}: {exc.response['Error']['Message']}", EXIT_AWS) from exc
    except BotoCoreError as exc:
        raise CliError(f"stack {stack!r}: {exc}", EXIT_AWS) from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Stacks"][0].get("Outputs", [])}
    if "AdminApiUrl" not in outputs:
        raise CliError(f"stack {stack!r} has no AdminApiUrl output (is it this project's stack?)", EXIT_AWS)
    return AdminApi(outputs["AdminApiUrl"], signer=Signer(session, region)), f"{stack} ({region})"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not _loopback(args.host):
        print(
            f"error: --host {args.host}: the console has no login, so it binds a loopback address only", file=sys.stderr
        )
        return EXIT_USAGE
    try:
        api, target = admin_api(args)
    except CliError as exc:
        print(f"error: {exc}".replace("--local: ", "").replace("--endpoint-url", "--api-url"), file=sys.stderr)
        return exc.code
    port = args.port or _free_port(args.host)
    server = make_server(args.host, port, create_app(api, port=port, target=target), threaded=True)
    url = f"http://{args.host}:{server.server_port}"
    print(f"Operator console on {url}  (admin API: {target}; Ctrl-C stops)", flush=True)
    if args.ready_file:
        _write_ready(Path(args.ready_file), {"url": url, "api": api.base_url})
    stop = threading.Event()

    def shutdown(*_: Any) -> None:
        if not stop.is_set():
            stop.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    server.serve_forever()
    return EXIT_OK


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _write_ready(path: Path, info: dict[str, str]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(path)
