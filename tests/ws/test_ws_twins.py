"""The WebSocket frame reader's two builds (reader.py as Python, and compiled as
cyasgi._speedups.wsreader): the selector picks the compiled one where it is built, a build that silently
fell back to Python fails here, and both builds turn the same frames, in any split into reads, into the
same messages and the same calls to the engine; the kernels' frame encoders write the same bytes."""

from __future__ import annotations

import importlib
import random
import struct
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from cyasgi._compat import NO_EXTENSIONS
from cyasgi.protocols.http import kernel as pure_kernel
from cyasgi.protocols.websockets import frames, twin
from cyasgi.protocols.websockets.phases import CLOSED, OPEN

SPEEDUPS = Path(__file__).resolve().parent.parent.parent / "cyasgi" / "_speedups"
EXPECT_COMPILED = not NO_EXTENSIONS and (SPEEDUPS / "wsreader.pxd").exists()
TWINS = {"c": "cyasgi._speedups.wsreader", "py": "cyasgi.protocols.websockets.reader"}
KERNELS = {"c": "cyasgi._speedups.kernel", "py": "cyasgi.protocols.http.kernel"}
MASK = b"\x9a\x0b\xe4\x71"
MAX_SIZE = 4096
MAX_QUEUE = 4
RSV1 = 0x40
SEEDS = range(20)


def load(name: str, modules: dict[str, str]) -> Any:
    if name == "c" and not EXPECT_COMPILED:
        pytest.skip("the compiled twin is disabled here (CYASGI_NO_EXTENSIONS=1 or not CPython)")
    return importlib.import_module(modules[name])


def test_selector_picks_the_compiled_reader_when_built() -> None:
    if EXPECT_COMPILED:
        assert twin.IMPLEMENTATION == "compiled" and twin.IMPLEMENTATION_MODULE == TWINS["c"]
        assert twin.data_frame.__module__ == KERNELS["c"]
    else:
        assert twin.IMPLEMENTATION == "pure" and twin.IMPLEMENTATION_MODULE == TWINS["py"]
        assert twin.data_frame is pure_kernel.data_frame


@pytest.mark.parametrize("name", ["c", "py"])
def test_each_build_is_what_it_says(name: str) -> None:
    module = load(name, TWINS)
    assert module.COMPILED == (name == "c"), f"{module.__file__}: the build fell back to Python"


def masked(first: int, payload: bytes, mask: bytes = MASK) -> bytes:
    """A client frame, with the shortest length encoding."""
    size = len(payload)
    if size < frames.LENGTH_16:
        head = bytes((first, frames.MASK_BIT | size))
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, frames.MASK_BIT | frames.LENGTH_16, size)
    else:
        head = struct.pack("!BBQ", first, frames.MASK_BIT | frames.LENGTH_64, size)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def harness(reader_class: type) -> Any:
    """A FrameReader of one build with the protocol's side recorded: what the reader queues and
    every callback, in order."""

    class Harness(reader_class):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            self.max_size = MAX_SIZE
            self.max_queue = MAX_QUEUE
            self._phase = OPEN
            self._paused_for_queue = False
            self._metrics = None
            self._queue = deque()
            self._waiter = None
            self.calls: list[tuple[Any, ...]] = []
            self._reset_reader()

        def _update_reading(self) -> None:
            self.calls.append(("update_reading", self._paused_for_queue))

        def _engine_feed(self, data: bytes | bytearray) -> None:
            self.calls.append(("engine", bytes(data)))

        def _engine_fail(self, code: int, reason: str) -> None:
            self.calls.append(("fail", code, reason))
            self._phase = CLOSED

        def _engine_drop_message(self) -> None:
            self.calls.append(("drop",))

    return Harness()


def run(name: str, stream: bytes, seed: int) -> list[Any]:
    """Feed ``stream`` in random reads (bytes, bytearray or memoryview by seed); the app takes the queue
    whenever reading pauses."""
    reader = harness(load(name, TWINS).FrameReader)
    kind = (bytes, bytearray, memoryview)[seed % 3]
    chooser = random.Random(seed)
    pos = 0
    seen: list[Any] = []
    while pos < len(stream) and reader._phase == OPEN:
        step = chooser.choice((1, 2, 3, 7, 20, 200, len(stream)))
        reader._frames_received(kind(stream[pos : pos + step]))
        pos += step
        while reader._paused_for_queue and reader._phase == OPEN:
            seen.extend(reader._queue)
            reader._queue.clear()
            reader._paused_for_queue = False
            reader._held_frames_resumed()
    seen.extend(reader._queue)
    return [seen, reader.calls, bytes(reader._buffer), reader._need, reader._engine_rest, reader._phase]


TEXT = "déjà vu ✓".encode()
STREAMS = {
    "plain": b"".join(
        [
            masked(frames.FIN_TEXT, b"hello"),
            masked(frames.FIN_BINARY, bytes(range(256)) * 3),
            masked(frames.FIN_TEXT, TEXT * 20),
            masked(frames.FIN_BINARY, b""),
            masked(frames.FIN_TEXT, b""),
        ]
        * 3
    ),
    "fragmented with control frames between": b"".join(
        [
            masked(frames.OP_TEXT, TEXT[:3]),
            masked(frames.FIN | 0x9, b"ping"),
            masked(frames.OP_CONT, TEXT[3:]),
            masked(frames.FIN | frames.OP_CONT, b"!"),
            masked(frames.OP_BINARY, b"a" * 100),
            masked(frames.FIN | frames.OP_CONT, b"b" * 100),
            masked(frames.FIN_BINARY, b"after"),
        ]
    ),
    "compressed and control frames for the engine": b"".join(
        [
            masked(frames.FIN_TEXT | RSV1, b"\x01\x02\x03"),
            masked(frames.FIN_BINARY, b"own"),
            masked(frames.FIN | 0xA, b"pong"),
            masked(frames.OP_TEXT | RSV1, b"x" * 10),
            masked(frames.FIN | frames.OP_CONT, b"y" * 10),
            masked(frames.FIN_TEXT, b"own again"),
        ]
    ),
    "close inside a fragmented message the engine assembles": b"".join(
        [
            masked(frames.OP_TEXT | RSV1, b"x"),
            masked(frames.FIN | frames.OP_CLOSE, b"\x03\xe8"),
        ]
    ),
    "invalid utf-8, whole": masked(frames.FIN_TEXT, b"ok") + masked(frames.FIN_TEXT, b"bad \xff here"),
    "invalid utf-8, in a fragment": masked(frames.OP_TEXT, b"ok") + masked(frames.OP_CONT, b"\xc3\x28"),
    "utf-8 character split between fragments": (
        masked(frames.OP_TEXT, TEXT[:2]) + masked(frames.FIN | frames.OP_CONT, TEXT[2:])
    ),
    "too big, whole": masked(frames.FIN_BINARY, b"z" * (MAX_SIZE + 1)) + masked(frames.FIN_BINARY, b"never"),
    "too big, assembled": masked(frames.OP_BINARY, b"z" * MAX_SIZE) + masked(frames.OP_CONT, b"z"),
    "a new message inside a fragmented one": masked(frames.OP_TEXT, b"a") + masked(frames.FIN_TEXT, b"b"),
    "unmasked": bytes((frames.FIN_TEXT, 2)) + b"hi" + masked(frames.FIN_TEXT, b"x"),
    "64-bit length": masked(frames.FIN_BINARY, b"q" * 70000)[: 70000 // 2],
    "huge 64-bit length": bytes((frames.FIN_BINARY, frames.MASK_BIT | frames.LENGTH_64)) + b"\xff" * 8 + MASK,
    "queue fills": b"".join(masked(frames.FIN_BINARY, bytes((i,))) for i in range(MAX_QUEUE * 3)),
}


@pytest.mark.parametrize("stream", STREAMS)
def test_both_builds_read_the_same(stream: str) -> None:
    data = STREAMS[stream]
    for seed in SEEDS:
        assert run("c", data, seed) == run("py", data, seed), (stream, seed)


def test_the_reader_decodes_what_the_client_sent() -> None:
    seen = run("py", STREAMS["plain"], 0)[0]
    assert seen[:3] == [
        {"type": "websocket.receive", "text": "hello"},
        {"type": "websocket.receive", "bytes": bytes(range(256)) * 3},
        {"type": "websocket.receive", "text": TEXT.decode() * 20},
    ]


SIZES = (0, 1, 7, 8, 9, 125, 126, 127, 65535, 65536, 70001)


@pytest.mark.parametrize("size", SIZES)
def test_both_kernels_frame_and_unmask_the_same(size: int) -> None:
    compiled, pure = load("c", KERNELS), load("py", KERNELS)
    payload = (bytes(range(256)) * (size // 256 + 1))[:size]
    text = ("aé✓" * size)[:size]
    for kind in (bytes, bytearray):
        framed = compiled.data_frame(frames.FIN_BINARY, kind(payload))
        assert framed == pure.data_frame(frames.FIN_BINARY, kind(payload))
    assert compiled.text_frame(frames.FIN_TEXT, text) == pure.text_frame(frames.FIN_TEXT, text)
    assert pure.data_frame(frames.FIN_BINARY, payload) == frames.data_frame_header(frames.FIN_BINARY, size) + payload
    data = b"head" + MASK + payload
    expected = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    for kind in (bytes, bytearray, memoryview):
        assert compiled.unmask(kind(data), 8, 8 + size) == pure.unmask(kind(data), 8, 8 + size) == expected
    with pytest.raises(UnicodeEncodeError):
        compiled.text_frame(frames.FIN_TEXT, "\ud800")
    with pytest.raises(UnicodeEncodeError):
        pure.text_frame(frames.FIN_TEXT, "\ud800")
