"""Faults on real sockets: clients that reset, half-close, never read, or fail TLS; and the objects a
connection leaves behind (none) once 10,000 clients have reset theirs."""

from __future__ import annotations

import asyncio
import gc
import logging
import select
import socket
import ssl
import struct
import subprocess
import sys
import threading
from typing import Any

import pytest
import trustme

from cyasgi.protocols.http.wire import WRITE_BATCH_LIMIT
from tests.conftest import load_twin
from tests.utils import WAIT, connect, make_config, parse_responses, recv_until_closed, run_cli, run_server
from tests.ws_utils import wait_until


def reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def only_connection(server: Any) -> Any:
    wait_until(lambda: len(server.server_state.connections) == 1, message="one connection")
    return next(iter(server.server_state.connections))


def problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Anything logged at WARNING or above, or with a traceback."""
    return [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


class Events:
    """What the app saw, for the test thread (the app runs in the server's thread)."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.sent = 0
        self.ended = threading.Event()
        self.started = threading.Event()


# Resets -----------------------------------------------------------------------------------------


def test_reset_mid_request_head_and_mid_body(twin, caplog):
    events = Events()

    async def app(scope, receive, send):
        events.started.set()
        try:
            while True:
                message = await receive()
                events.messages.append(message["type"])
                if message["type"] == "http.disconnect" or not message["more_body"]:
                    break
        finally:
            events.ended.set()

    with caplog.at_level(logging.DEBUG), run_server(make_config(app, twin)) as server:
        sock = connect(server)
        sock.sendall(b"GET / HTTP/1.1\r\nHo")  # half a head
        only_connection(server)
        reset(sock)
        wait_until(lambda: not server.server_state.connections, message="the connection to go")
        sock = connect(server)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf")
        assert events.started.wait(WAIT)
        reset(sock)
        assert events.ended.wait(WAIT)
        wait_until(lambda: not server.server_state.connections and not server.server_state.tasks)
    assert events.messages[-1] == "http.disconnect"
    assert problems(caplog) == []


@pytest.mark.parametrize("loop", ["auto", "asyncio"])
def test_reset_mid_response(twin, loop, caplog):
    """An app streaming in a loop that never waits (send() never blocks) still learns the client left:
    asyncio drops writes to a reset socket silently and delivers connection_lost only at the next
    turn of the loop, which such an app never gives it."""
    events = Events()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:  # until the client is gone
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
                events.sent += 1
        finally:
            events.ended.set()

    with caplog.at_level(logging.DEBUG), run_server(make_config(app, twin, loop=loop)) as server:
        sock = connect(server)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
        reset(sock)
        assert events.ended.wait(WAIT)
        wait_until(lambda: not server.server_state.connections and not server.server_state.tasks)
    assert problems(caplog) == []
    assert "Client disconnected while the application was sending the response." in caplog.text


# Half-closed sockets --------------------------------------------------------------------------


def test_half_closed_client_still_gets_its_responses(twin):
    async def app(scope, receive, send):
        await asyncio.sleep(0.01)  # answer after the FIN has arrived
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    with run_server(make_config(app, twin)) as server:
        sock = connect(server)
        sock.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        data = recv_until_closed(sock)  # both answers, then the server closes too
        sock.close()
    assert [r.body for r in parse_responses(data)] == [b"/one", b"/two"]


def test_half_close_mid_body_abandons_the_request(twin, caplog):
    events = Events()

    async def app(scope, receive, send):
        try:
            while True:
                message = await receive()
                events.messages.append(message["type"])
                if message["type"] == "http.disconnect" or not message["more_body"]:
                    return
        finally:
            events.ended.set()

    with caplog.at_level(logging.DEBUG), run_server(make_config(app, twin)) as server:
        sock = connect(server)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        sock.shutdown(socket.SHUT_WR)  # the body can never complete
        assert recv_until_closed(sock) == b""
        sock.close()
        assert events.ended.wait(WAIT)
    assert events.messages[-1] == "http.disconnect"
    assert problems(caplog) == []


# A reader that never reads ------------------------------------------------------------------------


def test_a_client_that_never_reads_holds_a_bounded_buffer(twin):
    """Flow control: once the socket and the transport buffer are full, send() waits; the app has
    pushed at most a few MiB of a 1 GiB response, and the transport holds at most its high-water mark
    plus one write batch (an eager request task on 3.12+ sends inside the dispatch loop, whose writes
    leave together once they reach WRITE_BATCH_LIMIT) plus one message."""
    events = Events()
    chunk = b"x" * 65536

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % (1 << 30))]})
        try:
            for _ in range((1 << 30) // len(chunk)):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                events.sent += len(chunk)
        finally:
            events.ended.set()

    with run_server(make_config(app, twin)) as server:
        sock = connect(server)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        protocol = only_connection(server)
        wait_until(lambda: protocol.flow.write_paused, message="send() to wait for the client")
        sent = events.sent
        buffered = protocol.transport.get_write_buffer_size()
        high_water = protocol.transport.get_write_buffer_limits()[1]
        assert buffered <= high_water + WRITE_BATCH_LIMIT + len(chunk), (buffered, high_water)
        assert sent < 16 << 20, sent  # socket buffers and the transport's, nothing more
        reset(sock)
        assert events.ended.wait(WAIT)  # the waiting send() wakes up and raises
        assert events.sent < 16 << 20


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def pipeline_until_blocked(socks: list[socket.socket], request: bytes, limit: int = 32 << 20) -> int:
    """Send pipelined requests on every socket, never reading, until none has taken a byte for
    half a second (its kernel buffers and the server's are full) or ``limit`` bytes each."""
    batch = request * (65536 // len(request))
    sent = dict.fromkeys(socks, 0)
    for sock in socks:
        sock.setblocking(False)
    while True:
        writable = [sock for sock in socks if sent[sock] < limit]
        if not writable:
            break
        _, ready, _ = select.select([], writable, [], 0.5)
        if not ready:
            break
        for sock in ready:
            try:
                sent[sock] += sock.send(batch)
            except BlockingIOError:
                pass
    return min(sent.values())


#: What one client that pipelines without reading may cost the server, whatever it sends.
PIPELINING_CLIENT_MEMORY_BOUND_KIB = 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the server's RSS from /proc")
@pytest.mark.skipif(
    sys.implementation.name != "cpython",
    reason="PyPy's garbage collector grows the heap before it collects: RSS is no measure of what is held",
)
@pytest.mark.parametrize(
    ("twin_name", "http"), [("c", "auto"), ("py", "auto"), ("py", "cyasgi"), ("c", "h11")], ids=lambda v: v
)
def test_clients_that_pipeline_without_reading_cost_bounded_memory(twin_name, http):
    """Small pipelined requests, never a response read: the server parses only a pipeline's worth
    ahead and holds the rest of a read as bytes, so its memory does not grow with what is sent
    (it grew by about 9 MiB per such client when every request of each read became a request object)."""
    if twin_name == "c":
        load_twin("c")
    env = {"CYASGI_NO_EXTENSIONS": "1"} if twin_name == "py" else {"CYASGI_NO_EXTENSIONS": ""}
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    clients = 8
    with run_cli("tests.apps:hello", "--port", "0", "--http", http, "--no-access-log", env=env) as proc:
        url = proc.wait_until_serving()
        port = int(url.rsplit(":", 1)[1])
        warm = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        pipeline_until_blocked([warm], request, limit=4 << 20)  # every code path once, before measuring
        warm.close()
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as probe:
            probe.sendall(request)
            assert probe.recv(65536).startswith(b"HTTP/1.1 200 OK")
        before = rss_kib(proc.proc.pid)
        socks = [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(clients)]
        for sock in socks:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        each = pipeline_until_blocked(socks, request)
        after = rss_kib(proc.proc.pid)
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as probe:  # still serving others
            probe.sendall(request)
            assert probe.recv(65536).startswith(b"HTTP/1.1 200 OK")
        for sock in socks:
            reset(sock)
    per_client = (after - before) / clients
    print(f"{each} bytes sent by each client; RSS {before} -> {after} KiB: {per_client:.0f} KiB per client")
    assert each > 1 << 20  # far more than the server lets itself parse ahead
    assert per_client < PIPELINING_CLIENT_MEMORY_BOUND_KIB


# TLS ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    folder = tmp_path_factory.mktemp("faults-pki")
    cert.cert_chain_pems[0].write_to_path(folder / "cert.pem")
    cert.private_key_pem.write_to_path(folder / "key.pem")
    return {"ssl_certfile": str(folder / "cert.pem"), "ssl_keyfile": str(folder / "key.pem")}


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_failed_tls_handshakes_and_plain_http_on_a_tls_port_are_quiet(twin, loop, tls_files, caplog):
    if loop == "uvloop":
        pytest.importorskip("uvloop")

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"over tls"})

    untrusting = ssl.create_default_context()  # does not know our CA: the client aborts the handshake
    ancient = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ancient.check_hostname = False
    ancient.verify_mode = ssl.CERT_NONE
    ancient.maximum_version = ssl.TLSVersion.TLSv1_2
    ancient.set_ciphers("aNULL")  # nothing the server accepts: a handshake failure on the server side
    working = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    working.check_hostname = False
    working.verify_mode = ssl.CERT_NONE
    with caplog.at_level(logging.DEBUG), run_server(make_config(app, twin, loop=loop, **tls_files)) as server:
        sock = connect(server)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # plain HTTP on the TLS port
        assert recv_until_closed(sock) == b""
        sock.close()
        for context in (untrusting, ancient):
            with pytest.raises(ssl.SSLError), connect(server) as raw, context.wrap_socket(
                raw, server_hostname="127.0.0.1"
            ) as tls:
                tls.recv(1)
        sock = connect(server)
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # half a ClientHello, then gone
        reset(sock)
        with connect(server) as raw, working.wrap_socket(raw) as tls:  # the server still serves
            tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert parse_responses(recv_until_closed(tls))[0].body == b"over tls"
        wait_until(lambda: not server.server_state.connections)
    assert problems(caplog) == []


# Leaks --------------------------------------------------------------------------------------------

RESETTING_CLIENTS = r"""
import socket, struct, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
linger = struct.pack("ii", 1, 0)
kinds = [
    b"GET / HTTP/1.1\r\nHo",  # half a head
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf",  # the app waits for the body
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # complete: the answer goes to a reset socket
]
for i in range(count):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(kinds[i % 3])
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    sock.close()
"""


def live(cls: type) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is cls)


@pytest.mark.slow
def test_ten_thousand_reset_connections_leave_nothing_behind(twin):
    """No protocol, request cycle, timer or task outlives its connection (uvicorn's keep-alive
    timer keeps each protocol alive until it fires)."""

    calls = []

    async def app(scope, receive, send):
        calls.append(scope["method"])
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            more = message["more_body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    before = (live(twin.HttpProtocol), live(twin.RequestCycle))
    with run_server(make_config(app, twin)) as server:
        clients = subprocess.run(
            [sys.executable, "-c", RESETTING_CLIENTS, str(server.port), "10000"], timeout=120, check=True
        )
        assert clients.returncode == 0
        print(f"{len(calls)} requests reached the app; {server.server_state.total_requests} answered")
        assert len(calls) > 1000  # most requests got in before their reset
        wait_until(
            lambda: not server.server_state.connections and not server.server_state.tasks,
            timeout=60,
            message="every connection and task to end",
        )
        loop_handles = server.lifespan  # keep the server alive while counting
        after = (live(twin.HttpProtocol), live(twin.RequestCycle))
        assert loop_handles is not None
    # None of the 10,000 is left: at most what lived before (objects of earlier tests may be freed
    # meanwhile; PyPy's collector frees some of them only at a later collection).
    assert after[0] <= before[0] and after[1] <= before[1], (
        f"live (protocols, request cycles): {before} before, {after} after"
    )
