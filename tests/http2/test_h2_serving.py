"""HTTP/2 in the server (both twins): graceful shutdown, the per-stream limits (--limit-concurrency,
--limit-request-body-size), the idle timeout, and HTTP/1.1 beside h2c on the same port."""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any

import h2.events
import hpack
import pytest

from tests.http2.h2util import (
    ACK,
    CANCEL,
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    MAX_STREAM_ID,
    NO_ERROR,
    PING,
    PREFACE,
    SETTINGS,
    WINDOW_UPDATE,
    H2Client,
    frame,
    goaways,
    h2_config,
    hpack_block,
    make_app,
    parse_frames,
    raw_connect,
    raw_until_closed,
    read_until,
    request_headers,
    status,
    until,
)
from tests.utils import WAIT, connect, recv_responses, run_server


def test_graceful_shutdown_lets_a_stream_in_flight_complete(twin, state):
    with run_server(h2_config(make_app(state), twin)) as server:
        port = server.port
        sock = raw_connect(server)
        sock.sendall(frame(HEADERS, END_HEADERS | END_STREAM, 1, hpack_block(request_headers("/slow"))))
        state.wait("slow-started")
        server.should_exit = True
        # First GOAWAY(2^31-1, NO_ERROR) and a PING; the client answers the PING.
        data = read_until(sock, b"", lambda d: any(kind == PING for kind, _, _, _ in parse_frames(d)))
        assert goaways(data) == [(MAX_STREAM_ID, NO_ERROR)]
        ping = next(
            payload for kind, flags, _, payload in parse_frames(data) if kind == PING and not flags & ACK
        )
        sock.sendall(frame(PING, ACK, 0, ping))
        # Then GOAWAY(1): stream 1 was processed.
        data = read_until(sock, data, lambda d: len(goaways(d)) == 2)
        assert goaways(data)[1] == (1, NO_ERROR)
        # New connections are refused while the stream drains.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
        state.set("slow-go")
        sock.settimeout(WAIT)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        sock.close()
        assert server.finished.wait(WAIT)
    frames = parse_frames(data)
    body = b"".join(payload for kind, _, stream_id, payload in frames if kind == DATA and stream_id == 1)
    assert body == b"slow done"
    assert any(kind == DATA and flags & END_STREAM for kind, flags, _, _ in frames)


def test_limit_concurrency_gives_503_on_a_stream(twin, state):
    # The connection counts as one, like an HTTP/1.1 connection; each running stream as one more.
    with run_server(h2_config(make_app(state), twin, limit_concurrency=2)) as server:
        client = H2Client(server)
        first = client.request("/slow")
        second = client.request("/slow")
        state.wait_count("slow-started", 2)
        refused = client.get("/hello")
        assert status(refused) == 503
        state.set("slow-go")
        assert client.response(first)["body"] == b"slow done"
        assert client.response(second)["body"] == b"slow done"
        until(lambda: not server.server_state.tasks)
        assert status(client.get("/hello")) == 200
        client.close()


def test_limit_request_body_size_gives_413(twin, state):
    with run_server(h2_config(make_app(state), twin, limit_request_body_size=1000)) as server:
        client = H2Client(server)
        declared = client.get("/echo", method="POST", body=b"x" * 5000, content_length="5000")
        assert status(declared) == 413
        undeclared = client.request("/echo", method="POST", body=b"x" * 5000)
        assert status(client.response(undeclared)) == 413
        small = client.get("/echo", method="POST", body=b"x" * 1000)
        assert status(small) == 200 and small["body"] == b"x" * 1000
        client.close()


def test_idle_connection_gets_goaway_no_error(twin, state):
    with run_server(h2_config(make_app(state), twin, timeout_keep_alive=1)) as server:
        client = H2Client(server)
        assert status(client.get("/hello")) == 200
        started = time.monotonic()
        terminated = client.terminated(timeout=WAIT)
        assert terminated.error_code == NO_ERROR
        assert terminated.last_stream_id == 1
        client.wait_closed()
        assert 0.5 < time.monotonic() - started < WAIT
        client.close()


def test_a_busy_connection_is_not_idle(twin, state):
    with run_server(h2_config(make_app(state), twin, timeout_keep_alive=1)) as server:
        client = H2Client(server)
        stream_id = client.request("/slow")
        state.wait("slow-started")
        # Longer than the idle timeout with a stream open: no GOAWAY.
        with pytest.raises(socket.timeout):
            while True:
                client.read_once(1.6)
        assert not any(isinstance(event, h2.events.ConnectionTerminated) for event in client.events)
        state.set("slow-go")
        assert client.response(stream_id)["body"] == b"slow done"
        client.close()


# HTTP/1.1 on the same port -------------------------------------------------------------------------


def http11(server: Any, pieces: list[bytes]) -> Any:
    sock = connect(server)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for piece in pieces:
        sock.sendall(piece)
    response = recv_responses(sock, 1)[0]
    sock.close()
    return response


def test_http11_still_works(server):
    response = http11(server, [b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"])
    assert response.status == 200 and response.body == b"Hello, world!"


@pytest.mark.parametrize(
    "pieces",
    [
        [b"PRX /hello HTTP/1.1\r\nHost: x\r\n\r\n"],
        [b"P", b"R", b"X /hello HTTP/1.1\r\nHost: x\r\n\r\n"],
        [b"PRI", b" /hello HTTP/1.1\r\nHost: x\r\n\r\n"],
        [b"PRI * HTTP/1.1\r\nHost: x\r\n\r\n"],
    ],
    ids=["PRX", "PRX-split", "PRI-slash", "PRI-star-1.1"],
)
def test_a_prefix_of_the_preface_then_http11(server, pieces):
    sock = connect(server)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for piece in pieces:
        sock.sendall(piece)
    data = b""
    sock.settimeout(WAIT)
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    sock.close()
    assert data.startswith(b"HTTP/1.1 "), data  # answered by HTTP/1.1, whatever the status


def test_the_preface_one_octet_at_a_time_is_http2(server):
    sock = connect(server)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for octet in PREFACE:
        sock.sendall(bytes([octet]))
    client = H2Client(server, sock=sock, preface_sent=True)
    response = client.get("/hello")
    assert status(response) == 200 and response["body"] == b"Hello, world!"
    client.close()


def test_h2c_upgrade_is_served_over_http11(server, caplog):
    """RFC 9113 removed the h2c upgrade: answered over HTTP/1.1, without the unsupported-upgrade warning
    (with --http2 it is what curl --http2 sends to every http:// URL)."""
    request = (
        b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"
    )
    with caplog.at_level("WARNING"):
        response = http11(server, [request])
    assert response.status == 200 and response.body == b"Hello, world!"
    assert not [record for record in caplog.records if "upgrade" in record.getMessage().lower()]


def test_http11_and_h2_connections_at_once(server, state):
    results: list = []

    def h1() -> None:
        results.append(http11(server, [b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"]).status)

    threads = [threading.Thread(target=h1) for _ in range(4)]
    for thread in threads:
        thread.start()
    client = H2Client(server)
    ids = [client.request("/hello") for _ in range(4)]
    h2_statuses = [status(client.response(stream_id)) for stream_id in ids]
    for thread in threads:
        thread.join(WAIT)
    client.close()
    assert h2_statuses == [200] * 4 and results == [200] * 4


def test_settings_with_a_small_max_frame_size_peer(server):
    # The client keeps the default 16384 frames; a large response is split to fit.
    sock = raw_connect(server, settings=frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 1 << 20)))
    sock.sendall(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 20)))
    sock.sendall(frame(HEADERS, END_HEADERS | END_STREAM, 1, hpack_block(request_headers("/big?100000"))))
    data = read_until(
        sock, b"", lambda d: any(kind == DATA and flags & END_STREAM for kind, flags, _, _ in parse_frames(d))
    )
    frames = parse_frames(data)
    sizes = [len(payload) for kind, _, _, payload in frames if kind == DATA]
    assert sum(sizes) == 100000 and max(sizes) <= 16384
    head = next(payload for kind, _, _, payload in frames if kind == HEADERS)
    assert dict(hpack.Decoder().decode(head))[":status"] == "200"
    sock.close()


# Per-stream server features and the HTTP/2 timers --------------------------------------------------


def test_limit_max_requests_counts_streams(twin, state):
    with run_server(h2_config(make_app(state), twin, limit_max_requests=3)) as server:
        sock = raw_connect(server)
        for stream_id in (1, 3, 5):
            sock.sendall(
                frame(HEADERS, END_HEADERS | END_STREAM, stream_id, hpack_block(request_headers("/hello")))
            )
        # The server winds down after the third stream: GOAWAY(NO_ERROR), the connection closes (the
        # shutdown PING is answered), the server stops.
        data = read_until(sock, b"", lambda d: any(kind == PING for kind, _, _, _ in parse_frames(d)))
        ping = next(
            payload for kind, flags, _, payload in parse_frames(data) if kind == PING and not flags & ACK
        )
        sock.sendall(frame(PING, ACK, 0, ping))
        data += raw_until_closed(sock)
        sock.close()
        assert server.finished.wait(WAIT)
    frames = parse_frames(data)
    assert b"".join(p for kind, _, _, p in frames if kind == DATA) == b"Hello, world!" * 3
    assert goaways(data) and all(code == NO_ERROR for _, code in goaways(data))


def test_health_path_is_answered_by_the_server(twin, state):
    with run_server(h2_config(make_app(state), twin, health_path="/healthz")) as server:
        client = H2Client(server)
        response = client.get("/healthz")
        assert status(response) == 200
        assert "slow-started" not in state.values
        client.close()


def test_keep_alive_ping_unanswered_closes_the_connection(twin, state):
    config = h2_config(make_app(state), twin, http2_keep_alive_interval=0.5, http2_keep_alive_timeout=0.5)
    with run_server(config) as server:
        sock = raw_connect(server)
        started = time.monotonic()
        # The client reads but never answers the PING.
        data = read_until(sock, b"", lambda d: any(kind == PING for kind, _, _, _ in parse_frames(d)))
        ping = next(payload for kind, _, _, payload in parse_frames(data) if kind == PING)
        sock.settimeout(WAIT)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        assert time.monotonic() - started < WAIT
        assert len(ping) == 8
        sock.close()


def test_keep_alive_ping_answered_keeps_the_connection(twin, state):
    config = h2_config(make_app(state), twin, http2_keep_alive_interval=0.3, http2_keep_alive_timeout=0.5)
    with run_server(config) as server:
        client = H2Client(server)  # the h2 library answers PINGs
        client.wait_for(lambda: len([e for e in client.events if isinstance(e, h2.events.PingReceived)]) >= 3)
        assert not any(isinstance(e, h2.events.ConnectionTerminated) for e in client.events)
        assert status(client.get("/hello")) == 200
        client.close()


def test_a_stream_stalled_on_a_zero_window_is_reset(twin, state):
    config = h2_config(make_app(state), twin, http2_stall_timeout=1.0)
    with run_server(config) as server:
        client = H2Client(server, settings={4: 0})  # INITIAL_WINDOW_SIZE 0, never raised
        stream_id = client.request("/big?100000")
        state.wait("big-sending")
        response = client.response(stream_id)
        assert response["reset"] == CANCEL
        assert not state.event("big-returned").is_set()  # the app's send() raised instead
        client.close()
