"""Starlette and FastAPI apps over HTTP/2 (both twins), httpx's h2 transport as the client: a streaming
response, an UploadFile upload, a FileResponse bigger than the stream window, and an exception; and the
frameworks' WebSocket endpoints over an extended CONNECT stream (RFC 8441)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, File, UploadFile, WebSocket
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket as StarletteWebSocket

from tests.http2.h2util import WS_TEXT, H2Client, WebSocketStream, h2_config, status, write_file
from tests.utils import WAIT, run_server

pytest.importorskip("python_multipart", reason="UploadFile needs python-multipart")

FILE_SIZE = 1_000_003  # several stream windows (256 KiB), not a multiple of anything


def starlette_app(file_path: str) -> Starlette:
    async def stream(request: Request) -> StreamingResponse:
        async def chunks() -> Any:
            for index in range(10):
                yield f"part {index}\n"
                await asyncio.sleep(0)

        return StreamingResponse(chunks(), media_type="text/plain")

    async def upload(request: Request) -> JSONResponse:
        form = await request.form()
        upload = form["file"]
        content = await upload.read()  # type: ignore[union-attr]
        return JSONResponse({"size": len(content), "sha256": hashlib.sha256(content).hexdigest()})

    async def file(request: Request) -> FileResponse:
        return FileResponse(file_path)

    async def scope(request: Request) -> JSONResponse:
        return JSONResponse({"http_version": request.scope["http_version"], "host": request.headers["host"]})

    async def boom(request: Request) -> PlainTextResponse:
        raise RuntimeError("on purpose")

    async def echo(websocket: StarletteWebSocket) -> None:
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(f"echo {text} over {websocket.scope['http_version']}")

    routes = [
        WebSocketRoute("/ws", echo),
        Route("/stream", stream),
        Route("/upload", upload, methods=["POST"]),
        Route("/file", file),
        Route("/scope", scope),
        Route("/boom", boom),
    ]
    return Starlette(routes=routes)


def fastapi_app(file_path: str) -> FastAPI:
    app = FastAPI()

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> Any:
            for index in range(10):
                yield f"part {index}\n".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.post("/upload")
    async def upload(file: UploadFile = File(...)) -> dict:  # noqa: B008 (FastAPI's own idiom)
        content = await file.read()
        return {"size": len(content), "sha256": hashlib.sha256(content).hexdigest()}

    @app.api_route("/file", methods=["GET", "HEAD"])
    async def send_file() -> FileResponse:
        return FileResponse(file_path)

    @app.get("/scope")
    async def scope(request: Request) -> dict:
        return {"http_version": request.scope["http_version"]}

    @app.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("on purpose")

    @app.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(f"echo {text} over {websocket.scope['http_version']}")

    return app


@pytest.fixture(params=["starlette", "fastapi"])
def framework_server(request: pytest.FixtureRequest, twin: Any, tmp_path: Any) -> Any:
    path = str(tmp_path / "file.bin")
    content = write_file(path, FILE_SIZE)
    app = starlette_app(path) if request.param == "starlette" else fastapi_app(path)
    with run_server(h2_config(app, twin)) as server:
        yield server, content


def client() -> httpx.Client:
    return httpx.Client(http1=False, http2=True, timeout=WAIT)


def test_streaming_response(framework_server):
    server, _ = framework_server
    with client() as http, http.stream("GET", server.url + "/stream") as response:
        assert response.http_version == "HTTP/2"
        body = b"".join(response.iter_bytes())
    assert body == b"".join(b"part %d\n" % index for index in range(10))


def test_upload_file(framework_server):
    server, _ = framework_server
    upload = bytes(range(256)) * 3000 + b"tail"
    with client() as http:
        response = http.post(
            server.url + "/upload", files={"file": ("data.bin", upload, "application/octet-stream")}
        )
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200, response.text
    assert response.json() == {"size": len(upload), "sha256": hashlib.sha256(upload).hexdigest()}


def test_file_response(framework_server):
    server, content = framework_server
    with client() as http:
        response = http.get(server.url + "/file")
        head = http.head(server.url + "/file")
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200
    assert response.headers["content-length"] == str(FILE_SIZE)
    assert response.content == content
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(FILE_SIZE)


def test_exception_is_500_and_the_connection_goes_on(framework_server):
    server, _ = framework_server
    with client() as http:
        failed = http.get(server.url + "/boom")
        after = http.get(server.url + "/scope")
    assert failed.status_code == 500
    assert after.status_code == 200 and after.json()["http_version"] == "2"


def test_websocket_endpoint_over_h2(framework_server):
    server, _ = framework_server
    client = H2Client(server)
    ws = WebSocketStream(client, "/ws")
    assert status(ws.response()) == 200
    ws.send(WS_TEXT, b"hi")
    ws.send(WS_TEXT, b"again")
    assert ws.frames(2) == [(0x81, WS_TEXT, b"echo hi over 2"), (0x81, WS_TEXT, b"echo again over 2")]
    ws.close(1000)
    (_, _, payload), = ws.frames(1)
    assert payload[:2] == b"\x03\xe8"  # the close echoed: 1000
    client.wait_for(lambda: ws.record["ended"] or ws.record["reset"] is not None)
    assert status(client.get("/scope")) == 200  # the connection goes on
