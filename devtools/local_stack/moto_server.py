"""moto's server for the local stack: moto's own WSGI app, served by cheroot.

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

Sizes: ``THREADS`` workers, more than the long polls that can wait in moto at once (each
SQS event source's receives, the alert watcher's), so a long poll never holds up a
DynamoDB call; idle keep-alive connections wait in cheroot's selector, not in a worker.
"""

from __future__ import annotations

import threading
from typing import Any

THREADS = 48  # worker threads: long polls (up to 20 s each) take one each while they wait
BACKLOG = 256  # listen backlog: a burst of new connections (load tests, sam local containers)
IDLE_S = 60  # a kept-alive connection unused this long is closed (the SDK reconnects)
STOP_S = 2  # how long stop() waits for workers still busy (a long poll ends by itself)


class MotoServer:
    """``start()``/``stop()``/``get_host_and_port()`` as ``moto.server.ThreadedMotoServer``."""

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
        server.prepare()  # binds now: an OSError (port taken) is raised here, to the caller
        self._server = server
        self._thread = threading.Thread(target=server.serve, name=f"moto-{self.port}", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.bind_addr[1])

    def get_host_and_port(self) -> tuple[str, int]:
        host, port = self._server.bind_addr[:2]
        return str(host), int(port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=STOP_S + 5)
