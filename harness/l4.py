"""A round-robin TCP proxy on loopback, standing for a ClusterIP Service in tests.

kube-proxy spreads a Service's *connections* over its ready pods; every byte of one connection goes
to the pod it was opened to. :class:`RoundRobinProxy` does the same: each accepted connection is
piped to the next backend in turn, so a gRPC client that keeps one HTTP/2 connection stays on one
backend until that connection ends.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading


class RoundRobinProxy:
    """Listens on ``127.0.0.1:port``; connection N goes to ``backends[N % len(backends)]``."""

    def __init__(self, backends: list[str]) -> None:
        self._next = itertools.cycle(backends)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="l4-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            host, port = next(self._next).rsplit(":", 1)
            try:
                backend = socket.create_connection((host, int(port)), timeout=5)
            except OSError:
                client.close()
                continue
            backend.settimeout(None)
            with self._lock:
                self.connections += 1
                self._open |= {client, backend}
            for src, dst in ((client, backend), (backend, client)):
                threading.Thread(target=self._pipe, args=(src, dst), name="l4-pipe", daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for sock in (src, dst):  # one side ended: end the connection both ways
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with self._lock:
            for sock in (src, dst):
                if sock in self._open:
                    self._open.discard(sock)
                    sock.close()

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.close()
            self._open.clear()

    def __enter__(self) -> RoundRobinProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
