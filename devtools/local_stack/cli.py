"""The command line: ``python -m devtools.local_stack`` (what ``make run`` runs)."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from devtools.local_stack.chaos import Chaos, ChaosSpec
from devtools.local_stack.stack import DEFAULT_STACK_NAME, SAM_LOCAL_HOST, LocalStack
from devtools.local_stack.template import ROOT, TemplateError
from devtools.samples import LOCAL_SECRET

DESCRIPTION = "The whole flow on one machine, without AWS or Docker: ``make run``."


def _pairs(values: Sequence[str]) -> dict[str, str]:
    result = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise SystemExit(f"expected NAME=VALUE, got {value!r}")
        result[key] = rest
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devtools.local_stack", description=DESCRIPTION)
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT", "3000")),
        help="HTTP API port on 127.0.0.1 (0 = any free port); default 3000",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--moto-port", type=int, default=0, help="moto's port (0 = any free port)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="template parameter override, e.g. --param MaxReceiveCount=3 (repeatable)",
    )
    parser.add_argument("--handler-modules", default="", help="extra handler modules, comma separated")
    parser.add_argument("--secret", default=LOCAL_SECRET, help="signing secret of the default source")
    parser.add_argument(
        "--secret-value",
        action="append",
        default=[],
        metavar="LOGICAL_ID=VALUE",
        help="initial value of one of the template's secrets, e.g. SlackWebhookSecret='{...}'",
    )
    parser.add_argument("--stack-name", default=DEFAULT_STACK_NAME)
    parser.add_argument("--consumer-concurrency", type=int, default=None, help="pollers per event source (default 5)")
    parser.add_argument("--template", default=str(ROOT / "template.yaml"))
    parser.add_argument(
        "--log-file",
        default=None,
        help="where the functions' JSON logs and metrics go, rewritten each run "
        "(default .local-stack/functions-<port>.log; the process id for port 0)",
    )
    parser.add_argument("--verbose", action="store_true", help="print the functions' JSON logs too")
    parser.add_argument(
        "--chaos",
        default="",
        metavar="FAULT=SHARE,...",
        help="inject faults (devtools.local_stack.chaos): dynamodb-lost-replies=0.02,sqs-duplicates=0.05",
    )
    parser.add_argument("--chaos-seed", type=int, default=None, help="seed of the fault choices")
    parser.add_argument("--chaos-report", help="JSON counts of injected faults (default: chaos.json by --log-file)")
    parser.add_argument(
        "--sam-env-file",
        default=None,
        help="where to write the env file for `sam local invoke/start-api --env-vars` that points the "
        "functions at this stack (default .local-stack/sam-env-<port>.json; the process id for port 0)",
    )
    parser.add_argument("--ready-file", help=argparse.SUPPRESS)
    return parser


def _log_path(args: argparse.Namespace) -> Path:
    if args.log_file:
        return Path(args.log_file)
    return ROOT / ".local-stack" / f"functions-{args.port or os.getpid()}.log"


def _sam_env_path(args: argparse.Namespace) -> Path:
    if args.sam_env_file:
        return Path(args.sam_env_file)
    return ROOT / ".local-stack" / f"sam-env-{args.port or os.getpid()}.json"


def _chaos(parser: argparse.ArgumentParser, args: argparse.Namespace, log_path: Path) -> Chaos | None:
    try:
        spec = ChaosSpec.parse(args.chaos)
    except ValueError as exc:
        parser.error(str(exc))
    if not spec:
        return None
    return Chaos(spec, seed=args.chaos_seed, report=args.chaos_report or log_path.with_name("chaos.json"))


def _quiet_logging() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)  # the functions' libraries turn some loggers up to INFO


def _announce(
    stack: LocalStack, console: TextIO, log_path: Path, chaos: Chaos | None, args: argparse.Namespace
) -> None:
    console.write(stack.banner() + "\n")
    console.write(f"  Function logs   {log_path}\n")
    sam_env = _sam_env_path(args)
    _write_atomically(sam_env, json.dumps(stack.sam_local_env(), indent=2) + "\n")
    bridge = f"moto also on Docker's bridge {stack.bridge_address}" if stack.bridge_address else "no Docker bridge here"
    console.write(
        f"  sam local       --env-vars {_shown(sam_env)} --add-host {SAM_LOCAL_HOST}:host-gateway   ({bridge})\n\n"
    )
    if chaos is not None:
        chaos.write_report()
        console.write(
            f"  Chaos           {chaos.spec.text()} (seed {args.chaos_seed}), counts in {chaos.report_path}\n\n"
        )
    console.flush()
    if args.ready_file:
        _write_atomically(Path(args.ready_file), json.dumps(stack.info))


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _shown(path: Path) -> str:
    """The path as a user in the checkout types it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    log_path = _log_path(args)
    chaos = _chaos(parser, args, log_path)
    console = sys.stdout
    _quiet_logging()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    log_path.parent.mkdir(parents=True, exist_ok=True)
    function_log = log_path.open("w", buffering=1)
    # The functions write JSON logs and EMF metrics to stdout, as in Lambda; here they go to a file.
    sys.stdout = _Tee(function_log, console) if args.verbose else function_log
    stack = LocalStack(
        port=args.port,
        host=args.host,
        moto_port=args.moto_port,
        template=args.template,
        params=_pairs(args.param),
        handler_modules=[m.strip() for m in args.handler_modules.split(",") if m.strip()],
        secret=args.secret,
        secret_values=_pairs(args.secret_value),
        stack_name=args.stack_name,
        consumer_concurrency=args.consumer_concurrency,
        out=console,
        chaos=chaos,
    )
    try:
        stack.start()
    except (TemplateError, OSError) as exc:
        sys.stdout = console
        function_log.close()
        console.write(f"local stack failed to start: {exc}\n")
        return 1
    try:
        _announce(stack, console, log_path, chaos, args)
        while not stop.wait(0.5):
            pass
    finally:
        console.write("stopping...\n")
        console.flush()
        stack.stop()
        sys.stdout = console
        function_log.close()
    console.write("stopped.\n")
    return 0


class _Tee(io.TextIOBase):
    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()
