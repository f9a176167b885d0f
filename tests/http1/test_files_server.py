"""Files through a real server, for both twins: sendfile(2) on plain TCP with asyncio (the loop's
``sendfile``) and uvloop (which has none: cyasgi's own), read and write over TLS; keep-alive and
pipelining behind a file, a client leaving mid-file, and Starlette's FileResponse end to end."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from typing import Any

import httpx
import pytest

from cyasgi._compat import IS_PYPY
from cyasgi.protocols.http.errors import ClientDisconnected
from tests.server.test_tls import ca, client_context, pki, tls_config  # noqa: F401 (fixtures below)
from tests.utils import WAIT, connect, make_config, recv_responses, recv_until_closed, run_server


def uvloop_usable() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return not IS_PYPY


LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(not uvloop_usable(), reason="no uvloop"))]

SIZES = {"64k": 65536, "4m": 4 * 1024 * 1024 + 3}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, bytes]]:
    folder = tmp_path_factory.mktemp("files")
    result = {}
    for name, size in SIZES.items():
        data = os.urandom(size)
        path = folder / name
        path.write_bytes(data)
        result[name] = (str(path), data)
    return result


@pytest.fixture
def sendfile_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts os.sendfile calls (the server runs in a thread of this process)."""
    calls: list[int] = []
    real = os.sendfile

    def counting(out_fd: int, in_fd: int, offset: Any, count: int) -> int:
        sent = real(out_fd, in_fd, offset, count)
        calls.append(sent)
        return sent

    monkeypatch.setattr(os, "sendfile", counting)
    return calls


@pytest.fixture
def copied(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the bytes the read-and-write way read (os.pread): none where sendfile(2) works."""
    reads: list[int] = []
    real = os.pread

    def counting(fd: int, size: int, offset: int) -> bytes:
        data = real(fd, size, offset)
        reads.append(len(data))
        return data

    monkeypatch.setattr(os, "pread", counting)
    return reads


def assert_sent_by_sendfile(twin: Any, sendfile_calls: list[int], copied: list[int], total: int) -> None:
    """No byte of the files went through Python. The pure twin sends them all with os.sendfile; the
    compiled twin calls sendfile(2) itself and uses os.sendfile only for what is left when the
    socket fills up."""
    assert copied == []
    if not twin.COMPILED:
        assert sum(sendfile_calls) == total
    else:
        assert sum(sendfile_calls) <= total


def file_app(files: dict[str, tuple[str, bytes]], seen: list[Any] | None = None) -> Any:
    """/64k and /4m by pathsend; /small a plain body; /chunked a body then the file."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        name = scope["path"].strip("/")
        if name == "small":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"small"})
            return
        chunked = name.startswith("chunked-")
        path, _ = files[name.removeprefix("chunked-")]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/x-test")],
            }
        )
        if chunked:
            await send({"type": "http.response.body", "body": b"<", "more_body": True})
        try:
            await send({"type": "http.response.pathsend", "path": path})
        except BaseException as exc:
            if seen is not None:
                seen.append(exc)
            raise

    return app


@pytest.mark.parametrize("loop", LOOPS)
def test_pathsend_uses_sendfile_on_plain_tcp(twin, files, loop, sendfile_calls, copied):
    with run_server(make_config(file_app(files), twin, loop=loop)) as server:
        with httpx.Client(timeout=WAIT) as client:
            for name in ("64k", "4m", "chunked-4m", "64k"):
                response = client.get(f"{server.url}/{name}")
                data = files[name.removeprefix("chunked-")][1]
                assert response.status_code == 200
                if name.startswith("chunked-"):
                    assert response.headers["transfer-encoding"] == "chunked"
                    assert response.content == b"<" + data
                else:
                    assert response.headers["content-length"] == str(len(data))
                    assert response.content == data
            assert client.head(f"{server.url}/4m").content == b""
    assert_sent_by_sendfile(twin, sendfile_calls, copied, 2 * len(files["64k"][1]) + 2 * len(files["4m"][1]))


def test_when_asyncio_refuses_sendfile_the_file_is_copied(twin, tmp_path, monkeypatch, copied):
    """asyncio's loop.sendfile raises SendfileNotAvailableError, with nothing sent, whenever its
    first os.sendfile fails (a client that reset the connection, among other reasons)."""
    import asyncio

    big = tmp_path / "big.bin"
    with open(big, "wb") as file:
        file.truncate(64 * 1024 * 1024)  # sparse; fills the socket, so the compiled twin gets here too

    async def refusing(self, transport, file, offset=0, count=None, *, fallback=True):
        raise asyncio.SendfileNotAvailableError("os.sendfile call failed")

    monkeypatch.setattr(asyncio.BaseEventLoop, "sendfile", refusing)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": str(big)})

    with run_server(make_config(app, twin, loop="asyncio")) as server, httpx.Client(timeout=WAIT) as client:
        for _ in range(2):
            response = client.get(server.url)
            assert response.status_code == 200
            assert len(response.content) == 64 * 1024 * 1024 and not response.content.strip(b"\0")
    assert copied


@pytest.mark.parametrize("loop", LOOPS)
def test_pipelined_requests_behind_a_file_are_answered_after_it(twin, files, loop):
    request = b"GET /%s HTTP/1.1\r\nHost: a\r\n\r\n"
    with run_server(make_config(file_app(files), twin, loop=loop)) as server:
        sock = connect(server)
        with sock:
            names = [b"4m", b"small", b"64k", b"small", b"chunked-64k", b"64k", b"64k"]
            sock.sendall(b"".join(request % name for name in names))
            responses = recv_responses(sock, len(names))
    expected = {
        b"small": b"small",
        b"64k": files["64k"][1],
        b"4m": files["4m"][1],
        b"chunked-64k": b"<" + files["64k"][1],
    }
    assert [r.body for r in responses] == [expected[name] for name in names]


@pytest.mark.parametrize("loop", LOOPS)
def test_an_empty_file_is_an_empty_body_and_the_connection_goes_on(twin, tmp_path, loop):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": str(empty)})

    with run_server(make_config(app, twin, loop=loop)) as server, connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" * 2)
        responses = recv_responses(sock, 2)
    assert [(r.header(b"content-length"), r.body) for r in responses] == [(b"0", b""), (b"0", b"")]


@pytest.mark.parametrize("loop", LOOPS)
def test_pathsend_against_the_apps_content_length_on_a_socket(twin, files, loop, caplog):
    """Where the compiled twin sends a file without a coroutine, the app's content-length is still
    kept: equal, the file goes; longer than the file or shorter, the app gets the error."""
    path, data = files["64k"]

    async def app(scope, receive, send):
        length = scope["query_string"]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", length)]})
        await send({"type": "http.response.pathsend", "path": path})

    request = b"GET /?%d HTTP/1.1\r\nHost: a\r\n\r\n"
    with run_server(make_config(app, twin, loop=loop)) as server:
        with connect(server) as sock:
            sock.sendall(request % len(data) + request % len(data))
            responses = recv_responses(sock, 2)
            assert [r.body for r in responses] == [data, data]
        with connect(server) as sock:
            sock.sendall(request % 10)
            answer = recv_until_closed(sock)
            assert data[:10] not in answer
        with connect(server) as sock:
            sock.sendall(request % (len(data) + 1))
            answer = recv_until_closed(sock)
            assert answer.endswith(data)  # the file went out, then the connection closed: short
    assert "Response content longer than Content-Length" in caplog.text
    assert "Response content shorter than Content-Length" in caplog.text


def test_tls_falls_back_to_read_and_write(twin, files, ca, pki, sendfile_calls):  # noqa: F811
    config = tls_config(twin, pki)
    config.app = file_app(files)
    with run_server(config) as server, httpx.Client(timeout=WAIT, verify=client_context(ca)) as client:
        for name in ("64k", "4m", "chunked-4m"):
            response = client.get(f"{server.url}/{name}")
            data = files[name.removeprefix("chunked-")][1]
            assert response.content == (b"<" + data if name.startswith("chunked-") else data)
    assert sendfile_calls == []


def open_descriptors() -> list[str]:
    """What this process's descriptors point at. Not a count: libuv opens a pipe pair for signals
    the first time a uvloop server runs in a process, and keeps it."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass  # the listing's own descriptor, closed by now
    return targets


def open_sockets() -> set[str]:
    return {target for target in open_descriptors() if target.startswith("socket:")}


def wait_until(predicate: Any, timeout: float = WAIT) -> None:
    """Bounded wait for state with no event to wait on (the server's own bookkeeping)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("loop", LOOPS + ["tls"])
def test_a_client_leaving_mid_file_gets_client_disconnected_and_nothing_leaks(
    twin, loop, tmp_path, ca, pki, caplog  # noqa: F811 (fixtures)
):
    big = tmp_path / "big.bin"
    with open(big, "wb") as file:
        file.truncate(512 * 1024 * 1024)  # sparse: far more than any socket buffer holds
    outcome: list[Any] = []
    done = threading.Event()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            await send({"type": "http.response.pathsend", "path": str(big)})
        except BaseException as exc:
            outcome.append(exc)
            raise
        finally:
            done.set()

    if loop == "tls":
        config = tls_config(twin, pki)
        config.app = app
    else:
        config = make_config(app, twin, loop=loop)
    sockets = open_sockets()
    with run_server(config) as server:
        raw = connect(server)
        sock = client_context(ca).wrap_socket(raw, server_hostname="127.0.0.1") if loop == "tls" else raw
        with sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            received = 0
            while received < 1024 * 1024:
                received += len(sock.recv(65536))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset on close
        assert done.wait(WAIT), "the app's send did not end"
        wait_until(lambda: not server.server_state.connections and not server.server_state.tasks)
        assert [type(exc) for exc in outcome] == [ClientDisconnected]
    assert str(big) not in open_descriptors()  # the file is closed
    assert open_sockets() <= sockets  # and the connection
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "WARNING", "CRITICAL")]


# Starlette's FileResponse ---------------------------------------------------------------------------


def starlette_app(files: dict[str, tuple[str, bytes]], messages: list[str]) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import FileResponse
    from starlette.routing import Route

    async def download(request: Any) -> FileResponse:
        return FileResponse(files[request.path_params["name"]][0], media_type="application/octet-stream")

    inner = Starlette(routes=[Route("/files/{name}", download, methods=["GET", "HEAD"])])

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def recording_send(message: dict[str, Any]) -> None:
            messages.append(message["type"])
            await send(message)

        await inner(scope, receive, recording_send)

    return app


@pytest.mark.parametrize("loop", LOOPS)
def test_starlette_file_response_uses_pathsend(twin, files, loop, sendfile_calls, copied):
    pytest.importorskip("starlette")
    messages: list[str] = []
    with run_server(make_config(starlette_app(files, messages), twin, loop=loop)) as server:
        with httpx.Client(timeout=WAIT) as client:
            for name in ("64k", "4m"):
                response = client.get(f"{server.url}/files/{name}")
                assert response.status_code == 200
                assert response.content == files[name][1]
                assert response.headers["content-length"] == str(len(files[name][1]))
                assert response.headers["content-type"] == "application/octet-stream"
            head = client.head(f"{server.url}/files/4m")
            assert head.headers["content-length"] == str(len(files["4m"][1])) and head.content == b""
            ranged = client.get(f"{server.url}/files/4m", headers={"range": "bytes=10-19"})
            assert ranged.status_code == 206 and ranged.content == files["4m"][1][10:20]
    assert messages.count("http.response.pathsend") == 2
    assert_sent_by_sendfile(twin, sendfile_calls, copied, len(files["64k"][1]) + len(files["4m"][1]))
