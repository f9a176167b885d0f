"""The HTTP/1.1 protocol contract, in memory: every test runs against both twins ([c] and [py])."""

from __future__ import annotations

import asyncio
import contextvars
import copy
import logging
import time
from typing import Any

import pytest

from cyasgi._compat import HAS_EAGER_TASKS
from cyasgi.protocols.http.wire import FOREIGN_FEED_STEP, PIPELINE_HEAD_LIMIT, PIPELINE_LIMIT, SHUTDOWN_GRACE
from tests.utils import MockTransport, make_protocol, parse_responses

pytestmark = pytest.mark.anyio

SIMPLE_GET = b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n"


def body_app(body: bytes = b"Hello, world", status: int = 200, headers: Any = None) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers or []})
        await send({"type": "http.response.body", "body": body})

    return app


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    chunks = []
    more_body = True
    while more_body:
        message = await receive()
        assert message["type"] == "http.request"
        chunks.append(message["body"])
        more_body = message["more_body"]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"".join(chunks)})


def connection_lost(protocol: Any, transport: MockTransport) -> None:
    transport.close()
    protocol.connection_lost(None)


# Framing ---------------------------------------------------------------------------------------


async def test_get_with_known_body_gets_content_length(twin):
    protocol, transport = make_protocol(twin, body_app(b"abc", headers=[(b"content-type", b"text/plain")]))
    protocol.data_received(SIMPLE_GET)
    [response] = await transport.responses(1)
    assert response.status == 200
    assert response.reason == b"OK"
    assert response.body == b"abc"
    assert response.header(b"content-length") == b"3"
    assert response.header(b"transfer-encoding") is None
    assert response.header(b"server") == b"cyasgi"
    assert response.header(b"date") is not None
    assert response.header(b"content-type") == b"text/plain"
    assert not transport.closed


async def test_default_headers_come_first_then_app_headers_in_order(twin):
    headers = [(b"x-b", b"2"), (b"x-a", b"1"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
    protocol, transport = make_protocol(twin, body_app(b"", headers=headers))
    protocol.data_received(SIMPLE_GET)
    [response] = await transport.responses(1)
    names = [name for name, _ in response.headers]
    assert names[:2] == [b"date", b"server"]
    assert names[2:6] == [b"x-b", b"x-a", b"set-cookie", b"set-cookie"]
    assert response.header_list(b"set-cookie") == [b"a=1", b"b=2"]


async def test_header_names_are_lowercased(twin):
    protocol, transport = make_protocol(twin, body_app(b"", headers=[(b"X-Custom", b"Value")]))
    protocol.data_received(SIMPLE_GET)
    await transport.responses(1)
    assert b"\r\nx-custom: Value\r\n" in bytes(transport.buffer)


async def test_streaming_response_is_chunked(twin):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        await send({"type": "http.response.body", "body": b"two", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(SIMPLE_GET)
    [response] = await transport.responses(1)
    assert response.chunked
    assert response.header(b"transfer-encoding") == b"chunked"
    assert response.header(b"content-length") is None
    assert response.body == b"onetwo"
    assert bytes(transport.buffer).endswith(b"3\r\ntwo\r\n0\r\n\r\n")


async def test_streaming_with_content_length_is_not_chunked(twin):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"6")]})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"def"})

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(SIMPLE_GET)
    [response] = await transport.responses(1)
    assert not response.chunked
    assert response.body == b"abcdef"


async def test_app_transfer_encoding_is_ignored_and_framing_is_the_servers(twin):
    headers = [(b"transfer-encoding", b"chunked")]
    protocol, transport = make_protocol(twin, body_app(b"whole", headers=headers))
    protocol.data_received(SIMPLE_GET)
    [response] = await transport.responses(1)
    assert response.header_list(b"transfer-encoding") == []
    assert response.header(b"content-length") == b"5"
    assert response.body == b"whole"


async def test_large_body_is_written(twin):
    body = b"x" * 300_000
    protocol, transport = make_protocol(twin, body_app(body))
    protocol.data_received(SIMPLE_GET)
    [response] = await transport.responses(1)
    assert response.body == body


async def test_head_response_has_no_body_but_keeps_content_length(twin):
    protocol, transport = make_protocol(twin, body_app(b"abcdef", headers=[(b"content-length", b"6")]))
    protocol.data_received(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    await transport.wait_for(lambda: b"\r\n\r\n" in transport.buffer)
    head, _, rest = bytes(transport.buffer).partition(b"\r\n\r\n")
    assert rest == b""
    assert b"content-length: 6" in head
    assert not transport.closed


@pytest.mark.parametrize("status", [204, 304])
async def test_bodyless_statuses_send_no_body_and_no_framing(twin, status):
    protocol, transport = make_protocol(twin, body_app(b"ignored", status=status))
    protocol.data_received(SIMPLE_GET)
    await transport.wait_for(lambda: b"\r\n\r\n" in transport.buffer)
    head, _, rest = bytes(transport.buffer).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status)
    assert rest == b""
    assert b"content-length" not in head
    assert b"transfer-encoding" not in head


async def test_unknown_status_gets_empty_reason(twin):
    protocol, transport = make_protocol(twin, body_app(b"", status=599))
    protocol.data_received(SIMPLE_GET)
    await transport.wait_for(lambda: b"\r\n\r\n" in transport.buffer)
    assert bytes(transport.buffer).startswith(b"HTTP/1.1 599 \r\n")


async def test_content_length_longer_than_declared_before_anything_is_written_gives_500(twin, caplog):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"abc"})

    protocol, transport = make_protocol(twin, app)
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        protocol.data_received(SIMPLE_GET)
        await transport.wait_for(lambda: transport.closed)
    [response] = parse_responses(bytes(transport.buffer))
    assert response.status == 500
    assert response.header(b"connection") == b"close"
    assert "Response content longer than Content-Length" in caplog.text


async def test_content_length_longer_than_declared_mid_body_closes_connection(twin, caplog):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await send({"type": "http.response.body", "body": b"cde"})

    protocol, transport = make_protocol(twin, app)
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        protocol.data_received(SIMPLE_GET)
        await transport.wait_for(lambda: transport.closed)
    data = bytes(transport.buffer)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nab")  # cut short: never cde
    assert "Response content longer than Content-Length" in caplog.text


async def test_content_length_shorter_than_declared_closes_connection(twin, caplog):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"abc"})

    protocol, transport = make_protocol(twin, app)
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        protocol.data_received(SIMPLE_GET)
        await transport.wait_for(lambda: transport.closed)
    assert "Response content shorter than Content-Length" in caplog.text


# Request bodies --------------------------------------------------------------------------------


async def test_body_in_same_packet_arrives_whole(twin):
    protocol, transport = make_protocol(twin, echo_app)
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    [response] = await transport.responses(1)
    assert response.body == b"hello"


async def test_chunked_request_body_is_decoded(twin):
    protocol, transport = make_protocol(twin, echo_app)
    protocol.data_received(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    [response] = await transport.responses(1)
    assert response.body == b"hello world"


async def test_body_split_over_packets_streams_with_more_body(twin):
    messages = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            messages.append(message)
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
    await asyncio.sleep(0)
    for _ in range(5):
        await asyncio.sleep(0)
    protocol.data_received(b"def")
    await transport.responses(1)
    assert b"".join(m["body"] for m in messages) == b"abcdef"
    assert messages[-1]["more_body"] is False
    assert all(m["type"] == "http.request" for m in messages)


async def test_receive_after_body_waits_for_disconnect(twin):
    seen = []

    async def app(scope, receive, send):
        seen.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok", "more_body": True})
        seen.append(await receive())  # blocks until the client goes away

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(SIMPLE_GET)
    await transport.wait_for(lambda: b"ok" in transport.buffer)
    assert len(seen) == 1
    connection_lost(protocol, transport)
    for _ in range(20):
        if len(seen) == 2:
            break
        await asyncio.sleep(0)
    assert seen == [{"type": "http.request", "body": b"", "more_body": False}, {"type": "http.disconnect"}]


async def test_receive_after_response_complete_is_disconnect(twin):
    results = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        results.append(await receive())

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    await transport.responses(1)
    for _ in range(20):
        if results:
            break
        await asyncio.sleep(0)
    assert results == [{"type": "http.disconnect"}]


async def test_expect_100_continue_is_sent_on_first_receive(twin):
    gate = asyncio.Event()

    async def app(scope, receive, send):
        await gate.wait()
        message = await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": message["body"]})

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    for _ in range(5):
        await asyncio.sleep(0)
    assert transport.buffer == b""  # nothing until the app asks for the body
    gate.set()
    await transport.wait_for(lambda: b"100 Continue" in transport.buffer)
    assert bytes(transport.buffer) == b"HTTP/1.1 100 Continue\r\n\r\n"
    protocol.data_received(b"abc")
    responses = await transport.responses(2)
    assert [r.status for r in responses] == [100, 200]
    assert responses[1].body == b"abc"


async def test_no_100_continue_when_app_answers_without_reading(twin):
    protocol, transport = make_protocol(twin, body_app(b"no thanks", status=417))
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    [response] = await transport.responses(1)
    assert response.status == 417
    assert b"100 Continue" not in transport.buffer


async def test_unread_body_is_skipped_and_connection_reused(twin):
    protocol, transport = make_protocol(twin, body_app(b"ignored your body"))
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel")
    await transport.responses(1)
    protocol.data_received(b"lo" + SIMPLE_GET)
    responses = await transport.responses(2)
    assert [r.status for r in responses] == [200, 200]
    assert not transport.closed


# Keep-alive and pipelining ---------------------------------------------------------------------


async def test_keep_alive_serves_sequential_requests(twin):
    protocol, transport = make_protocol(twin, body_app(b"x"))
    for count in range(1, 4):
        protocol.data_received(SIMPLE_GET)
        await transport.responses(count)
    assert not transport.closed


async def test_connection_close_request_closes_after_response(twin):
    protocol, transport = make_protocol(twin, body_app(b"bye"))
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    [response] = await transport.responses(1)
    await transport.wait_for(lambda: transport.closed)
    assert response.header(b"connection") == b"close"


async def test_app_connection_close_header_closes(twin):
    protocol, transport = make_protocol(twin, body_app(b"bye", headers=[(b"connection", b"close")]))
    protocol.data_received(SIMPLE_GET)
    await transport.responses(1)
    await transport.wait_for(lambda: transport.closed)
    assert bytes(transport.buffer).count(b"connection: close") == 1


async def test_http10_closes_by_default(twin):
    protocol, transport = make_protocol(twin, body_app(b"old"))
    protocol.data_received(b"GET / HTTP/1.0\r\n\r\n")
    [response] = await transport.responses(1)
    await transport.wait_for(lambda: transport.closed)
    assert response.header(b"connection") == b"close"
    assert response.body == b"old"


async def test_http10_keep_alive_is_honoured(twin):
    protocol, transport = make_protocol(twin, body_app(b"old"))
    protocol.data_received(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    [response] = await transport.responses(1)
    assert response.header(b"connection") == b"keep-alive"
    assert response.header(b"content-length") == b"3"
    assert not transport.closed


async def test_http10_streaming_ends_with_close_not_chunks(twin):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    await transport.wait_for(lambda: transport.closed)
    head, _, body = bytes(transport.buffer).partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head
    assert body == b"ab"


async def test_pipelined_requests_answered_in_order(twin):
    async def app(scope, receive, send):
        # later requests finish faster: order must still follow arrival
        delay = {"/1": 3, "/2": 1, "/3": 0}[scope["path"]]
        for _ in range(delay):
            await asyncio.sleep(0)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in (1, 2, 3)))
    responses = await transport.responses(3)
    assert [r.body for r in responses] == [b"/1", b"/2", b"/3"]


async def test_pipelined_responses_leave_in_one_write(twin):
    protocol, transport = make_protocol(twin, body_app(b"x"))
    protocol.data_received(SIMPLE_GET * 8)
    responses = await transport.responses(8)
    assert [r.body for r in responses] == [b"x"] * 8
    if HAS_EAGER_TASKS:
        # Apps that finish without waiting are answered inside one dispatch loop: one writev.
        assert transport.calls == ["writelines"]
    else:
        assert len(transport.calls) == 8  # each app runs in its own task step


async def test_pipelined_request_waits_and_reading_pauses(twin):
    release = asyncio.Event()
    started = []

    async def app(scope, receive, send):
        started.append(scope["path"])
        if scope["path"] == "/slow":
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
    for _ in range(5):
        await asyncio.sleep(0)
    assert started == ["/slow"]
    assert transport.read_paused
    release.set()
    responses = await transport.responses(2)
    assert [r.body for r in responses] == [b"/slow", b"/fast"]
    await transport.wait_for(lambda: not transport.read_paused)


async def test_pipelined_bodies_go_to_the_right_request(twin):
    protocol, transport = make_protocol(twin, echo_app)
    protocol.data_received(
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nAAA"
        b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nBB\r\n0\r\n\r\n"
        b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    responses = await transport.responses(3)
    assert [r.body for r in responses] == [b"AAA", b"BB", b""]


# Scope -----------------------------------------------------------------------------------------


async def test_scope_has_every_key(twin):
    scopes = []

    async def app(scope, receive, send):
        scopes.append(scope)
        await body_app()(scope, receive, send)

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(
        b"GET /caf%C3%A9/a%2Fb?x=1&y=%20 HTTP/1.1\r\nHost: example.org\r\nX-Mixed-Case: Value\r\n\r\n"
    )
    await transport.responses(1)
    [scope] = scopes
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["server"] == ("127.0.0.1", 8000)
    assert scope["client"] == ("127.0.0.1", 54321)
    assert isinstance(scope["client"][1], int)
    assert scope["root_path"] == ""
    assert scope["path"] == "/café/a/b"
    assert scope["raw_path"] == b"/caf%C3%A9/a%2Fb"
    assert scope["query_string"] == b"x=1&y=%20"
    assert scope["headers"] == [(b"host", b"example.org"), (b"x-mixed-case", b"Value")]
    assert scope["state"] == {}
    assert scope["extensions"] == {
        "http.response.pathsend": {},
        "http.response.zerocopysend": {},
        "http.response.trailers": {},
        "http.response.early_hint": {},
    }


async def test_every_request_gets_a_scope_of_its_own(twin):
    """What an app does to its scope (its nested dicts included) never reaches the next request
    on the connection."""
    scopes = []

    async def app(scope, receive, send):
        scopes.append(copy.deepcopy(scope))  # as the app got it
        scope["asgi"]["version"] = "changed"
        scope["extensions"]["changed"] = {}
        scope["state"]["changed"] = True
        scope["server"] = scope["client"] = None
        scope["added"] = True
        await body_app()(scope, receive, send)

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(SIMPLE_GET + b"GET /second?q HTTP/1.1\r\nHost: example.org\r\n\r\n")
    await transport.responses(2)
    first, second = scopes
    assert list(second) == list(first)  # the same keys in the same order, and nothing added
    assert second["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert "changed" not in second["extensions"] and second["state"] == {}
    assert second["server"] == ("127.0.0.1", 8000) and second["client"] == ("127.0.0.1", 54321)
    assert (second["path"], second["query_string"]) == ("/second", b"q")


async def test_scheme_is_https_over_tls(twin):
    scopes = []

    async def app(scope, receive, send):
        scopes.append(scope)
        await body_app()(scope, receive, send)

    protocol, transport = make_protocol(twin, app, transport=MockTransport(ssl=True))
    protocol.data_received(SIMPLE_GET)
    await transport.responses(1)
    assert scopes[0]["scheme"] == "https"


async def test_unix_socket_server_and_client(twin):
    scopes = []

    async def app(scope, receive, send):
        scopes.append(scope)
        await body_app()(scope, receive, send)

    protocol, transport = make_protocol(twin, app, transport=MockTransport(sockname="/tmp/app.sock", peername=""))
    protocol.data_received(SIMPLE_GET)
    await transport.responses(1)
    assert scopes[0]["server"] == ("/tmp/app.sock", None)
    assert scopes[0]["client"] is None


async def test_root_path_is_prepended_to_path_and_raw_path(twin):
    scopes = []

    async def app(scope, receive, send):
        scopes.append(scope)
        await body_app()(scope, receive, send)

    protocol, transport = make_protocol(twin, app, root_path="/api")
    protocol.data_received(b"GET /items?q=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    await transport.responses(1)
    assert scopes[0]["root_path"] == "/api"
    assert scopes[0]["path"] == "/api/items"
    assert scopes[0]["raw_path"] == b"/api/items"


async def test_absolute_form_target(twin):
    scopes = []

    async def app(scope, receive, send):
        scopes.append(scope)
        await body_app()(scope, receive, send)

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(b"GET http://example.org/p/q?z=9 HTTP/1.1\r\nHost: example.org\r\n\r\n")
    await transport.responses(1)
    assert scopes[0]["path"] == "/p/q"
    assert scopes[0]["query_string"] == b"z=9"


async def test_state_is_a_shallow_copy_per_request(twin):
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["state"])
        scope["state"]["mutated"] = True
        await body_app()(scope, receive, send)

    protocol, transport = make_protocol(twin, app)
    protocol.app_state["shared"] = [1]
    protocol.data_received(SIMPLE_GET + SIMPLE_GET)
    await transport.responses(2)
    assert seen[0] is not seen[1]
    assert seen[0]["shared"] is seen[1]["shared"]
    assert "mutated" not in protocol.app_state


async def test_each_request_runs_in_its_own_context(twin):
    request_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_var", default="unset")
    seen = []

    async def app(scope, receive, send):
        seen.append(request_var.get())
        request_var.set(scope["path"])
        await body_app()(scope, receive, send)

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    await transport.responses(2)
    protocol.data_received(SIMPLE_GET)
    await transport.responses(3)
    assert seen == ["unset", "unset", "unset"]


async def test_reset_contextvars_hides_outer_context(twin):
    outer: contextvars.ContextVar[str] = contextvars.ContextVar("outer", default="default")
    seen = []

    async def app(scope, receive, send):
        seen.append(outer.get())
        await body_app()(scope, receive, send)

    token = outer.set("from lifespan")
    try:
        protocol, transport = make_protocol(twin, app)
        protocol_reset, transport_reset = make_protocol(twin, app, reset_contextvars=True)
    finally:
        outer.reset(token)
    protocol.data_received(SIMPLE_GET)
    await transport.responses(1)
    protocol_reset.data_received(SIMPLE_GET)
    await transport_reset.responses(1)
    assert seen == ["from lifespan", "default"]


# Application errors ------------------------------------------------------------------------------


async def test_exception_before_response_gives_500_and_close(twin, caplog):
    async def app(scope, receive, send):
        raise ValueError("boom")

    protocol, transport = make_protocol(twin, app)
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        protocol.data_received(SIMPLE_GET)
        [response] = await transport.responses(1)
        await transport.wait_for(lambda: transport.closed)
    assert response.status == 500
    assert response.body == b"Internal Server Error"
    assert response.header(b"connection") == b"close"
    assert "Exception in ASGI application" in caplog.text
    assert "ValueError: boom" in caplog.text


async def test_exception_after_start_before_body_still_gives_500(twin):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise ValueError("boom")

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(SIMPLE_GET)
    [response] = await transport.responses(1)
    assert response.status == 500


async def test_exception_mid_stream_closes_without_more_bytes(twin, caplog):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("boom")

    protocol, transport = make_protocol(twin, app)
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        protocol.data_received(SIMPLE_GET)
        await transport.wait_for(lambda: transport.closed)
    data = bytes(transport.buffer)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert not data.endswith(b"0\r\n\r\n")  # the client sees a truncated body, not a complete one
    assert caplog.text.count("Exception in ASGI application") == 1


async def test_app_returning_without_response_gives_500(twin, caplog):
    async def app(scope, receive, send):
        return None

    protocol, transport = make_protocol(twin, app)
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        protocol.data_received(SIMPLE_GET)
        [response] = await transport.responses(1)
    assert response.status == 500
    assert "ASGI callable returned without starting response." in caplog.text


async def test_app_returning_mid_stream_closes(twin, caplog):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})

    protocol, transport = make_protocol(twin, app)
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        protocol.data_received(SIMPLE_GET)
        await transport.wait_for(lambda: transport.closed)
    assert "ASGI callable returned without completing response." in caplog.text


async def test_app_returning_a_value_is_logged(twin, caplog):
    async def app(scope, receive, send):
        await body_app()(scope, receive, send)
        return "unexpected"

    protocol, transport = make_protocol(twin, app)
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        protocol.data_received(SIMPLE_GET)
        [response] = await transport.responses(1)
        await transport.wait_for(lambda: "should return None" in caplog.text)
    assert "ASGI callable should return None, but returned 'unexpected'." in caplog.text
    # The response was complete: the connection stays usable (a pipelined request may follow).
    assert response.status == 200
    assert not transport.closed


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-bad", b"value\r\nInjected: yes")],
        [(b"x-bad", b"nul\x00byte")],
        [(b"bad name", b"v")],
        [(b"bad:name", b"v")],
        [(b"", b"v")],
        [(b"x-lf", b"line\nbreak")],
        [(b"x-cr", b"bad\r")],
        [(b"x-crlf-name\r\nInjected", b"v")],
        [(b"x-split", b"v\r\n\r\nHTTP/1.1 200 OK\r\nInjected: yes")],
        [(b"x-tab-name\t", b"v")],
        [(b"x-del", b"bad\x7f")],
        [(b"x-esc", b"bad\x1b[31m")],
        [(b"x-ok", b"fine"), (b"x-bad", b"second\x00")],
        [(bytearray(b"x-bytearray"), bytearray(b"bad\nInjected: yes"))],
        [(memoryview(b"x-memoryview"), memoryview(b"bad\r\nInjected: yes"))],
    ],
)
async def test_invalid_response_headers_are_never_written(twin, headers, caplog):
    protocol, transport = make_protocol(twin, body_app(b"body", headers=headers))
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        protocol.data_received(SIMPLE_GET)
        [response] = await transport.responses(1)
        await transport.wait_for(lambda: transport.closed)
    assert response.status == 500
    assert response.header(b"connection") == b"close"
    assert b"Injected" not in transport.buffer
    assert b"bad" not in bytes(transport.buffer).lower().replace(b"bad request", b"")
    assert b"x-ok" not in transport.buffer  # nothing of the refused head is written
    assert "Invalid HTTP header" in caplog.text
    assert caplog.text.count("Exception in ASGI application") == 1


@pytest.mark.parametrize(
    "headers, what",
    [
        ([("x-str-name", b"v")], "header name must be bytes, not str"),
        ([(b"x-str-value", "v")], "header value must be bytes, not str"),
        ([(b"x-int", 0)], "header value must be bytes, not int"),  # bytes(0) would be an empty value
        ([(b"x-int", 5)], "header value must be bytes, not int"),  # bytes(5) would be five NUL bytes
        ([(b"x-none", None)], "header value must be bytes, not NoneType"),
        ([(7, b"v")], "header name must be bytes, not int"),
    ],
)
async def test_response_headers_that_are_not_bytes_are_refused(twin, headers, what, caplog):
    protocol, transport = make_protocol(twin, body_app(b"body", headers=headers))
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        protocol.data_received(SIMPLE_GET)
        [response] = await transport.responses(1)
    assert response.status == 500
    assert b"x-" not in transport.buffer
    assert what in caplog.text


async def test_bytes_like_response_headers_and_bodies_are_written(twin):
    async def app(scope, receive, send):
        headers = [(bytearray(b"X-Array"), bytearray(b"one")), (memoryview(b"x-view"), memoryview(b"two"))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": bytearray(b"abc"), "more_body": True})
        await send({"type": "http.response.body", "body": memoryview(b"def")})

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(SIMPLE_GET)
    [response] = await transport.responses(1)
    assert response.header(b"x-array") == b"one" and response.header(b"x-view") == b"two"
    assert response.body == b"abcdef"


@pytest.mark.parametrize("body", ["text", 5, None, [b"a"]])
async def test_a_body_that_is_not_bytes_is_refused(twin, body, caplog):
    protocol, transport = make_protocol(twin, body_app(body))  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        protocol.data_received(SIMPLE_GET)
        [response] = await transport.responses(1)
    assert response.status == 500
    assert f"body must be bytes, not {type(body).__name__}" in caplog.text


@pytest.mark.parametrize("status", [99, 600, 1000, -200, 0, "200", None, 200.0, True, b"200"])
async def test_invalid_status_gives_500(twin, status):
    protocol, transport = make_protocol(twin, body_app(b"x", status=status))
    protocol.data_received(SIMPLE_GET)
    [response] = await transport.responses(1)
    assert response.status == 500


@pytest.mark.parametrize("value", [b"abc", b"-1", b"1, 2"])
async def test_invalid_response_content_length_gives_500(twin, value):
    protocol, transport = make_protocol(twin, body_app(b"x", headers=[(b"content-length", value)]))
    protocol.data_received(SIMPLE_GET)
    [response] = await transport.responses(1)
    assert response.status == 500


async def test_body_before_start_is_an_error_for_the_app(twin):
    errors = []

    async def app(scope, receive, send):
        try:
            await send({"type": "http.response.body", "body": b"early"})
        except RuntimeError as exc:
            errors.append(str(exc))
        await body_app()(scope, receive, send)

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(SIMPLE_GET)
    [response] = await transport.responses(1)
    assert response.status == 200
    assert errors == ["Expected ASGI message 'http.response.start', but got 'http.response.body'."]


async def test_second_start_and_message_after_completion_are_errors(twin):
    errors = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        except RuntimeError as exc:
            errors.append(str(exc))
        await send({"type": "http.response.body", "body": b"done"})
        try:
            await send({"type": "http.response.body", "body": b"late"})
        except RuntimeError as exc:
            errors.append(str(exc))

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(SIMPLE_GET)
    [response] = await transport.responses(1)
    await asyncio.sleep(0)
    assert response.body == b"done"
    assert b"late" not in transport.buffer
    assert errors == [
        "Expected ASGI message 'http.response.body', but got 'http.response.start'.",
        "Unexpected ASGI message 'http.response.body' sent, after response already completed.",
    ]


@pytest.mark.parametrize(
    "stage, expected",
    [
        ("before start", "Expected ASGI message 'http.response.start', but got '{type}'."),
        ("after start", "Expected ASGI message 'http.response.body', but got '{type}'."),
        ("after completion", "Unexpected ASGI message '{type}' sent, after response already completed."),
    ],
)
@pytest.mark.parametrize("message", [{"type": "http.response.trailers"}, {"type": "websocket.send"}, {}])
async def test_unknown_or_missing_message_types_are_clear_errors(twin, stage, expected, message):
    errors = []

    async def app(scope, receive, send):
        if stage != "before start":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        if stage == "after completion":
            await send({"type": "http.response.body", "body": b"done"})
        try:
            await send(message)
        except RuntimeError as exc:
            errors.append(str(exc))
        if stage != "after completion":
            raise RuntimeError("the app gives up")

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(SIMPLE_GET)
    [response] = await transport.responses(1)
    assert errors == [expected.format(type=message.get("type"))]
    if stage == "after completion":
        assert response.status == 200 and response.body == b"done" and not transport.closed
    else:
        assert response.status == 500  # nothing was on the wire yet: a clean 500, then close
        await transport.wait_for(lambda: transport.closed)


async def test_an_exception_after_the_response_is_logged_once_and_the_connection_stays_usable(twin, caplog):
    async def app(scope, receive, send):
        await body_app(b"done")(scope, receive, send)
        raise ValueError("after the fact")

    protocol, transport = make_protocol(twin, app)
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        protocol.data_received(SIMPLE_GET)
        await transport.responses(1)
        await transport.wait_for(lambda: "after the fact" in caplog.text)
        protocol.data_received(SIMPLE_GET)
        responses = await transport.responses(2)
    assert [r.status for r in responses] == [200, 200]
    assert caplog.text.count("Exception in ASGI application") == 2  # once per request
    assert not transport.closed


async def test_a_large_unread_body_is_discarded_and_the_connection_reused(twin):
    """The app answers without reading a body far above the high-water mark: reading, paused
    while the body piled up, resumes once the response is out, and the rest is skipped."""
    gate = asyncio.Event()
    calls = []

    async def app(scope, receive, send):
        calls.append(scope["path"])
        if scope["path"] == "/upload":
            await gate.wait()
        await body_app(b"no thanks")(scope, receive, send)

    protocol, transport = make_protocol(twin, app)
    size = 1_000_000
    protocol.data_received(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
    sent = 0
    while sent < 200_000:
        protocol.data_received(b"x" * 50_000)
        sent += 50_000
    assert transport.read_paused  # the app is not reading: back-pressure
    gate.set()
    await transport.responses(1)
    await transport.wait_for(lambda: not transport.read_paused)
    while sent < size:
        protocol.data_received(b"x" * 50_000)
        sent += 50_000
    protocol.data_received(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    responses = await transport.responses(2)
    assert [r.status for r in responses] == [200, 200]
    assert calls == ["/upload", "/next"]


# Malformed requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        b"GET / HTTP/1.1\nHost: x\n\n",
    ],
)
async def test_malformed_request_gets_400_and_close(twin, request_bytes):
    called = []

    async def app(scope, receive, send):
        called.append(scope)
        await body_app()(scope, receive, send)

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(request_bytes)
    await transport.wait_for(lambda: transport.closed)
    [response] = parse_responses(bytes(transport.buffer))
    assert response.status == 400
    assert response.header(b"connection") == b"close"
    assert response.body == b"Invalid HTTP request received."
    assert called == []


async def test_unsupported_http_version_gets_505(twin):
    protocol, transport = make_protocol(twin, body_app())
    protocol.data_received(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")
    await transport.wait_for(lambda: transport.closed)
    [response] = parse_responses(bytes(transport.buffer))
    assert response.status == 505


async def test_malformed_request_after_valid_one_is_answered_in_order(twin):
    protocol, transport = make_protocol(twin, body_app(b"fine"))
    protocol.data_received(SIMPLE_GET + b"BROKEN REQUEST\r\n\r\n" + SIMPLE_GET)
    await transport.wait_for(lambda: transport.closed)
    responses = parse_responses(bytes(transport.buffer))
    assert [r.status for r in responses] == [200, 400]  # nothing after the bad request is served


async def test_data_after_parse_error_is_ignored(twin):
    protocol, transport = make_protocol(twin, body_app())
    protocol.data_received(b"BAD\r\n\r\n")
    await transport.wait_for(lambda: transport.closed)
    before = bytes(transport.buffer)
    transport.closed = False  # a late packet still in flight must not revive the parser
    protocol.data_received(SIMPLE_GET)
    for _ in range(5):
        await asyncio.sleep(0)
    assert bytes(transport.buffer) == before


async def test_broken_chunked_body_disconnects_the_request(twin):
    messages = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            messages.append(message["type"])
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    for _ in range(5):
        await asyncio.sleep(0)
    protocol.data_received(b"zz\r\n")
    await transport.wait_for(lambda: transport.closed)
    [response] = parse_responses(bytes(transport.buffer))
    assert response.status == 400
    for _ in range(10):
        if messages and messages[-1] == "http.disconnect":
            break
        await asyncio.sleep(0)
    assert messages[-1] == "http.disconnect"


# Disconnects and flow control ------------------------------------------------------------------


async def test_send_after_disconnect_raises_client_disconnected(twin, caplog):
    raised = []
    release = asyncio.Event()

    async def app(scope, receive, send):
        await release.wait()
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        except OSError as exc:
            raised.append(type(exc).__name__)
            raise

    protocol, transport = make_protocol(twin, app)
    with caplog.at_level(logging.DEBUG, logger="uvicorn.error"):
        protocol.data_received(SIMPLE_GET)
        await asyncio.sleep(0)
        connection_lost(protocol, transport)
        release.set()
        for _ in range(20):
            if raised:
                break
            await asyncio.sleep(0)
        await asyncio.sleep(0)
    assert raised == ["ClientDisconnected"]
    assert "Exception in ASGI application" not in caplog.text


async def test_write_pause_makes_send_wait(twin):
    sent = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        sent.append("a")
        await send({"type": "http.response.body", "body": b"b", "more_body": False})
        sent.append("b")

    protocol, transport = make_protocol(twin, app)
    protocol.pause_writing()
    protocol.data_received(SIMPLE_GET)
    for _ in range(10):
        await asyncio.sleep(0)
    assert sent == []
    assert transport.buffer == b""
    protocol.resume_writing()
    await transport.responses(1)
    for _ in range(10):
        if len(sent) == 2:
            break
        await asyncio.sleep(0)
    assert sent == ["a", "b"]


async def test_a_fast_streaming_app_stops_at_the_write_batch_limit(twin):
    """An app that streams without ever waiting is held back once a batch reaches the transport
    and the transport signals back-pressure: memory stays bounded by one batch."""
    from cyasgi.protocols.http.wire import WRITE_BATCH_LIMIT

    chunk = b"x" * 65536
    sent = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(64):  # 4 MiB
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent.append(len(chunk))
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    protocol, transport = make_protocol(twin, app)
    real_writelines = transport.writelines

    def writelines_with_backpressure(chunks):
        real_writelines(chunks)
        protocol.pause_writing()  # a transport past its high-water mark says so at once

    transport.writelines = writelines_with_backpressure
    protocol.data_received(SIMPLE_GET)
    await transport.wait_for(lambda: len(transport.buffer) > 0)
    for _ in range(10):
        await asyncio.sleep(0)
    assert sum(sent) < 64 * len(chunk), "the app was not paused"
    assert len(transport.buffer) <= WRITE_BATCH_LIMIT + 2 * len(chunk)
    transport.writelines = real_writelines
    protocol.resume_writing()
    [response] = await transport.responses(1)
    assert len(response.body) == 64 * len(chunk)


async def test_drain_wakes_on_disconnect(twin):
    outcome = []

    async def app(scope, receive, send):
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        except OSError:
            outcome.append("disconnected")

    protocol, transport = make_protocol(twin, app)
    protocol.pause_writing()
    protocol.data_received(SIMPLE_GET)
    await asyncio.sleep(0)
    connection_lost(protocol, transport)
    for _ in range(20):
        if outcome:
            break
        await asyncio.sleep(0)
    assert outcome == ["disconnected"]


async def test_reading_pauses_above_high_water_until_the_app_reads(twin):
    gate = asyncio.Event()
    received = []

    async def app(scope, receive, send):
        await gate.wait()
        more = True
        while more:
            message = await receive()
            received.append(len(message["body"]))
            more = message["more_body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    protocol, transport = make_protocol(twin, app)
    size = 200_000
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
    protocol.data_received(b"x" * 100_000)
    await asyncio.sleep(0)
    assert transport.read_paused
    gate.set()
    for _ in range(20):
        if not transport.read_paused:
            break
        await asyncio.sleep(0)
    assert not transport.read_paused
    protocol.data_received(b"x" * 100_000)
    await transport.responses(1)
    assert sum(received) == size


async def test_client_half_close_still_gets_the_response(twin):
    release = asyncio.Event()

    async def app(scope, receive, send):
        await release.wait()
        await body_app(b"late")(scope, receive, send)

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(SIMPLE_GET)
    keep_open = protocol.eof_received()
    assert keep_open is True
    release.set()
    [response] = await transport.responses(1)
    assert response.body == b"late"
    await transport.wait_for(lambda: transport.closed)


async def test_eof_when_idle_closes(twin):
    protocol, transport = make_protocol(twin, body_app())
    assert not protocol.eof_received()


async def loop_iterations_until(predicate: Any, limit: int) -> int:
    """How many turns of the loop pass before ``predicate()`` holds (fails past ``limit``)."""
    for turns in range(limit + 1):
        if predicate():
            return turns
        await asyncio.sleep(0)
    raise AssertionError(f"not within {limit} loop iterations")


async def test_eof_after_the_request_ends_a_waiting_receive_at_once(twin, caplog):
    """A long-poll (or Starlette's is_disconnected(), Django's disconnect detection) waits in
    receive() after the whole request: the client closing its end is http.disconnect, delivered
    within a loop iteration; the app then stops and the connection closes without an error."""
    seen = []

    async def app(scope, receive, send):
        seen.append(await receive())
        seen.append(await receive())

    protocol, transport = make_protocol(twin, app)
    with caplog.at_level(logging.DEBUG):
        protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        await loop_iterations_until(lambda: len(seen) == 1, 5)
        await asyncio.sleep(0)
        assert len(seen) == 1  # waiting: nothing came yet
        protocol.eof_received()
        await loop_iterations_until(lambda: len(seen) == 2, 1)
        await transport.wait_for(lambda: transport.closed)
    assert seen == [{"type": "http.request", "body": b"hi", "more_body": False}, {"type": "http.disconnect"}]
    assert transport.buffer == b""
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_after_eof_a_response_is_still_written(twin):
    """A client that only half-closed still gets what the app sends after http.disconnect."""

    async def app(scope, receive, send):
        assert (await receive())["type"] == "http.request"
        assert (await receive())["type"] == "http.disconnect"
        await body_app(b"still here")(scope, receive, send)

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(SIMPLE_GET)
    assert protocol.eof_received() is True
    [response] = await transport.responses(1)
    assert response.body == b"still here"
    await transport.wait_for(lambda: transport.closed)


async def test_eof_reaches_a_pipelined_request_once_it_runs(twin):
    """Requests queued behind the one answering when the client closed its end run in turn; each
    gets its request, then http.disconnect from a second receive()."""
    seen = []

    async def app(scope, receive, send):
        seen.append((scope["path"], (await receive())["type"], (await receive())["type"]))
        await body_app(scope["path"].encode())(scope, receive, send)

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    assert protocol.eof_received() is True
    responses = await transport.responses(2)
    assert [r.body for r in responses] == [b"/a", b"/b"]
    assert seen == [("/a", "http.request", "http.disconnect"), ("/b", "http.request", "http.disconnect")]
    await transport.wait_for(lambda: transport.closed)


async def test_an_app_that_returns_after_receiving_no_disconnect_is_still_an_error(twin, caplog):
    """Returning without a response stays an app error (500) when the client has not closed."""

    async def app(scope, receive, send):
        await receive()

    protocol, transport = make_protocol(twin, app)
    with caplog.at_level(logging.ERROR):
        protocol.data_received(SIMPLE_GET)
        [response] = await transport.responses(1)
    assert response.status == 500
    assert "ASGI callable returned without starting response." in caplog.text


# Response heads without a body yet -------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "headers", "framing", "body_on_wire"),
    [
        (SIMPLE_GET, [], b"transfer-encoding: chunked\r\n", b"5\r\nfirst\r\n0\r\n\r\n"),
        (SIMPLE_GET, [(b"content-length", b"5")], b"content-length: 5\r\n", b"first"),
        (b"GET / HTTP/1.0\r\n\r\n", [], b"connection: close\r\n", b"first"),
        (b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", [], b"", b""),
    ],
    ids=["chunked", "content-length", "http10", "head"],
)
async def test_a_head_without_a_body_message_goes_out_after_one_loop_iteration(
    twin, request_bytes, headers, framing, body_on_wire
):
    """Server-sent events before their first event, a slow computation after the start: the
    client gets the status and headers at once, framed for the body still to come."""
    release = asyncio.Event()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"1"), *headers]})
        await release.wait()
        await send({"type": "http.response.body", "body": b"first"})

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(request_bytes)
    await loop_iterations_until(lambda: transport.buffer.endswith(b"\r\n\r\n"), 3)
    head = transport.take()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert head.endswith(b"x-app: 1\r\n" + framing + b"\r\n")
    release.set()
    if body_on_wire:
        await transport.wait_for(lambda: transport.buffer == body_on_wire)
    await loop_iterations_until(lambda: protocol.active is None, 5)
    assert transport.buffer == body_on_wire


async def test_a_body_that_follows_the_start_at_once_leaves_with_the_head_in_one_write(twin):
    protocol, transport = make_protocol(twin, body_app(b"abc"))
    protocol.data_received(SIMPLE_GET)
    await transport.responses(1)
    for _ in range(3):
        await asyncio.sleep(0)  # the head check at the end of the iteration writes nothing more
    assert transport.calls == ["write"]
    assert parse_responses(bytes(transport.buffer))[0].header(b"content-length") == b"3"


async def test_an_app_failing_after_its_head_went_out_closes_the_connection(twin, caplog):
    """Once the head is on the wire no 500 can replace it: the response is cut off (the chunked
    body never ends, so the client sees it incomplete)."""
    release = asyncio.Event()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await release.wait()
        raise ValueError("boom")

    protocol, transport = make_protocol(twin, app)
    with caplog.at_level(logging.ERROR):
        protocol.data_received(SIMPLE_GET)
        await transport.wait_for(lambda: transport.buffer.endswith(b"\r\n\r\n"))
        release.set()
        await transport.wait_for(lambda: transport.closed)
    data = bytes(transport.buffer)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"transfer-encoding: chunked\r\n\r\n")
    assert caplog.text.count("Exception in ASGI application") == 1


# A pipelining client that sends far ahead ------------------------------------------------------


def numbered_gets(count: int, extra_headers: bytes = b"") -> bytes:
    return b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n%s\r\n" % (i, extra_headers) for i in range(count))


async def test_requests_past_a_full_pipeline_are_held_unparsed_until_there_is_room(twin_parser):
    """A client pipelining far ahead of its answers: only PIPELINE_LIMIT requests are parsed ahead
    (httptools and h11 are fed a step at a time, so they may go one step further); the rest is held
    as bytes and reading paused, and every request is answered, in order, as the earlier ones are."""
    twin, parser = twin_parser
    release = asyncio.Event()

    async def app(scope, receive, send):
        await release.wait()
        await body_app(scope["path"].encode())(scope, receive, send)

    protocol, transport = make_protocol(twin, app, parser=parser)
    protocol.data_received(numbered_gets(1000))
    step_allowance = 0 if parser == "cyasgi" else FOREIGN_FEED_STEP // len(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert PIPELINE_LIMIT - 1 <= len(protocol.pipeline) <= PIPELINE_LIMIT + step_allowance
    assert transport.read_paused
    release.set()
    responses = await transport.responses(1000)
    assert [r.body for r in responses] == [b"/%d" % i for i in range(1000)]
    assert not transport.read_paused and not transport.closed


async def test_bytes_read_while_requests_are_held_go_after_them_up_to_a_bound(twin):
    """Reading resumes while bytes are held (an app waiting in receive() watches for EOF): what
    arrives is kept after the held bytes, unparsed, and reading pauses once they reach
    PIPELINE_HEAD_LIMIT."""
    release = asyncio.Event()

    async def app(scope, receive, send):
        await release.wait()
        await body_app(scope["path"].encode())(scope, receive, send)

    protocol, transport = make_protocol(twin, app, parser="cyasgi")
    protocol.data_received(numbered_gets(100))
    queued = len(protocol.pipeline)
    protocol.flow.resume_reading()
    protocol.data_received(b"GET /100 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not transport.read_paused
    assert len(protocol.pipeline) == queued
    filler = b"x-filler: " + b"f" * 1024 + b"\r\n"
    more = b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n%s\r\n" % (i, filler) for i in range(101, 170))
    protocol.data_received(more)
    assert transport.read_paused
    assert len(protocol.pipeline) == queued
    release.set()
    responses = await transport.responses(170)
    assert [r.body for r in responses] == [b"/%d" % i for i in range(170)]


async def test_held_requests_wait_while_the_client_reads_nothing_then_go_on(twin_parser):
    """While the transport's buffer is full (the client reads nothing) no more answers are made;
    once it drains, parsing of what was held resumes and every request is answered."""
    twin, parser = twin_parser
    protocol, transport = make_protocol(twin, body_app(b"ok"), parser=parser)
    protocol.pause_writing()
    protocol.data_received(numbered_gets(200))
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(parse_responses(bytes(transport.buffer))) <= PIPELINE_LIMIT + 1
    protocol.resume_writing()
    assert len(await transport.responses(200)) == 200


async def test_a_long_pipeline_answered_at_once_still_yields_to_the_loop(twin_parser):
    """Requests whose apps finish without waiting (eager tasks on 3.12+) are answered as they are
    parsed: a read holding a long pipeline is parsed a few pipelines' worth at a time, the rest at
    the loop's next turns, so one client cannot keep the loop from the other connections."""
    twin, parser = twin_parser
    protocol, transport = make_protocol(twin, body_app(b"ok"), parser=parser)
    protocol.data_received(numbered_gets(1000))
    assert len(parse_responses(bytes(transport.buffer))) < 1000
    assert len(await transport.responses(1000)) == 1000
    assert not transport.read_paused and not transport.closed


async def test_large_pipelined_heads_are_held_by_their_size(twin):
    """Heads are counted by size too: 8 KiB heads stop the parsing after PIPELINE_HEAD_LIMIT bytes."""
    release = asyncio.Event()

    async def app(scope, receive, send):
        await release.wait()
        await body_app(b"ok")(scope, receive, send)

    protocol, transport = make_protocol(twin, app, parser="cyasgi")
    protocol.data_received(numbered_gets(40, b"x-filler: " + b"f" * 8192 + b"\r\n"))
    assert len(protocol.pipeline) <= PIPELINE_HEAD_LIMIT // 8192
    release.set()
    assert len(await transport.responses(40)) == 40


async def test_held_requests_are_answered_after_the_client_half_closes(twin):
    release = asyncio.Event()

    async def app(scope, receive, send):
        await release.wait()
        await body_app(scope["path"].encode())(scope, receive, send)

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(numbered_gets(100) + b"POST /partial HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nabc")
    assert protocol.eof_received() is True
    release.set()
    responses = await transport.responses(100)
    assert [r.body for r in responses] == [b"/%d" % i for i in range(100)]
    await transport.wait_for(lambda: transport.closed)  # the partial request is abandoned, then closed
    assert len(parse_responses(bytes(transport.buffer))) == 100


async def test_an_upgrade_behind_a_held_pipeline_keeps_its_trailing_bytes(twin):
    RecordingUpgradeProtocol.instances.clear()
    protocol, transport = make_protocol(twin, body_app(b"x"), ws=RecordingUpgradeProtocol)
    protocol.data_received(
        numbered_gets(40) + b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x85FRAME"
    )
    await transport.responses(40)
    await transport.wait_for(lambda: bool(RecordingUpgradeProtocol.instances))
    [upgraded] = RecordingUpgradeProtocol.instances
    assert upgraded.received.startswith(b"GET /ws HTTP/1.1\r\n")
    assert upgraded.received.endswith(b"\r\n\r\n\x81\x85FRAME")


# Timeouts and shutdown -------------------------------------------------------------------------


async def test_keep_alive_deadline_is_armed_after_response_and_sweep_closes(twin):
    protocol, transport = make_protocol(twin, body_app(), timeout_keep_alive=5, timeout_header_read=0)
    assert protocol.deadline == 0.0  # (with --timeout-header-read, connecting arms the head deadline)
    protocol.data_received(SIMPLE_GET)
    await transport.responses(1)
    await transport.wait_for(lambda: protocol.deadline != 0.0)
    assert time.monotonic() + 4 < protocol.deadline <= time.monotonic() + 5
    twin.sweep_deadlines({protocol}, protocol.deadline - 1)
    assert not transport.closed
    twin.sweep_deadlines({protocol}, protocol.deadline)
    assert transport.closed


async def test_no_deadline_while_a_request_is_in_flight(twin):
    release = asyncio.Event()

    async def app(scope, receive, send):
        await release.wait()
        await body_app()(scope, receive, send)

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(SIMPLE_GET)
    await asyncio.sleep(0)
    assert protocol.deadline == 0.0
    twin.sweep_deadlines({protocol}, 1e18)
    assert not transport.closed
    release.set()
    await transport.responses(1)


async def test_deadline_cleared_by_new_data_without_a_head_timeout(twin):
    protocol, transport = make_protocol(twin, body_app(), timeout_header_read=0)
    protocol.data_received(SIMPLE_GET)
    await transport.responses(1)
    await transport.wait_for(lambda: protocol.deadline != 0.0)
    protocol.data_received(b"GET / HTTP/1.1\r\n")  # a request has begun
    assert protocol.deadline == 0.0


async def test_a_begun_head_keeps_the_head_deadline_not_the_keep_alive_one(twin):
    protocol, transport = make_protocol(twin, body_app(), timeout_keep_alive=5, timeout_header_read=30)
    protocol.data_received(SIMPLE_GET)
    await transport.responses(1)
    await transport.wait_for(lambda: protocol.deadline != 0.0)
    idle_deadline = protocol.deadline
    assert idle_deadline <= time.monotonic() + 5
    protocol.data_received(b"GET / HTTP/1.1\r\n")  # a request has begun: 30 s from the response
    assert idle_deadline + 20 < protocol.deadline <= idle_deadline + 25 + 0.5
    head_deadline = protocol.deadline
    protocol.data_received(b"Host: x\r\n")  # more bytes do not move it
    assert protocol.deadline == head_deadline


async def test_shutdown_closes_idle_connection_after_the_grace(twin):
    protocol, transport = make_protocol(twin, body_app())
    started = asyncio.get_running_loop().time()
    protocol.shutdown()
    assert not transport.closed  # a request may be on its way
    await transport.wait_for(lambda: transport.closed)
    assert asyncio.get_running_loop().time() - started >= SHUTDOWN_GRACE * 0.9


async def test_shutdown_answers_a_request_arriving_within_the_grace_then_closes(twin):
    protocol, transport = make_protocol(twin, body_app(b"late"))
    protocol.shutdown()
    protocol.data_received(SIMPLE_GET)  # e.g. a keep-alive client that had just sent it
    [response] = await transport.responses(1)
    assert response.status == 200 and response.body == b"late"
    assert response.header(b"connection") == b"close"
    await transport.wait_for(lambda: transport.closed)


async def test_shutdown_closes_busy_connection_after_its_response(twin):
    release = asyncio.Event()

    async def app(scope, receive, send):
        await release.wait()
        await body_app(b"last")(scope, receive, send)

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(SIMPLE_GET)
    await asyncio.sleep(0)
    protocol.shutdown()
    assert not transport.closed
    release.set()
    [response] = await transport.responses(1)
    assert response.header(b"connection") == b"close"
    await transport.wait_for(lambda: transport.closed)


async def test_connection_lost_removes_connection_and_tracks_running_task(twin):
    release = asyncio.Event()

    async def app(scope, receive, send):
        await release.wait()

    protocol, transport = make_protocol(twin, app)
    assert protocol in protocol.server_state.connections
    protocol.data_received(SIMPLE_GET)
    await asyncio.sleep(0)
    assert len(protocol.server_state.tasks) == 1
    connection_lost(protocol, transport)
    assert protocol not in protocol.server_state.connections
    release.set()
    for _ in range(20):
        if not protocol.server_state.tasks:
            break
        await asyncio.sleep(0)
    assert not protocol.server_state.tasks


async def test_total_requests_counts_responses(twin):
    protocol, transport = make_protocol(twin, body_app())
    protocol.data_received(SIMPLE_GET * 3)
    await transport.responses(3)
    assert protocol.server_state.total_requests == 3


# Limits and upgrades ---------------------------------------------------------------------------


async def test_limit_concurrency_answers_503_and_closes(twin, caplog):
    protocol, transport = make_protocol(twin, body_app(), limit_concurrency=1)
    with caplog.at_level(logging.WARNING, logger="uvicorn.error"):
        protocol.data_received(SIMPLE_GET)
        [response] = await transport.responses(1)
        await transport.wait_for(lambda: transport.closed)
    assert response.status == 503
    assert response.body == b"Service Unavailable"
    assert response.header(b"connection") == b"close"
    assert "Exceeded concurrency limit." in caplog.text


async def test_websocket_upgrade_without_websocket_support_is_plain_http(twin, caplog):
    scopes = []

    async def app(scope, receive, send):
        scopes.append(scope["type"])
        await body_app(b"no websockets here", status=426)(scope, receive, send)

    protocol, transport = make_protocol(twin, app, ws="none")
    with caplog.at_level(logging.WARNING, logger="uvicorn.error"):
        protocol.data_received(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        [response] = await transport.responses(1)
        await transport.wait_for(lambda: transport.closed)
    assert scopes == ["http"]
    assert response.status == 426
    assert "Unsupported upgrade request." in caplog.text


class RecordingUpgradeProtocol:
    """Stands in for a WebSocket protocol: records what the HTTP protocol hands over."""

    instances: list[RecordingUpgradeProtocol] = []

    def __init__(self, config: Any, server_state: Any, app_state: Any, _loop: Any = None) -> None:
        self.received = b""
        self.transport = None
        RecordingUpgradeProtocol.instances.append(self)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data


async def test_websocket_upgrade_is_handed_over_with_trailing_bytes(twin):
    RecordingUpgradeProtocol.instances.clear()
    protocol, transport = make_protocol(twin, body_app(b"first"), ws=RecordingUpgradeProtocol)
    protocol.data_received(
        SIMPLE_GET + b"GET /ws?x=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x85FRAME"
    )
    await transport.responses(1)
    await transport.wait_for(lambda: bool(RecordingUpgradeProtocol.instances))
    [upgraded] = RecordingUpgradeProtocol.instances
    assert transport.protocol is upgraded
    assert upgraded.transport is transport
    assert upgraded.received.startswith(b"GET /ws?x=1 HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\n")
    assert upgraded.received.endswith(b"\r\n\r\n\x81\x85FRAME")
    assert protocol not in protocol.server_state.connections
    assert not transport.read_paused


# Logging ---------------------------------------------------------------------------------------


async def test_access_log_line(twin, caplog):
    protocol, transport = make_protocol(twin, body_app(status=201))
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        protocol.data_received(b"GET /a%20b?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        await transport.responses(1)
    [record] = [r for r in caplog.records if r.name == "uvicorn.access"]
    assert record.args == ("127.0.0.1:54321", "GET", "/a%20b?x=1", "1.1", 201)


# send() as asyncio and anyio see it ---------------------------------------------------------------


async def test_send_result_works_with_asyncio_and_anyio_helpers(twin):
    import anyio

    results = []

    async def app(scope, receive, send):
        assert asyncio.iscoroutinefunction(send)
        # Frameworks hand send()'s result to these helpers; each must run it.
        await asyncio.create_task(send({"type": "http.response.start", "status": 200, "headers": []}))
        await asyncio.ensure_future(send({"type": "http.response.body", "body": b"a", "more_body": True}))
        await asyncio.wait_for(send({"type": "http.response.body", "body": b"b", "more_body": True}), 5)
        async with anyio.create_task_group() as group:
            group.start_soon(send, {"type": "http.response.body", "body": b"c", "more_body": True})
        results.append(await send({"type": "http.response.body", "body": b"", "more_body": False}))

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(SIMPLE_GET)
    [response] = await transport.responses(1)
    assert response.body == b"abc"
    assert results == [None]


async def test_send_errors_reach_the_awaiting_app(twin):
    errors = []

    async def app(scope, receive, send):
        try:
            await send({"type": "http.response.body", "body": b"early"})
        except RuntimeError as exc:
            errors.append(type(exc).__name__)
        task = asyncio.ensure_future(send({"type": "http.response.start", "status": 99}))
        try:
            await task
        except RuntimeError:
            errors.append("task")
        await body_app()(scope, receive, send)

    protocol, transport = make_protocol(twin, app)
    protocol.data_received(SIMPLE_GET)
    [response] = await transport.responses(1)
    assert response.status == 200
    assert errors == ["RuntimeError", "task"]
