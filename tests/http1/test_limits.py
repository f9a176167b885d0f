"""Request limits (docs/reliability.md): head size, header count, body size, requests per connection,
the header-read timeout. In memory for both twins and every parser; the timeout also end to end."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from cyasgi.config import Config, ConfigError
from tests.utils import (
    QUICK,
    WAIT,
    connect,
    make_config,
    make_protocol,
    parse_responses,
    recv_until_closed,
    run_server,
)

pytestmark = pytest.mark.anyio




class Echo:
    """Echoes the body; records every message it receives."""

    def __init__(self) -> None:
        self.calls = 0
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.calls += 1
        body = b""
        while True:
            message = await receive()
            self.messages.append(message)
            if message["type"] == "http.disconnect":
                return
            body += message["body"]
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    @property
    def body_bytes(self) -> int:
        return sum(len(m.get("body", b"")) for m in self.messages)


def head_of_size(size: int) -> bytes:
    """A GET whose head (request line, fields, final CRLF) is exactly ``size`` bytes."""
    base = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n"
    return base.replace(b"X-Pad: ", b"X-Pad: " + b"a" * (size - len(base)))


async def answer(transport: Any) -> int:
    await transport.wait_for(lambda: transport.closed or b"\r\n\r\n" in transport.buffer, timeout=QUICK)
    return int(bytes(transport.buffer).split(b" ", 2)[1])


# Head size and header count ---------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1024, 65536])
async def test_head_size_limit_is_exact(twin_parser, limit):
    twin, parser = twin_parser
    for size, expected in ((limit, 200), (limit + 1, 431)):
        app = Echo()
        protocol, transport = make_protocol(twin, app, parser=parser, limit_request_head_size=limit)
        protocol.data_received(head_of_size(size))
        assert await answer(transport) == expected, (size, parser)
        assert app.calls == (expected == 200)


async def test_an_endless_header_is_refused_once_past_the_limit(twin_parser):
    """A head that never ends is buffered no further than the limit (plus one read)."""
    twin, parser = twin_parser
    protocol, transport = make_protocol(twin, Echo(), parser=parser, limit_request_head_size=4096)
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
    sent = 0
    while not transport.closed and sent < 100_000:
        protocol.data_received(b"a" * 1000)
        sent += 1000
    assert transport.closed and sent <= 4096 + 2000
    [response] = parse_responses(bytes(transport.buffer))
    assert response.status == 431


async def test_header_count_limit(twin_parser):
    twin, parser = twin_parser
    for count, expected in ((20, 200), (21, 431)):
        fields = b"".join(b"X-%d: v\r\n" % i for i in range(count - 1))
        protocol, transport = make_protocol(twin, Echo(), parser=parser, limit_request_headers=20)
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        assert await answer(transport) == expected, count


async def test_trailers_never_reach_the_scope_and_are_bounded(twin_parser):
    twin, parser = twin_parser
    seen = []

    async def app(scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        seen.append(list(scope["headers"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    protocol, transport = make_protocol(twin, app, parser=parser, limit_request_head_size=1024)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    protocol.data_received(head + b"1\r\na\r\n0\r\nX-Trailer: t\r\n\r\n")
    await transport.responses(1)
    assert seen == [[(b"host", b"x"), (b"transfer-encoding", b"chunked")]]
    protocol.data_received(head + b"0\r\n" + b"X-T: %s\r\n" % (b"t" * 600) * 2 + b"\r\n")
    await transport.wait_for(lambda: transport.closed, timeout=QUICK)
    assert [r.status for r in parse_responses(bytes(transport.buffer))][-1] == 400


# Body size ----------------------------------------------------------------------------------------


async def test_body_limit_is_off_by_default(twin_parser):
    twin, parser = twin_parser
    app = Echo()
    protocol, transport = make_protocol(twin, app, parser=parser)
    body = b"x" * 300_000
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
    for i in range(0, len(body), 65536):
        protocol.data_received(body[i : i + 65536])
        await asyncio.sleep(0)
    [response] = await transport.responses(1)
    assert response.body == body


async def test_content_length_over_the_limit_is_413_before_the_app(twin_parser):
    twin, parser = twin_parser
    app = Echo()
    protocol, transport = make_protocol(twin, app, parser=parser, limit_request_body_size=10)
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789")
    [ok] = await transport.responses(1)
    assert ok.status == 200 and ok.body == b"0123456789"
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
    await transport.wait_for(lambda: transport.closed, timeout=QUICK)
    responses = parse_responses(bytes(transport.buffer))
    assert [r.status for r in responses] == [200, 413]
    assert responses[1].header(b"connection") == b"close"
    assert b"100 Continue" not in transport.buffer
    assert app.calls == 1


@pytest.mark.parametrize("split", [False, True])
async def test_chunked_body_over_the_limit_stops_at_the_limit(twin_parser, split):
    """The app sees at most the limit, then a disconnect; the client gets 413."""
    twin, parser = twin_parser
    app = Echo()
    protocol, transport = make_protocol(twin, app, parser=parser, limit_request_body_size=10)
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    body = b"6\r\nabcdef\r\n4\r\nghij\r\n3\r\nklm\r\n0\r\n\r\n"
    for piece in ([body[i : i + 1] for i in range(len(body))] if split else [body]):
        protocol.data_received(piece)
        await asyncio.sleep(0)
    await transport.wait_for(lambda: transport.closed, timeout=QUICK)
    [response] = parse_responses(bytes(transport.buffer))
    assert response.status == 413
    for _ in range(10):
        await asyncio.sleep(0)
    assert app.body_bytes <= 10
    assert app.messages[-1] == {"type": "http.disconnect"}


# Requests per connection ----------------------------------------------------------------------


async def test_keep_alive_request_limit(twin_parser):
    twin, parser = twin_parser
    app = Echo()
    protocol, transport = make_protocol(twin, app, parser=parser, limit_keep_alive_requests=3)
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    protocol.data_received(request * 2)
    first, _second = await transport.responses(2)
    assert first.header(b"connection") is None and not transport.closed
    protocol.data_received(request * 2)  # the third is the last; the fourth is never served
    await transport.wait_for(lambda: transport.closed, timeout=QUICK)
    responses = parse_responses(bytes(transport.buffer))
    assert len(responses) == 3
    assert responses[2].header(b"connection") == b"close"
    assert app.calls == 3


# Header-read timeout ------------------------------------------------------------------------------


async def test_slow_head_gets_408_at_the_head_deadline(twin_parser):
    twin, parser = twin_parser
    app = Echo()
    protocol, transport = make_protocol(twin, app, parser=parser, timeout_header_read=30, timeout_keep_alive=5)
    connected = time.monotonic()
    assert connected + 29 < protocol.deadline <= connected + 30  # armed at connect
    for byte in b"GET / HTTP/1.1\r\nHost":  # a slowloris, one byte at a time
        protocol.data_received(bytes([byte]))
        assert protocol.deadline <= connected + 30  # new bytes never push it back
    twin.sweep_deadlines({protocol}, protocol.deadline - 0.01)
    assert not transport.closed
    twin.sweep_deadlines({protocol}, protocol.deadline)
    assert transport.closed
    [response] = parse_responses(bytes(transport.buffer))
    assert response.status == 408 and response.header(b"connection") == b"close"
    assert app.calls == 0


async def test_a_connection_that_sends_nothing_closes_silently_at_the_head_deadline(twin_parser):
    twin, parser = twin_parser
    protocol, transport = make_protocol(twin, Echo(), parser=parser, timeout_header_read=30)
    twin.sweep_deadlines({protocol}, protocol.deadline)
    assert transport.closed and transport.buffer == b""


async def test_after_a_response_keep_alive_applies_until_the_next_head_begins(twin_parser):
    """Idle after a response: --timeout-keep-alive. The first byte of the next request (even an
    empty line) starts the head clock, and nothing after it extends the clock."""
    twin, parser = twin_parser
    protocol, transport = make_protocol(twin, Echo(), parser=parser, timeout_header_read=30, timeout_keep_alive=60)
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await transport.responses(1)
    await transport.wait_for(lambda: protocol.deadline != 0.0, timeout=QUICK)
    assert time.monotonic() + 59 < protocol.deadline <= time.monotonic() + 60  # keep-alive only
    first = b"\r\n" if parser != "h11" else b"GE"  # (h11 refuses empty lines: see the corpus)
    protocol.data_received(first)
    deadline = protocol.deadline
    assert time.monotonic() + 29 < deadline <= time.monotonic() + 30  # the head clock runs
    for more in (b"\r\n", b"GE", b"T / HT") if parser != "h11" else (b"T / HT",):
        protocol.data_received(more)
        assert protocol.deadline == deadline
    twin.sweep_deadlines({protocol}, deadline)
    assert transport.closed
    assert parse_responses(bytes(transport.buffer))[-1].status == 408


async def test_a_slow_body_is_not_the_head_timeouts_business(twin_parser):
    twin, parser = twin_parser
    protocol, transport = make_protocol(twin, Echo(), parser=parser, timeout_header_read=30)
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\na")
    await asyncio.sleep(0)
    assert protocol.deadline == 0.0  # the app has the request: no server deadline
    twin.sweep_deadlines({protocol}, 1e18)
    assert not transport.closed
    protocol.data_received(b"bc")
    [response] = await transport.responses(1)
    assert response.body == b"abc"


async def test_a_partial_pipelined_request_is_read_once_the_pipeline_drains(twin_parser):
    """Reading paused for pipelining resumes when the last queued response is out, even though
    the parser already holds part of the next request."""
    twin, parser = twin_parser
    gate = asyncio.Event()

    async def app(scope, receive, send):
        if scope["path"] == "/slow":
            await gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    protocol, transport = make_protocol(twin, app, parser=parser)
    protocol.data_received(
        b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHo"
    )
    await asyncio.sleep(0)
    assert transport.read_paused
    gate.set()
    await transport.responses(2)
    await transport.wait_for(lambda: not transport.read_paused, timeout=QUICK)
    protocol.data_received(b"st: x\r\n\r\n")
    responses = await transport.responses(3)
    assert [r.body for r in responses] == [b"/slow", b"/b", b"/c"]


def test_slowloris_end_to_end(twin):
    """A real server: a client that dribbles its head gets 408 when the tick sweeps the deadline."""

    async def app(scope, receive, send):  # pragma: no cover - never called
        raise AssertionError("a request that never completed reached the app")

    config = make_config(app, twin, timeout_header_read=0.5)
    with run_server(config) as server:
        sock = connect(server)
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHo")
        idle = connect(server)  # sends nothing: closed at the same deadline, without a response
        data = recv_until_closed(sock)
        elapsed = time.monotonic() - started
        assert recv_until_closed(idle) == b""
        sock.close()
        idle.close()
    [response] = parse_responses(data)
    assert response.status == 408
    assert 0.4 <= elapsed < WAIT


# Settings ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("limit_request_head_size", 10, "--limit-request-head-size must be at least"),
        ("limit_request_headers", 0, "--limit-request-headers must be at least 1"),
        ("limit_request_body_size", -1, "--limit-request-body-size cannot be negative"),
        ("limit_keep_alive_requests", -2, "--limit-keep-alive-requests cannot be negative"),
        ("timeout_header_read", -1.0, "--timeout-header-read cannot be negative"),
    ],
)
def test_impossible_limits_are_config_errors(setting, value, message):
    with pytest.raises(ConfigError, match=message):
        Config("tests.apps:hello", log_config=None, **{setting: value})


async def test_limits_reach_the_native_parser(twin):
    protocol, _ = make_protocol(
        twin, Echo(), parser="cyasgi", limit_request_head_size=2000, limit_request_headers=7, limit_request_body_size=99
    )
    parser = protocol.parser
    assert (parser.max_head_size, parser.max_headers, parser.max_body_size) == (2000, 7, 99)
