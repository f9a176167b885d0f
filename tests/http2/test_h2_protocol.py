"""RFC 9113 / RFC 7541 rules end to end (both twins): hand-built frames where the ``h2`` library refuses to
send the mistake, the ``h2`` library otherwise; the exact error codes, and the TCP connection closed after
a connection error's GOAWAY."""

from __future__ import annotations

import struct
from typing import Any

import h2.events
import pytest

from tests.http2.h2util import (
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADERS,
    PING,
    PRIORITY,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    SETTINGS,
    STREAM_CLOSED,
    WINDOW_UPDATE,
    H2Client,
    frame,
    goaways,
    hpack_block,
    parse_frames,
    raw_connect,
    raw_until_closed,
    read_until,
    request_headers,
    rst_streams,
    status,
)
from tests.utils import WAIT


def connection_error(server: Any, frames: bytes, settings: bytes | None = None) -> list[tuple[int, int]]:
    """Send ``frames`` after the preface; the GOAWAYs the server sent before it closed."""
    sock = raw_connect(server, settings)
    try:
        sock.sendall(frames)
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = raw_until_closed(sock)
    sock.close()
    return goaways(data)


def headers_frame(
    stream_id: int, path: str = "/hello", flags: int = END_HEADERS | END_STREAM, **extra: str
) -> bytes:
    return frame(HEADERS, flags, stream_id, hpack_block(request_headers(path, **extra)))


def test_first_frame_not_settings_is_protocol_error(server):
    sock = raw_connect(server, settings=frame(PING, 0, 0, b"12345678"))
    data = raw_until_closed(sock)
    sock.close()
    assert goaways(data) == [(0, PROTOCOL_ERROR)]


def test_http11_after_the_preface_is_protocol_error(server):
    sock = raw_connect(server, settings=b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = raw_until_closed(sock)
    sock.close()
    assert [code for _, code in goaways(data)] == [PROTOCOL_ERROR]


def test_bad_hpack_is_compression_error(server):
    # Indexed field with index 0 (RFC 7541 §6.1: a decoding error).
    assert connection_error(server, frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x80")) == [
        (0, COMPRESSION_ERROR)
    ]


def test_hpack_index_past_the_tables_is_compression_error(server):
    assert connection_error(server, frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff\x7f")) == [
        (0, COMPRESSION_ERROR)
    ]


def test_oversized_frame_is_rejected_from_its_header(server):
    # A DATA frame declaring 1 MiB: FRAME_SIZE_ERROR without waiting for the payload (none is sent).
    header_only = struct.pack(">I", 1 << 20)[1:] + struct.pack(">BBI", DATA, 0, 1)
    result = connection_error(server, headers_frame(1, "/echo", flags=END_HEADERS) + header_only)
    assert [code for _, code in result] == [FRAME_SIZE_ERROR]


def test_ping_of_the_wrong_size_is_frame_size_error(server):
    assert connection_error(server, frame(PING, 0, 0, b"1234")) == [(0, FRAME_SIZE_ERROR)]


def test_continuation_without_headers_is_protocol_error(server):
    block = hpack_block(request_headers("/hello"))
    assert connection_error(server, frame(CONTINUATION, END_HEADERS, 1, block)) == [(0, PROTOCOL_ERROR)]


def test_headers_interrupted_by_another_frame_is_protocol_error(server):
    block = hpack_block(request_headers("/hello"))
    frames = frame(HEADERS, END_STREAM, 1, block[:5]) + frame(PING, 0, 0, b"12345678")
    assert [code for _, code in connection_error(server, frames)] == [PROTOCOL_ERROR]


def test_even_stream_id_is_protocol_error(server):
    assert [code for _, code in connection_error(server, headers_frame(2))] == [PROTOCOL_ERROR]


def test_connection_window_overflow_is_flow_control_error(server):
    overflow = frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 2**31 - 1))
    assert [code for _, code in connection_error(server, overflow)] == [FLOW_CONTROL_ERROR]


def test_data_on_a_half_closed_stream_is_stream_closed(server, state):
    sock = raw_connect(server)
    sock.sendall(headers_frame(1, "/slow") + frame(DATA, 0, 1, b"late"))
    state.wait("slow-started")
    data = b""
    while not rst_streams(data):
        data += sock.recv(65536)
    assert rst_streams(data) == [(1, STREAM_CLOSED)]
    assert goaways(data) == []
    # The connection lives: another stream is served.
    sock.sendall(headers_frame(3, "/hello"))
    while not any(kind == DATA and stream_id == 3 for kind, _, stream_id, _ in parse_frames(data)):
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    state.set("slow-go")
    sock.close()


def test_a_stream_beyond_max_concurrent_streams_is_refused(server, state):
    client = H2Client(server)
    ids = [client.request("/slow") for _ in range(101)]
    refused = client.response(ids[-1])
    assert refused["reset"] == REFUSED_STREAM
    state.set("slow-go")
    for stream_id in ids[:-1]:
        assert client.response(stream_id)["body"] == b"slow done"
    assert status(client.get("/hello")) == 200
    assert not any(isinstance(e, h2.events.ConnectionTerminated) for e in client.events)
    client.close()


def test_client_goaway_does_not_kill_a_stream_in_flight(server, state):
    client = H2Client(server)
    stream_id = client.request("/slow")
    state.wait("slow-started")
    # The client's GOAWAY, written raw (the h2 library would refuse the response that follows it).
    client.sock.sendall(frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0)))
    state.set("slow-go")
    response = client.response(stream_id)
    assert status(response) == 200
    assert response["body"] == b"slow done"
    client.wait_closed()


def test_header_list_over_the_limit_is_431_and_the_connection_lives(server):
    client = H2Client(server)
    stream_id = client.request("/hello", x_big="v" * 70000)
    response = client.response(stream_id)
    assert status(response) == 431
    assert status(client.get("/hello")) == 200
    client.close()


def test_malformed_request_is_a_stream_error(server):
    sock = raw_connect(server)
    bad = frame(
        HEADERS, END_HEADERS | END_STREAM, 1, hpack_block([*request_headers("/hello"), ("X-Upper", "1")])
    )
    sock.sendall(bad + headers_frame(3, "/hello"))
    data = b""
    while not any(kind == DATA and stream_id == 3 for kind, _, stream_id, _ in parse_frames(data)):
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection: {parse_frames(data)}"
        data += chunk
    assert rst_streams(data) == [(1, PROTOCOL_ERROR)]
    assert goaways(data) == []
    sock.close()


def test_content_length_mismatch_is_a_stream_error(server):
    client = H2Client(server)
    stream_id = client.request("/echo", method="POST", body=b"12345", content_length="10")
    assert client.response(stream_id)["reset"] == PROTOCOL_ERROR
    assert status(client.get("/hello")) == 200
    client.close()


def test_priority_frames_are_ignored(server):
    sock = raw_connect(server)
    priority = frame(PRIORITY, 0, 1, struct.pack(">IB", 0, 15))
    sock.sendall(priority + headers_frame(1, "/hello") + frame(PRIORITY, 0, 5, struct.pack(">IB", 1, 200)))
    data = b""
    sock.settimeout(WAIT)
    while not any(kind == DATA and flags & END_STREAM for kind, flags, _, _ in parse_frames(data)):
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection: {parse_frames(data)}"
        data += chunk
    body = b"".join(payload for kind, _, stream_id, payload in parse_frames(data) if kind == DATA)
    assert body == b"Hello, world!"
    assert goaways(data) == [] and rst_streams(data) == []
    sock.close()


def test_settings_are_acknowledged(server):
    sock = raw_connect(server)
    data = b""
    while not any(kind == SETTINGS and flags & 1 for kind, flags, _, _ in parse_frames(data)):
        chunk = sock.recv(65536)
        assert chunk
        data += chunk
    settings = [
        payload for kind, flags, _, payload in parse_frames(data) if kind == SETTINGS and not flags & 1
    ]
    values = dict(struct.unpack(">HI", settings[0][i : i + 6]) for i in range(0, len(settings[0]), 6))
    assert values.get(3) == 100  # MAX_CONCURRENT_STREAMS
    assert values.get(4) == 262144  # INITIAL_WINDOW_SIZE
    assert values.get(6) == 65536  # MAX_HEADER_LIST_SIZE
    assert values.get(8) == 1  # ENABLE_CONNECT_PROTOCOL: WebSockets over HTTP/2 (RFC 8441)
    sock.close()


def test_stream_id_going_back_is_protocol_error(server):
    frames = headers_frame(3) + headers_frame(1)
    assert [code for _, code in connection_error(server, frames)] == [PROTOCOL_ERROR]


def test_initial_window_size_over_the_maximum_is_flow_control_error(server):
    settings = frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 2**31))
    assert [code for _, code in connection_error(server, b"", settings=settings)] == [FLOW_CONTROL_ERROR]


@pytest.mark.parametrize("value", [16383, 2**24])
def test_max_frame_size_out_of_range_is_protocol_error(server, value):
    settings = frame(SETTINGS, 0, 0, struct.pack(">HI", 5, value))
    assert [code for _, code in connection_error(server, b"", settings=settings)] == [PROTOCOL_ERROR]


def test_data_beyond_the_stream_window_is_flow_control_error(server, state):
    # The client never acknowledges the server's SETTINGS: the stream window is the default 65535.
    sock = raw_connect(server)
    opening = frame(HEADERS, END_HEADERS, 1, hpack_block(request_headers("/noread", method="POST")))
    sock.sendall(opening + frame(DATA, 0, 1, b"d" * 14000) * 5)
    data = read_until(sock, b"", lambda data: rst_streams(data) or goaways(data))
    assert rst_streams(data) == [(1, FLOW_CONTROL_ERROR)]
    assert goaways(data) == []
    state.wait("noread-started")
    state.set("noread-go")
    state.set("noread-finish")
    sock.close()


def test_headers_on_a_half_closed_stream_is_stream_closed(server, state):
    sock = raw_connect(server)
    sock.sendall(headers_frame(1, "/slow"))
    state.wait("slow-started")
    sock.sendall(headers_frame(1, "/slow"))
    data = read_until(sock, b"", lambda data: rst_streams(data) or goaways(data))
    assert rst_streams(data) == [(1, STREAM_CLOSED)]
    state.set("slow-go")
    sock.close()


def test_data_after_the_stream_closed_is_stream_closed(server):
    # RFC 9113 §6.1: DATA on a stream not open or half-closed (local) is a stream error STREAM_CLOSED
    # (§5.1 says connection error for frames after END_STREAM; §6.1 is the rule for DATA).
    sock = raw_connect(server)
    sock.sendall(headers_frame(1, "/hello"))
    data = b""
    sock.settimeout(WAIT)
    while not any(kind == DATA and flags & END_STREAM for kind, flags, _, _ in parse_frames(data)):
        chunk = sock.recv(65536)
        assert chunk, parse_frames(data)
        data += chunk
    # The late DATA, then a PING: its ACK shows the DATA was processed.
    sock.sendall(frame(DATA, 0, 1, b"late") + frame(PING, 0, 0, b"afterdat"))
    while not any(kind == PING and payload == b"afterdat" for kind, _, _, payload in parse_frames(data)):
        chunk = sock.recv(65536)
        assert chunk, parse_frames(data)
        data += chunk
    sock.close()
    assert rst_streams(data) == [(1, STREAM_CLOSED)]
    assert goaways(data) == []
