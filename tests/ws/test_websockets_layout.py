"""The WebSocket package's layout: uvicorn's module paths, the pieces base.py is made of, and the
HTTP/1.1 wire helpers the denial response shares with the HTTP protocol."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import pytest

from cyasgi.protocols.http.wire import LAST_CHUNK, frame_body, framing_field
from cyasgi.protocols.websockets import frames
from cyasgi.protocols.websockets.base import WebSocketProtocolBase
from cyasgi.protocols.websockets.twin import FrameReader
from tests.utils import MockTransport, make_config, make_state
from tests.ws_utils import echo_app, frame, handshake_request

#: The class paths uvicorn users write (``--ws`` values and imports), under ``cyasgi.``.
UVICORN_PATHS = [
    "cyasgi.protocols.websockets.websockets_impl:WebSocketProtocol",
    "cyasgi.protocols.websockets.wsproto_impl:WSProtocol",
    "cyasgi.protocols.websockets.websockets_sansio_impl:WebSocketsSansIOProtocol",
    "cyasgi.protocols.websockets.auto:AutoWebSocketsProtocol",
]


def import_path(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("path", UVICORN_PATHS)
@pytest.mark.parametrize("given_as", ["class", "string"])
@pytest.mark.anyio
async def test_uvicorn_module_paths_serve_a_websocket(path: str, given_as: str) -> None:
    """Each path imports to a protocol class that Config(ws=...) takes, as the class or as its
    "module:attr" string, and that answers a handshake and echoes a frame."""
    cls = import_path(path)
    assert isinstance(cls, type)
    assert issubclass(cls, asyncio.Protocol)
    assert issubclass(cls, WebSocketProtocolBase)
    config = make_config(echo_app, ws=cls if given_as == "class" else path)
    config.load()
    assert config.ws_protocol_class is cls
    protocol = config.ws_protocol_class(
        config=config, server_state=make_state(), app_state={}, _loop=asyncio.get_running_loop()
    )
    transport = MockTransport()
    protocol.connection_made(transport)
    transport.set_protocol(protocol)
    protocol.data_received(handshake_request())
    for _ in range(100):
        if transport.buffer:
            break
        await asyncio.sleep(0)
    assert transport.buffer.startswith(b"HTTP/1.1 101 ")
    transport.buffer.clear()
    protocol.data_received(frame(frames.OP_TEXT, b"hello"))
    for _ in range(100):
        if transport.buffer:
            break
        await asyncio.sleep(0)
    assert bytes(transport.buffer) == bytes((frames.FIN_TEXT, 5)) + b"hello"
    protocol.connection_lost(None)
    for _ in range(10):
        await asyncio.sleep(0)


def test_the_frame_reader_is_part_of_every_protocol() -> None:
    for path in UVICORN_PATHS:
        assert issubclass(import_path(path), FrameReader), path


def test_frame_constants_describe_rfc6455() -> None:
    assert frames.FIN | frames.RSV_BITS | frames.OPCODE_BITS == 0xFF
    assert frames.MASK_BIT | frames.LENGTH_BITS == 0xFF
    assert frames.LENGTH_16 == frames.LENGTH_BITS - 1 and frames.LENGTH_64 == frames.LENGTH_BITS
    assert frames.data_frame_header(frames.FIN_BINARY, 125) == bytes((0x82, 125))
    assert frames.data_frame_header(frames.FIN_BINARY, 126) == bytes((0x82, 126, 0, 126))
    size = 1 << 16
    assert frames.data_frame_header(frames.FIN_TEXT, size) == bytes((0x81, 127)) + size.to_bytes(8, "big")
    assert 1000 in frames.SENDABLE_CLOSE_CODES and 1015 not in frames.SENDABLE_CLOSE_CODES
    assert 4999 in frames.PRIVATE_CLOSE_CODES and 5000 not in frames.PRIVATE_CLOSE_CODES


def test_body_framing_helpers() -> None:
    assert framing_field(True, 0) == b"transfer-encoding: chunked\r\n"
    assert framing_field(False, 12) == b"content-length: 12\r\n"
    assert frame_body(b"abc", False, False) == b"abc"
    assert frame_body(b"abc", False, True) == b"abc"
    assert frame_body(b"0123456789abcdef!", True, False) == b"11\r\n0123456789abcdef!\r\n"
    assert frame_body(b"abc", True, True) == b"3\r\nabc\r\n" + LAST_CHUNK
    assert frame_body(b"", True, False) == b""  # an empty chunk would end the body
    assert frame_body(b"", True, True) == LAST_CHUNK == b"0\r\n\r\n"
