"""The gateway <-> learning worker pipes (gateway.learning.pipe) on a real OS pipe."""

from __future__ import annotations

import asyncio
import os

from gateway.learning.pipe import PipeReader, PipeWriter, _Frames, frame


def test_messages_arrive_whole_in_order_then_one_end_of_file() -> None:
    items = [{"i": i, "text": "x" * (i * 7919 % 200_000)} for i in range(60)]  # some larger than a pipe's buffer

    async def main() -> tuple[list[object], int]:
        got: list[object] = []
        ends = 0
        done = asyncio.get_running_loop().create_future()

        def end() -> None:
            nonlocal ends
            ends += 1
            done.set_result(None)

        r, w = os.pipe()
        reader, writer = PipeReader(), PipeWriter()
        await reader.open(r, got.append, end)
        await writer.open(w)
        for item in items:
            assert writer.send(item)  # never blocks, whatever the pipe holds
        await writer.close(10)
        await asyncio.wait_for(done, 10)
        reader.close()
        return got, ends

    got, ends = asyncio.run(main())
    assert got == items and ends == 1


def test_frames_split_anywhere_are_reassembled() -> None:
    items = [("job", i, "é" * i) for i in range(20)]
    data = b"".join(frame(item) for item in items)
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

    async def main() -> tuple[list[object], int]:
        got: list[object] = []
        ends = 0
        done = asyncio.get_running_loop().create_future()

        def take(item: object) -> None:
            if item == "bad":
                raise RuntimeError("cannot apply this one")
            got.append(item)

        def end() -> None:
            nonlocal ends
            ends += 1
            done.set_result(None)

        r, w = os.pipe()
        reader, writer = PipeReader(), PipeWriter()
        await reader.open(r, take, end)
        await writer.open(w)
        for item in ("one", "bad", Unloadable(), "two"):
            assert writer.send(item)
        await asyncio.sleep(0.1)
        assert writer.send("three")
        await writer.close(10)
        await asyncio.wait_for(done, 10)
        reader.close()
        return got, ends

    got, ends = asyncio.run(main())
    assert got == ["one", "two", "three"] and ends == 1


def _refuse() -> object:
    raise ValueError("cannot unpickle")
