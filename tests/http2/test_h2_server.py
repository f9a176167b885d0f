"""HTTP/2 end to end: a real server (both twins) on 127.0.0.1, the ``h2`` library as the client driving the
frames, checking the ASGI semantics of issue 14 (scope, bodies, extensions, errors) over h2c."""

from __future__ import annotations

import importlib
import json
import socket
import struct
from typing import Any

import h2.events
import h2.settings
import hpack
import pytest

from tests.http2.h2util import (
    CANCEL,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    INTERNAL_ERROR,
    SETTINGS,
    H2Client,
    frame,
    h2_config,
    header,
    make_app,
    parse_frames,
    raw_connect,
    request_headers,
    status,
    write_file,
)
from tests.utils import WAIT, LogWatcher, run_server


@pytest.fixture
def client(server: Any) -> Any:
    client = H2Client(server)
    yield client
    client.close()


def test_the_connection_is_served_by_the_http2_protocol_of_the_twin(server, client):
    assert status(client.get("/hello")) == 200
    port = client.sock.getsockname()[1]
    mine = [c for c in list(server.server_state.connections) if c.client and c.client[1] == port]
    assert [type(connection).__name__ for connection in mine] == ["H2Protocol"]
    module = type(mine[0]).__module__
    # The same build: the compiled HttpProtocol hands over to the compiled H2Protocol (where it is built;
    # until then its .py link imports as Python), the pure one to the pure one.
    try:
        compiled = importlib.import_module("cyasgi._speedups.h2protocol").COMPILED
    except ImportError:
        compiled = False
    http_compiled = importlib.import_module(server.config.http.__module__).COMPILED
    if http_compiled and compiled:
        assert module == "cyasgi._speedups.h2protocol"
    elif not http_compiled:
        assert module == "cyasgi.protocols.http2.protocol"


def test_scope(server, client):
    headers = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "example.org:8443"),
        (":path", "/sc%6Fpe?a=1&b=%20"),
        ("cookie", "a=1"),
        ("user-agent", "h2-test"),
        ("cookie", "b=2"),
        ("x-multi", "one"),
        ("x-multi", "two"),
    ]
    stream_id = client.conn.get_next_available_stream_id()
    client.conn.send_headers(stream_id, headers, end_stream=True)
    client.flush()
    response = client.response(stream_id)
    assert status(response) == 200
    info = json.loads(response["body"])
    assert info["http_version"] == "2"
    assert info["method"] == "GET"
    assert info["path"] == "/scope"
    assert info["raw_path"] == "/sc%6Fpe"
    assert info["query_string"] == "a=1&b=%20"
    assert info["scheme"] == "http"
    assert info["server"] == ["127.0.0.1", server.port]
    assert info["client"][0] == "127.0.0.1"
    assert info["client"][1] == client.sock.getsockname()[1]
    assert info["tls"] is False
    # Pseudo-headers removed, :authority first as host, cookie crumbs joined where the first one was.
    assert info["headers"] == [
        ["host", "example.org:8443"],
        ["cookie", "a=1; b=2"],
        ["user-agent", "h2-test"],
        ["x-multi", "one"],
        ["x-multi", "two"],
    ]


def test_authority_replaces_a_host_field(server, client):
    stream_id = client.conn.get_next_available_stream_id()
    headers = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "real"),
        (":path", "/scope"),
        ("host", "other"),
    ]
    client.conn.send_headers(stream_id, headers, end_stream=True)
    client.flush()
    info = json.loads(client.response(stream_id)["body"])
    assert [pair for pair in info["headers"] if pair[0] == "host"] == [["host", "real"]]
    assert info["headers"][0] == ["host", "real"]


def test_bodyless_get_gets_more_body_false_at_once(server, client, state):
    # uvicorn+zttp hangs here: the request ended with its HEADERS, receive() must say so at once.
    response = client.get("/receive-once", timeout=WAIT)
    assert status(response) == 200
    assert state.wait("receive-once") == {"type": "http.request", "body": b"", "more_body": False}


def test_post_one_mebibyte_echo(server, client):
    body = bytes(range(256)) * 4096
    stream_id = client.request("/echo", method="POST", body=body)
    response = client.response(stream_id)
    assert status(response) == 200
    assert response["body"] == body
    assert header(response, "content-length") == str(len(body))


def test_streaming_response(server, client):
    stream_id = client.request("/stream")
    response = client.response(stream_id)
    assert status(response) == 200
    assert response["body"] == b"chunk0;chunk1;chunk2;chunk3;chunk4;"
    assert header(response, "content-length") is None
    chunks = [
        e.data for e in client.events if isinstance(e, h2.events.DataReceived) and e.stream_id == stream_id
    ]
    assert len([chunk for chunk in chunks if chunk]) >= 2, chunks  # not collected into one body


def test_head_has_content_length_but_no_body(server, client):
    response = client.get("/hello", method="HEAD")
    assert status(response) == 200
    assert response["body"] == b""
    assert header(response, "content-length") == "13"
    data_frames = [e for e in client.events if isinstance(e, h2.events.DataReceived)]
    assert data_frames == []


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses(server, client, code):
    response = client.get(f"/status/{code}")
    assert status(response) == code
    assert response["body"] == b""
    assert response["ended"]


def test_http_disconnect_on_rst_stream(server, client, state):
    stream_id = client.request("/wait-disconnect")
    client.wait_for(lambda: client.responses.get(stream_id, {}).get("body"))
    state.wait("wait-disconnect-started")
    client.conn.reset_stream(stream_id, CANCEL)
    client.flush()
    assert state.wait("disconnect") == {"type": "http.disconnect"}
    # The connection goes on.
    assert status(client.get("/hello")) == 200


def test_http_disconnect_on_connection_loss(server, client, state):
    client.request("/wait-disconnect")
    state.wait("wait-disconnect-started")
    client.sock.shutdown(socket.SHUT_RDWR)
    client.sock.close()
    assert state.wait("disconnect") == {"type": "http.disconnect"}


def test_trailers_only_with_te_trailers(server, client):
    with_te = client.get("/trailers", te="trailers")
    assert status(with_te) == 200
    assert with_te["body"] == b"with trailers"
    assert with_te["trailers"] == [("x-checksum", "abc")]
    without = client.get("/trailers")
    assert status(without) == 200
    assert without["body"] == b"with trailers"
    assert without["trailers"] == []


def test_early_hints(server, client):
    response = client.get("/early-hint")
    assert response["informational"] == [
        [(":status", "103"), ("link", "</style.css>; rel=preload; as=style")]
    ]
    assert status(response) == 200
    assert response["body"] == b"after the hint"


@pytest.mark.parametrize("route", ["/pathsend", "/zerocopy"])
def test_file_bigger_than_the_window(twin, state, tmp_path, route):
    state.file_path = str(tmp_path / "file.bin")
    content = write_file(state.file_path, 3 * 262144 + 1234)  # three stream windows and then some
    with run_server(h2_config(make_app(state), twin)) as server:
        client = H2Client(server)
        response = client.get(route)
        client.close()
    assert status(response) == 200
    assert header(response, "content-length") == str(len(content))
    assert response["body"] == content
    state.wait(route[1:] + "-returned")


def test_access_log_says_http2(twin, state):
    with LogWatcher("uvicorn.access") as access, run_server(h2_config(make_app(state), twin)) as server:
        client = H2Client(server)
        assert status(client.get("/hello?x=1")) == 200
        line = access.wait_for("/hello?x=1")
        client.close()
    assert "HTTP/2" in line and "200" in line, line


def test_app_exception_is_a_500_on_its_stream_only(server, client, state):
    slow = client.request("/slow")
    state.wait("slow-started")
    response = client.get("/error")
    assert status(response) == 500
    assert response["body"] == b"Internal Server Error"
    assert status(client.get("/hello")) == 200
    state.set("slow-go")
    assert client.response(slow)["body"] == b"slow done"
    assert not client.closed


def test_app_exception_after_the_response_started_resets_the_stream(server, client):
    stream_id = client.request("/error-after-start")
    response = client.response(stream_id)
    assert status(response) == 200
    assert response["reset"] == INTERNAL_ERROR
    assert status(client.get("/hello")) == 200


def test_request_trailers_end_the_body_and_are_not_passed_on(server, client):
    stream_id = client.request("/echo", method="POST", body=b"body before trailers", end=False, te="trailers")
    client.conn.send_headers(stream_id, [("x-trailer", "t")], end_stream=True)
    client.flush()
    response = client.response(stream_id)
    assert status(response) == 200
    assert response["body"] == b"body before trailers"


@pytest.mark.parametrize("route", ["/bad-name", "/bad-value"])
def test_invalid_response_header_is_a_500(server, client, route):
    response = client.get(route)
    assert status(response) == 500
    assert status(client.get("/hello")) == 200


def test_connection_specific_response_headers_are_dropped(server, client):
    response = client.get("/connection-headers")
    assert status(response) == 200
    names = [name for name, _ in response["headers"]]
    assert "connection" not in names and "transfer-encoding" not in names
    assert header(response, "x-kept") == "yes"
    assert response["body"] == b"framed by HTTP/2"


def test_many_streams_on_one_connection(server, client):
    ids = [client.request("/hello") for _ in range(30)]
    for stream_id in ids:
        assert client.response(stream_id)["body"] == b"Hello, world!"


def test_a_response_head_bigger_than_a_frame_is_sent_with_continuation(server, client):
    response = client.get("/big-header")
    assert status(response) == 200
    assert header(response, "x-big") == "h" * 40000
    assert response["body"] == b"big head"


def test_the_client_header_table_size_is_honoured(server):
    # HEADER_TABLE_SIZE 0: nothing the server indexes may be referenced later; a decoder with a table of
    # 0 octets (hpack) fails on an index past the static table.
    decoder = hpack.Decoder()
    decoder.header_table_size = 0
    sock = raw_connect(server, settings=frame(SETTINGS, 0, 0, struct.pack(">HI", 1, 0)))
    data = b""
    for stream_id in (1, 3, 5):
        block = hpack.Encoder().encode(request_headers("/hello"))
        sock.sendall(frame(HEADERS, END_HEADERS | END_STREAM, stream_id, block))
        while not any(kind == HEADERS and sid == stream_id for kind, _, sid, _ in parse_frames(data)):
            chunk = sock.recv(65536)
            assert chunk, parse_frames(data)
            data += chunk
    sock.close()
    heads = [dict(decoder.decode(payload)) for kind, _, _, payload in parse_frames(data) if kind == HEADERS]
    assert [(head[":status"], head["server"]) for head in heads] == [("200", "cyasgi")] * 3
