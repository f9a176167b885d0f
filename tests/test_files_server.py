"""Files through a real server, for both twins: sendfile(2) on plain TCP with asyncio (the loop's
``sendfile``) and uvloop (which has none: cyasgi's own), read and write over TLS; keep-alive and
pipelining behind a file, a client leaving mid-file, and Starlette's FileResponse end to end."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cyasgi._compat import IS_PYPY
from cyasgi.protocols.http_common import ClientDisconnected
from tests.test_tls import client_context, tls_config  # noqa: F401 (fixtures below)
from tests.test_tls import ca, pki  # noqa: F401
from tests.utils import WAIT, connect, make_config, recv_responses, run_server


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
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/x-test")]})
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
def test_pathsend_uses_sendfile_on_plain_tcp(twin, files, loop, sendfile_calls):
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
    assert sum(sendfile_calls) == 2 * len(files["64k"][1]) + 2 * len(files["4m"][1])


@pytest.mark.parametrize("loop", LOOPS)
def test_pipelined_requests_behind_a_file_are_answered_after_it(twin, files, loop):
    request = b"GET /%s HTTP/1.1\r\nHost: a\r\n\r\n"
    with run_server(make_config(file_app(files), twin, loop=loop)) as server:
        sock = connect(server)
        with sock:
            sock.sendall(request % b"4m" + request % b"small" + request % b"chunked-64k" + request % b"64k")
            responses = recv_responses(sock, 4)
    assert [r.body for r in responses] == [files["4m"][1], b"small", b"<" + files["64k"][1], files["64k"][1]]


def test_tls_falls_back_to_read_and_write(twin, files, ca, pki, sendfile_calls):  # noqa: F811
    config = tls_config(twin, pki)
    config.app = file_app(files)
    with run_server(config) as server:
        with httpx.Client(timeout=WAIT, verify=client_context(ca)) as client:
            for name in ("64k", "4m", "chunked-4m"):
                response = client.get(f"{server.url}/{name}")
                data = files[name.removeprefix("chunked-")][1]
                assert response.content == (b"<" + data if name.startswith("chunked-") else data)
    assert sendfile_calls == []


def wait_until(predicate: Any, timeout: float = WAIT) -> None:
    """Bounded wait for state with no event to wait on (the server's own bookkeeping)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("loop", LOOPS + ["tls"])
def test_a_client_leaving_mid_file_gets_client_disconnected_and_nothing_leaks(
    twin, loop, tmp_path, ca, pki, caplog  # noqa: F811
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
    fds = len(os.listdir("/proc/self/fd"))
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
    assert len(os.listdir("/proc/self/fd")) <= fds
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
def test_starlette_file_response_uses_pathsend(twin, files, loop, sendfile_calls):
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
    assert sum(sendfile_calls) == len(files["64k"][1]) + len(files["4m"][1])
