"""Parity of the two HTTP/2 builds on what they write: the same client frames and the same application
messages must give the same bytes on the wire from the compiled and the pure protocol (and the same
connection fate). The protocols run over a transport that records writes, in one event loop."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import hpack
import pytest

from cyasgi.config import Config
from cyasgi.protocols.http2.frames import SETTINGS_ACK_FRAME, data_frames, headers_frames, settings_frame
from cyasgi.server import ServerState
from tests.http2.h2util import WS_TEXT, ws_frame
from tests.http2.test_connection import EXPECT_COMPILED

TWINS = {"c": "cyasgi._speedups.h2protocol", "py": "cyasgi.protocols.http2.protocol"}
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: A bound on the event-loop turns the applications get (none of them waits on anything outside the loop).
LOOP_TURNS = 1000


class RecordingTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, key: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(key, default)

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def request(stream_id: int, method: str = "GET", path: str = "/", end_stream: bool = True, extra=()) -> bytes:
    fields = [(":method", method), *[f for f in extra if f[0] == ":protocol"], (":path", path), (":scheme", "http"),
              (":authority", "example.com"), *[f for f in extra if f[0] != ":protocol"]]
    return headers_frames(stream_id, hpack.Encoder().encode(fields), end_stream, 16384)


def messages_app(messages: list[dict]) -> Any:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["method"] == "POST":
            while (await receive()).get("more_body"):
                pass
        for message in messages:
            await send(message)

    return app


def failing_app(after: int) -> Any:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        if after:
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom")

    return app


def websocket_app(scope: dict, receive: Any, send: Any) -> Any:
    async def echo() -> None:
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "chat"})
        message = await receive()
        await send({"type": "websocket.send", "text": message["text"] + "!"})
        await send({"type": "websocket.send", "bytes": b"\x00" * 300})
        await send({"type": "websocket.close", "code": 4000, "reason": "done"})

    return echo()


def websocket_request(stream_id: int) -> bytes:
    """An extended CONNECT (RFC 8441) and a text message on ``stream_id``."""
    extra = [(":protocol", "websocket"), ("sec-websocket-version", "13"), ("sec-websocket-protocol", "chat")]
    head = request(stream_id, "CONNECT", "/ws", end_stream=False, extra=extra)
    return head + data_frames(stream_id, ws_frame(WS_TEXT, b"hi"), False, 16384)


START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
CASES = {
    "hello": (messages_app([START, {"type": "http.response.body", "body": b"Hello, world!"}]), request(1)),
    "streamed": (
        messages_app([START] + [{"type": "http.response.body", "body": b"x" * 100, "more_body": True}] * 3
                     + [{"type": "http.response.body", "body": b""}]),
        request(1),
    ),
    "head": (messages_app([START, {"type": "http.response.body", "body": b"Hello"}]), request(1, "HEAD")),
    "no content": (
        messages_app([{"type": "http.response.start", "status": 204, "headers": []},
                      {"type": "http.response.body", "body": b""}]),
        request(1),
    ),
    "trailers asked": (
        messages_app([dict(START, trailers=True), {"type": "http.response.body", "body": b"data"},
                      {"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]}]),
        request(1, extra=[("te", "trailers")]),
    ),
    "trailers not asked": (
        messages_app([dict(START, trailers=True), {"type": "http.response.body", "body": b"data"},
                      {"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]}]),
        request(1),
    ),
    "early hint": (
        messages_app([{"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload"]}, START,
                      {"type": "http.response.body", "body": b"ok"}]),
        request(1),
    ),
    "connection headers dropped": (
        messages_app([{"type": "http.response.start", "status": 200,
                       "headers": [(b"Connection", b"close"), (b"Transfer-Encoding", b"chunked"), (b"X-A", b"1")]},
                      {"type": "http.response.body", "body": b"ok"}]),
        request(1),
    ),
    "bad header": (
        messages_app([{"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1\r\nx-b: 2")]},
                      {"type": "http.response.body", "body": b"ok"}]),
        request(1),
    ),
    "error before the body": (failing_app(0), request(1)),
    "error in the body": (failing_app(1), request(1)),
    "upload": (
        messages_app([START, {"type": "http.response.body", "body": b"got it"}]),
        request(1, "POST", end_stream=False) + data_frames(1, b"y" * 3000, True, 16384),
    ),
    "websocket": (websocket_app, websocket_request(1)),
    "websocket beside a request": (
        lambda scope, receive, send: (
            websocket_app(scope, receive, send)
            if scope["type"] == "websocket"
            else messages_app([START, {"type": "http.response.body", "body": b"Hello"}])(scope, receive, send)
        ),
        websocket_request(1) + request(3),
    ),
    "three streams": (
        messages_app([START, {"type": "http.response.body", "body": b"Hello"}]),
        request(1) + request(3) + request(5),
    ),
}


async def serve(twin: str, app: Any, client: bytes) -> tuple[bytes, bool]:
    module = importlib.import_module(TWINS[twin])
    config = Config(app, log_config=None, access_log=False, lifespan="off", http2=True)
    config.load()
    state = ServerState()
    state.default_headers = [(b"date", b"Thu, 01 Jan 2026 00:00:00 GMT"), (b"server", b"cyasgi")]
    protocol = module.H2Protocol(config=config, server_state=state, app_state={}, _loop=asyncio.get_running_loop())
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(PREFACE + settings_frame([]) + SETTINGS_ACK_FRAME + client)
    for _ in range(LOOP_TURNS):  # until every application returned and its frames were written
        if not protocol.streams and not state.tasks and not protocol.flush_due:
            break
        await asyncio.sleep(0)
    assert not protocol.streams, f"applications still running after {LOOP_TURNS} loop turns"
    protocol.connection_lost(None)
    return bytes(transport.written), transport.closed


@pytest.mark.parametrize("case", list(CASES))
def test_both_builds_write_the_same_bytes(case):
    if not EXPECT_COMPILED:
        pytest.skip("the compiled build is disabled here (CYASGI_NO_EXTENSIONS=1 or not CPython)")
    app, client = CASES[case]
    written = {twin: asyncio.run(serve(twin, app, client)) for twin in TWINS}
    assert 0x1 in {kind for kind, stream_id in frames(written["c"][0]) if stream_id == 1}, "no response HEADERS"
    if case.startswith("websocket"):
        assert b"hi!" in written["c"][0], "the WebSocket's messages did not go out"
    assert written["c"] == written["py"]


def frames(data: bytes) -> list[tuple[int, int]]:
    """(type, stream id) of each frame the server wrote."""
    out = []
    pos = 0
    while pos + 9 <= len(data):
        length = int.from_bytes(data[pos : pos + 3], "big")
        out.append((data[pos + 3], int.from_bytes(data[pos + 5 : pos + 9], "big") & 0x7FFFFFFF))
        pos += 9 + length
    return out
