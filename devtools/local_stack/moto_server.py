"""moto's server for the local stack: moto's own WSGI app, served by cheroot, in a process of its own.

moto's ``ThreadedMotoServer`` serves its app with Werkzeug's development server, which
closes the connection after every response (``Connection: close``: Werkzeug turns
keep-alive off on purpose) and starts a thread per connection. Every AWS call of the
functions then pays a TCP connect, a thread start and a teardown: about 2 ms a call on
these machines, which a listing page (33 DynamoDB calls) pays 33 times.

:class:`MotoServer` serves the same app (``DomainDispatcherApplication(create_backend_app)``,
so the same routing, the same backends and the same state in this process) with cheroot,
CherryPy's WSGI server: HTTP/1.1 keep-alive, so the SDK's connection pool reuses its
connections, and a fixed pool of worker threads. Written here rather than taken from
moto because moto offers only the Werkzeug server; cheroot is small, pure Python and
maintained with CherryPy. Nothing deployed uses it.

:class:`MotoProcess` runs it in a child process (this module's ``main``),
as DynamoDB and SQS are services of their own: moto's work (parsing, the backends,
answers) then runs on one core while the functions' SDK work runs on another, instead
of both taking turns on one interpreter lock. With the admin API's 33 calls a listing
page, that took a page from ~230 to ~170 ms here (``devtools/bench/listing.py``). The
child applies the local stack's moto changes itself (``chaos.atomic_item_writes`` and
``moto_index.speed_ups``), since they patch moto's backend where it runs; it serves one
state on every address it is given (127.0.0.1, and Docker's bridge for ``sam local``),
ignores Ctrl-C (the stack stops it after its pollers), and exits when its parent goes
(its stdin, a pipe from the parent, closes), so a killed stack leaves no moto behind.

Sizes: ``THREADS`` workers, more than the long polls that can wait in moto at once (each
SQS event source's receives, the alert watcher's), so a long poll never holds up a
DynamoDB call; idle keep-alive connections wait in cheroot's selector, not in a worker.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

THREADS = 48  # worker threads: long polls (up to 20 s each) take one each while they wait
BACKLOG = 256  # listen backlog: a burst of new connections (load tests, sam local containers)
IDLE_S = 60  # a kept-alive connection unused this long is closed (the SDK reconnects)
KEEP_ALIVE = 512  # idle connections kept open (cheroot's default, 10, is fewer than the stack's SDK pools hold)
STOP_S = 2  # how long stop() waits for workers still busy (a long poll ends by itself)


class MotoServer:
    """moto's app on ``ip_address``:``port`` (0: any free port, then ``port`` says which); ``start()``, ``stop()``."""

    def __init__(self, ip_address: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (ip_address, port)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from cheroot import wsgi
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        server = wsgi.Server(
            self._address,
            DomainDispatcherApplication(create_backend_app),
            numthreads=THREADS,
            request_queue_size=BACKLOG,
            timeout=IDLE_S,
            shutdown_timeout=STOP_S,
            server_name="moto",
        )
        server.keep_alive_conn_limit = KEEP_ALIVE
        server.prepare()  # binds now: an OSError (port taken) is raised here, to the caller
        # cheroot leaves SO_REUSEADDR off on a port it was asked to choose (port 0); the
        # connections it accepts inherit the flag, and without it the kept-alive ones the
        # SDKs still hold when the stack stops would keep the port from being bound again
        # (``make run`` restarted on the same port) for a minute (FIN_WAIT2)
        server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server = server
        self._thread = threading.Thread(target=server.serve, name=f"moto-{self.port}", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.bind_addr[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=STOP_S + 5)


class MotoProcess:
    """moto in a child process, on ``host``:``port`` (0: any free port) and the same port of each of ``extra_hosts``.

    ``start()`` returns once ``host`` is bound, or raises with the child's words; the port
    chosen is ``port``; ``bound`` lists the addresses served (an extra host that could not
    be bound is left out, with the reason in ``problems``).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, extra_hosts: tuple[str, ...] = ()) -> None:
        self.host, self.requested_port, self.extra_hosts = host, port, extra_hosts
        self.port = 0
        self.bound: list[str] = []
        self.problems: list[str] = []
        self._child: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 60) -> None:
        from devtools.local_stack.process import python_env
        from devtools.local_stack.template import ROOT

        # -c rather than -m: the package imports this module, and -m would run a second copy of it
        child = "import sys; from devtools.local_stack.moto_server import main; raise SystemExit(main(sys.argv[1:]))"
        args = [sys.executable, "-c", child, self.host, str(self.requested_port)]
        self._child = subprocess.Popen(  # noqa: S603 - this interpreter, this module
            [*args, *self.extra_hosts],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=python_env(),
        )
        assert self._child.stdout is not None
        ready = _read_line(self._child.stdout, timeout)
        if not ready:
            code = self._child.wait(timeout=5)
            raise RuntimeError(f"moto did not start (exit code {code})")
        answer = json.loads(ready)
        if "error" in answer:
            self.stop()
            raise OSError(answer["error"])
        self.port, self.bound, self.problems = int(answer["port"]), list(answer["bound"]), list(answer["problems"])

    def get_host_and_port(self) -> tuple[str, int]:
        return self.host, self.port

    def stop(self, timeout: float = 10) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()


def _read_line(stream: Any, timeout: float) -> str:
    """One line from the child's stdout, or "" if none came within ``timeout`` seconds."""
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return found[0].strip() if found else ""


def _until_eof(stopping: threading.Event) -> None:
    sys.stdin.read()
    stopping.set()


def main(argv: list[str]) -> int:
    """``main([HOST, PORT, MORE_HOSTS...])``, in the child: serve until told to stop.

    Prints one JSON line when ready: ``{"port", "bound", "problems"}`` or ``{"error"}``.
    """
    from contextlib import ExitStack

    from devtools.local_stack.chaos import atomic_item_writes
    from devtools.local_stack.moto_index import speed_ups

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the stack stops us after its pollers
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    host, port, extra = argv[0], int(argv[1]), argv[2:]
    logging.getLogger("cheroot").setLevel(logging.ERROR)
    with ExitStack() as stack:
        stack.enter_context(atomic_item_writes())  # a condition and its write are one step, as on DynamoDB
        stack.enter_context(speed_ups())  # same answers, in less time (moto_index.py)
        first = MotoServer(host, port)
        try:
            first.start()
        except OSError as exc:
            print(json.dumps({"error": f"moto could not listen on {host}:{port}: {exc}"}), flush=True)
            return 1
        stack.callback(first.stop)
        bound, problems = [host], []
        for other in extra:  # the same port on another address (Docker's bridge), the same state
            server = MotoServer(other, first.port)
            try:
                server.start()
            except OSError as exc:
                problems.append(f"moto not served on {other}:{first.port}: {exc}")
                continue
            stack.callback(server.stop)
            bound.append(other)
        print(json.dumps({"port": first.port, "bound": bound, "problems": problems}), flush=True)
        # until SIGTERM, or the parent's end of our stdin closes (the parent exited, however it did)
        threading.Thread(target=_until_eof, args=(stopping,), daemon=True).start()
        stopping.wait()
    return 0
