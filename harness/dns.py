"""A tiny DNS server on loopback UDP, standing for a headless Service's DNS name in tests.

Every ``A`` query is answered with :attr:`LoopbackDNS.addresses` (TTL 0), whatever the name, and
any other query type with no records, so a gRPC channel dialling
``dns://127.0.0.1:PORT/scorer.test:50051`` sees the pods a test "scales" to by changing the list
(loopback addresses 127.0.0.x, one server per address on the same port, as pods share a port).
"""

from __future__ import annotations

import socket
import struct
import threading

_A = 1
_HEADER = struct.Struct(">HHHHHH")


class LoopbackDNS:
    """Answers ``A`` queries on ``127.0.0.1:port`` with the current address list; use as a context manager."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = list(addresses)
        self.a_queries = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="loopback-dns", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                query, peer = self._sock.recvfrom(4096)
            except OSError:  # closed
                return
            try:
                self._sock.sendto(self._answer(query), peer)
            except (OSError, IndexError, struct.error):  # a malformed query gets no answer
                continue

    def _answer(self, query: bytes) -> bytes:
        ident, flags = struct.unpack(">HH", query[:4])
        end = 12
        while query[end]:  # the question's name: length-prefixed labels, then a zero byte
            end += query[end] + 1
        qtype = struct.unpack(">H", query[end + 1 : end + 3])[0]
        question = query[12 : end + 5]
        records = list(self.addresses) if qtype == _A else []
        if qtype == _A:
            self.a_queries += 1
        # A response, authoritative, recursion desired copied from the query; NOERROR.
        header = _HEADER.pack(ident, 0x8400 | (flags & 0x0100), 1, len(records), 0, 0)
        # Each answer points at the question's name (compression pointer 0xC00C): type A, class IN, TTL 0.
        answers = b"".join(b"\xc0\x0c" + struct.pack(">HHIH", _A, 1, 0, 4) + socket.inet_aton(a) for a in records)
        return header + question + answers

    def close(self) -> None:
        self._sock.close()
        self._thread.join(2)

    def __enter__(self) -> LoopbackDNS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
