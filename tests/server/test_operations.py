"""Operating the server: --health-path answered by the server itself, and the access line written
when the response completes (duration, bytes, request id, aborted), in both twins."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import httpx
import pytest

from cyasgi.config import Config, ConfigError
from cyasgi.logging import AccessFormatter, JsonAccessFormatter
from cyasgi.protocols.http.errors import ClientDisconnected
from tests import apps
from tests.utils import WAIT, make_config, make_protocol, run_cli, run_server

pytestmark = pytest.mark.anyio


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "uvicorn.access"]


def recording_app(calls: list[str]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append(scope["method"] + " " + scope["path"])
        await apps.send_text(send, b"from the app")

    return app


# --health-path ----------------------------------------------------------------------------------


async def test_health_path_is_answered_by_the_server(twin):
    calls: list[str] = []
    protocol, transport = make_protocol(twin, recording_app(calls), health_path="/healthz")
    protocol.data_received(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /healthz?verbose=1 HTTP/1.1\r\nHost: x\r\n\r\n"  # the query string is not part of the path
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"  # GET and HEAD only
        b"GET /healthz/ HTTP/1.1\r\nHost: x\r\n\r\n"  # exactly the path
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    first, second, post, slash, root = await transport.responses(5)
    for health in (first, second):
        assert (health.status, health.body) == (200, b"ok\n")
        assert health.header(b"content-type") == b"text/plain; charset=utf-8"
        assert health.header(b"cache-control") == b"no-store"
        assert health.header(b"connection") is None  # the connection stays open
    assert [post.body, slash.body, root.body] == [b"from the app"] * 3
    assert calls == ["POST /healthz", "GET /healthz/", "GET /"]
    assert not transport.closed


async def test_health_path_head(twin):
    protocol, transport = make_protocol(twin, recording_app([]), health_path="/healthz")
    protocol.data_received(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    [response] = await transport.responses(1, head_only=True)
    assert response.status == 200 and response.header(b"content-length") == b"3"
    assert transport.buffer.endswith(b"\r\n\r\n")  # no body


async def test_health_path_answers_503_and_closes_once_shutdown_began(twin):
    calls: list[str] = []
    protocol, transport = make_protocol(twin, recording_app(calls), health_path="/healthz")
    protocol.server_state.shutting_down = True  # set by the signal handler, before any --shutdown-delay
    protocol.data_received(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    [response] = await transport.responses(1)
    await transport.wait_for(lambda: transport.closed)
    assert (response.status, response.body) == (503, b"shutting down\n")
    assert response.header(b"connection") == b"close"
    assert calls == []  # the request behind it was not served on this connection


async def test_health_path_is_not_refused_by_the_concurrency_limit(twin):
    protocol, transport = make_protocol(twin, recording_app([]), health_path="/healthz", limit_concurrency=1)
    protocol.data_received(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    [response] = await transport.responses(1)
    assert response.status == 200
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    [_, refused] = await transport.responses(2)
    assert refused.status == 503 and refused.body == b"Service Unavailable"


async def test_without_health_path_the_app_answers(twin):
    calls: list[str] = []
    protocol, transport = make_protocol(twin, recording_app(calls))
    protocol.data_received(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    [response] = await transport.responses(1)
    assert response.body == b"from the app" and calls == ["GET /healthz"]


def test_health_path_over_a_real_server(twin):
    with run_server(make_config(apps.hello, twin, health_path="/healthz")) as server:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=WAIT) as client:
            healthy = client.get("/healthz")
            assert client.get("/").text == "hello"
            server.server_state.shutting_down = True
            draining = client.get("/healthz")
    assert (healthy.status_code, healthy.text) == (200, "ok\n")
    assert (draining.status_code, draining.headers["connection"]) == (503, "close")


@pytest.mark.parametrize("path", ["healthz", "/a b", "/h?x", "/é"])
def test_bad_health_paths_are_config_errors(path):
    with pytest.raises(ConfigError, match="--health-path must be a path"):
        Config(apps.hello, health_path=path, log_config=None)


def test_health_path_setting():
    assert Config(apps.hello, log_config=None).health_path_raw is None
    assert Config(apps.hello, health_path="/-/ready", log_config=None).health_path_raw == b"/-/ready"
    with pytest.raises(ConfigError, match="--shutdown-delay cannot be negative"):
        Config(apps.hello, shutdown_delay=-1, log_config=None)
    with pytest.raises(ConfigError, match="--access-log-format must be one of text, json"):
        Config(apps.hello, access_log_format="xml", log_config=None)  # type: ignore[arg-type]


# The access line -----------------------------------------------------------------------------------


async def test_access_line_is_written_when_the_response_completes(twin, caplog):
    release = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await release.wait()
        await send({"type": "http.response.body", "body": b"defg"})

    protocol, transport = make_protocol(twin, app)
    protocol.access_log = True
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        protocol.data_received(b"GET /a%20b?x=1 HTTP/1.1\r\nHost: x\r\nX-Request-ID: req-42\r\n\r\n")
        await transport.wait_for(lambda: b"abc" in transport.buffer)
        assert access_records(caplog) == []  # the status is out, the response is not complete
        release.set()
        [response] = await transport.responses(1)
    assert response.chunked and response.body == b"abcdefg"
    [record] = access_records(caplog)
    # uvicorn's record shape, for existing formatters.
    assert record.args == ("127.0.0.1:54321", "GET", "/a%20b?x=1", "1.1", 201)
    assert record.getMessage() == '127.0.0.1:54321 - "GET /a%20b?x=1 HTTP/1.1" 201'
    assert record.levelno == logging.INFO
    # The additions.
    assert record.bytes_sent == 7  # body bytes, chunk framing excluded
    assert isinstance(record.duration, float) and 0.0 <= record.duration < WAIT
    assert record.request_id == "req-42"
    assert record.aborted is False


async def test_access_line_of_head_and_content_length_responses(twin, caplog):
    protocol, transport = make_protocol(twin, apps.hello)
    protocol.access_log = True
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        protocol.data_received(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        await transport.responses(1, head_only=True)
        transport.take()
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await transport.responses(1)
    head, get = access_records(caplog)
    assert (head.args[1], head.bytes_sent, head.request_id) == ("HEAD", 0, None)
    assert (get.args[1], get.bytes_sent) == ("GET", 5)


async def test_a_failing_app_is_logged_once_with_the_500(twin, caplog):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("boom")

    protocol, transport = make_protocol(twin, app)
    protocol.access_log = True
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        [response] = await transport.responses(1)
    assert response.status == 500
    [record] = access_records(caplog)  # not the 200 the app started, which never went out
    assert (record.args[4], record.bytes_sent, record.aborted) == (500, 21, False)


@pytest.mark.parametrize("app_after_disconnect", ["raises", "returns"])
async def test_aborted_responses_are_logged(twin, caplog, app_after_disconnect):
    finished = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
            await send({"type": "http.response.body", "body": b"12345", "more_body": True})
            assert (await receive())["type"] == "http.request"
            assert (await receive())["type"] == "http.disconnect"  # waits for the client to leave
            try:
                await send({"type": "http.response.body", "body": b"more", "more_body": True})
            except ClientDisconnected:
                if app_after_disconnect == "raises":
                    raise
        finally:
            finished.set()

    protocol, transport = make_protocol(twin, app)
    protocol.access_log = True
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        protocol.data_received(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        await transport.wait_for(lambda: transport.buffer.endswith(b"12345"))
        assert access_records(caplog) == []
        protocol.connection_lost(None)
        await asyncio.wait_for(finished.wait(), WAIT)  # the app's task ends in the step that set it
    [record] = access_records(caplog)
    assert (record.args[2], record.args[4], record.bytes_sent, record.aborted) == ("/stream", 200, 5, True)


async def test_an_app_failing_mid_response_is_logged_as_aborted(twin, caplog):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom")

    protocol, transport = make_protocol(twin, app)
    protocol.access_log = True
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await transport.wait_for(lambda: transport.closed)
    [record] = access_records(caplog)
    assert (record.args[4], record.bytes_sent, record.aborted) == (200, 7, True)


async def test_health_checks_and_concurrency_refusals_are_logged(twin, caplog):
    protocol, transport = make_protocol(twin, apps.hello, health_path="/healthz", limit_concurrency=1)
    protocol.access_log = True
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        protocol.data_received(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await transport.responses(2)
    assert [(record.args[2], record.args[4]) for record in access_records(caplog)] == [("/healthz", 200), ("/", 503)]


# Formatters ------------------------------------------------------------------------------------------


def access_record(
    args: tuple[Any, ...] = ("127.0.0.1:5000", "GET", "/x", "1.1", 200), **extra: Any
) -> logging.LogRecord:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None)
    record.created = 1767225600.25  # 2026-01-01T00:00:00.250Z
    record.msecs = 250.0
    record.__dict__.update(extra)
    return record


def test_json_access_formatter():
    record = access_record(
        ("203.0.113.9:4242", "GET", "/a\x1b[31m\nb?q=\u00e9", "1.1", 404),
        duration=0.0123456789,
        bytes_sent=12,
        request_id='id "1"\r\nX',
        aborted=False,
    )
    line = JsonAccessFormatter().format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and line.isascii()
    assert json.loads(line) == {
        "time": "2026-01-01T00:00:00.250Z",
        "client": "203.0.113.9:4242",
        "method": "GET",
        "path": "/a\x1b[31m\nb?q=\u00e9",
        "http_version": "1.1",
        "status": 404,
        "bytes": 12,
        "duration": 0.012346,
        "request_id": 'id "1"\r\nX',
        "aborted": False,
    }


def test_json_access_formatter_other_records():
    # A record from elsewhere (a WebSocket line, a user's own message): time and message.
    record = access_record(("hello",))
    record.msg = "%s world"
    assert json.loads(JsonAccessFormatter().format(record)) == {
        "time": "2026-01-01T00:00:00.250Z",
        "message": "hello world",
    }
    bare = access_record(("", "GET", "/", "1.0", 200))  # no extras, no client (UNIX socket)
    entry = json.loads(JsonAccessFormatter().format(bare))
    assert entry["client"] is None and entry["bytes"] is None and entry["duration"] is None


def test_text_access_formatter_can_show_the_additions():
    formatter = AccessFormatter(
        '%(client_addr)s "%(request_line)s" %(status_code)s %(bytes_sent)d %(duration).3f', use_colors=False
    )
    record = access_record(duration=0.5, bytes_sent=42, request_id=None, aborted=False)
    assert formatter.format(record) == '127.0.0.1:5000 "GET /x HTTP/1.1" 200 OK 42 0.500'


def test_access_log_format_json_sets_the_access_handlers_formatter():
    access = logging.getLogger("uvicorn.access")  # (conftest puts the loggers back afterwards)
    Config(apps.hello, access_log_format="json")
    assert access.handlers and all(isinstance(h.formatter, JsonAccessFormatter) for h in access.handlers)
    Config(apps.hello)
    assert all(type(h.formatter) is AccessFormatter for h in access.handlers)
    Config(apps.hello, access_log_format="json", access_log=False)
    assert access.handlers == []


def test_access_log_format_json_from_the_command_line():
    with run_cli(
        "tests.apps:hello", "--port", "0", "--access-log-format", "json", "--health-path", "/healthz"
    ) as proc:
        url = proc.wait_until_serving()
        with httpx.Client(base_url=url, timeout=WAIT) as client:
            assert client.get("/items?id=3", headers={"x-request-id": "abc-1"}).text == "hello"
            assert client.get("/healthz").text == "ok\n"
        line = proc.wait_for_line('"request_id": "abc-1"')
        health = json.loads(proc.wait_for_line('"path": "/healthz"'))
    entry = json.loads(line)
    assert entry.pop("client").startswith("127.0.0.1:")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry.pop("time"))
    assert 0 <= entry.pop("duration") < WAIT
    assert entry == {
        "method": "GET",
        "path": "/items?id=3",
        "http_version": "1.1",
        "status": 200,
        "bytes": 5,
        "request_id": "abc-1",
        "aborted": False,
    }
    assert (health["status"], health["bytes"], health["request_id"]) == (200, 3, None)
