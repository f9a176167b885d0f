"""Real frameworks and real clients: Starlette, FastAPI and Django Channels endpoints, the aiohttp client."""

from __future__ import annotations

import asyncio
from typing import Any, Optional

import aiohttp
import pytest
from fastapi import FastAPI, WebSocketException, status
from fastapi import WebSocket as FastAPIWebSocket
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.utils import WAIT, make_config, run_server
from tests.ws_utils import Recorder, echo_app

pytestmark = pytest.mark.anyio


def starlette_app(recorder: Recorder) -> Starlette:
    async def chat(websocket: WebSocket) -> None:
        await websocket.accept(
            subprotocol="chat.v1" if "chat.v1" in websocket.scope["subprotocols"] else None
        )
        try:
            while True:
                message = await websocket.receive_text()
                await websocket.send_json({"room": websocket.path_params["room"], "echo": message})
        except WebSocketDisconnect as exc:
            recorder.messages.append({"code": exc.code, "reason": exc.reason})
            recorder.done.set()

    async def denied(websocket: WebSocket) -> None:
        await websocket.send_denial_response(PlainTextResponse("members only", status_code=403))

    return Starlette(routes=[WebSocketRoute("/chat/{room}", chat), WebSocketRoute("/denied", denied)])


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.websocket("/items/{item_id}")
    async def items(websocket: FastAPIWebSocket, item_id: int, token: Optional[str] = None) -> None:  # noqa: UP045 (FastAPI evaluates it on 3.9)
        if token != "secret":
            raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION)
        await websocket.accept()
        while True:
            data = await websocket.receive_json()
            await websocket.send_json({"item": item_id, "got": data})

    return app


async def test_starlette_endpoint(ws: str) -> None:
    recorder = Recorder()
    with run_server(make_config(starlette_app(recorder), ws=ws)) as server:
        url = f"ws://127.0.0.1:{server.port}/chat/lobby"
        async with connect(url, subprotocols=["chat.v1"], open_timeout=WAIT) as client:
            assert client.subprotocol == "chat.v1"
            await client.send("hello")
            assert await asyncio.wait_for(client.recv(), WAIT) == '{"room":"lobby","echo":"hello"}'
            await client.close(4100, "leaving")
        recorder.wait_done()
        with pytest.raises(InvalidStatus) as info:
            await connect(f"ws://127.0.0.1:{server.port}/denied", open_timeout=WAIT)
    assert recorder.messages == [{"code": 4100, "reason": "leaving"}]
    assert info.value.response.status_code == 403
    assert bytes(info.value.response.body) == b"members only"


async def test_fastapi_endpoint(ws: str) -> None:
    with run_server(make_config(fastapi_app(), ws=ws)) as server:
        base = f"ws://127.0.0.1:{server.port}/items/7"
        async with connect(base + "?token=secret", open_timeout=WAIT) as client:
            await client.send('{"n": 1}')
            assert await asyncio.wait_for(client.recv(), WAIT) == '{"item":7,"got":{"n":1}}'
        with pytest.raises(InvalidStatus) as info:  # closed before accept: 403
            await connect(base, open_timeout=WAIT)
    assert info.value.response.status_code == 403


async def test_aiohttp_client(ws: str) -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await echo_app(scope, receive, send)
        recorder.done.set()

    with run_server(make_config(app, ws=ws)) as server:
        timeout = aiohttp.ClientTimeout(total=WAIT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.ws_connect(f"ws://127.0.0.1:{server.port}/", compress=15) as client:
                await client.send_str("from aiohttp")
                reply = await client.receive(timeout=WAIT)
                assert (reply.type, reply.data) == (aiohttp.WSMsgType.TEXT, "from aiohttp")
                await client.send_bytes(b"\x01" * 100_000)
                reply = await client.receive(timeout=WAIT)
                assert (reply.type, reply.data) == (aiohttp.WSMsgType.BINARY, b"\x01" * 100_000)
                await client.ping(b"ping!")
                await client.send_str("after ping")
                reply = await client.receive(timeout=WAIT)
                assert reply.data == "after ping"
                await client.close(code=4200, message=b"done")
            assert client.close_code == 4200
        recorder.wait_done()


def channels_app() -> Any:
    """A Django Channels consumer, the way a Django project serves one."""
    from tests import django_views

    django_views.configure()
    from channels.generic.websocket import AsyncWebsocketConsumer

    class Shout(AsyncWebsocketConsumer):
        async def connect(self) -> None:
            await self.accept(subprotocol="shout")

        async def receive(self, text_data: Any = None, bytes_data: Any = None) -> None:
            if text_data == "bye":
                await self.close(code=4300)
            else:
                await self.send(text_data=text_data.upper())

    return Shout.as_asgi()


async def test_django_channels_consumer(ws: str) -> None:
    pytest.importorskip("channels")
    with run_server(make_config(channels_app(), ws=ws)) as server:
        url = f"ws://127.0.0.1:{server.port}/shout/"
        async with connect(url, subprotocols=["shout"], open_timeout=WAIT) as client:
            assert client.subprotocol == "shout"
            await client.send("hello channels")
            assert await asyncio.wait_for(client.recv(), WAIT) == "HELLO CHANNELS"
            await client.send("bye")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(client.recv(), WAIT)
            assert client.close_code == 4300
