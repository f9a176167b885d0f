"""WebSocket test helpers: apps, a raw-socket client that speaks frames byte by byte, waiting helpers."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
import time
from typing import Any, Callable

from tests.utils import WAIT, ThreadedServer

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


# Apps ----------------------------------------------------------------------------------------------


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept, echo every message, return on disconnect."""
    assert scope["type"] == "websocket"
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


class Recorder:
    """Collects what an app running in the server thread saw, for the test thread to assert on."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.protocols: list[Any] = []
        self.done = threading.Event()
        self.errors: list[BaseException] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.release = threading.Event()

    def wait_done(self) -> None:
        assert self.done.wait(WAIT), "the app did not finish in time"

    async def wait_release(self) -> None:
        """Inside the app: wait (without blocking the server loop) until the test calls release.set()."""
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.run_in_executor(None, self.release.wait, WAIT), WAIT + 1)
        assert self.release.is_set(), "the test never released the app"


def disconnect_recorder_app(recorder: Recorder) -> Callable[..., Any]:
    """Accept, record every message until the disconnect (included), then finish."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        recorder.scopes.append(scope)
        try:
            await receive()
            await send({"type": "websocket.accept"})
            while True:
                message = await receive()
                recorder.messages.append(message)
                if message["type"] == "websocket.disconnect":
                    return
        finally:
            recorder.done.set()

    return app


# The raw client ------------------------------------------------------------------------------------


def frame(opcode: int, payload: bytes = b"", fin: bool = True, mask: bool = True, rsv: int = 0) -> bytes:
    """A client frame, masked unless told otherwise."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    size = len(payload)
    if size < 126:
        header = bytes([first, (0x80 if mask else 0) | size])
    elif size < 65536:
        header = struct.pack("!BBH", first, (0x80 if mask else 0) | 126, size)
    else:
        header = struct.pack("!BBQ", first, (0x80 if mask else 0) | 127, size)
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(0x8, struct.pack("!H", code) + reason.encode())


def handshake_request(path: str = "/", extra: bytes = b"") -> bytes:
    return (
        b"GET "
        + path.encode()
        + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n" + extra + b"\r\n"
    )


class RawClient:
    """A blocking WebSocket client on a plain socket: every byte is the test's to choose."""

    def __init__(self, server: ThreadedServer) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:  # the server closed with our bytes unread: the end, too
            return False
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def handshake(self, path: str = "/", extra: bytes = b"", then: bytes = b"") -> tuple[int, bytes]:
        """Send the upgrade request (and ``then`` in the same write); return (status, raw head)."""
        self.send(handshake_request(path, extra) + then)
        return self.read_head()

    def read_head(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise AssertionError(f"closed before a response head: {self.buffer!r}")
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        return int(head.split(b" ", 2)[1]), head

    def read_frame(self) -> tuple[bool, int, bytes]:
        """(fin, opcode, payload) of the next frame; AssertionError if the connection ends first."""
        while True:
            buf = self.buffer
            if len(buf) >= 2:
                assert not buf[1] & 0x80, "the server masked a frame"
                length = buf[1] & 0x7F
                start = 2
                if length == 126 and len(buf) >= 4:
                    length = struct.unpack("!H", buf[2:4])[0]
                    start = 4
                elif length == 127 and len(buf) >= 10:
                    length = struct.unpack("!Q", buf[2:10])[0]
                    start = 10
                header_complete = length < 126 or start > 2
                if header_complete and len(buf) >= start + length:
                    self.buffer = buf[start + length :]
                    return bool(buf[0] & 0x80), buf[0] & 0x0F, buf[start : start + length]
            if not self._fill():
                raise AssertionError(f"connection closed; unread: {self.buffer!r}")

    def read_close(self) -> tuple[int, str]:
        """Skip data and ping frames up to the close frame; return its (code, reason)."""
        while True:
            _, opcode, payload = self.read_frame()
            if opcode == 0x8:
                if not payload:
                    return 1005, ""
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    def read_until_eof(self) -> bytes:
        """Everything until the server closes the TCP connection."""
        while self._fill():
            pass
        data, self.buffer = self.buffer, b""
        return data


# Waiting -------------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT, message: str = "condition") -> None:
    """Poll a condition that has no event to wait on (state inside the server thread), bounded."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.01)


async def eventually(
    predicate: Callable[[], bool], timeout: float = WAIT, message: str = "condition"
) -> None:
    """The in-loop twin of ``wait_until``: yield to the loop until ``predicate()`` holds, bounded."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        await asyncio.sleep(0.001)


def only_connection(server: ThreadedServer) -> Any:
    """The one WebSocket protocol object the server holds (once the HTTP protocol handed over)."""
    from cyasgi.protocols.websockets.base import WebSocketProtocolBase

    def handed_over() -> bool:
        connections = list(server.server_state.connections)
        return len(connections) == 1 and isinstance(connections[0], WebSocketProtocolBase)

    wait_until(handed_over, message="one WebSocket connection")
    return next(iter(server.server_state.connections))
