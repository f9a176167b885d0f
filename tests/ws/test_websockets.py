"""WebSocket behaviour on a real server, for every ``--ws`` implementation.

The upgrade hand-off runs under both HTTP twins (``twin``); the rest of the behaviour lives in the
WebSocket protocols, so those tests run under the selected twin only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import struct
import sys
import threading
import time
import zlib
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from cyasgi.config import Config
from cyasgi.logging import TRACE_LOG_LEVEL
from cyasgi.protocols.http.wire import ASGI_SPEC_VERSION
from tests.conftest import load_twin
from tests.utils import WAIT, make_config, run_server
from tests.ws_utils import (
    RawClient,
    Recorder,
    close_frame,
    disconnect_recorder_app,
    echo_app,
    frame,
    handshake_request,
    only_connection,
    wait_until,
)

pytestmark = pytest.mark.anyio


def ws_url(server: Any, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR]


# The upgrade hand-off (both HTTP twins) -----------------------------------------------------------------


async def test_echo_text_and_bytes(twin: Any, ws: str) -> None:
    with run_server(make_config(echo_app, twin, ws=ws)) as server:
        async with connect(ws_url(server), open_timeout=WAIT) as client:
            await client.send("héllo")
            assert await asyncio.wait_for(client.recv(), WAIT) == "héllo"
            await client.send(b"\x00\x01binary")
            assert await asyncio.wait_for(client.recv(), WAIT) == b"\x00\x01binary"
            big = "x" * 200_000
            await client.send(big)
            assert await asyncio.wait_for(client.recv(), WAIT) == big


def test_bytes_sent_right_after_the_handshake_are_kept(twin: Any, ws: str) -> None:
    """A client that sends frames in the same packet as its request (before the 101) loses none."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await asyncio.sleep(0)  # the frames are already buffered by now
        await send({"type": "websocket.accept"})
        for _ in range(2):
            message = await receive()
            await send({"type": "websocket.send", "text": message.get("text") or message["bytes"].decode()})
        await receive()

    with run_server(make_config(app, twin, ws=ws)) as server, RawClient(server) as client:
        status, _ = client.handshake("/early", then=frame(0x1, b"first") + frame(0x2, b"second"))
        assert status == 101
        assert client.read_frame() == (True, 0x1, b"first")
        assert client.read_frame() == (True, 0x1, b"second")
        client.send(close_frame(1000))
        assert client.read_close() == (1000, "")


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_hand_off_from_each_parser(http: str) -> None:
    """Both request parsers (``--http httptools|h11``) hand the upgrade over, with the bytes that
    followed the request."""
    if http == "httptools":
        pytest.importorskip("httptools", reason="httptools is not installed (optional on PyPy)")
    with run_server(make_config(echo_app, http=http)) as server, RawClient(server) as client:
        status, _ = client.handshake("/ws", then=frame(0x1, b"early"))
        assert status == 101
        assert client.read_frame() == (True, 0x1, b"early")


def test_upgrade_after_a_keep_alive_request(twin: Any, ws: str) -> None:
    """An HTTP request and then an upgrade on the same connection, sent in one write."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
            await send({"type": "http.response.body", "body": b"plain"})
            return
        await echo_app(scope, receive, send)

    request = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
    with run_server(make_config(app, twin, ws=ws)) as server, RawClient(server) as client:
        client.send(request + handshake_request("/ws") + frame(0x1, b"after both"))
        status, _ = client.read_head()
        assert status == 200
        assert client.buffer.startswith(b"plain")
        client.buffer = client.buffer[5:]
        status, head = client.read_head()
        assert status == 101
        assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head  # RFC 6455 sample key, its accept value
        assert client.read_frame() == (True, 0x1, b"after both")


def test_scope(twin: Any, ws: str) -> None:
    recorder = Recorder()
    app_state = {"lifespan": "value"}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            scope["state"].update(app_state)
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        await disconnect_recorder_app(recorder)(scope, receive, send)

    config = make_config(app, twin, ws=ws, lifespan="on", root_path="/root")
    with run_server(config) as server, RawClient(server) as client:
        port = server.port
        status, _ = client.handshake(
            "/p%C3%A5th/x?q=1&r=%20", extra=b"Sec-WebSocket-Protocol: chat, superchat\r\nX-Custom: yes\r\n"
        )
        assert status == 101
        client.send(close_frame(1000))
        client.read_close()
        recorder.wait_done()
    [scope] = recorder.scopes
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": ASGI_SPEC_VERSION}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["server"] == ("127.0.0.1", port)
    assert scope["client"][0] == "127.0.0.1" and isinstance(scope["client"][1], int)
    assert scope["root_path"] == "/root"
    assert scope["path"] == "/root/påth/x"
    assert scope["raw_path"] == b"/root/p%C3%A5th/x"
    assert scope["query_string"] == b"q=1&r=%20"
    assert (b"x-custom", b"yes") in scope["headers"]
    assert (b"host", b"127.0.0.1") in scope["headers"]
    assert scope["subprotocols"] == ["chat", "superchat"]
    assert scope["state"] == app_state
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert set(scope) == {
        "type", "asgi", "http_version", "scheme", "server", "client", "root_path", "path", "raw_path",
        "query_string", "headers", "subprotocols", "state", "extensions",
    }  # fmt: skip


def test_state_is_a_copy_per_connection(ws: str) -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            scope["state"]["shared"] = 1
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        scope["state"]["shared"] += 1  # must not leak into the next connection's state
        await disconnect_recorder_app(recorder)(scope, receive, send)

    with run_server(make_config(app, ws=ws, lifespan="on")) as server:
        for _ in range(2):
            recorder.done.clear()
            with RawClient(server) as client:
                assert client.handshake()[0] == 101
                client.send(close_frame(1000))
                client.read_close()
            recorder.wait_done()
    assert [scope["state"]["shared"] for scope in recorder.scopes] == [2, 2]


# Accepting, closing, refusing ---------------------------------------------------------------------------


async def test_accept_with_subprotocol_and_headers(ws: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "superchat", "headers": [(b"x-extra", b"1")]})
        await receive()

    with run_server(make_config(app, ws=ws)) as server:
        async with connect(ws_url(server), subprotocols=["chat", "superchat"], open_timeout=WAIT) as client:
            assert client.subprotocol == "superchat"
            assert client.response.headers["x-extra"] == "1"
            assert client.response.headers["server"] == "cyasgi"


async def test_app_close_with_code_and_reason(ws: str) -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000, "reason": "done here"})
        recorder.messages.append(await receive())
        with pytest.raises(RuntimeError):
            await send({"type": "websocket.send", "text": "too late"})
        recorder.done.set()

    with run_server(make_config(app, ws=ws)) as server:
        async with connect(ws_url(server), open_timeout=WAIT) as client:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(client.recv(), WAIT)
            assert client.close_code == 4000
            assert client.close_reason == "done here"
        recorder.wait_done()
    assert recorder.messages == [{"type": "websocket.disconnect", "code": 4000, "reason": "done here"}]


async def test_client_close_with_code_and_reason(ws: str) -> None:
    recorder = Recorder()
    with run_server(make_config(disconnect_recorder_app(recorder), ws=ws)) as server:
        async with connect(ws_url(server), open_timeout=WAIT) as client:
            await client.send("one")
            await client.close(4001, "bye now")
        recorder.wait_done()
    assert recorder.messages == [
        {"type": "websocket.receive", "text": "one"},
        {"type": "websocket.disconnect", "code": 4001, "reason": "bye now"},
    ]


def test_abrupt_disconnect_gives_1006_and_receive_keeps_answering(ws: str) -> None:
    results: list[Any] = []
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        results.append(await receive())
        results.append(await receive())  # a second receive() after the disconnect must not hang
        try:
            await send({"type": "websocket.send", "text": "anyone?"})
        except OSError as exc:  # ClientDisconnected, as ASGI 2.4 asks
            results.append(type(exc).__name__)
        done.set()

    with run_server(make_config(app, ws=ws)) as server:
        with RawClient(server) as client:
            assert client.handshake()[0] == 101
        assert done.wait(WAIT)
    assert results[0]["type"] == "websocket.disconnect" and results[0]["code"] == 1006
    assert results[1] == results[0]
    assert results[2] == "ClientDisconnected"


async def test_close_before_accept_is_403(ws: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close"})

    with run_server(make_config(app, ws=ws)) as server, pytest.raises(InvalidStatus) as info:
        await connect(ws_url(server, "/nope?a=1"), open_timeout=WAIT)
    assert info.value.response.status_code == 403
    assert any(r.getMessage().endswith('- "WebSocket /nope?a=1" 403') for r in caplog.records)
    assert not errors(caplog)


async def test_denial_response(ws: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert "websocket.http.response" in scope["extensions"]
        await receive()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b'{"error":', "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b'"who are you"}'})

    with run_server(make_config(app, ws=ws)) as server, pytest.raises(InvalidStatus) as info:
        await connect(ws_url(server, "/private"), open_timeout=WAIT)
    response = info.value.response
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert bytes(response.body) == b'{"error":"who are you"}'
    assert any(r.getMessage().endswith('- "WebSocket /private" 401') for r in caplog.records)
    assert not errors(caplog)  # uvicorn logs a spurious "returned without completing handshake" here


def test_denial_response_with_content_length(ws: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send(
            {"type": "websocket.http.response.start", "status": 404, "headers": [(b"content-length", b"9")]}
        )
        await send({"type": "websocket.http.response.body", "body": b"not ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"here!"})

    with run_server(make_config(app, ws=ws)) as server, RawClient(server) as client:
        status, head = client.handshake()
        assert status == 404
        assert b"content-length: 9" in head.lower()
        assert b"connection: close" in head.lower()
        assert client.read_until_eof() == b"not here!"


#: How long the app below waits for the test before it sends its body anyway.
APP_WAIT = 1.0


@pytest.mark.parametrize("length", [None, 11], ids=["chunked", "content-length"])
def test_denial_head_is_not_held_while_the_app_waits(ws: str, length: int | None) -> None:
    """An app that sends the response head and then waits before the body: the client gets the
    head at once (it used to get nothing until the body), and the body follows as the head framed it
    (chunked when the app gave no length, since the head went out before the length was known)."""
    head_seen = threading.Event()
    waited: list[bool] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        headers = [] if length is None else [(b"content-length", str(length).encode())]
        await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
        loop = asyncio.get_running_loop()
        waited.append(await loop.run_in_executor(None, head_seen.wait, APP_WAIT))
        await send({"type": "websocket.http.response.body", "body": b"not ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"allowed"})

    with run_server(make_config(app, ws=ws)) as server, RawClient(server) as client:
        started = time.monotonic()
        status, head = client.handshake()
        elapsed = time.monotonic() - started
        head_seen.set()
        body = client.read_until_eof()
    assert status == 401
    assert waited == [True], "the head came only once the app stopped waiting"
    assert elapsed < APP_WAIT
    lower = head.lower()
    assert b"connection: close" in lower
    if length is None:
        assert b"transfer-encoding: chunked" in lower and b"content-length" not in lower
        assert body == b"4\r\nnot \r\n7\r\nallowed\r\n0\r\n\r\n"
    else:
        assert b"content-length: 11" in lower and b"transfer-encoding" not in lower
        assert body == b"not allowed"


def test_returning_without_accepting_is_500(ws: str, caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()

    with run_server(make_config(app, ws=ws)) as server, RawClient(server) as client:
        assert client.handshake()[0] == 500
    assert [r.getMessage() for r in errors(caplog)] == [
        "ASGI callable returned without completing handshake."
    ]


def test_exception_before_accept_is_500_after_accept_is_1011(
    ws: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        if scope["path"] == "/after":
            await send({"type": "websocket.accept"})
        raise ValueError("boom")

    with run_server(make_config(app, ws=ws)) as server:
        with RawClient(server) as client:
            assert client.handshake("/before")[0] == 500
        with RawClient(server) as client:
            assert client.handshake("/after")[0] == 101
            assert client.read_close()[0] == 1011
    assert [r.getMessage() for r in errors(caplog)] == ["Exception in ASGI application\n"] * 2


def test_app_returning_after_accept_closes_1000(ws: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "bye"})

    with run_server(make_config(app, ws=ws)) as server, RawClient(server) as client:
        assert client.handshake()[0] == 101
        assert client.read_frame() == (True, 0x1, b"bye")
        assert client.read_close() == (1000, "")
        client.send(close_frame(1000))
        assert client.read_until_eof() == b""


@pytest.mark.parametrize("message_type", ["websocket.accept", "websocket.http.response.start"])
def test_invalid_headers_are_refused(ws: str, message_type: str, caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        headers = [(b"x-injected", b"a\r\nset-cookie: evil")]
        await send({"type": message_type, "status": 200, "headers": headers})

    with run_server(make_config(app, ws=ws)) as server, RawClient(server) as client:
        status, head = client.handshake()
        assert status == 500
        assert b"evil" not in head
    assert "Exception in ASGI application" in errors(caplog)[0].getMessage()


def test_invalid_handshake_never_reaches_the_app(ws: str) -> None:
    called: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        called.append(scope)

    request = (
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"  # no Sec-WebSocket-Key
    )
    with run_server(make_config(app, ws=ws)) as server, RawClient(server) as client:
        client.send(request)
        status, _ = client.read_head()
        assert status == 400
        client.read_until_eof()
    assert called == []


# Limits, keepalive, closing handshake --------------------------------------------------------------------


def test_max_size_closes_1009(ws: str) -> None:
    recorder = Recorder()
    config = make_config(disconnect_recorder_app(recorder), ws=ws, ws_max_size=1024)
    with run_server(config) as server:
        with RawClient(server) as client:
            assert client.handshake()[0] == 101
            client.send(frame(0x2, b"a" * 1024))  # exactly the limit: fine
            client.send(frame(0x2, b"b" * 1025))
            assert client.read_close()[0] == 1009
        recorder.wait_done()
    assert recorder.messages[0] == {"type": "websocket.receive", "bytes": b"a" * 1024}
    assert recorder.messages[-1]["code"] == 1009


def test_max_size_counts_fragments(ws: str) -> None:
    with run_server(make_config(echo_app, ws=ws, ws_max_size=1000)) as server, RawClient(server) as client:
        assert client.handshake()[0] == 101
        client.send(frame(0x2, b"a" * 600, fin=False) + frame(0x0, b"b" * 600))
        assert client.read_close()[0] == 1009


def test_max_size_applies_after_decompression(ws: str) -> None:
    """A small compressed frame that inflates past --ws-max-size closes with 1009."""
    compressor = zlib.compressobj(wbits=-15)
    bomb = compressor.compress(b"\x00" * 4_000_000) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert bomb.endswith(b"\x00\x00\xff\xff") and len(bomb) < 10_000
    config = make_config(echo_app, ws=ws, ws_max_size=1_000_000)
    with run_server(config) as server, RawClient(server) as client:
        status, head = client.handshake(extra=b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
        assert status == 101
        assert b"permessage-deflate" in head
        client.send(frame(0x2, bomb[:-4], rsv=4))
        assert client.read_close()[0] == 1009


# Fragmented messages --------------------------------------------------------------------------------------


def deflate_stream(payload: bytes) -> bytes:
    """``payload`` as one permessage-deflate message (the final empty block's marker stripped)."""
    compressor = zlib.compressobj(wbits=-15)
    stream = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert stream.endswith(b"\x00\x00\xff\xff")
    return stream[:-4]


DEFLATE_OFFER = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
def test_a_close_inside_a_fragmented_message_is_clean(ws: str, deflate: bool) -> None:
    """Autobahn 7.1.5: the first fragment, a close (1000), then the rest. The close is answered with
    1000 (not 1002 "incomplete fragmented message") and nothing after it is processed."""
    recorder = Recorder()
    config = make_config(disconnect_recorder_app(recorder), ws=ws, ws_per_message_deflate=deflate)
    text = "fragmented " * 10
    stream = deflate_stream(text.encode()) if deflate else text.encode()
    with run_server(config) as server:
        with RawClient(server) as client:
            status, head = client.handshake(extra=DEFLATE_OFFER if deflate else b"")
            assert status == 101
            assert (b"permessage-deflate" in head) is deflate
            client.send(frame(0x1, stream[:20], fin=False, rsv=4 if deflate else 0))
            client.send(close_frame(1000) + frame(0x0, stream[20:]))
            assert client.read_close() == (1000, "")
            assert client.read_until_eof() == b""
        recorder.wait_done()
    assert recorder.messages == [{"type": "websocket.disconnect", "code": 1000, "reason": ""}]


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
def test_control_frames_between_fragments(ws: str, deflate: bool) -> None:
    """A ping and a pong between the fragments of a message: the ping is answered at once, the
    message arrives whole (text split inside a character, too)."""
    recorder = Recorder()
    config = make_config(disconnect_recorder_app(recorder), ws=ws, ws_per_message_deflate=deflate)
    text = "ünïcödé " * 50
    stream = deflate_stream(text.encode()) if deflate else text.encode()
    cut = 1  # plain: inside the two bytes of "ü"
    with run_server(config) as server:
        with RawClient(server) as client:
            assert client.handshake(extra=DEFLATE_OFFER if deflate else b"")[0] == 101
            client.send(frame(0x1, stream[:cut], fin=False, rsv=4 if deflate else 0) + frame(0x9, b"mid"))
            assert client.read_frame() == (True, 0xA, b"mid")
            client.send(frame(0xA, b"unsolicited") + frame(0x0, stream[cut:-7], fin=False))
            client.send(frame(0x0, stream[-7:]) + close_frame(1000))
            assert client.read_close() == (1000, "")
        recorder.wait_done()
    assert recorder.messages == [
        {"type": "websocket.receive", "text": text},
        {"type": "websocket.disconnect", "code": 1000, "reason": ""},
    ]


def test_invalid_utf8_fails_at_the_fragment_that_has_it(ws: str) -> None:
    """Autobahn 6.4.1: the fragment with the invalid sequence closes 1007 before the message ends."""
    recorder = Recorder()
    config = make_config(disconnect_recorder_app(recorder), ws=ws)
    with run_server(config) as server:
        with RawClient(server) as client:
            assert client.handshake()[0] == 101
            client.send(frame(0x1, "κόσμε".encode(), fin=False))
            client.send(frame(0x0, b"\xf4\x90\x80\x80", fin=False))  # above U+10FFFF; the end never comes
            assert client.read_close()[0] == 1007
        recorder.wait_done()
    assert [m["type"] for m in recorder.messages] == ["websocket.disconnect"]
    assert recorder.messages[0]["code"] == 1007


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
def test_a_ping_inside_a_message_of_the_largest_size(ws: str, deflate: bool) -> None:
    """A message of exactly --ws-max-size with a ping before its last fragment: the ping does not
    count against the message (the websockets library counted it: 1009)."""
    recorder = Recorder()
    limit = 4096
    config = make_config(
        disconnect_recorder_app(recorder), ws=ws, ws_max_size=limit, ws_per_message_deflate=deflate
    )
    payload = os.urandom(limit)
    stream = deflate_stream(payload) if deflate else payload
    with run_server(config) as server:
        with RawClient(server) as client:
            assert client.handshake(extra=DEFLATE_OFFER if deflate else b"")[0] == 101
            client.send(frame(0x2, stream[:-1], fin=False, rsv=4 if deflate else 0) + frame(0x9, b"ping"))
            assert client.read_frame() == (True, 0xA, b"ping")
            client.send(frame(0x0, stream[-1:]) + close_frame(1000))
            assert client.read_close() == (1000, "")
        recorder.wait_done()
    assert recorder.messages[0] == {"type": "websocket.receive", "bytes": payload}


#: A message in many tiny fragments: the server must not pay per fragment while it assembles it.
FRAGMENTS = 30_000
FRAGMENT_SIZE = 16
#: What assembling may cost beyond the payload: a bytearray's growth margin (1/8) and a constant.
ASSEMBLY_MARGIN = 0.25
ASSEMBLY_CONSTANT = 256 * 1024


# Plain under both HTTP twins (the pure one is what PyPy runs); compressed once: only the hand-over
# depends on the twin.
@pytest.mark.parametrize(
    ("twin_name", "deflate"), [("c", False), ("py", False), ("py", True)], ids=["c", "py", "py-deflate"]
)
def test_fragment_assembly_memory_is_bounded(twin_name: str, ws: str, deflate: bool) -> None:
    """30,000 fragments of 16 bytes: the server's memory grows by about the payload while it holds
    the unfinished message (it used to keep one bytes object per fragment: ~3.5x the payload)."""
    tracemalloc = pytest.importorskip("tracemalloc")
    if sys.implementation.name != "cpython":
        pytest.skip("tracemalloc traces allocations on CPython only")
    twin = load_twin(twin_name)
    payload = os.urandom(FRAGMENTS * FRAGMENT_SIZE)  # incompressible: compressed, it is as large
    stream = deflate_stream(payload) if deflate else payload
    pieces = [stream[i : i + FRAGMENT_SIZE] for i in range(0, len(stream), FRAGMENT_SIZE)]
    body = frame(0x2, pieces[0], fin=False, rsv=4 if deflate else 0)
    body += b"".join([frame(0x0, piece, fin=False) for piece in pieces[1:-1]])
    recorder = Recorder()
    config = make_config(
        disconnect_recorder_app(recorder), twin, ws=ws, ws_per_message_deflate=deflate, ws_ping_interval=0
    )
    with run_server(config) as server:
        with RawClient(server) as client:
            assert client.handshake(extra=DEFLATE_OFFER if deflate else b"")[0] == 101
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                client.send(body + frame(0x9, b"read"))
                assert client.read_frame() == (True, 0xA, b"read")  # every fragment was read...
                # ...but the engine may write that pong before it has gone through the frames of the
                # same read: a ping in a later read is parsed only once that one is done.
                client.send(frame(0x9, b"parsed"))
                assert client.read_frame() == (True, 0xA, b"parsed")
                grown = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
            client.send(frame(0x0, pieces[-1]) + close_frame(1000))
            assert client.read_close() == (1000, "")
        recorder.wait_done()
    assert recorder.messages[0] == {"type": "websocket.receive", "bytes": payload}
    assert grown < len(payload) * (1 + ASSEMBLY_MARGIN) + ASSEMBLY_CONSTANT, (grown, len(payload))


#: A large message, whole or in two fragments; what receiving it may cost at its peak, counting the
#: message itself: the message, the last frame as read and its unmasked payload, the fragments
#: before it (and a bytearray's margin).
LARGE_MESSAGE = 4 * 1024 * 1024
LARGE_PEAK_FACTOR = 3.0


@pytest.mark.parametrize("fragments", [1, 2])
def test_large_message_peak_memory(ws: str, fragments: int) -> None:
    """A 4 MiB message in one frame or two: the server's peak stays under 3x the message (it copied
    the frame twice before unmasking it, and grew the assembly before joining it: 4x and 3.5x)."""
    tracemalloc = pytest.importorskip("tracemalloc")
    if sys.implementation.name != "cpython":
        pytest.skip("tracemalloc traces allocations on CPython only")
    payload = os.urandom(LARGE_MESSAGE)
    half = LARGE_MESSAGE // fragments
    body = b"".join(
        frame(0x2 if i == 0 else 0x0, payload[i * half : (i + 1) * half], fin=i == fragments - 1)
        for i in range(fragments)
    )
    wire = body + close_frame(1000)  # made before tracing: only the server's allocations count
    recorder = Recorder()
    config = make_config(disconnect_recorder_app(recorder), ws=ws, ws_per_message_deflate=False)
    with run_server(config) as server, RawClient(server) as client:
        assert client.handshake()[0] == 101
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            client.send(wire)
            assert client.read_close() == (1000, "")
            recorder.wait_done()
            peak = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
    assert recorder.messages[0] == {"type": "websocket.receive", "bytes": payload}
    assert peak < LARGE_MESSAGE * LARGE_PEAK_FACTOR, (peak, LARGE_MESSAGE)


def test_max_queue_pauses_reading_and_loses_nothing(ws: str) -> None:
    """The app does not read: the server stops reading once --ws-max-queue messages wait."""
    recorder = Recorder()
    count, size, max_queue = 150, 20_000, 4

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await recorder.wait_release()
        for _ in range(count):
            recorder.messages.append(await receive())
        await send({"type": "websocket.send", "text": "all read"})
        await receive()
        recorder.done.set()

    config = make_config(app, ws=ws, ws_max_queue=max_queue, ws_per_message_deflate=False)
    with run_server(config) as server, RawClient(server) as client:
        assert client.handshake()[0] == 101
        sender = threading.Thread(
            target=lambda: [client.send(frame(0x2, bytes([i]) * size)) for i in range(count)]
        )
        sender.start()
        protocol = only_connection(server)
        wait_until(lambda: protocol._reading_paused, message="reading paused")
        # The queue stops at the limit: the rest of the last read waits unparsed.
        assert len(protocol._queue) == max_queue
        assert len(protocol._buffer) < 262144
        recorder.release.set()
        sender.join(WAIT)
        assert client.read_frame() == (True, 0x1, b"all read")
        client.send(close_frame(1000))
        recorder.wait_done()
    assert [message["bytes"] for message in recorder.messages] == [bytes([i]) * size for i in range(count)]


def test_slow_reader_pauses_the_app(ws: str) -> None:
    """A client that does not read: the app's send() waits, the server buffers a bounded amount."""
    chunk, count = 256 * 1024, 64
    peaks: list[int] = []
    finished = threading.Event()
    connections: list[Any] = []  # the server's connection set, handed to the app below

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        transport = next(iter(connections[0])).transport
        for i in range(count):
            await send({"type": "websocket.send", "bytes": bytes([i % 256]) * chunk})
            peaks.append(transport.get_write_buffer_size())
        finished.set()
        await receive()

    config = make_config(app, ws=ws, ws_per_message_deflate=False)
    with run_server(config) as server, RawClient(server) as client:
        connections.append(server.server_state.connections)
        assert client.handshake()[0] == 101
        protocol = only_connection(server)
        wait_until(lambda: protocol._write_paused, message="writes paused")
        assert not finished.is_set()
        for i in range(count):
            fin, opcode, payload = client.read_frame()
            assert (fin, opcode, len(payload), payload[:1]) == (True, 0x2, chunk, bytes([i % 256]))
        assert finished.wait(WAIT)
        client.send(close_frame(1000))
    assert len(peaks) == count
    # Never more than the high-water mark plus the one message being written.
    assert max(peaks) <= 64 * 1024 + chunk + 64


def test_ping_timeout_closes_1011(ws: str) -> None:
    recorder = Recorder()
    config = make_config(disconnect_recorder_app(recorder), ws=ws, ws_ping_interval=0.2, ws_ping_timeout=0.3)
    with run_server(config) as server:
        with RawClient(server) as client:
            assert client.handshake()[0] == 101
            fin, opcode, payload = client.read_frame()
            assert (fin, opcode, len(payload)) == (True, 0x9, 4)  # the keepalive ping, never answered
            assert client.read_close() == (1011, "keepalive ping timeout")
            assert client.read_until_eof() == b""
        recorder.wait_done()
    assert recorder.messages[-1]["code"] == 1011


def test_answered_pings_keep_the_connection(ws: str) -> None:
    # A generous timeout: answering late on a loaded machine must not fail the test.
    config = make_config(echo_app, ws=ws, ws_ping_interval=0.2, ws_ping_timeout=WAIT)
    with run_server(config) as server, RawClient(server) as client:
        assert client.handshake()[0] == 101
        for _ in range(3):  # the next ping comes only once the previous one was answered
            _, opcode, payload = client.read_frame()
            assert opcode == 0x9
            client.send(frame(0xA, payload))
        client.send(frame(0x1, b"still here"))
        while True:
            _, opcode, payload = client.read_frame()
            if opcode == 0x1:
                break
        assert payload == b"still here"


def test_client_ping_gets_pong(ws: str) -> None:
    with run_server(make_config(echo_app, ws=ws)) as server, RawClient(server) as client:
        assert client.handshake()[0] == 101
        client.send(frame(0x9, b"are you there"))
        assert client.read_frame() == (True, 0xA, b"are you there")


def test_close_handshake_timeout(ws: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from cyasgi.protocols.websockets import base

    monkeypatch.setattr(base, "CLOSE_TIMEOUT", 0.3)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})

    with run_server(make_config(app, ws=ws)) as server, RawClient(server) as client:
        assert client.handshake()[0] == 101
        assert client.read_close() == (1000, "")
        # We never answer: the server drops the connection after its close timeout.
        assert client.read_until_eof() == b""
        wait_until(lambda: not server.server_state.connections, message="the connection to be released")


async def test_shutdown_sends_1012_and_waits_for_the_app(ws: str) -> None:
    received: list[Any] = []
    finished = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "ready"})
        received.append(await receive())
        await asyncio.sleep(0.2)  # cleanup work the server must wait for
        finished.set()

    with run_server(make_config(app, ws=ws)) as server:
        async with connect(ws_url(server), open_timeout=WAIT) as client:
            assert await asyncio.wait_for(client.recv(), WAIT) == "ready"
            server.should_exit = True
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(client.recv(), WAIT)
            assert client.close_code == 1012
    # run_server has joined the server thread: the app finished before the server stopped.
    assert finished.is_set()
    assert received == [{"type": "websocket.disconnect", "code": 1012, "reason": ""}]


# Malformed input: the right close code, never a traceback -----------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(frame(0x3, b"x"), 1002, id="reserved-opcode"),
        pytest.param(frame(0xB), 1002, id="reserved-control-opcode"),
        pytest.param(frame(0x1, b"hi", mask=False), 1002, id="unmasked"),
        pytest.param(frame(0x1, b"\xff\xfe"), 1007, id="bad-utf8"),
        pytest.param(
            frame(0x1, b"ok \xe2\x82", fin=False) + frame(0x0, b"\xff"), 1007, id="bad-utf8-fragmented"
        ),
        pytest.param(frame(0x2, b"x" * 70_000), 1009, id="oversize"),
        pytest.param(frame(0x9, b"p", fin=False), 1002, id="fragmented-ping"),
        pytest.param(frame(0x9, b"p" * 126), 1002, id="long-ping"),
        pytest.param(frame(0x1, b"x", rsv=4), 1002, id="rsv1-without-extension"),
        pytest.param(frame(0x0, b"x"), 1002, id="orphan-continuation"),
        pytest.param(frame(0x1, b"a", fin=False) + frame(0x1, b"b"), 1002, id="interleaved-message"),
        pytest.param(frame(0x8, b"\x00"), 1002, id="one-byte-close"),
        pytest.param(frame(0x8, struct.pack("!H", 999)), 1002, id="invalid-close-code"),
    ],
)
def test_malformed_frames(ws: str, data: bytes, code: int, caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    config = make_config(
        disconnect_recorder_app(recorder), ws=ws, ws_max_size=65536, ws_per_message_deflate=False
    )
    with run_server(config) as server:
        with RawClient(server) as client:
            assert client.handshake()[0] == 101
            client.send(data)
            assert client.read_close()[0] == code
            assert client.read_until_eof() == b""
        recorder.wait_done()
    assert recorder.messages[-1]["type"] == "websocket.disconnect"
    assert recorder.messages[-1]["code"] == code
    assert not errors(caplog)
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize("piece", [1000, 4096, 30_000])
def test_an_oversize_frame_arriving_in_pieces_is_refused(ws: str, piece: int, caplog: pytest.LogCaptureFixture) -> None:
    """The payload of a frame handed to the engine unfinished (too big) is never read as frame
    headers, however the reads cut it (wsproto refused it only when one read held it whole)."""
    recorder = Recorder()
    config = make_config(
        disconnect_recorder_app(recorder), ws=ws, ws_max_size=65536, ws_per_message_deflate=False
    )
    data = frame(0x2, bytes(range(256)) * 280)  # 71,680 bytes: over the limit
    with run_server(config) as server:
        with RawClient(server) as client:
            assert client.handshake()[0] == 101
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                for start in range(0, len(data), piece):
                    client.send(data[start : start + piece])
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused from the first pieces: the server stopped reading
            assert client.read_close()[0] == 1009
        recorder.wait_done()
    assert recorder.messages[-1]["type"] == "websocket.disconnect"
    assert recorder.messages[-1]["code"] == 1009
    assert not errors(caplog)


def test_nothing_is_left_behind(ws: str) -> None:
    """Normal close, dropped client, refusal, denial, protocol error: no connection or task remains."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        if scope["path"] == "/refuse":
            await send({"type": "websocket.close"})
        elif scope["path"] == "/deny":
            await send({"type": "websocket.http.response.start", "status": 400, "headers": []})
            await send({"type": "websocket.http.response.body", "body": b"no"})
        else:
            await send({"type": "websocket.accept"})
            while (await receive())["type"] != "websocket.disconnect":
                pass

    with run_server(make_config(app, ws=ws)) as server:
        with RawClient(server) as client:
            assert client.handshake()[0] == 101
            client.send(close_frame(1000))
            assert client.read_close() == (1000, "")
        with RawClient(server) as client:
            assert client.handshake()[0] == 101  # then dropped without a close frame
        with RawClient(server) as client:
            assert client.handshake("/refuse")[0] == 403
        with RawClient(server) as client:
            assert client.handshake("/deny")[0] == 400
        with RawClient(server) as client:
            assert client.handshake()[0] == 101
            client.send(frame(0x3))
            assert client.read_close()[0] == 1002
        state = server.server_state
        wait_until(lambda: not state.connections and not state.tasks, message="connections and tasks to end")


# TLS, compression, logs, selection ----------------------------------------------------------------------


async def test_wss_scheme(ws: str, tmp_path: Any) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile = tmp_path / "cert.pem"
    keyfile = tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    recorder = Recorder()
    config = make_config(
        disconnect_recorder_app(recorder), ws=ws, ssl_certfile=str(certfile), ssl_keyfile=str(keyfile)
    )
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with run_server(config) as server:
        async with connect(
            f"wss://127.0.0.1:{server.port}/", ssl=client_context, open_timeout=WAIT
        ) as client:
            await client.send("over tls")
        recorder.wait_done()
    assert recorder.scopes[0]["scheme"] == "wss"
    assert recorder.messages[0] == {"type": "websocket.receive", "text": "over tls"}
    # The ASGI TLS extension, as in HTTP scopes (tests/server/test_tls.py has the details).
    tls = recorder.scopes[0]["extensions"]["tls"]
    assert tls["tls_version"] in (0x0303, 0x0304) and isinstance(tls["cipher_suite"], int)
    assert tls["server_cert"] == cert.cert_chain_pems[0].bytes().decode()
    assert list(tls["client_cert_chain"]) == [] and tls["client_cert_name"] is None


@pytest.mark.parametrize("deflate", [True, False])
async def test_per_message_deflate(ws: str, deflate: bool) -> None:
    with run_server(make_config(echo_app, ws=ws, ws_per_message_deflate=deflate)) as server:
        async with connect(ws_url(server), open_timeout=WAIT) as client:  # offers permessage-deflate
            extensions = client.response.headers.get("sec-websocket-extensions", "")
            assert ("permessage-deflate" in extensions) is deflate
            message = "compressible " * 10_000
            await client.send(message)
            assert await asyncio.wait_for(client.recv(), WAIT) == message
            await client.send(b"\x00" * 100)
            assert await asyncio.wait_for(client.recv(), WAIT) == b"\x00" * 100


async def test_log_lines(ws: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with run_server(make_config(echo_app, ws=ws)) as server:
        async with connect(ws_url(server, "/chat%20room?user=a%22b"), open_timeout=WAIT) as client:
            await client.send("x")
            await asyncio.wait_for(client.recv(), WAIT)
        wait_until(
            lambda: any(r.getMessage() == "connection closed" for r in caplog.records), message="close line"
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.error"]
    accepted = [line for line in lines if line.endswith("[accepted]")]
    assert len(accepted) == 1
    assert accepted[0].startswith("127.0.0.1:")
    assert accepted[0].endswith(' - "WebSocket /chat%20room?user=a%22b" [accepted]')
    assert lines.index("connection open") < lines.index("connection closed")


def test_trace_lines(twin: Any, ws: str, caplog: pytest.LogCaptureFixture) -> None:
    """--log-level trace: uvicorn's lifecycle lines on uvicorn.error, in its order, for this client."""
    caplog.set_level(TRACE_LOG_LEVEL)
    with run_server(make_config(echo_app, twin, ws=ws, log_level="trace")) as server:
        with RawClient(server) as client:
            host, port = client.sock.getsockname()[:2]
            label = f"{host}:{port}"
            assert client.handshake()[0] == 101
            client.send(close_frame(1000))
            assert client.read_close() == (1000, "")
        wait_until(
            lambda: f"{label} - WebSocket connection lost" in [r.getMessage() for r in caplog.records],
            message="the connection-lost line",
        )
    trace = [r for r in caplog.records if r.name == "uvicorn.error" and r.levelno == TRACE_LOG_LEVEL]
    mine = [r.getMessage() for r in trace if r.getMessage().startswith(f"{label} - ")]
    assert mine == [
        f"{label} - HTTP connection made",
        f"{label} - Upgrading to WebSocket",
        f"{label} - WebSocket connection made",
        f"{label} - WebSocket connection lost",
    ]


def test_ws_none_serves_the_upgrade_as_http(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        await send({"type": "http.response.start", "status": 426, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    with run_server(make_config(app, ws="none")) as server, RawClient(server) as client:
        assert client.handshake()[0] == 426
    assert seen == ["http"]
    assert "Unsupported upgrade request." in [r.getMessage() for r in caplog.records]


def test_ws_names_resolve() -> None:
    from cyasgi.protocols.websockets.websockets_impl import WebSocketProtocol
    from cyasgi.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from cyasgi.protocols.websockets.wsproto_impl import WSProtocol

    expected = {
        "auto": WebSocketsSansIOProtocol,
        "websockets-sansio": WebSocketsSansIOProtocol,
        "websockets": WebSocketProtocol,
        "wsproto": WSProtocol,
        "none": None,
    }
    for name, cls in expected.items():
        config = Config(echo_app, ws=name, log_config=None)
        config.load()
        assert config.ws_protocol_class is cls, name


@pytest.mark.parametrize(
    ("blocked", "expected"),
    [
        (["websockets"], "WSProtocol"),
        (["websockets", "wsproto"], "None"),
    ],
)
def test_auto_falls_back(blocked: list[str], expected: str) -> None:
    """``--ws auto`` without websockets uses wsproto; with neither, no WebSocket support (and a warning)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "from cyasgi.protocols.websockets.auto import AutoWebSocketsProtocol as P\n"
        "print(getattr(P, '__name__', P))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT * 3, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


CLI_APP = """
async def app(scope, receive, send):
    if scope["type"] == "http":
        body = b"http: " + scope["path"].encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    message = await receive()
    await send({"type": "websocket.send", "text": "cli: " + message["text"]})
    await receive()
"""


@pytest.mark.parametrize(("args", "env", "websocket"), [
    (["--ws", "wsproto", "--ws-max-size", "100"], {}, True),
    ([], {"CYASGI_WS": "websockets-sansio", "CYASGI_WS_PING_INTERVAL": "0"}, True),
    ([], {"CYASGI_WS": "none"}, False),
])  # fmt: skip
def test_cli_options(tmp_path: Any, args: list[str], env: dict[str, str], websocket: bool) -> None:
    from tests.utils import run_cli

    (tmp_path / "wsapp.py").write_text(CLI_APP)
    with run_cli("wsapp:app", "--app-dir", str(tmp_path), "--port", "0", *args, env=env) as cli:
        url = cli.wait_until_serving()
        port = int(url.rsplit(":", 1)[1])
        with RawClient(_PortOnly(port)) as client:
            status, _ = client.handshake("/sock")
            if not websocket:
                assert status == 200
                assert client.buffer.startswith(b"http: /sock")
                return
            assert status == 101
            client.send(frame(0x1, b"hello"))
            assert client.read_frame() == (True, 0x1, b"cli: hello")
            if "--ws-max-size" in args:
                client.send(frame(0x1, b"x" * 101))
                assert client.read_close()[0] == 1009


class _PortOnly:
    """Enough of a ThreadedServer for RawClient: a port."""

    def __init__(self, port: int) -> None:
        self.port = port
