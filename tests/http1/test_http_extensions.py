"""ASGI HTTP extensions in memory, for both twins ([c] and [py]): trailers, early hints, pathsend and
zerocopysend (over the in-memory transport, files go through the read-and-write path; the
sendfile(2) paths are in tests/http1/test_files_server.py)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from cyasgi.protocols.http.errors import ClientDisconnected
from cyasgi.protocols.http.wire import FILE_CHUNK_SIZE
from tests.utils import MockTransport, make_protocol, parse_responses

pytestmark = pytest.mark.anyio

SIMPLE_GET = b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n"
GET_TE = b"GET / HTTP/1.1\r\nHost: example.org\r\nTE: trailers\r\n\r\n"


def open_fds() -> set[str]:
    """What this process has open, by target (a file sent and closed leaves nothing behind)."""
    targets = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return {target for target in targets if target.startswith("/")}


@pytest.fixture
def data_file(tmp_path: Path) -> tuple[str, bytes]:
    data = os.urandom(3 * FILE_CHUNK_SIZE + 1234)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return str(path), data


async def settle(predicate: Any, rounds: int = 50) -> None:
    for _ in range(rounds):
        if predicate():
            return
        await asyncio.sleep(0)
    assert predicate()


# Trailers -------------------------------------------------------------------------------------


def trailers_app(
    bodies: Any = (b"hello", b" world"), trailers: Any = ((b"x-checksum", b"abc"),), headers: Any = ()
) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(headers), "trailers": True})
        for index, body in enumerate(bodies):
            await send({"type": "http.response.body", "body": body, "more_body": index < len(bodies) - 1})
        await send({"type": "http.response.trailers", "headers": list(trailers), "more_trailers": False})

    return app


async def test_trailers_are_written_in_the_last_chunk_when_the_client_asked(twin):
    protocol, transport = make_protocol(twin, trailers_app())
    protocol.data_received(GET_TE)
    await transport.wait_for(lambda: transport.buffer.endswith(b"\r\n\r\n") and b"x-checksum" in transport.buffer)
    raw = bytes(transport.buffer)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head and b"content-length" not in head
    assert body == b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: abc\r\n\r\n"
    assert not transport.closed


async def test_trailers_make_a_single_body_chunked_and_drop_its_content_length(twin):
    app = trailers_app(bodies=[b"whole"], headers=[(b"content-length", b"5")], trailers=[(b"X-Digest", b"d")])
    protocol, transport = make_protocol(twin, app)
    protocol.data_received(GET_TE)
    await transport.wait_for(lambda: transport.buffer.endswith(b"x-digest: d\r\n\r\n"))
    head, _, body = bytes(transport.buffer).partition(b"\r\n\r\n")
    assert b"content-length" not in head and b"transfer-encoding: chunked" in head
    assert body == b"5\r\nwhole\r\n0\r\nx-digest: d\r\n\r\n"


async def test_trailers_are_dropped_without_te_and_the_response_framed_as_usual(twin):
    protocol, transport = make_protocol(twin, trailers_app(bodies=[b"whole"]))
    protocol.data_received(SIMPLE_GET + SIMPLE_GET)
    first, second = await transport.responses(2)
    assert first.header(b"content-length") == b"5" and first.body == b"whole"
    assert second.body == b"whole"
    assert b"x-checksum" not in transport.buffer
    assert not transport.closed


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.0\r\nTE: trailers\r\n\r\n",
        b"HEAD / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nTE: gzip\r\n\r\n",
    ],
    ids=["http10", "head", "te-without-trailers"],
)
async def test_trailers_are_dropped_where_they_cannot_go(twin, request_bytes):
    protocol, transport = make_protocol(twin, trailers_app())
    protocol.data_received(request_bytes)
    [response] = await transport.responses(1, head_only=request_bytes.startswith(b"HEAD"))
    await transport.wait_for(lambda: transport.closed or protocol.active is None)
    assert b"x-checksum" not in transport.buffer


async def test_te_trailers_is_found_among_other_codings(twin):
    protocol, transport = make_protocol(twin, trailers_app())
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: a\r\nTE: gzip;q=0.5, Trailers\r\n\r\n")
    await transport.wait_for(lambda: transport.buffer.endswith(b"x-checksum: abc\r\n\r\n"))


async def test_several_trailer_messages_are_joined(twin):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"x"})
        await send({"type": "http.response.trailers", "headers": [(b"a", b"1")], "more_trailers": True})
        await send({"type": "http.response.trailers", "headers": [(b"b", b"2")]})

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(GET_TE)
    await transport.wait_for(lambda: transport.buffer.endswith(b"0\r\na: 1\r\nb: 2\r\n\r\n"))


async def test_the_next_pipelined_response_waits_for_the_trailers(twin):
    gate = asyncio.Event()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"first" if scope["path"] == "/1" else b"second"})
        if scope["path"] == "/1":
            await gate.wait()
        await send({"type": "http.response.trailers", "headers": [(b"x-n", scope["path"].encode())]})

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(
        b"GET /1 HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n"
    )
    await transport.wait_for(lambda: b"first" in transport.buffer)
    await settle(lambda: True)
    assert b"second" not in transport.buffer
    gate.set()
    await transport.wait_for(lambda: transport.buffer.endswith(b"x-n: /2\r\n\r\n"))
    raw = bytes(transport.buffer)
    assert raw.index(b"x-n: /1") < raw.index(b"second")


@pytest.mark.parametrize(
    "trailers, error",
    [
        ([(b"content-length", b"5")], "not allowed in trailers"),
        ([(b"Transfer-Encoding", b"chunked")], "not allowed in trailers"),
        ([(b"host", b"x")], "not allowed in trailers"),
        ([(b"x-a", b"1\r\nx-b: 2")], "Invalid HTTP trailer value"),
        ([(b"x-a", b"\x00")], "Invalid HTTP trailer value"),
        ([(b"bad name", b"1")], "Invalid HTTP trailer name"),
        ([("x-a", b"1")], "must be bytes"),
    ],
)
async def test_invalid_trailers_are_refused_and_the_connection_closed(twin, trailers, error, caplog):
    errors = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"x"})
        try:
            await send({"type": "http.response.trailers", "headers": trailers})
        except (RuntimeError, TypeError) as exc:
            errors.append(str(exc))
            raise

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(GET_TE)
    await transport.wait_for(lambda: transport.closed)
    assert len(errors) == 1 and error in errors[0]
    assert not bytes(transport.buffer).endswith(b"0\r\n\r\n")  # the client sees an incomplete body
    assert b"\r\nx-b" not in transport.buffer


async def test_a_body_after_the_last_body_is_refused_while_trailers_are_due(twin):
    errors = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"x"})
        try:
            await send({"type": "http.response.body", "body": b"y"})
        except RuntimeError as exc:
            errors.append(str(exc))
        await send({"type": "http.response.trailers", "headers": []})

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(GET_TE)
    await transport.wait_for(lambda: transport.buffer.endswith(b"0\r\n\r\n"))
    assert errors == ["Expected ASGI message 'http.response.trailers', but got 'http.response.body'."]
    assert not transport.closed


async def test_an_app_that_never_sends_its_trailers_gets_the_connection_closed(twin, caplog):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"x"})

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(GET_TE)
    await transport.wait_for(lambda: transport.closed)
    assert "returned without completing response" in caplog.text


async def test_a_failure_before_the_body_replaces_a_trailers_response_with_a_500(twin, caplog):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        raise ValueError("boom")

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(GET_TE)
    [response] = await transport.responses(1)
    assert response.status == 500 and response.body == b"Internal Server Error"
    await transport.wait_for(lambda: transport.closed)


# Early hints ----------------------------------------------------------------------------------


def early_hint_app(links: Any) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.early_hint", "links": links})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"page"})

    return app


async def test_early_hints_are_a_103_before_the_response(twin):
    links = [b"</style.css>; rel=preload; as=style", bytearray(b"</app.js>; rel=preload; as=script")]
    protocol, transport = make_protocol(twin, early_hint_app(links))
    protocol.data_received(SIMPLE_GET)
    hint, response = await transport.responses(2)
    assert bytes(transport.buffer).startswith(
        b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload; as=style\r\n"
        b"link: </app.js>; rel=preload; as=script\r\n\r\nHTTP/1.1 200 OK\r\n"
    )
    assert hint.status == 103 and response.status == 200 and response.body == b"page"


@pytest.mark.parametrize("request_bytes", [b"GET / HTTP/1.0\r\n\r\n", SIMPLE_GET], ids=["http10", "no-links"])
async def test_early_hints_are_dropped_for_http10_and_without_links(twin, request_bytes):
    links = [b"</a>; rel=preload"] if b"1.0" in request_bytes else []
    protocol, transport = make_protocol(twin, early_hint_app(links))
    protocol.data_received(request_bytes)
    [response] = await transport.responses(1)
    assert response.status == 200 and b"103" not in transport.buffer


@pytest.mark.parametrize(
    "links, error",
    [([b"</a>\r\nx-evil: 1"], RuntimeError), ([b""], RuntimeError), (["</a>"], TypeError), (b"</a>", TypeError)],
)
async def test_invalid_early_hints_are_refused(twin, links, error):
    errors = []

    async def app(scope, receive, send):
        try:
            await send({"type": "http.response.early_hint", "links": links})
        except Exception as exc:
            errors.append(type(exc))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"page"})

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(SIMPLE_GET)
    [response] = await transport.responses(1)
    assert errors == [error] and response.status == 200 and b"103" not in transport.buffer


async def test_an_early_hint_after_the_start_is_an_error(twin):
    errors = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            await send({"type": "http.response.early_hint", "links": [b"</a>"]})
        except RuntimeError as exc:
            errors.append(str(exc))
        await send({"type": "http.response.body", "body": b"page"})

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(SIMPLE_GET)
    [response] = await transport.responses(1)
    assert errors == ["Expected ASGI message 'http.response.body', but got 'http.response.early_hint'."]
    assert b"103" not in transport.buffer


# Files: pathsend and zerocopysend over the read-and-write path ---------------------------------


def pathsend_app(path: str, headers: Any = (), before: Any = None) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        if before is not None:
            await send({"type": "http.response.body", "body": before, "more_body": True})
        await send({"type": "http.response.pathsend", "path": path})

    return app


async def test_pathsend_gets_the_file_with_its_size_as_content_length(twin, data_file):
    path, data = data_file
    fds = open_fds()
    protocol, transport = make_protocol(twin, pathsend_app(path))
    protocol.data_received(SIMPLE_GET + SIMPLE_GET)
    first, second = await transport.responses(2)
    assert first.header(b"content-length") == str(len(data)).encode()
    assert first.body == data and second.body == data
    assert not transport.closed
    await settle(lambda: open_fds() == fds)  # closed once the app's send returns


async def test_pathsend_after_a_streamed_body_is_one_chunk(twin, data_file):
    path, data = data_file
    protocol, transport = make_protocol(twin, pathsend_app(path, before=b"prefix"))
    protocol.data_received(SIMPLE_GET)
    [response] = await transport.responses(1)
    assert response.chunked and response.body == b"prefix" + data
    assert bytes(transport.buffer).endswith(b"\r\n0\r\n\r\n")


async def test_pathsend_with_the_apps_content_length(twin, data_file):
    path, data = data_file
    protocol, transport = make_protocol(twin, pathsend_app(path, headers=[(b"content-length", b"%d" % len(data))]))
    protocol.data_received(SIMPLE_GET)
    [response] = await transport.responses(1)
    assert response.header_list(b"content-length") == [b"%d" % len(data)] and response.body == data


async def test_pathsend_longer_than_content_length_is_refused(twin, data_file, caplog):
    path, data = data_file
    protocol, transport = make_protocol(twin, pathsend_app(path, headers=[(b"content-length", b"10")]))
    protocol.data_received(SIMPLE_GET)
    await transport.wait_for(lambda: transport.closed)
    assert "Response content longer than Content-Length" in caplog.text
    assert data[:10] not in transport.buffer


async def test_pathsend_to_head_writes_no_body(twin, data_file):
    path, data = data_file
    protocol, transport = make_protocol(twin, pathsend_app(path, headers=[(b"content-length", b"%d" % len(data))]))
    protocol.data_received(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n" + SIMPLE_GET)
    await transport.wait_for(lambda: len(transport.buffer) > len(data))
    raw = bytes(transport.buffer)
    first_end = raw.index(b"\r\n\r\n") + 4
    assert raw[first_end:].startswith(b"HTTP/1.1 200 OK\r\n")  # the GET's head follows the HEAD's at once
    assert parse_responses(raw[first_end:])[0].body == data


@pytest.mark.parametrize("kind", ["missing", "directory", "not a path"])
async def test_pathsend_of_a_bad_path_is_an_error_for_the_app_and_a_500(twin, tmp_path, kind, caplog):
    path: Any = {"missing": str(tmp_path / "nope"), "directory": str(tmp_path), "not a path": 42}[kind]
    expected = {"missing": FileNotFoundError, "directory": RuntimeError, "not a path": TypeError}[kind]
    errors = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            await send({"type": "http.response.pathsend", "path": path})
        except Exception as exc:
            errors.append(type(exc))
            raise

    fds = open_fds()
    protocol, transport = make_protocol(twin, app)
    protocol.data_received(SIMPLE_GET)
    [response] = await transport.responses(1)
    assert errors == [expected]
    assert response.status == 500
    await settle(lambda: open_fds() == fds)  # closed once the app's send returns


async def test_a_file_waits_for_the_transport_to_drain(twin, data_file):
    """Flow control: the file goes out a chunk at a time, and not while the transport is full."""
    path, data = data_file
    protocol, transport = make_protocol(twin, pathsend_app(path))
    sizes = []
    real_write = transport.write

    def write_with_backpressure(chunk):
        sizes.append(len(chunk))
        real_write(chunk)
        protocol.pause_writing()

    transport.write = write_with_backpressure
    protocol.data_received(SIMPLE_GET)
    await transport.wait_for(lambda: len(transport.buffer) > 0)
    await settle(lambda: True)
    assert len(transport.buffer) <= FILE_CHUNK_SIZE + 1024  # the head and one chunk, no more
    while len(transport.buffer) < len(data):
        written = len(transport.buffer)
        protocol.resume_writing()
        await transport.wait_for(lambda: len(transport.buffer) > written)
    protocol.resume_writing()
    [response] = await transport.responses(1)
    assert response.body == data
    assert max(sizes) <= FILE_CHUNK_SIZE


async def test_a_client_gone_mid_file_raises_client_disconnected(twin, data_file):
    path, data = data_file
    outcome = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            await send({"type": "http.response.pathsend", "path": path})
        except ClientDisconnected:
            outcome.append("disconnected")

    fds = open_fds()
    protocol, transport = make_protocol(twin, app)
    real_write = transport.write

    def write_with_backpressure(chunk):
        real_write(chunk)
        protocol.pause_writing()

    transport.write = write_with_backpressure
    protocol.data_received(SIMPLE_GET)
    await transport.wait_for(lambda: len(transport.buffer) > FILE_CHUNK_SIZE // 2)
    transport.close()
    protocol.connection_lost(None)
    await settle(lambda: outcome == ["disconnected"])
    assert len(transport.buffer) < len(data)
    await settle(lambda: open_fds() == fds)  # closed once the app's send returns


async def test_zerocopysend_with_offset_count_and_more_body(twin, data_file):
    path, data = data_file
    with open(path, "rb") as file:

        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send(
                {"type": "http.response.zerocopysend", "file": file, "offset": 10, "count": 100, "more_body": True}
            )
            await send({"type": "http.response.body", "body": b"|", "more_body": True})
            await send({"type": "http.response.zerocopysend", "file": file, "count": 5, "more_body": True})
            await send({"type": "http.response.zerocopysend", "file": file, "offset": len(data) - 3})

        protocol, transport = make_protocol(twin, app)
        protocol.data_received(SIMPLE_GET)
        [response] = await transport.responses(1)
        assert response.chunked
        assert response.body == data[10:110] + b"|" + data[:5] + data[-3:]
        assert file.tell() == 5  # without an offset the position moves past the bytes sent; with one it stays


async def test_zerocopysend_alone_gets_a_content_length_and_stops_at_the_end_of_the_file(twin, data_file):
    path, data = data_file
    with open(path, "rb") as file:
        file.seek(len(data) - 50)

        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.zerocopysend", "file": file, "count": 1000})

        protocol, transport = make_protocol(twin, app)
        protocol.data_received(SIMPLE_GET)
        [response] = await transport.responses(1)
        assert response.header(b"content-length") == b"50" and response.body == data[-50:]


@pytest.mark.parametrize("message", [{"offset": -1}, {"count": "10"}, {"file": "not a file"}])
async def test_zerocopysend_bad_fields_are_errors(twin, data_file, message):
    path, _ = data_file
    errors = []
    with open(path, "rb") as file:

        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            try:
                await send({"type": "http.response.zerocopysend", "file": file, **message})
            except (RuntimeError, TypeError) as exc:
                errors.append(exc)
                raise

        protocol, transport = make_protocol(twin, app)
        protocol.data_received(SIMPLE_GET)
        [response] = await transport.responses(1)
    assert len(errors) == 1 and response.status == 500


async def test_http10_streamed_zerocopysend_ends_at_close(twin, data_file):
    path, data = data_file
    with open(path, "rb") as file:

        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.zerocopysend", "file": file, "offset": 0, "more_body": True})
            await send({"type": "http.response.body", "body": b"end"})

        protocol, transport = make_protocol(twin, app)
        protocol.data_received(b"GET / HTTP/1.0\r\n\r\n")
        await transport.wait_for(lambda: transport.closed)
        [response] = parse_responses(bytes(transport.buffer))
        assert response.header(b"content-length") is None and not response.chunked
        assert response.body == data + b"end"


async def test_pathsend_with_trailers(twin, data_file):
    path, data = data_file

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.pathsend", "path": path})
        await send({"type": "http.response.trailers", "headers": [(b"x-sum", b"1")]})

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(GET_TE)
    await transport.wait_for(lambda: transport.buffer.endswith(b"0\r\nx-sum: 1\r\n\r\n"))
    head, _, body = bytes(transport.buffer).partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    assert body == b"%x\r\n" % len(data) + data + b"\r\n0\r\nx-sum: 1\r\n\r\n"


async def test_the_transport_sees_the_batched_head_before_the_file(twin, data_file):
    """Pipelined responses are batched into one write; a file is written after the batch is flushed."""
    path, data = data_file
    calls = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if scope["path"] == "/file":
            await send({"type": "http.response.pathsend", "path": path})
        else:
            await send({"type": "http.response.body", "body": b"small"})

    transport = MockTransport()
    real_write = transport.write

    def write(chunk):
        calls.append(bytes(chunk[:16]))
        real_write(chunk)

    transport.write = write
    protocol, transport = make_protocol(twin, app, transport=transport)
    protocol.data_received(
        b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /file HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    responses = await transport.responses(3)
    assert [r.body for r in responses] == [b"small", data, b"small"]
