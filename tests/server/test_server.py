"""A real server in this process (a thread, port 0): every setting that shows on the wire or in the logs."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import threading
import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

import cyasgi.server
from cyasgi._compat import IS_PYPY
from cyasgi.logging import TRACE_LOG_LEVEL, AccessFormatter
from tests import apps
from tests.utils import (
    WAIT,
    LogWatcher,
    connect,
    ipv6_available,
    make_config,
    parse_responses,
    recv_responses,
    recv_until_closed,
    run_server,
    wait_started,
)


def get_json(server: Any, path: str = "/", **kwargs: Any) -> dict[str, Any]:
    response = httpx.get(server.url + path, timeout=WAIT, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == logger]


# Listening: port 0, IPv6, the start-up lines ------------------------------------------------------


def test_port_0_and_started_message(twin, caplog):
    caplog.set_level(logging.INFO)
    with run_server(make_config(apps.hello, twin)) as server:
        port = server.port
        assert port != 0
        assert httpx.get(server.url, timeout=WAIT).text == "hello"
    lines = messages(caplog, "uvicorn.error")
    assert f"cyasgi running on http://127.0.0.1:{port} (Press CTRL+C to quit)" in lines
    assert lines[-1].startswith("Finished server process [")
    assert any(line.startswith("HTTP/1.1: ") and " twin (" in line for line in lines)


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback here")
def test_ipv6_loopback(twin, caplog):
    caplog.set_level(logging.INFO)
    with run_server(make_config(apps.echo, twin, host="::1")) as server:
        scope = get_json(server)
        port = server.port
    assert scope["client"][0] == "::1"
    assert scope["server"] == ["::1", port]
    assert f"cyasgi running on http://[::1]:{port} (Press CTRL+C to quit)" in messages(caplog, "uvicorn.error")


def test_backlog_reaches_listen(twin):
    if shutil.which("ss") is None:
        pytest.skip("needs ss(8) to read a listening socket's backlog")
    with run_server(make_config(apps.hello, twin, backlog=123)) as server:
        listing = subprocess.run(
            ["ss", "-ltnH", f"sport = :{server.port}"], capture_output=True, text=True, timeout=WAIT, check=True
        ).stdout.split()
    # ss prints State Recv-Q Send-Q ...; for a listening socket Send-Q is the backlog.
    assert listing[0] == "LISTEN"
    assert listing[2] == "123"


# Access log and trace log ---------------------------------------------------------------------------


def test_access_log_record_and_line(twin, caplog):
    caplog.set_level(logging.INFO)
    with run_server(make_config(apps.hello, twin)) as server, httpx.Client(timeout=WAIT) as client:
        response = client.get(server.url + "/path with space?q=1&r=%20")
    assert response.status_code == 200
    [record] = [r for r in caplog.records if r.name == "uvicorn.access"]
    client_addr, method, path, version, status = record.args  # type: ignore[misc]
    assert client_addr.startswith("127.0.0.1:")
    assert (method, path, version, status) == ("GET", "/path%20with%20space?q=1&r=%20", "1.1", 200)
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False).format(record)
    assert line == f'{client_addr} - "GET /path%20with%20space?q=1&r=%20 HTTP/1.1" 200 OK'


def test_access_log_off(twin, monkeypatch):
    calls: list[Any] = []
    monkeypatch.setattr(logging.getLogger("uvicorn.access"), "info", lambda *args, **kwargs: calls.append(args))
    with run_server(make_config(apps.hello, twin, access_log=False)) as server:
        assert httpx.get(server.url, timeout=WAIT).status_code == 200
    assert calls == []


def test_trace_level_logs_asgi_messages(twin, caplog):
    caplog.set_level(TRACE_LOG_LEVEL)
    with run_server(make_config(apps.hello, twin, log_level="trace")) as server:
        response = httpx.get(server.url + "/t", timeout=WAIT)
    assert response.status_code == 200
    asgi = [r for r in caplog.records if r.name == "uvicorn.asgi"]
    assert {r.levelno for r in asgi} == {TRACE_LOG_LEVEL}
    text = [r.getMessage() for r in asgi]
    assert text[0].startswith("127.0.0.1:") and " - ASGI [1] Started scope=" in text[0]
    assert "'headers': '<...>'" in text[0]
    assert any(" - ASGI [1] Send {'type': 'http.response.start', 'status': 200" in line for line in text)
    assert any(" - ASGI [1] Send {'type': 'http.response.body', 'body': '<5 bytes>'}" in line for line in text)
    assert text[-1].endswith(" - ASGI [1] Completed")
    assert any(m.endswith("HTTP connection made") for m in messages(caplog, "uvicorn.error"))


# Default headers --------------------------------------------------------------------------------------


def test_custom_server_and_date_headers(twin):
    config = make_config(apps.hello, twin, headers=[("X-One", "1"), ("X-Two", "a:b")])
    with run_server(config) as server:
        response = httpx.get(server.url, timeout=WAIT)
    assert response.headers["x-one"] == "1"
    assert response.headers["x-two"] == "a:b"
    assert response.headers["server"] == "cyasgi"
    assert abs(parsedate_to_datetime(response.headers["date"]).timestamp() - time.time()) < 5


def test_server_and_date_headers_off(twin):
    config = make_config(apps.hello, twin, server_header=False, date_header=False)
    with run_server(config) as server:
        response = httpx.get(server.url, timeout=WAIT)
    assert "server" not in response.headers
    assert "date" not in response.headers


def test_custom_server_header_replaces_the_default(twin):
    with run_server(make_config(apps.hello, twin, headers=[("Server", "edge")])) as server:
        response = httpx.get(server.url, timeout=WAIT)
    assert response.headers.get_list("server") == ["edge"]


def test_date_header_is_refreshed_once_a_second(twin, monkeypatch):
    calls: list[float] = []
    real_formatdate = cyasgi.server.formatdate

    def counting_formatdate(timeval: float, **kwargs: Any) -> str:
        calls.append(timeval)
        return real_formatdate(timeval, **kwargs)

    monkeypatch.setattr(cyasgi.server, "formatdate", counting_formatdate)
    with run_server(make_config(apps.hello, twin)) as server, httpx.Client(timeout=WAIT) as client:
        # Two requests inside one wall-clock second share the header (retry if a second ticked over).
        for _ in range(5):
            before = int(time.time())
            first = client.get(server.url).headers["date"]
            second = client.get(server.url).headers["date"]
            if int(time.time()) == before:
                break
        assert first == second
        # Many requests do not rebuild it per request.
        started, calls_before = time.time(), len(calls)
        for _ in range(20):
            client.get(server.url)
        assert len(calls) - calls_before <= int(time.time() - started) + 2
        # After the second changes it changes too: poll (no event exists for a clock tick), bounded.
        deadline = time.monotonic() + 3
        latest = first
        while latest == first and time.monotonic() < deadline:
            time.sleep(0.05)
            latest = client.get(server.url).headers["date"]
        assert latest != first
        assert parsedate_to_datetime(latest) > parsedate_to_datetime(first)


# root_path ----------------------------------------------------------------------------------------------


def test_root_path_is_prepended_to_path(twin):
    with run_server(make_config(apps.echo, twin, root_path="/api")) as server:
        scope = get_json(server, "/items/%41?x=1")
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/items/A"
    assert scope["raw_path"] == "/api/items/%41"
    assert scope["query_string"] == "x=1"


# Proxy headers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allow", "forwarded_for", "client", "scheme"),
    [
        (None, "203.0.113.7", "203.0.113.7", "https"),  # the default trusts 127.0.0.1
        ("127.0.0.1", "203.0.113.7:4000", "203.0.113.7", "https"),
        ("127.0.0.0/8", "203.0.113.7", "203.0.113.7", "https"),
        ("*", "198.51.100.1, 203.0.113.7", "198.51.100.1", "https"),
        ("127.0.0.1,10.0.0.0/8", "198.51.100.1, 203.0.113.7, 10.1.2.3", "203.0.113.7", "https"),
        ("10.0.0.0/8", "203.0.113.7", "127.0.0.1", "http"),  # the peer is not trusted
        (["127.0.0.1", "::1"], "[2001:db8::1]:8080", "2001:db8::1", "https"),
    ],
)
def test_forwarded_allow_ips(twin, monkeypatch, allow, forwarded_for, client, scheme):
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    config = make_config(apps.echo, twin, forwarded_allow_ips=allow)
    headers = {"x-forwarded-for": forwarded_for, "x-forwarded-proto": "https"}
    with run_server(config) as server:
        scope = get_json(server, headers=headers)
    assert scope["client"][0] == client
    assert scope["scheme"] == scheme
    if client == "203.0.113.7" and forwarded_for.endswith(":4000"):
        assert scope["client"][1] == 4000


def test_proxy_headers_off(twin):
    config = make_config(apps.echo, twin, proxy_headers=False, forwarded_allow_ips="*")
    with run_server(config) as server:
        scope = get_json(server, headers={"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https"})
    assert scope["client"][0] == "127.0.0.1"
    assert scope["scheme"] == "http"


@pytest.mark.parametrize("trusted", [True, False])
def test_forwarded_allow_ips_uds_literal(twin, tmp_path, trusted):
    path = str(tmp_path / "proxy.sock")
    config = make_config(apps.echo, twin, uds=path, forwarded_allow_ips=path if trusted else "127.0.0.1")
    headers = {"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https"}
    with run_server(config), httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=WAIT) as client:
        scope = client.get("http://proxy/", headers=headers).json()
    assert scope["server"] == [path, None]
    if trusted:
        assert (scope["client"], scope["scheme"]) == (["203.0.113.7", 0], "https")
    else:
        assert (scope["client"], scope["scheme"]) == (None, "http")


# Concurrency and request limits ---------------------------------------------------------------------


class Gate:
    """An app whose /block requests wait (in the server's loop) until the test calls ``open()``."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.cancelled = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await apps.lifespan(scope, receive, send)
        if scope["path"] == "/block":
            self._loop, self._event = asyncio.get_running_loop(), asyncio.Event()
            self.entered.set()
            try:
                await asyncio.wait_for(self._event.wait(), WAIT)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        await apps.send_text(send, b"through")

    def open(self) -> None:
        assert self._loop is not None and self._event is not None
        self._loop.call_soon_threadsafe(self._event.set)


def start_request(server: Any, path: str) -> socket.socket:
    sock = connect(server)
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    return sock


def test_limit_concurrency_answers_503_and_closes(twin, caplog):
    gate = Gate()
    with run_server(make_config(gate, twin, limit_concurrency=2)) as server:
        busy = start_request(server, "/block")
        try:
            assert gate.entered.wait(WAIT)
            with connect(server) as extra:
                extra.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                data = recv_until_closed(extra)  # the server closes it
            gate.open()
            [ok] = recv_responses(busy, 1)
        finally:
            busy.close()
        assert httpx.get(server.url, timeout=WAIT).text == "through"  # below the limit again
    [refused] = parse_responses(data)
    assert refused.status == 503
    assert refused.body == b"Service Unavailable"
    assert refused.header(b"connection") == b"close"
    assert ok.status == 200
    assert "Exceeded concurrency limit." in messages(caplog, "uvicorn.error")


@pytest.mark.parametrize(("limit", "jitter", "drawn"), [(3, 0, 3), (2, 3, 5)])
def test_limit_max_requests_with_jitter(twin, monkeypatch, caplog, limit, jitter, drawn):
    caplog.set_level(logging.INFO)  # the limit is logged at INFO, as uvicorn does
    monkeypatch.setattr(cyasgi.server.random, "randint", lambda low, high: high)
    config = make_config(apps.hello, twin, limit_max_requests=limit, limit_max_requests_jitter=jitter)
    with run_server(config) as server:
        with httpx.Client(timeout=WAIT) as client:
            for _ in range(drawn):
                assert client.get(server.url).status_code == 200
        assert server.finished.wait(WAIT), "the server did not stop after its request limit"
        assert server.limit_max_requests == drawn
        assert server.server_state.total_requests == drawn
    assert f"Maximum request limit of {drawn} exceeded. Terminating process." in messages(caplog, "uvicorn.error")


def test_jitter_is_drawn_once_within_range(twin):
    server = cyasgi.server.Server(make_config(apps.hello, twin, limit_max_requests=10, limit_max_requests_jitter=5))
    drawn = server.limit_max_requests
    assert 10 <= drawn <= 15  # type: ignore[operator]
    assert all(server.limit_max_requests == drawn for _ in range(20))
    assert cyasgi.server.Server(make_config(apps.hello, twin)).limit_max_requests is None


# Keep-alive timeout ----------------------------------------------------------------------------------------


def test_idle_keep_alive_connection_closed_after_timeout(twin):
    with run_server(make_config(apps.hello, twin, timeout_keep_alive=1)) as server, connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        [response] = recv_responses(sock, 1)
        answered = time.monotonic()
        assert response.status == 200 and response.header(b"connection") is None
        rest = recv_until_closed(sock)
        idle = time.monotonic() - answered
    assert rest == b""
    assert 0.75 <= idle < 1 + 1.5, idle  # never before the timeout (less the client's own delays)


def test_keep_alive_timer_restarts_with_each_request(twin):
    with run_server(make_config(apps.hello, twin, timeout_keep_alive=1)) as server, connect(server) as sock:
        start = time.monotonic()
        for _ in range(4):  # four requests 0.35 s apart: 1.4 s, yet never idle for 1 s
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert recv_responses(sock, 1)[0].status == 200
            time.sleep(0.35)  # the idle time under test, not a synchronisation
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert recv_responses(sock, 1)[0].status == 200
    assert time.monotonic() - start >= 1.4


# Graceful shutdown timeout ------------------------------------------------------------------------------


def test_graceful_shutdown_timeout_cancels_slow_requests(twin, caplog):
    caplog.set_level(logging.INFO)
    gate = Gate()
    config = make_config(gate, twin, timeout_graceful_shutdown=1, lifespan="on")
    with run_server(config) as server:
        busy = start_request(server, "/block")
        assert gate.entered.wait(WAIT)
        asked = time.monotonic()
        server.should_exit = True
        assert server.finished.wait(WAIT)
        took = time.monotonic() - asked
        data = recv_until_closed(busy)
        busy.close()
    assert 1.0 <= took < 1 + 3, took
    assert gate.cancelled.is_set()
    assert data == b""  # no response: the connection was dropped
    lines = messages(caplog, "uvicorn.error")
    assert "Cancel 1 running task(s), timeout graceful shutdown exceeded" in lines
    assert "test app: lifespan shutdown ran" in lines


def test_graceful_shutdown_waits_for_in_flight_request(twin):
    gate = Gate()
    with run_server(make_config(gate, twin)) as server, LogWatcher() as log:
        port = server.port
        busy = start_request(server, "/block")
        assert gate.entered.wait(WAIT)
        with connect(server) as idle:
            idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert recv_responses(idle, 1)[0].status == 200
            server.should_exit = True
            assert recv_until_closed(idle) == b""  # the idle keep-alive connection is closed at once
        log.wait_for("Waiting for connections to close. (CTRL+C to force quit)")
        with pytest.raises(ConnectionRefusedError):  # the listener is closed: no new connections
            socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
        assert not server.finished.is_set()
        gate.open()
        [response] = recv_responses(busy, 1)
        assert response.status == 200 and response.body == b"through"
        assert response.header(b"connection") == b"close"
        assert server.finished.wait(WAIT)
        busy.close()


# Context variables ------------------------------------------------------------------------------------------

request_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_var")


async def context_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return await apps.lifespan(scope, receive, send)
    seen = request_var.get("unset")
    request_var.set("set by a request")
    await apps.send_text(send, seen.encode())


@pytest.mark.parametrize(("reset", "expected"), [(False, "outer"), (True, "unset")])
def test_reset_contextvars(twin, reset, expected):
    config = make_config(context_app, twin, reset_contextvars=reset)
    server = cyasgi.server.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    results: list[str] = []

    async def main() -> None:
        request_var.set("outer")  # context of the code that runs the server
        task = asyncio.create_task(server.serve(sockets=[sock]))
        await wait_started(server, task)
        async with httpx.AsyncClient(timeout=WAIT) as client:
            for _ in range(2):  # the second request does not see what the first one set
                results.append((await client.get(f"http://127.0.0.1:{port}/")).text)
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    thread.join(WAIT * 2)
    assert not thread.is_alive()
    assert results == [expected, expected]


# Lifespan and state ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lifespan", "state"), [("auto", {"started": "yes"}), ("on", {"started": "yes"}), ("off", {})])
def test_lifespan_modes_and_state(twin, caplog, lifespan, state):
    caplog.set_level(logging.INFO)
    with run_server(make_config(apps.echo, twin, lifespan=lifespan)) as server:
        assert get_json(server)["state"] == state
    lines = messages(caplog, "uvicorn.error")
    ran = lifespan != "off"
    assert ("Waiting for application startup." in lines) is ran
    assert ("test app: lifespan shutdown ran" in lines) is ran


def test_lifespan_auto_with_an_app_without_lifespan(twin, caplog):
    caplog.set_level(logging.INFO)
    with run_server(make_config(apps.no_lifespan, twin, lifespan="auto")) as server:
        assert httpx.get(server.url, timeout=WAIT).text == "no lifespan"
    assert "ASGI 'lifespan' protocol appears unsupported." in messages(caplog, "uvicorn.error")


def test_lifespan_on_failure_does_not_serve(twin):
    config = make_config(apps.startup_fails, twin, lifespan="on")
    with pytest.raises(RuntimeError, match="failed to start"), run_server(config):
        pass


class StateApp:
    """Lifespan puts a counter and a shared list in the state; each request changes both."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await apps.lifespan(scope, receive, send, {"counter": 0, "shared": []})
        state = scope["state"]
        state["counter"] += 1
        state["added"] = "by a request"
        state["shared"].append(scope["path"])
        body = json.dumps({"counter": state["counter"], "shared": state["shared"]})
        await apps.send_text(send, body.encode())


def test_state_is_a_shallow_copy_per_request(twin):
    with run_server(make_config(StateApp(), twin, lifespan="on")) as server, httpx.Client(timeout=WAIT) as client:
        first = client.get(server.url + "/a").json()
        second = client.get(server.url + "/b").json()
    assert first == {"counter": 1, "shared": ["/a"]}
    assert second == {"counter": 1, "shared": ["/a", "/b"]}  # a new dict, the same list


# Interfaces served end to end -----------------------------------------------------------------------------------


@pytest.mark.parametrize("interface", ["auto", "wsgi"])
def test_wsgi_app_end_to_end(twin, interface):
    with run_server(make_config(apps.wsgi_app, twin, interface=interface)) as server:
        response = httpx.post(server.url + "/submit?x=1", content=b"payload", timeout=WAIT)
    assert response.status_code == 200
    assert response.text == "wsgi POST /submit x=1 body=payload"
    assert response.headers["x-wsgi"] == "yes"


@pytest.mark.parametrize("app", [apps.ASGI2App, apps.asgi2_function])
@pytest.mark.parametrize("interface", ["auto", "asgi2"])
def test_asgi2_app_end_to_end(twin, app, interface):
    with run_server(make_config(app, twin, interface=interface)) as server:
        response = httpx.get(server.url + "/two", timeout=WAIT)
    assert response.status_code == 200
    assert response.text in ("asgi2 /two", "asgi2 function")


# UNIX domain sockets -------------------------------------------------------------------------------------------


def test_uds_mode_is_0o666(twin, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    path = tmp_path / "app.sock"
    with run_server(make_config(apps.echo, twin, uds=str(path))):
        mode = stat.S_IMODE(os.stat(path).st_mode)
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=WAIT) as client:
            scope = client.get("http://unix/").json()
    assert mode == 0o666
    assert scope["client"] is None
    assert f"cyasgi running on unix socket {path} (Press CTRL+C to quit)" in messages(caplog, "uvicorn.error")


def test_uds_existing_file_keeps_its_mode(twin, tmp_path):
    path = tmp_path / "app.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))
    os.chmod(path, 0o600)
    with run_server(make_config(apps.hello, twin, uds=str(path))):
        mode = stat.S_IMODE(os.stat(path).st_mode)
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=WAIT) as client:
            assert client.get("http://unix/").text == "hello"
    assert mode == 0o600


# Event loops and the built-in WSGI bridge -------------------------------------------------------------


def uvloop_usable() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return not IS_PYPY


@pytest.mark.parametrize(
    ("loop", "name"),
    [
        ("auto", "uvloop" if uvloop_usable() else "asyncio"),
        ("asyncio", "asyncio"),
        ("uvloop", "uvloop"),
        ("asyncio:new_event_loop", "asyncio"),
    ],
)
def test_loop_choice(twin, caplog, loop, name):
    if loop == "uvloop" and not uvloop_usable():
        pytest.skip("uvloop is not available here")
    caplog.set_level(logging.INFO)
    with run_server(make_config(apps.hello, twin, loop=loop)) as server:
        assert httpx.get(server.url, timeout=WAIT).text == "hello"
    [line] = [m for m in messages(caplog, "uvicorn.error") if m.startswith("HTTP/1.1: ")]
    assert f" on {name}, " in line


def test_builtin_wsgi_bridge_without_a2wsgi(twin, monkeypatch):
    from cyasgi.middleware import wsgi

    monkeypatch.setattr(wsgi, "WSGIMiddleware", wsgi._BuiltinWSGIMiddleware)
    with run_server(make_config(apps.wsgi_app, twin, root_path="/mnt")) as server:
        response = httpx.post(server.url + "/submit?x=1", content=b"payload", timeout=WAIT)
    assert response.status_code == 200
    assert response.text == "wsgi POST /submit x=1 body=payload"  # PATH_INFO without the root path
    assert response.headers["x-wsgi"] == "yes"
