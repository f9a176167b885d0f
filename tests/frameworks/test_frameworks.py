"""A real Starlette app and a real FastAPI app, served end to end over sockets by both twins."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, Optional

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI, HTTPException, Request
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from tests.utils import WAIT, LogWatcher, make_config, run_server


class Background:
    """A background task the test holds back, to show the response went out before it ran."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.done = threading.Event()

    def run(self, note: str) -> None:  # sync: the framework runs it in its thread pool
        self.release.wait(WAIT)
        self.note = note
        self.done.set()


async def numbers(count: int) -> AsyncIterator[bytes]:
    for index in range(count):
        yield b"%d\n" % index


def lifespan_with_state(app: Any) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[dict[str, Any]]:
        yield {"greeting": "hello from lifespan"}

    return lifespan


def starlette_app(background: Background) -> Starlette:
    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("home")

    async def item(request: Request) -> JSONResponse:
        return JSONResponse({"item_id": request.path_params["item_id"], "q": request.query_params.get("q")})

    async def echo(request: Request) -> JSONResponse:
        payload = await request.json()
        return JSONResponse({"received": payload, "method": request.method}, status_code=201)

    async def upload(request: Request) -> JSONResponse:
        digest, size = hashlib.sha256(), 0
        async for chunk in request.stream():
            digest.update(chunk)
            size += len(chunk)
        return JSONResponse({"size": size, "sha256": digest.hexdigest()})

    async def stream(request: Request) -> StreamingResponse:
        return StreamingResponse(numbers(int(request.query_params["n"])), media_type="text/plain")

    async def later(request: Request) -> PlainTextResponse:
        return PlainTextResponse("queued", background=BackgroundTask(background.run, "starlette"))

    async def state(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.state.greeting)

    async def boom(request: Request) -> PlainTextResponse:
        raise RuntimeError("endpoint failure")

    return Starlette(
        routes=[
            Route("/", home),
            Route("/items/{item_id:int}", item),
            Route("/echo", echo, methods=["POST"]),
            Route("/upload", upload, methods=["PUT"]),
            Route("/stream", stream),
            Route("/later", later),
            Route("/state", state),
            Route("/boom", boom),
        ],
        lifespan=lifespan_with_state(None),
    )


class Payload(BaseModel):
    name: str
    count: int


def fastapi_app(background: Background) -> FastAPI:
    app = FastAPI(lifespan=lifespan_with_state(None))

    @app.get("/", response_class=PlainTextResponse)
    async def home() -> str:
        return "home"

    @app.get("/items/{item_id}")
    async def item(item_id: int, q: Optional[str] = None) -> dict[str, Any]:  # noqa: UP045 (FastAPI reads it on 3.9)
        return {"item_id": item_id, "q": q}

    @app.post("/echo", status_code=201)
    async def echo(payload: Payload, request: Request) -> dict[str, Any]:
        return {"received": payload.model_dump(), "method": request.method}

    @app.put("/upload")
    async def upload(request: Request) -> dict[str, Any]:
        body = await request.body()
        return {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}

    @app.get("/stream")
    async def stream(n: int) -> StreamingResponse:
        return StreamingResponse(numbers(n), media_type="text/plain")

    @app.get("/later", response_class=PlainTextResponse)
    async def later(tasks: BackgroundTasks) -> str:
        tasks.add_task(background.run, "fastapi")
        return "queued"

    @app.get("/state", response_class=PlainTextResponse)
    async def state(request: Request) -> str:
        return request.state.greeting  # type: ignore[no-any-return]

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("endpoint failure")

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(status_code=418, detail="short and stout")

    return app


@pytest.fixture(params=["starlette", "fastapi"])
def framework(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def served(framework: str, twin: Any) -> Iterator[tuple[httpx.Client, Background]]:
    background = Background()
    app = starlette_app(background) if framework == "starlette" else fastapi_app(background)
    config = make_config(app, twin, lifespan="on")
    with run_server(config) as server, httpx.Client(base_url=server.url, timeout=WAIT) as client:
        yield client, background
    background.release.set()


def test_routing_and_params(served):
    client, _ = served
    assert client.get("/").text == "home"
    response = client.get("/items/42", params={"q": "a b&c"})
    assert response.status_code == 200
    assert response.json() == {"item_id": 42, "q": "a b&c"}
    assert client.get("/items/not-a-number").status_code in (404, 422)


def test_json_request_and_response(served):
    client, _ = served
    response = client.post("/echo", json={"name": "widget", "count": 3})
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"received": {"name": "widget", "count": 3}, "method": "POST"}


def test_streamed_body_upload(served):
    client, _ = served
    blob = bytes(range(256)) * 4096  # 1 MiB, above the flow-control high-water mark

    def chunks() -> Iterator[bytes]:  # no content-length: sent chunked
        for start in range(0, len(blob), 65536):
            yield blob[start : start + 65536]

    response = client.put("/upload", content=chunks())
    assert response.json() == {"size": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}


def test_streaming_response(served):
    client, _ = served
    with client.stream("GET", "/stream", params={"n": 500}) as response:
        assert response.headers["transfer-encoding"] == "chunked"
        text = "".join(response.iter_text())
    assert text == "".join(f"{index}\n" for index in range(500))


def test_background_task_runs_after_the_response(served, framework):
    client, background = served
    response = client.get("/later")  # returns while the task is still held back
    assert response.text == "queued"
    assert not background.done.is_set()
    background.release.set()
    assert background.done.wait(WAIT)
    assert background.note == framework


def test_lifespan_state_in_requests(served):
    client, _ = served
    assert client.get("/state").text == "hello from lifespan"


def test_endpoint_exception_is_a_500(served):
    client, _ = served
    with LogWatcher() as log:
        response = client.get("/boom")
        log.wait_for("Exception in ASGI application")  # the framework re-raises after its 500
    assert response.status_code == 500
    assert client.get("/").text == "home"  # the server carries on


def test_unknown_route_is_a_404(served, framework):
    client, _ = served
    response = client.get("/no/such/route")
    assert response.status_code == 404
    if framework == "fastapi":
        assert response.json() == {"detail": "Not Found"}
        teapot = client.get("/teapot")
        assert (teapot.status_code, teapot.json()) == (418, {"detail": "short and stout"})
