"""Log lines never carry a raw control character from a request, whatever formatter prints them:
the access log and the HTTP error lines of both twins, and the WebSocket lines of every ``--ws``.

The request path (percent-decoded) and proxy headers are attacker-controlled: an ESC, CR, LF or
C1 control written raw lets a client forge log lines or drive the terminal of whoever reads them.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from cyasgi.logging import AccessFormatter, DefaultFormatter
from tests.utils import LogWatcher, make_config, make_protocol, run_server
from tests.ws_utils import RawClient

pytestmark = pytest.mark.anyio

CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# ESC [ 31m, CR LF and a C1 CSI, percent-encoded in the path; the query stays as sent.
HOSTILE_TARGET = b"/a%1B%5B31m%0D%0Aforged%C2%9B?q=%1b%0A"
FORMATTERS = {
    "default": DefaultFormatter("%(levelprefix)s %(message)s", use_colors=False),
    "access": AccessFormatter('%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False),
    "message": logging.Formatter("%(message)s"),  # a user's own configuration
}


def formatted(record: logging.LogRecord) -> list[str]:
    lines = [FORMATTERS["message"].format(record)]
    lines.append(FORMATTERS["access" if record.name == "uvicorn.access" else "default"].format(record))
    return lines


def assert_inert(records: list[logging.LogRecord]) -> None:
    assert records
    for record in records:
        for line in formatted(record):
            assert not CONTROL.search(line), repr(line)


async def answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_access_log_lines_are_inert(twin_parser, caplog):
    twin, parser = twin_parser
    scopes = []

    async def app(scope, receive, send):
        scopes.append(scope)
        await answer(scope, receive, send)

    protocol, transport = make_protocol(twin, app, parser=parser)
    protocol.access_log = True
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        # The peer (127.0.0.1) is a trusted proxy by default: X-Forwarded-For becomes the client.
        protocol.data_received(
            b"GET " + HOSTILE_TARGET + b" HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\x9b31m\r\n\r\n"
        )
        await transport.responses(1)
    assert "\x1b" in scopes[0]["path"] and "\x9b" in scopes[0]["client"][0]  # the hostile bytes got in
    assert_inert([record for record in caplog.records if record.name == "uvicorn.access"])


async def test_error_lines_about_bad_requests_are_inert(twin_parser, caplog):
    twin, parser = twin_parser
    hostile = [
        b"GET /\x1b[31m HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Evil: a\x1b[31m\r\n\r\n",
        b"G\x1bT / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: \x9b\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-\r\n\x1b: v\r\n\r\n",
    ]
    with caplog.at_level(logging.DEBUG, logger="uvicorn.error"):
        for request in hostile:
            protocol, transport = make_protocol(twin, answer, parser=parser)
            protocol.data_received(request)
            await transport.wait_for(lambda transport=transport: transport.closed)
    assert_inert([record for record in caplog.records if record.name == "uvicorn.error"])


async def test_trace_lines_of_the_asgi_messages_are_inert(twin, caplog):
    protocol, transport = make_protocol(twin, answer, log_level="trace")
    with caplog.at_level(5, logger="uvicorn.asgi"):
        protocol.data_received(b"GET " + HOSTILE_TARGET + b" HTTP/1.1\r\nHost: x\r\nX-V: caf\x9b\r\n\r\n")
        await transport.responses(1)
    assert_inert([record for record in caplog.records if record.name == "uvicorn.asgi"])


def test_websocket_lines_are_inert(ws):
    paths_seen = []

    async def app(scope, receive, send):
        paths_seen.append(scope["path"])
        await receive()
        if scope["path"].endswith("deny"):
            await send({"type": "websocket.http.response.start", "status": 418, "headers": []})
            await send({"type": "websocket.http.response.body", "body": b"no"})
        elif scope["path"].endswith("close"):
            await send({"type": "websocket.close"})
        else:
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close"})

    paths = [HOSTILE_TARGET.decode() + suffix for suffix in ("", "deny", "close")]
    paths = [path.replace("?", "-%0D%0A%1B?") for path in paths]
    with LogWatcher() as watcher, run_server(make_config(app, ws=ws)) as server:
        for path in paths:
            with RawClient(server) as client:
                status, _head = client.handshake(path)
                assert status in (101, 403, 418)
        watcher.wait_for_count('"WebSocket ', 3)
        assert all("\x1b" in path and "\r\n" in path for path in paths_seen)
        assert_inert([record for record in watcher.records if "WebSocket" in record.getMessage()])
