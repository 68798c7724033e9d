"""The gateway <-> learning worker pipes (gateway.learning.pipe) on a real OS pipe."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from gateway.learning.pipe import PipeReader, PipeWriter, _Frames, frame


async def _through_pipe(
    batches: list[list[object]], on_item: Callable[[Any], None], on_skipped: Callable[[str], None] | None = None
) -> int:
    """Sends ``batches`` (a pause between them) through a real pipe to ``on_item``, each message keyed by its
    position in its batch, closes the writer; how many times end of file was reported."""
    ends = 0
    done = asyncio.get_running_loop().create_future()

    def end() -> None:
        nonlocal ends
        ends += 1
        done.set_result(None)

    r, w = os.pipe()
    reader, writer = PipeReader(), PipeWriter()
    await reader.open(r, on_item, end, on_skipped)
    await writer.open(w)
    for i, batch in enumerate(batches):
        if i:
            await asyncio.sleep(0.05)
        for n, item in enumerate(batch):
            assert writer.send(item, f"key-{n}")  # never blocks, whatever the pipe holds
    await writer.close(10)
    await asyncio.wait_for(done, 10)
    reader.close()
    return ends


def test_messages_arrive_whole_in_order_then_one_end_of_file() -> None:
    items: list[object] = [
        {"i": i, "text": "x" * (i * 7919 % 200_000)} for i in range(60)
    ]  # some beyond a pipe's buffer
    got: list[object] = []
    ends = asyncio.run(_through_pipe([items], got.append))
    assert got == items and ends == 1


def test_frames_split_anywhere_are_reassembled() -> None:
    items = [("job", i, "é" * i) for i in range(20)]
    data = b"".join(frame(item, "é" * (i % 3)) for i, item in enumerate(items))
    for step in (1, 3, 64, len(data)):
        got: list[object] = []
        frames = _Frames(got.append, lambda: None)
        for at in range(0, len(data), step):
            frames.data_received(data[at : at + step])
        assert got == items, step


def test_sending_to_a_closed_reader_is_refused_not_raised() -> None:
    async def main() -> bool:
        r, w = os.pipe()
        writer = PipeWriter()
        await writer.open(w)
        os.close(r)  # the worker died
        writer.send("first")  # the write fails: the transport closes
        for _ in range(50):
            await asyncio.sleep(0.01)
        sent = writer.send("second")
        await writer.close(1)
        return sent

    assert asyncio.run(main()) is False


def test_a_message_that_fails_does_not_close_the_pipe() -> None:
    """One report the gateway cannot apply (or unpickle) must not cut the channel: the later ones arrive.

    Was: the exception left ``data_received``, the loop closed the transport, and every later report
    was lost while the worker lived on (shadow slots never freed, pending writes never resolved)."""

    class Unloadable:
        def __reduce__(self) -> tuple[object, tuple[object, ...]]:
            return (_refuse, ())

    got: list[object] = []
    skipped: list[str] = []

    def take(item: object) -> None:
        if item == "bad":
            raise RuntimeError("cannot apply this one")
        got.append(item)

    ends = asyncio.run(_through_pipe([["one", "bad", Unloadable(), "two"], ["three"]], take, skipped.append))
    assert got == ["one", "two", "three"] and ends == 1
    # the skipped messages are named by their keys (a job's response id: the gateway frees its slot)
    assert skipped == ["key-1", "key-2"]


def _refuse() -> object:
    raise ValueError("cannot unpickle")
