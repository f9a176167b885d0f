"""The WebSocket frame reader's two builds (reader.py as Python, and compiled as
cyasgi._speedups.wsreader): the selector picks the compiled one where it is built, a build that silently
fell back to Python fails here, and both builds turn the same frames, in any split into reads, into the
same messages and the same calls to the engine; the kernels' frame encoders write the same bytes; and
a whole protocol over each build (the app's receive() and send() are the reader's) gives the app the
same messages and errors and writes the same bytes for the same conversation."""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.util
import inspect
import random
import struct
import sys
import types
from collections import deque
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import pytest

from cyasgi._compat import NO_EXTENSIONS
from cyasgi.protocols.http import kernel as pure_kernel
from cyasgi.protocols.websockets import base, frames, twin
from cyasgi.protocols.websockets.phases import CLOSED, OPEN
from cyasgi.protocols.websockets.reader import COPY_LIMIT
from tests.utils import MockTransport, make_config, make_state
from tests.ws_utils import handshake_request

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
    else:
        assert twin.IMPLEMENTATION == "pure" and twin.IMPLEMENTATION_MODULE == TWINS["py"]
    # The pure reader frames what it sends with the pure kernel's encoders (the compiled one cimports
    # the C kernel's: wsreader.pxd).
    pure_reader = importlib.import_module(TWINS["py"])
    assert pure_reader.data_frame is pure_kernel.data_frame and pure_reader.text_frame is pure_kernel.text_frame


@pytest.mark.parametrize("name", ["c", "py"])
def test_each_build_is_what_it_says(name: str) -> None:
    module = load(name, TWINS)
    assert module.COMPILED == (name == "c"), f"{module.__file__}: the build fell back to Python"
    # The app's receive() and send() are the reader's: C coroutines in the compiled build.
    for method in (module.FrameReader.receive, module.FrameReader.send):
        assert inspect.iscoroutinefunction(method), method
        assert inspect.isfunction(method) == (name == "py"), f"{method}: not the {name} build's"
    assert base.WebSocketProtocolBase.send is twin.FrameReader.send
    assert base.WebSocketProtocolBase.receive is twin.FrameReader.receive


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
    seen = feed_in_random_reads(reader, stream, seed, (1, 2, 3, 7, 20, 200), kind)
    return [seen, reader.calls, bytes(reader._buffer), reader._need, reader._engine_rest, reader._phase]


def feed_in_random_reads(
    reader: Any, stream: bytes, seed: int, sizes: tuple[int, ...], kind: Callable[[bytes], Any] = bytes
) -> list[Any]:
    """Feed ``stream`` to a harness reader in reads of ``sizes`` (or the whole rest) chosen by ``seed``;
    the app takes the queue whenever reading pauses. The messages queued, in order."""
    chooser = random.Random(seed)
    pos = 0
    seen: list[Any] = []
    while pos < len(stream) and reader._phase == OPEN:
        step = chooser.choice((*sizes, len(stream)))
        reader._frames_received(kind(stream[pos : pos + step]))
        pos += step
        while reader._paused_for_queue and reader._phase == OPEN:
            seen.extend(reader._queue)
            reader._queue.clear()
            reader._paused_for_queue = False
            reader._held_frames_resumed()
    seen.extend(reader._queue)
    return seen


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


# The app's side: a whole protocol over each build --------------------------------------------------

ENGINES = {
    "websockets-sansio": ("cyasgi.protocols.websockets.websockets_sansio_impl", "WebSocketsSansIOProtocol"),
    "wsproto": ("cyasgi.protocols.websockets.wsproto_impl", "WSProtocol"),
}
DEFLATE_OFFER = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
#: Loop turns the app is given to get as far as it can between two steps of the client.
SETTLE_TURNS = 20


def load_module(name: str, path: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def protocol_class(name: str, engine: str) -> Any:
    """The engine's protocol class over one build of the reader: base.py and the engine's module run
    again with the selector naming that build."""
    selector = types.ModuleType(twin.__name__)
    selector.FrameReader = load(name, TWINS).FrameReader  # type: ignore[attr-defined]
    module_name, class_name = ENGINES[engine]
    with mock.patch.dict(sys.modules, {twin.__name__: selector}):
        base_module = load_module(f"_ws_base_{name}", base.__file__)
        with mock.patch.dict(sys.modules, {base.__name__: base_module}):
            source = importlib.import_module(module_name).__file__
            assert source is not None
            engine_module = load_module(f"_ws_engine_{name}_{class_name}", source)
    cls = getattr(engine_module, class_name)
    assert cls.send is selector.FrameReader.send  # type: ignore[attr-defined]
    return cls


async def settle() -> None:
    for _ in range(SETTLE_TURNS):
        await asyncio.sleep(0)


async def converse(name: str, engine: str, deflate: bool, ending: str) -> list[Any]:
    """One connection, scripted: what the app receives and the errors it sees, and what is written,
    step by step. The app waits on an empty queue, sends text and bytes (small and large), sends a
    message without data, lets the queue fill (reading pauses) and then drains it (reading resumes),
    sends while the transport has paused writing, and ends with ``ending``: its own close and a send
    after it, or the peer's close and a send after that."""
    log: list[Any] = []
    steps = [asyncio.Event() for _ in range(3)]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        log.append(("app", await receive()))
        await send({"type": "websocket.accept"})
        log.append(("app", await receive(), "waited"))
        await send({"type": "websocket.send", "text": "héllo ✓"})
        await send({"type": "websocket.send", "bytes": b"\x00\xff"})
        await send({"type": "websocket.send", "text": "é" * COPY_LIMIT})
        await send({"type": "websocket.send", "bytes": bytearray(b"b" * (COPY_LIMIT + 1))})
        await send({"type": "websocket.send", "text": ""})
        try:
            await send({"type": "websocket.send"})
        except RuntimeError as exc:
            log.append(("error", repr(exc)))
        await steps[0].wait()
        for _ in range(MAX_QUEUE * 2):
            log.append(("app", await receive(), transport.read_paused))
        await steps[1].wait()
        await send({"type": "websocket.send", "text": "after the drain"})
        log.append(("sent after the drain", bytes(transport.buffer)))
        await steps[2].wait()
        if ending == "app closes":
            await send({"type": "websocket.close", "code": 4000, "reason": "bye"})
        for message in ({"type": "websocket.send", "text": "late"}, {"type": "websocket.send", "bytes": b"late"}):
            try:
                await send(message)
            except Exception as exc:
                log.append(("error", repr(exc)))
        log.append(("app", await receive()))
        log.append(("app", await receive()))

    config = make_config(app, ws=engine, ws_max_queue=MAX_QUEUE)
    config.load()
    protocol = protocol_class(name, engine)(
        config=config, server_state=make_state(), app_state={}, _loop=asyncio.get_running_loop()
    )
    transport = MockTransport()
    protocol.connection_made(transport)
    transport.set_protocol(protocol)
    protocol.data_received(handshake_request(extra=DEFLATE_OFFER if deflate else b""))
    await settle()
    log.append(("handshake", transport.take(), protocol._plain_send != deflate))
    log.append(("waiting", protocol._waiter is not None))
    protocol.data_received(masked(frames.FIN_TEXT, b"first"))
    await settle()
    log.append(("wrote", transport.take(), transport.calls[1:]))
    protocol.data_received(b"".join(masked(frames.FIN_BINARY, bytes((i,))) for i in range(MAX_QUEUE * 2)))
    log.append(("queue full", transport.read_paused, len(protocol._queue), len(protocol._buffer)))
    steps[0].set()
    await settle()
    log.append(("queue drained", transport.read_paused, len(protocol._queue), len(protocol._buffer)))
    protocol.pause_writing()
    steps[1].set()
    await settle()
    log.append(("write paused", transport.take(), len(protocol._drain_waiters)))
    protocol.resume_writing()
    await settle()
    log.append(("write resumed", transport.take()))
    if ending == "peer closes":
        protocol.data_received(masked(frames.FIN | frames.OP_CLOSE, struct.pack("!H", 1001) + b"away"))
    steps[2].set()
    await settle()
    log.append(("end", transport.take(), transport.closed, protocol._phase))
    protocol.connection_lost(None)
    await settle()
    assert not asyncio.all_tasks() - {asyncio.current_task()}, "the app did not finish"
    return log


@pytest.mark.parametrize("ending", ["app closes", "peer closes"])
@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "permessage-deflate"])
@pytest.mark.parametrize("engine", ENGINES)
def test_both_builds_serve_the_app_the_same(engine: str, deflate: bool, ending: str) -> None:
    compiled = asyncio.run(converse("c", engine, deflate, ending))
    pure = asyncio.run(converse("py", engine, deflate, ending))
    assert compiled == pure
    assert ("app", {"type": "websocket.receive", "text": "first"}, "waited") in pure
    assert sum(1 for entry in pure if entry[0] == "error") == 3
