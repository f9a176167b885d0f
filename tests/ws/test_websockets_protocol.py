"""WebSocket protocols in memory (MockTransport): the timer, shutdown and flow-control corners that a
real socket reaches only slowly or not deterministically."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from cyasgi.protocols.websockets import base
from cyasgi.protocols.websockets.websockets_impl import WebSocketProtocol
from cyasgi.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from cyasgi.protocols.websockets.wsproto_impl import WSProtocol
from tests.utils import MockTransport, make_config, make_state
from tests.ws_utils import close_frame, eventually, frame, handshake_request

pytestmark = pytest.mark.anyio

CLASSES = {
    "websockets-sansio": WebSocketsSansIOProtocol,
    "wsproto": WSProtocol,
    "websockets": WebSocketProtocol,
}


@pytest.fixture(params=list(CLASSES))
def protocol_class(request: pytest.FixtureRequest) -> Any:
    return CLASSES[request.param]


class BufferedTransport(MockTransport):
    """A MockTransport that reports its buffer as the write-buffer size, like a transport whose peer
    does not read."""

    def get_write_buffer_size(self) -> int:
        return len(self.buffer)


def open_protocol(protocol_class: Any, app: Any, **kwargs: Any) -> tuple[Any, BufferedTransport]:
    config = make_config(app, **kwargs)
    config.load()
    protocol = protocol_class(
        config=config, server_state=make_state(), app_state={}, _loop=asyncio.get_running_loop()
    )
    transport = BufferedTransport()
    protocol.connection_made(transport)
    transport.set_protocol(protocol)
    protocol.data_received(handshake_request())
    return protocol, transport


async def test_shutdown_during_the_handshake_is_503(protocol_class: Any) -> None:
    decide = asyncio.Event()
    outcome: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await decide.wait()
        try:
            await send({"type": "websocket.accept"})
        except OSError as exc:
            outcome.append(type(exc).__name__)
        outcome.append((await receive())["type"])

    protocol, transport = open_protocol(protocol_class, app)
    await asyncio.sleep(0)  # the app task starts and waits
    protocol.shutdown()
    assert transport.buffer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert transport.closed
    decide.set()
    await eventually(lambda: len(outcome) == 2)
    assert outcome == ["ClientDisconnected", "websocket.disconnect"]


async def test_shutdown_drops_a_peer_that_never_answers_the_close(
    protocol_class: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "SHUTDOWN_CLOSE_TIMEOUT", 0.05)
    received: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        received.append(await receive())

    protocol, transport = open_protocol(protocol_class, app)
    await transport.wait_for(lambda: b" 101 " in transport.buffer)
    transport.take()
    protocol.shutdown()
    assert transport.buffer == b"\x88\x02\x03\xf4"  # close frame, code 1012
    await transport.wait_for(lambda: transport.aborted)
    await eventually(lambda: bool(received))
    assert received == [{"type": "websocket.disconnect", "code": 1012, "reason": ""}]


async def test_keepalive_waits_while_the_app_is_behind(protocol_class: Any) -> None:
    """The pong may be unread behind queued messages: a full queue postpones the ping timeout."""
    release = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await release.wait()
        while (await receive())["type"] != "websocket.disconnect":
            pass

    protocol, transport = open_protocol(
        protocol_class, app, ws_max_queue=2, ws_ping_interval=5, ws_ping_timeout=5
    )
    await transport.wait_for(lambda: b" 101 " in transport.buffer)
    transport.take()
    protocol.data_received(frame(0x1, b"a") + frame(0x1, b"b") + frame(0x1, b"c"))
    assert transport.read_paused
    now = time.monotonic()
    protocol._ping_at = now - 1  # the ping is due
    protocol.on_deadline()
    assert transport.take()[:2] == b"\x89\x04"  # a 4-byte ping
    protocol._pong_due = now - 1  # ... and its answer overdue
    protocol.on_deadline()
    assert not transport.closed
    assert protocol._pong_due > now
    assert protocol.deadline == protocol._pong_due
    release.set()
    await eventually(lambda: not transport.read_paused)
    protocol._pong_due = time.monotonic() - 1  # still no pong, and reading again: now it fails
    protocol.on_deadline()
    assert transport.closed
    assert transport.take() == close_frame_bytes(1011, "keepalive ping timeout")


def close_frame_bytes(code: int, reason: str) -> bytes:
    payload = code.to_bytes(2, "big") + reason.encode()
    return bytes([0x88, len(payload)]) + payload


async def test_a_ping_flood_without_reading_pauses_the_connection(protocol_class: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    protocol, transport = open_protocol(protocol_class, app)
    await transport.wait_for(lambda: b" 101 " in transport.buffer)
    protocol.pause_writing()  # the peer stopped reading
    ping = frame(0x9, b"p" * 125)
    for _ in range(10):
        protocol.data_received(ping * 1000)
        if transport.read_paused:
            break
    assert transport.read_paused
    assert base.WRITE_HARD_LIMIT < len(transport.buffer) <= base.WRITE_HARD_LIMIT + 1000 * 127
    transport.take()
    protocol.resume_writing()
    assert not transport.read_paused


async def test_close_frame_split_across_reads(protocol_class: Any) -> None:
    received: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            received.append(message)
            if message["type"] == "websocket.disconnect":
                return

    protocol, transport = open_protocol(protocol_class, app)
    await transport.wait_for(lambda: b" 101 " in transport.buffer)
    data = frame(0x1, "é".encode() * 70_000) + close_frame(4321, "split")
    for i in range(0, len(data), 997):  # odd-sized reads that cut headers, masks and characters
        protocol.data_received(data[i : i + 997])
    await eventually(lambda: len(received) == 2)
    assert received == [
        {"type": "websocket.receive", "text": "é" * 70_000},
        {"type": "websocket.disconnect", "code": 4321, "reason": "split"},
    ]
    assert transport.closed
    assert transport.buffer.endswith(close_frame_bytes(4321, "split"))  # the echo


@pytest.mark.parametrize("read_size", [1, 3, 7, 1000])
async def test_fragments_and_control_frames_in_any_reads(protocol_class: Any, read_size: int) -> None:
    """Fragments cut inside characters, a ping and a pong between them, then a second message and a
    close, fed in reads of any size: two whole messages, one pong, a clean close."""
    received: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            received.append(message)
            if message["type"] == "websocket.disconnect":
                return

    protocol, transport = open_protocol(protocol_class, app, ws_per_message_deflate=False)
    await transport.wait_for(lambda: b" 101 " in transport.buffer)
    text = "€uro ünïcödé".encode()
    data = (
        frame(0x1, text[:1], fin=False)
        + frame(0x9, b"between")
        + frame(0x0, text[1:6], fin=False)
        + frame(0xA, b"unsolicited")
        + frame(0x0, text[6:])
        + frame(0x2, b"a", fin=False)
        + frame(0x0, b"", fin=False)
        + frame(0x0, b"b" * 300)
        + close_frame(1000, "done")
    )
    for i in range(0, len(data), read_size):
        protocol.data_received(data[i : i + read_size])
    await eventually(lambda: len(received) == 3)
    assert received == [
        {"type": "websocket.receive", "text": text.decode()},
        {"type": "websocket.receive", "bytes": b"a" + b"b" * 300},
        {"type": "websocket.disconnect", "code": 1000, "reason": "done"},
    ]
    assert transport.buffer.count(b"\x8a\x07between") == 1  # the pong, once
    assert transport.closed


@pytest.mark.parametrize("status", [403, 204])
async def test_a_denial_sent_at_once_is_one_write(protocol_class: Any, status: int) -> None:
    """The head waits for the body that follows it at once: one write, a computed content-length
    (none for a status without a body), and the deferred flush of the head finds nothing to do."""
    done = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": status, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"no"})
        done.set()

    _protocol, transport = open_protocol(protocol_class, app)
    await done.wait()
    loop = asyncio.get_running_loop()
    later = loop.create_future()
    loop.call_soon(later.set_result, None)  # runs after every callback scheduled before it
    await later
    assert transport.calls == ["write"]
    head, _, body = bytes(transport.buffer).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status)
    if status == 204:
        assert b"content-length" not in head and b"transfer-encoding" not in head and body == b""
    else:
        assert b"content-length: 2\r\n" in head and body == b"no"
    assert transport.closed


async def test_a_full_queue_holds_the_rest_of_a_read_unparsed(protocol_class: Any) -> None:
    """1,000 tiny messages and a close in one read: the queue stops at --ws-max-queue, the rest
    waits as bytes, and everything arrives in order once the app reads."""
    release = asyncio.Event()
    received: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await release.wait()
        while True:
            message = await receive()
            received.append(message)
            if message["type"] == "websocket.disconnect":
                return

    protocol, transport = open_protocol(protocol_class, app, ws_max_queue=4)
    await transport.wait_for(lambda: b" 101 " in transport.buffer)
    data = b"".join(frame(0x1, str(i).encode()) for i in range(1000)) + close_frame(1001, "gone")
    protocol.data_received(data)
    assert len(protocol._queue) == 4
    assert transport.read_paused
    assert len(protocol._buffer) > len(data) // 2  # held as bytes, not as 996 message dicts
    release.set()
    await eventually(lambda: len(received) == 1001)
    assert [m.get("text") for m in received[:1000]] == [str(i) for i in range(1000)]
    assert received[1000] == {"type": "websocket.disconnect", "code": 1001, "reason": "gone"}


async def test_bytes_before_the_accept_are_bounded(protocol_class: Any) -> None:
    """While the app decides, early frames are held (reading pauses past 64 KiB), then delivered."""
    decide = asyncio.Event()
    received: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await decide.wait()
        await send({"type": "websocket.accept"})
        for _ in range(20):
            received.append(await receive())

    protocol, transport = open_protocol(protocol_class, app)
    chunk = frame(0x2, b"z" * 5000)
    for _ in range(20):
        protocol.data_received(chunk)
    assert transport.read_paused
    assert protocol._pending_size == 20 * len(chunk)
    decide.set()
    await eventually(lambda: len(received) == 20)
    assert received == [{"type": "websocket.receive", "bytes": b"z" * 5000}] * 20
    assert not transport.read_paused
