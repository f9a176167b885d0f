"""WebSockets over HTTP/2 (RFC 8441): an extended CONNECT stream carries a WebSocket, on both twins and
both WebSocket engines, driven by the ``h2`` library with WebSocket frames built here."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import h2.events
import h2.settings
import pytest

from tests.conftest import load_twin
from tests.http2.h2util import (
    CANCEL,
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    MAX_STREAM_ID,
    NO_ERROR,
    PROTOCOL_ERROR,
    WS_BINARY,
    WS_CLOSE,
    WS_TEXT,
    H2Client,
    WebSocketStream,
    frame,
    goaways,
    h2_config,
    hpack_block,
    parse_frames,
    raw_connect,
    raw_until_closed,
    read_until,
    status,
    until,
    ws_frame,
    ws_frames,
)
from tests.utils import WAIT, ThreadedServer, run_server

ENABLE_CONNECT_PROTOCOL = 0x8
#: How long a negative check waits for something that must not happen.
SETTLE = 0.5


# The application -----------------------------------------------------------------------------------


class Seen:
    """What the app saw, shared with the test thread."""

    def __init__(self) -> None:
        self.scopes: list[dict] = []
        self.disconnects: list[int] = []
        self.sent_all = threading.Event()
        self.release = threading.Event()

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


SEEN = Seen()
BIG = os.urandom(100_000)


async def app(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"plain " + scope["http_version"].encode()})
        return
    assert scope["type"] == "websocket"
    SEEN.scopes.append(scope)
    path = scope["path"]
    assert (await receive())["type"] == "websocket.connect"
    if path == "/deny":
        headers = [(b"content-type", b"text/plain"), (b"x-why", b"test")]
        await send({"type": "websocket.http.response.start", "status": 403, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"entry"})
        return
    if path == "/refuse":
        await send({"type": "websocket.close", "code": 4000})
        return
    if path == "/fail":
        raise RuntimeError("the app fails before accepting")
    subprotocol = "chat" if "chat" in scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": subprotocol, "headers": [(b"x-accepted", b"yes")]})
    if path == "/close":
        await send({"type": "websocket.send", "text": "bye"})
        await send({"type": "websocket.close", "code": 4001, "reason": "done"})
        return
    if path == "/slow-reader":  # reads nothing until the test releases it (bounded)
        await asyncio.get_running_loop().run_in_executor(None, SEEN.release.wait, WAIT)
    if path == "/big":
        await send({"type": "websocket.send", "bytes": BIG})
        await send({"type": "websocket.send", "bytes": BIG})
        SEEN.sent_all.set()
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            SEEN.disconnects.append(message["code"])
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


#: Each twin with each WebSocket engine.
TWIN_ENGINES = [(twin, ws) for ws in ("websockets-sansio", "wsproto") for twin in ("c", "py")]


@pytest.fixture(scope="module", params=TWIN_ENGINES, ids=[f"{twin}-{ws}" for twin, ws in TWIN_ENGINES])
def server(request: pytest.FixtureRequest) -> Iterator[ThreadedServer]:
    twin_name, ws = request.param
    with run_server(h2_config(app, load_twin(twin_name), ws=ws)) as running:
        yield running


@pytest.fixture(autouse=True)
def _seen() -> None:
    SEEN.reset()


def connect_settings(client: H2Client) -> dict:
    """The server's SETTINGS, once they came."""
    event = client.wait_for(
        lambda: next((e for e in client.events if isinstance(e, h2.events.RemoteSettingsChanged)), None)
    )
    return {code: setting.new_value for code, setting in event.changed_settings.items()}


# Tests ------------------------------------------------------------------------------------------------


def test_the_server_advertises_extended_connect(server):
    client = H2Client(server)
    assert connect_settings(client).get(ENABLE_CONNECT_PROTOCOL) == 1


def test_echo_over_a_stream_with_an_h2_scope(server):
    client = H2Client(server)
    offer = ("sec-websocket-protocol", "chat, other")
    ws = WebSocketStream(client, "/echo?x=1", offer, ("cookie", "a=1"), ("cookie", "b=2"))
    response = ws.response()
    fields = dict(response["headers"])
    assert status(response) == 200
    assert fields["sec-websocket-protocol"] == "chat"
    assert fields["x-accepted"] == "yes"
    assert not {"sec-websocket-accept", "upgrade", "connection"} & set(fields)
    ws.send(WS_TEXT, "héllo".encode())
    ws.send(WS_BINARY, b"\x00\x01\x02")
    assert ws.frames(2) == [(0x81, WS_TEXT, "héllo".encode()), (0x82, WS_BINARY, b"\x00\x01\x02")]
    ws.close(1000)
    ((first, opcode, payload),) = ws.frames(1)
    assert (opcode, payload[:2]) == (WS_CLOSE, struct.pack(">H", 1000))
    client.wait_for(lambda: ws.record["ended"] or ws.record["reset"] is not None)
    until(lambda: SEEN.disconnects == [1000])
    scope = SEEN.scopes[0]
    assert scope["http_version"] == "2"
    assert (scope["scheme"], scope["path"], scope["query_string"]) == ("ws", "/echo", b"x=1")
    assert scope["subprotocols"] == ["chat", "other"]
    assert scope["headers"][0] == (b"host", b"example.com")
    assert (b"cookie", b"a=1; b=2") in scope["headers"]
    names = {name for name, _ in scope["headers"]}
    assert not names & {b"upgrade", b"connection", b"sec-websocket-key"}
    # The connection goes on: a request on another stream.
    answer = client.get("/plain")
    assert (status(answer), answer["body"]) == (200, b"plain 2")


def test_the_server_closes(server):
    client = H2Client(server)
    ws = WebSocketStream(client, "/close")
    assert status(ws.response()) == 200
    text, close = ws.frames(2)
    assert text == (0x81, WS_TEXT, b"bye")
    assert close[1] == WS_CLOSE and close[2] == struct.pack(">H", 4001) + b"done"
    ws.close(4001)
    client.wait_for(lambda: ws.record["ended"] or ws.record["reset"] is not None)
    assert ws.record["ended"]


def test_a_denial_response_is_headers_and_data(server):
    client = H2Client(server)
    ws = WebSocketStream(client, "/deny")
    response = client.response(ws.stream_id)
    assert status(response) == 403
    assert dict(response["headers"])["x-why"] == "test"
    assert "transfer-encoding" not in dict(response["headers"])
    assert response["body"] == b"no entry"
    assert response["ended"]


def test_an_app_that_closes_before_accepting_refuses_with_403(server):
    client = H2Client(server)
    response = client.response(WebSocketStream(client, "/refuse").stream_id)
    assert status(response) == 403 and response["ended"]


def test_an_app_that_fails_before_accepting_gets_500(server):
    client = H2Client(server)
    response = client.response(WebSocketStream(client, "/fail").stream_id)
    assert status(response) == 500 and response["ended"]


def test_a_request_without_a_websocket_version_is_refused(server):
    client = H2Client(server)
    response = client.response(WebSocketStream(client, "/echo", version=False).stream_id)
    assert 400 <= status(response) < 500 and response["ended"]
    assert SEEN.scopes == []


def test_another_protocol_gets_501(server):
    client = H2Client(server)
    stream_id = client.conn.get_next_available_stream_id()
    headers = [
        (":method", "CONNECT"),
        (":protocol", "webtransport"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "example.com"),
    ]
    client.conn.send_headers(stream_id, headers)
    client.flush()
    response = client.response(stream_id)
    assert status(response) == 501


def test_a_reset_stream_is_a_disconnect(server):
    client = H2Client(server)
    ws = WebSocketStream(client, "/echo")
    assert status(ws.response()) == 200
    client.conn.reset_stream(ws.stream_id, CANCEL)
    client.flush()
    until(lambda: SEEN.disconnects == [1006])
    assert client.get("/plain")["body"] == b"plain 2"


def test_the_client_ending_its_stream_closes_the_websocket(server):
    client = H2Client(server)
    ws = WebSocketStream(client, "/echo")
    assert status(ws.response()) == 200
    client.conn.end_stream(ws.stream_id)
    client.flush()
    until(lambda: SEEN.disconnects == [1006])
    client.wait_for(lambda: ws.record["ended"] or ws.record["reset"] is not None)


def test_sending_waits_for_the_clients_window(server):
    client = H2Client(server, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    client.auto_ack = False
    ws = WebSocketStream(client, "/big")
    assert status(ws.response()) == 200
    client.wait_for(lambda: len(ws.record["body"]) >= 1000)
    # The first 100 kB message is more than the stream transport holds before pausing the app: its
    # second send() waits while the client grants nothing.
    assert not SEEN.sent_all.wait(SETTLE)
    assert len(ws.record["body"]) == 1000
    client.auto_ack = True
    client.conn.acknowledge_received_data(1000, ws.stream_id)
    client.conn.increment_flow_control_window(1 << 20, ws.stream_id)
    client.conn.increment_flow_control_window(1 << 20)
    client.flush()
    first, second = ws.frames(2)
    assert first == (0x82, WS_BINARY, BIG) and second == (0x82, WS_BINARY, BIG)
    assert SEEN.sent_all.wait(WAIT)
    ws.close()
    until(lambda: SEEN.disconnects == [1000])


def test_websockets_and_requests_share_a_connection(server):
    client = H2Client(server)
    sockets = [WebSocketStream(client, f"/echo{i}") for i in range(3)]
    for i, ws in enumerate(sockets):
        assert status(ws.response()) == 200
        ws.send(WS_TEXT, f"m{i}".encode())
    answer = client.get("/plain")
    for i, ws in enumerate(sockets):
        assert ws.frames(1) == [(0x81, WS_TEXT, f"m{i}".encode())]
    assert answer["body"] == b"plain 2"
    for ws in sockets:
        ws.close()
    until(lambda: sorted(SEEN.disconnects) == [1000, 1000, 1000])


def test_permessage_deflate_is_negotiated(server):
    client = H2Client(server)
    ws = WebSocketStream(client, "/echo", ("sec-websocket-extensions", "permessage-deflate"))
    fields = dict(ws.response()["headers"])
    assert fields["sec-websocket-extensions"].startswith("permessage-deflate")
    compressor = zlib.compressobj(wbits=-15)
    message = b"compressible " * 200
    payload = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
    ws.send(WS_TEXT, payload[:-4], rsv1=True)
    ((first, opcode, echoed),) = ws.frames(1)
    assert opcode == WS_TEXT
    if first & 0x40:  # compressed back
        echoed = zlib.decompressobj(wbits=-15).decompress(echoed + b"\x00\x00\xff\xff")
    assert echoed == message
    ws.close()
    until(lambda: SEEN.disconnects == [1000])


def test_without_websockets_extended_connect_is_not_offered():
    with run_server(h2_config(app, load_twin("py"), ws="none")) as server:
        client = H2Client(server)
        assert connect_settings(client).get(ENABLE_CONNECT_PROTOCOL) is None
        ws = WebSocketStream(client, "/echo")
        client.wait_for(lambda: ws.record["reset"] is not None)
        assert ws.record["reset"] == PROTOCOL_ERROR
        assert client.get("/plain")["body"] == b"plain 2"


@pytest.mark.parametrize("twin_name", ["c", "py"])
def test_graceful_shutdown_closes_the_websocket_with_1012(twin_name):
    # Raw frames: the h2 library refuses the PING that follows the first GOAWAY.
    with run_server(h2_config(app, load_twin(twin_name))) as server:
        sock = raw_connect(server)
        connect = [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "http"),
            (":path", "/echo"),
            (":authority", "example.com"),
            ("sec-websocket-version", "13"),
        ]
        sock.sendall(frame(HEADERS, END_HEADERS, 1, hpack_block(connect)))
        data = read_until(sock, b"", lambda d: any(kind == HEADERS for kind, _, _, _ in parse_frames(d)))
        server.should_exit = True

        def stream_data(data: bytes) -> bytes:
            frames = parse_frames(data)
            return b"".join(payload for kind, _, stream_id, payload in frames if kind == DATA and stream_id == 1)

        data = read_until(sock, data, lambda d: ws_frames(stream_data(d))[0])
        (_, opcode, payload), = ws_frames(stream_data(data))[0]
        assert (opcode, payload[:2]) == (WS_CLOSE, struct.pack(">H", 1012))
        assert goaways(data)[0] == (MAX_STREAM_ID, NO_ERROR)
        sock.sendall(frame(DATA, 0, 1, ws_frame(WS_CLOSE, struct.pack(">H", 1012))))
        data += raw_until_closed(sock)
        frames = parse_frames(data)
        assert any(kind == DATA and flags & END_STREAM and stream_id == 1 for kind, flags, stream_id, _ in frames)
        assert server.finished.wait(WAIT)
    assert SEEN.disconnects == [1012]


@pytest.mark.parametrize("twin_name", ["c", "py"])
def test_an_open_websocket_keeps_the_connection_past_the_idle_timeout(twin_name):
    with run_server(h2_config(app, load_twin(twin_name), timeout_keep_alive=0.1)) as server:
        client = H2Client(server)
        ws = WebSocketStream(client, "/echo")
        assert status(ws.response()) == 200
        with pytest.raises(socket.timeout):
            client.read_once(SETTLE)  # nothing comes: no GOAWAY after the idle timeout
        ws.send(WS_TEXT, b"still here")
        assert ws.frames(1) == [(0x81, WS_TEXT, b"still here")]
        ws.close()
        until(lambda: SEEN.disconnects == [1000])
        # Once the WebSocket is gone, the idle connection is closed.
        client.wait_closed()


@pytest.mark.parametrize("twin_name", ["c", "py"])
def test_an_app_that_does_not_read_closes_the_clients_window(twin_name):
    """Messages the app has not taken hold the stream's window: memory stays bounded."""
    with run_server(h2_config(app, load_twin(twin_name), ws_max_queue=1)) as server:
        client = H2Client(server, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
        ws = WebSocketStream(client, "/slow-reader")
        assert status(ws.response()) == 200
        window = client.conn.local_flow_control_window(ws.stream_id)
        message = ws_frame(WS_BINARY, b"x" * 16000)
        sent = 0
        while client.conn.local_flow_control_window(ws.stream_id) >= len(message) and sent < 4 * window:
            client.conn.send_data(ws.stream_id, message)
            client.flush()
            sent += len(message)
            try:
                client.read_once(0.01)  # take the WINDOW_UPDATEs the server gives while it reads
            except socket.timeout:
                pass
        # The server stopped giving credit back: the client can send no more than about a window.
        assert sent < 2 * window
        with pytest.raises(socket.timeout):
            client.read_once(SETTLE)
        assert client.conn.local_flow_control_window(ws.stream_id) < len(message)
        SEEN.release.set()  # the app reads now: the window opens again
        client.wait_for(lambda: client.conn.local_flow_control_window(ws.stream_id) >= len(message))
        ws.close()
        client.wait_for(lambda: ws.record["ended"])  # reading the echoes, until the close is answered
        until(lambda: not server.server_state.tasks)  # (the app's last echo may meet the closed socket)


def test_limit_concurrency_refuses_a_websocket_with_503():
    # The connection counts as one, each open WebSocket as one more.
    with run_server(h2_config(app, load_twin("py"), limit_concurrency=2)) as server:
        client = H2Client(server)
        first = WebSocketStream(client, "/echo")
        assert status(first.response()) == 200
        refused = client.response(WebSocketStream(client, "/echo").stream_id)
        assert status(refused) == 503 and refused["ended"]
        first.close()
        client.wait_for(lambda: first.record["ended"])
        until(lambda: SEEN.disconnects == [1000])
