"""Starting and stopping the endpoint: ``Server`` runs uvicorn on a thread of its own (the app,
the tests) or in the foreground (``rlhf-desk serve``), on a loopback address by default; any
other address needs an API key."""

from __future__ import annotations

import ipaddress
import socket
import threading
from dataclasses import dataclass

from desktop_app.core.errors import UserError
from desktop_app.serve.api import MAX_BODY, Collect, create_api
from desktop_app.serve.engine import Engine


class ServeError(UserError):
    """The server cannot start as asked."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (a port in use is said in one sentence)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"Cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


@dataclass
class Server:
    engine: Engine
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    collect: Collect | None = None
    max_body: int = MAX_BODY
    access_log: bool = False  # one line per request on stderr (the CLI)

    def __post_init__(self):
        if not is_loopback(self.host) and not self.api_key:
            raise ServeError(f"Serving on {self.host} makes the model reachable from other "
                             "machines, so it needs an API key (--api-key KEY or "
                             "RLHF_DESK_API_KEY).")
        import uvicorn
        self.api = create_api(self.engine, api_key=self.api_key, max_body=self.max_body,
                              collect=self.collect)
        self._socket = listening_socket(self.host, self.port)
        self.port = self._socket.getsockname()[1]  # port 0: the one the system chose
        self._uvicorn = uvicorn.Server(uvicorn.Config(
            self.api, log_level="info" if self.access_log else "warning",
            access_log=self.access_log, timeout_graceful_shutdown=5))
        self._thread: threading.Thread | None = None


    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def requests(self) -> int:
        return self.api.state.requests

    def run(self) -> None:
        """In the foreground, until Ctrl+C (uvicorn's own handling)."""
        try:
            self._uvicorn.run(sockets=[self._socket])
        finally:
            self._socket.close()

    def start(self) -> None:
        """On a thread (uvicorn leaves signals alone off the main thread); returns once it
        accepts connections."""
        self._thread = threading.Thread(target=self.run, name="serve", daemon=True)
        self._thread.start()
        while not self._uvicorn.started and self._thread.is_alive():
            threading.Event().wait(0.02)

    def stop(self) -> None:
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.engine.close()
