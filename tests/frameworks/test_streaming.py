"""Streams and long requests over real sockets, as apps write them: the head of a response whose
body is not there yet (server-sent events, a slow computation), and a client that closes its end
while the app waits in ``receive()`` (long-polls, disconnect detection) or streams to it.

Raw ASGI apps and raw sockets first, then Starlette and Django as their users write such views.
Both twins, on uvloop and asyncio.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import threading
import time
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from tests.utils import WAIT, connect, make_config, parse_responses, read_body, recv_until_closed, run_server
from tests.ws_utils import wait_until

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"

#: The head of a response that waits for its first body message reaches the client by the next
#: loop iteration; this is a generous bound on a loaded 2-core machine (the figure is printed).
HEAD_WITHOUT_BODY_BOUND = 1.0


@pytest.fixture(params=["auto", "asyncio"])
def loop(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


async def wait_in_thread(event: threading.Event) -> None:
    """Await a threading.Event set by the test thread, without blocking the server's loop."""
    if not await asyncio.get_running_loop().run_in_executor(None, event.wait, WAIT):
        raise AssertionError("the test never set the event")


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The response head (up to its blank line) and whatever came after it in the same reads."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before the head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


def read_until(sock: socket.socket, data: bytes, end: bytes) -> bytes:
    while not data.endswith(end):
        chunk = sock.recv(65536)
        assert chunk, f"closed before {end!r}: {data!r}"
        data += chunk
    return data


def gone(server: Any) -> None:
    wait_until(
        lambda: not server.server_state.connections and not server.server_state.tasks,
        message="every connection and request task to end",
    )


# The head of a response whose body is not there yet ------------------------------------------


def test_the_head_arrives_before_the_first_body_message(twin, loop):
    release = threading.Event()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await wait_in_thread(release)  # an event stream before its first event
        await send({"type": "http.response.body", "body": b"data: 1\n\n"})

    with run_server(make_config(app, twin, loop=loop)) as server:
        sock = connect(server)
        started = time.monotonic()
        sock.sendall(GET)
        head, rest = read_head(sock)
        elapsed = time.monotonic() - started
        assert not release.is_set()
        release.set()
        body = read_until(sock, rest, b"0\r\n\r\n")
        sock.close()
    print(f"head after {elapsed * 1000:.1f} ms")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-type: text/event-stream\r\n" in head and b"transfer-encoding: chunked\r\n" in head
    assert body == b"9\r\ndata: 1\n\n\r\n0\r\n\r\n"
    assert elapsed < HEAD_WITHOUT_BODY_BOUND


# A client that closes its end --------------------------------------------------------------------


def test_a_long_poll_learns_at_once_that_its_client_closed(twin, loop, caplog):
    waiting = threading.Event()
    seen: list[str] = []
    ended = threading.Event()

    async def app(scope, receive, send):
        try:
            while (await receive()).get("more_body"):
                pass
            waiting.set()
            seen.append((await receive())["type"])  # no news: only the client leaving ends this
        finally:
            ended.set()

    with caplog.at_level(logging.DEBUG), run_server(make_config(app, twin, loop=loop)) as server:
        sock = connect(server)
        sock.sendall(b"POST /poll HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        assert waiting.wait(WAIT)
        closed = time.monotonic()
        sock.close()
        assert ended.wait(WAIT)
        elapsed = time.monotonic() - closed
        gone(server)
    print(f"http.disconnect {elapsed * 1000:.1f} ms after the close")
    assert seen == ["http.disconnect"]
    assert problems(caplog) == []


def test_a_client_that_only_half_closed_gets_the_answer_sent_after_disconnect(twin, loop):
    async def app(scope, receive, send):
        assert (await receive())["type"] == "http.request"
        assert (await receive())["type"] == "http.disconnect"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"still answered"})

    with run_server(make_config(app, twin, loop=loop)) as server:
        sock = connect(server)
        sock.sendall(GET)
        sock.shutdown(socket.SHUT_WR)
        data = recv_until_closed(sock)
        sock.close()
    assert [r.body for r in parse_responses(data)] == [b"still answered"]


def test_half_closing_during_a_streamed_response_still_gets_all_of_it(twin, loop):
    release = threading.Event()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first,", "more_body": True})
        await wait_in_thread(release)
        for part in (b"second,", b"third"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    with run_server(make_config(app, twin, loop=loop)) as server:
        sock = connect(server)
        sock.sendall(GET)
        head, rest = read_head(sock)
        rest = read_until(sock, rest, b"first,\r\n")
        sock.shutdown(socket.SHUT_WR)
        release.set()
        data = head + rest + recv_until_closed(sock)
        sock.close()
    [response] = parse_responses(data)
    assert response.body == b"first,second,third"


def test_closing_during_a_streamed_response_stops_an_app_that_listens_for_it(twin, loop, caplog):
    """An app streaming slowly while a second task waits in receive() (Starlette before ASGI 2.4,
    sse-starlette): the client closing ends the listener at once, and the app with it."""
    listening = threading.Event()
    ended = threading.Event()
    heard: list[str] = []

    async def app(scope, receive, send):
        await receive()

        async def stream() -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(1000):
                await send({"type": "http.response.body", "body": b"tick\n", "more_body": True})
                await asyncio.sleep(0.05)

        streamer = asyncio.ensure_future(stream())
        listening.set()
        try:
            heard.append((await receive())["type"])
        finally:
            streamer.cancel()
            ended.set()

    with caplog.at_level(logging.DEBUG), run_server(make_config(app, twin, loop=loop)) as server:
        sock = connect(server)
        sock.sendall(GET)
        read_head(sock)
        assert listening.wait(WAIT)
        sock.close()
        assert ended.wait(WAIT)
        gone(server)
    assert heard == ["http.disconnect"]
    assert problems(caplog) == []


def test_pipelined_requests_behind_a_long_poll_whose_client_left(twin, loop, caplog):
    """GET /a, a long-poll, GET /b, then the client closes its end: /a is answered; the long-poll
    hears http.disconnect and returns without answering, which closes the connection; /b never runs."""
    paths: list[str] = []

    async def app(scope, receive, send):
        paths.append(scope["path"])
        await receive()
        if scope["path"] == "/poll":
            paths.append((await receive())["type"])
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    with caplog.at_level(logging.DEBUG), run_server(make_config(app, twin, loop=loop)) as server:
        sock = connect(server)
        sock.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path for path in (b"/a", b"/poll", b"/b")))
        sock.shutdown(socket.SHUT_WR)
        data = recv_until_closed(sock)
        sock.close()
        gone(server)
    assert [r.body for r in parse_responses(data)] == [b"/a"]
    assert paths == ["/a", "/poll", "http.disconnect"]
    assert problems(caplog) == []


# Starlette, as its users write long-polls and event streams ---------------------------------------


class Marks:
    def __init__(self) -> None:
        self.started = threading.Event()
        self.left = threading.Event()
        self.release = threading.Event()


def collected() -> bool:
    gc.collect()
    return True


def starlette_streams(marks: Marks) -> Starlette:
    async def long_poll(request: Request) -> PlainTextResponse:
        marks.started.set()
        deadline = time.monotonic() + WAIT
        while not await request.is_disconnected():  # the documented way to notice the client left
            assert time.monotonic() < deadline, "the disconnect never came"
            await asyncio.sleep(0.02)
        marks.left.set()
        return PlainTextResponse("never read")

    async def events() -> Any:
        try:
            await wait_in_thread(marks.release)  # the first event takes a while
            for index in range(10_000):
                yield f"data: {index}\n\n"
                await asyncio.sleep(0.02)
        finally:
            marks.left.set()

    async def stream(request: Request) -> StreamingResponse:
        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/poll", long_poll), Route("/events", stream)])


def test_starlette_is_disconnected_ends_a_long_poll(twin, loop, caplog):
    marks = Marks()
    with caplog.at_level(logging.DEBUG), run_server(make_config(starlette_streams(marks), twin, loop=loop)) as server:
        sock = connect(server)
        sock.sendall(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n")
        assert marks.started.wait(WAIT)
        sock.close()
        assert marks.left.wait(WAIT)
        gone(server)
    assert problems(caplog) == []


def test_starlette_event_stream_head_first_then_events_until_the_client_leaves(twin, loop):
    marks = Marks()
    with run_server(make_config(starlette_streams(marks), twin, loop=loop)) as server:
        sock = connect(server)
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        head, rest = read_head(sock)  # before the first event exists
        assert time.monotonic() - started < HEAD_WITHOUT_BODY_BOUND
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"text/event-stream" in head
        marks.release.set()
        read_until(sock, rest, b"data: 1\n\n\r\n")
        sock.close()
        # The response task ends once the disconnect is heard; Starlette leaves its generator to be
        # closed when collected (at once on CPython, at a collection on PyPy).
        wait_until(lambda: collected() and marks.left.is_set(), message="the generator to be closed")
        gone(server)


# Django: a view cancelled when its client disconnects (Django 5.0+) ---------------------------


def test_django_cancels_a_view_whose_client_disconnected(twin, loop, caplog):
    django = pytest.importorskip("django")
    if django.VERSION < (5, 0):  # (PyPy 3.9 gets Django 4.2)
        pytest.skip(f"Django {django.__version__} does not cancel a view when its client disconnects (5.0 does)")
    from tests import django_views

    application = django_views.application()
    django_views.MARKS.clear()
    with caplog.at_level(logging.DEBUG), run_server(make_config(application, twin, loop=loop)) as server:
        sock = connect(server)
        sock.sendall(b"GET /wait/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert django_views.mark("started").wait(WAIT)
        sock.close()
        assert django_views.mark("cancelled").wait(WAIT)
        gone(server)
        sock = connect(server)  # the server and Django carry on
        sock.sendall(b"GET /hello/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        [response] = parse_responses(recv_until_closed(sock))
        sock.close()
    assert (response.status, response.body) == (200, b"hello from django")
    assert problems(caplog) == []


# A browser's EventSource ------------------------------------------------------------------------

EVENT_PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>cyasgi sse</title></head><body>
<script>
const report = (text) => fetch("/result", {method: "POST", body: text});
const source = new EventSource("/events");
source.onopen = () => report("open");
source.onmessage = (event) => { source.close(); report("message " + event.data); };
source.onerror = () => report("error");
</script></body></html>
"""


def test_chromium_event_source_opens_before_the_first_event_and_its_close_is_heard(twin):
    """The server answers /events with its head and holds the first event until the page has
    reported ``open``: an EventSource fires open on the head alone. Closing it is heard by the app
    waiting in receive()."""
    from tests.browser import BROWSER_WAIT, browsing, find_chromium

    chromium = find_chromium()
    reports: list[str] = []
    opened = threading.Event()
    finished = threading.Event()
    heard: list[str] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/result":
            body = await read_body(receive)
            reports.append(body.decode())
            (opened if body == b"open" else finished).set()
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        elif scope["path"] == "/events":
            event_stream = [(b"content-type", b"text/event-stream")]
            await send({"type": "http.response.start", "status": 200, "headers": event_stream})
            await wait_in_thread(opened)
            await send({"type": "http.response.body", "body": b"data: hello\n\n", "more_body": True})
            await receive()
            heard.append((await receive())["type"])  # until the page closes the EventSource
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
            await send({"type": "http.response.body", "body": EVENT_PAGE})

    with run_server(make_config(app, twin)) as server, browsing(chromium, f"http://127.0.0.1:{server.port}/"):
        assert finished.wait(BROWSER_WAIT), f"the page reported {reports}"
        assert reports == ["open", "message hello"]
        wait_until(lambda: heard == ["http.disconnect"], timeout=BROWSER_WAIT, message="the close to be heard")
