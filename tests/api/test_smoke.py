from __future__ import annotations

import httpx
import pytest

from tests.utils import make_config, make_protocol, run_server


async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


def test_real_server_answers(twin):
    with run_server(make_config(hello, twin)) as server:
        response = httpx.get(server.url + "/")
    assert response.status_code == 200
    assert response.text == "hello"
    assert response.headers["server"] == "cyasgi"


@pytest.mark.anyio
async def test_in_memory_protocol_answers(twin):
    protocol, transport = make_protocol(twin, hello)
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    [response] = await transport.responses(1)
    assert response.status == 200
    assert response.body == b"hello"
    assert response.header(b"content-length") == b"5"
