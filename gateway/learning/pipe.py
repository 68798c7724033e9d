"""Pickled messages over an OS pipe between the gateway and its learning worker, read and written by
each side's event loop: no feeder thread, no reader thread.

Was: a ``multiprocessing.Queue`` each way, whose feeder thread pickled and wrote each message and
whose reader thread blocked on ``get`` and woke the loop with ``call_soon_threadsafe``: per shadow
job, two thread wake-ups and GIL hand-offs in the serving process (one in the worker), on the cores
that serve clients. Now :meth:`PipeWriter.send` pickles on the loop (tens of microseconds for a job)
and the loop's pipe transport writes when the pipe has room (``send`` never blocks; what the pipe
cannot take yet waits in the transport's buffer, bounded by the gateway's admission); a
:class:`PipeReader` unpickles whole frames as they arrive. A frame is a 4-byte big-endian length, then
the pickle. A message may carry a key (a job's response id), which travels outside its pickle so
that the reader can name a message it skipped. End of file (the other process exited or closed its
end) is reported once. A message that cannot be unpickled or applied is logged and skipped, its key
(if any) reported to ``on_skipped``: the frames after it still arrive (an exception left to the loop
would close the pipe while the other process lives on).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import struct
from collections.abc import Callable
from typing import Any

#: The pickle's length, then the key's.
_HEADER = struct.Struct("!IH")

log = logging.getLogger(__name__)


def frame(item: object, key: str = "") -> bytes:
    """``item`` pickled, behind the lengths and ``key`` (at most 65,535 bytes in UTF-8)."""
    data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
    tag = key.encode()
    return _HEADER.pack(len(data), len(tag)) + tag + data


class _Frames(asyncio.Protocol):
    def __init__(
        self,
        on_item: Callable[[Any], None],
        on_eof: Callable[[], None],
        on_skipped: Callable[[str], None] | None = None,
    ) -> None:
        self._on_item = on_item
        self._on_eof = on_eof
        self._on_skipped = on_skipped
        self._buffer = bytearray()
        self._ended = False

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while len(buffer) - start >= _HEADER.size:
            size, tag = _HEADER.unpack_from(buffer, start)
            body = start + _HEADER.size + tag
            end = body + size
            if len(buffer) < end:
                break
            key, payload = buffer[body - tag : body].decode(errors="replace"), buffer[body:end]
            start = end
            try:
                self._on_item(pickle.loads(payload))
            except Exception:  # one bad message, not the channel: the next frame starts at ``end``
                log.exception("pipe: a %d-byte message (key %r) could not be read or applied; skipped", size, key)
                self._skipped(key)
        del buffer[:start]

    def _skipped(self, key: str) -> None:
        if key and self._on_skipped is not None:
            try:
                self._on_skipped(key)
            except Exception:
                log.exception("pipe: reporting the skipped message %r failed", key)

    def eof_received(self) -> bool | None:
        self._end()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._on_eof()


class PipeReader:
    """Calls ``on_item`` with each message read from ``fd`` (on the loop), then ``on_eof`` once;
    ``on_skipped`` with the key of a message that could not be read or applied."""

    def __init__(self) -> None:
        self._transport: asyncio.ReadTransport | None = None

    async def open(
        self,
        fd: int,
        on_item: Callable[[Any], None],
        on_eof: Callable[[], None],
        on_skipped: Callable[[str], None] | None = None,
    ) -> None:
        """Start reading ``fd`` (this object owns it from now on)."""
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.connect_read_pipe(
            lambda: _Frames(on_item, on_eof, on_skipped), os.fdopen(fd, "rb", buffering=0)
        )

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class _Closed(asyncio.Protocol):
    def __init__(self) -> None:
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class PipeWriter:
    """Sends messages into ``fd`` without blocking the loop."""

    def __init__(self) -> None:
        self._transport: asyncio.WriteTransport | None = None
        self._protocol: _Closed | None = None

    async def open(self, fd: int) -> None:
        """Start writing ``fd`` (this object owns it from now on)."""
        loop = asyncio.get_running_loop()
        self._transport, self._protocol = await loop.connect_write_pipe(_Closed, os.fdopen(fd, "wb", buffering=0))

    def send(self, item: object, key: str = "") -> bool:
        """Pickle and queue ``item`` (with ``key``) for writing; False (nothing sent) when the pipe is closed
        (the reader is gone). Raises what pickling raises."""
        data = frame(item, key)
        if self._transport is None or self._transport.is_closing():
            return False
        self._transport.write(data)
        return True

    async def close(self, timeout_s: float) -> None:
        """Write what is buffered (for at most ``timeout_s``), then close."""
        if self._transport is None or self._protocol is None:
            return
        self._transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._protocol.closed), timeout_s)
        except TimeoutError:
            self._transport.abort()
