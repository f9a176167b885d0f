"""The programmatic API: run(), Config, Server (run, serve, started, should_exit, force_exit, shutdown), serve()."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import socket
import ssl
import sys
import threading
from typing import Any

import httpx
import pytest

import cyasgi
from cyasgi.config import LOGGING_CONFIG, Config
from cyasgi.server import Server, ServerState
from tests import apps
from tests.utils import WAIT, LogWatcher, make_config, wait_started

pytestmark = pytest.mark.anyio


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def url_of(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


# Names -------------------------------------------------------------------------------------------------


def test_public_names():
    main_module = importlib.import_module("cyasgi.main")
    assert cyasgi.__all__ == ["Config", "Server", "__version__", "main", "run", "serve"]
    assert cyasgi.Config is Config is main_module.Config
    assert cyasgi.Server is Server is main_module.Server
    assert cyasgi.run is main_module.run
    assert cyasgi.main is main_module.main
    assert importlib.import_module("cyasgi.config").LOGGING_CONFIG["loggers"]["uvicorn.access"]
    assert isinstance(Server(make_config(apps.hello)).server_state, ServerState)
    assert inspect.iscoroutinefunction(cyasgi.serve)


#: uvicorn 0.54's ``Config.__init__`` parameters in order, with their defaults (EMPTY: required).
#: cyasgi's Config starts with exactly these, so positional calls written for uvicorn keep working.
EMPTY = inspect.Parameter.empty
UVICORN_CONFIG_PARAMETERS: list[tuple[str, Any]] = [
    ("app", EMPTY), ("host", "127.0.0.1"), ("port", 8000), ("uds", None), ("fd", None), ("loop", "auto"),
    ("http", "auto"), ("http2", False), ("ws", "auto"), ("ws_max_size", 16777216), ("ws_max_queue", 32),
    ("ws_ping_interval", 20.0), ("ws_ping_timeout", 20.0), ("ws_per_message_deflate", True), ("lifespan", "auto"),
    ("env_file", None), ("log_config", LOGGING_CONFIG), ("log_level", None), ("access_log", True),
    ("use_colors", None), ("interface", "auto"), ("reload", False), ("reload_dirs", None), ("reload_delay", 0.25),
    ("reload_includes", None), ("reload_excludes", None), ("workers", None), ("proxy_headers", True),
    ("server_header", True), ("date_header", True), ("forwarded_allow_ips", None), ("root_path", ""),
    ("limit_concurrency", None), ("limit_max_requests", None), ("limit_max_requests_jitter", 0), ("backlog", 2048),
    ("timeout_keep_alive", 5), ("timeout_notify", 30), ("timeout_graceful_shutdown", None),
    ("timeout_worker_healthcheck", 5), ("callback_notify", None), ("ssl_keyfile", None), ("ssl_certfile", None),
    ("ssl_keyfile_password", None), ("ssl_version", ssl.PROTOCOL_TLS_SERVER), ("ssl_cert_reqs", ssl.CERT_NONE),
    ("ssl_ca_certs", None), ("ssl_ciphers", None), ("ssl_context_factory", None), ("headers", None),
    ("factory", False), ("h11_max_incomplete_event_size", None), ("reset_contextvars", False),
]  # fmt: skip
#: cyasgi's own settings, after uvicorn's (docs/api.md lists them): pass them by keyword.
CYASGI_EXTRA_PARAMETERS = [
    "reuse_port", "limit_request_head_size", "limit_request_headers", "limit_request_body_size",
    "limit_keep_alive_requests", "timeout_header_read", "access_log_format", "health_path", "shutdown_delay",
    "http2_max_concurrent_streams", "http2_initial_stream_window_size", "http2_initial_connection_window_size",
    "http2_max_frame_size", "http2_max_header_list_size", "http2_keep_alive_interval", "http2_keep_alive_timeout",
    "http2_stall_timeout", "http2_max_rapid_resets", "http2_max_empty_data_frames", "http2_max_control_frames",
    "http2_max_stream_errors", "bind", "metrics_bind", "metrics_path",
]  # fmt: skip
#: uvicorn.run takes Config's parameters but these two (a process manager's, set on Config).
UVICORN_RUN_LACKS = {"timeout_notify", "callback_notify"}


def config_parameters() -> list[inspect.Parameter]:
    return list(inspect.signature(Config.__init__).parameters.values())[1:]  # without self


def test_config_parameters_are_uvicorns_then_cyasgis():
    params = config_parameters()
    assert [(p.name, p.default) for p in params[: len(UVICORN_CONFIG_PARAMETERS)]] == UVICORN_CONFIG_PARAMETERS
    assert [p.name for p in params[len(UVICORN_CONFIG_PARAMETERS) :]] == CYASGI_EXTRA_PARAMETERS
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
    assert params[UVICORN_CONFIG_PARAMETERS.index(("log_config", LOGGING_CONFIG))].default is LOGGING_CONFIG


def test_run_takes_exactly_configs_parameters_in_order_plus_app_dir():
    run_params = dict(inspect.signature(cyasgi.run).parameters)
    app_dir = run_params.pop("app_dir")
    assert (app_dir.default, app_dir.kind) == (None, inspect.Parameter.KEYWORD_ONLY)
    as_run = [(p.name, p.default, p.annotation) for p in run_params.values()]
    assert as_run == [(p.name, p.default, p.annotation) for p in config_parameters()]
    assert run_params["app"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert {p.kind for name, p in run_params.items() if name != "app"} == {inspect.Parameter.KEYWORD_ONLY}


def test_run_accepts_every_keyword_of_uvicorns_run():
    """uvicorn.run: Config's parameters but the notify pair, plus app_dir; app positional, the rest keywords."""
    run_params = inspect.signature(cyasgi.run).parameters
    uvicorn_run = [(name, default) for name, default in UVICORN_CONFIG_PARAMETERS if name not in UVICORN_RUN_LACKS]
    for name, default in [*uvicorn_run, ("app_dir", None)]:
        assert run_params[name].default == default, name
        expected_kind = inspect.Parameter.POSITIONAL_OR_KEYWORD if name == "app" else inspect.Parameter.KEYWORD_ONLY
        assert run_params[name].kind is expected_kind, name


def test_config_load_app_returns_the_app():
    assert Config("tests.apps:hello", log_config=None).load_app() is apps.hello


def test_main_module_still_hands_out_server_state_with_a_warning():
    main_module = importlib.import_module("cyasgi.main")
    with pytest.warns(DeprecationWarning, match="use cyasgi.server.ServerState instead"):
        assert main_module.ServerState is ServerState
    with pytest.raises(AttributeError):
        main_module.NoSuchName  # noqa: B018 (the attribute access is the test)


# run() and Server.run() from a thread (no signal handlers there) ----------------------------------


def run_in_thread(target: Any, *args: Any, **kwargs: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, kwargs=kwargs, daemon=True)
    thread.start()
    return thread


def test_run_with_app_dir_until_max_requests(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "api_test_app.py").write_text("from tests.apps import hello as app\n")
    sock = listening_socket()
    with sock:
        thread = run_in_thread(
            cyasgi.run, "api_test_app:app", app_dir=str(tmp_path), fd=sock.fileno(), limit_max_requests=1,
            log_config=None,
        )
        response = httpx.get(url_of(sock), timeout=WAIT)
        thread.join(WAIT)
    assert response.text == "hello"
    assert not thread.is_alive()
    assert sys.path[0] == str(tmp_path)
    monkeypatch.delitem(sys.modules, "api_test_app")


def test_server_run_until_max_requests():
    sock = listening_socket()
    server = Server(make_config(apps.hello, limit_max_requests=2))
    with sock:
        thread = run_in_thread(server.run, sockets=[sock])
        with httpx.Client(timeout=WAIT) as client:
            assert [client.get(url_of(sock)).text for _ in range(2)] == ["hello", "hello"]
        thread.join(WAIT)
    assert not thread.is_alive()
    assert server.started
    assert server.server_state.total_requests == 2


# serve() inside a running loop ----------------------------------------------------------------------


async def test_serve_with_my_own_socket():
    sock = listening_socket()
    server = Server(make_config(apps.echo, lifespan="on"))
    assert not server.started and not server.should_exit and not server.force_exit
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await wait_started(server, task)
    async with httpx.AsyncClient(timeout=WAIT) as client:
        scope = (await client.get(url_of(sock) + "/mine")).json()
    server.should_exit = True
    await asyncio.wait_for(task, WAIT)
    assert scope["path"] == "/mine" and scope["state"] == {"started": "yes"}
    assert sock.fileno() == -1  # the server closed the socket it was given


async def test_serve_binds_itself_when_given_no_sockets():
    server = Server(make_config(apps.hello))
    task = asyncio.create_task(server.serve())
    await wait_started(server, task)
    port = server.servers[0].sockets[0].getsockname()[1]
    async with httpx.AsyncClient(timeout=WAIT) as client:
        assert (await client.get(f"http://127.0.0.1:{port}/")).text == "hello"
    server.should_exit = True
    await asyncio.wait_for(task, WAIT)


async def test_module_level_serve_in_a_running_loop():
    sock = listening_socket()
    with sock:
        task = asyncio.create_task(
            cyasgi.serve(apps.hello, fd=sock.fileno(), limit_max_requests=1, log_config=None, lifespan="off")
        )
        async with httpx.AsyncClient(timeout=WAIT) as client:
            response = await client.get(url_of(sock))
        await asyncio.wait_for(task, WAIT)
    assert response.text == "hello"


async def test_force_exit_skips_waiting_and_lifespan_shutdown():
    started = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await apps.lifespan(scope, receive, send)
        started.set()
        await asyncio.sleep(WAIT * 10)

    sock = listening_socket()
    server = Server(make_config(app, lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await wait_started(server, task)
    with LogWatcher() as log:
        async with httpx.AsyncClient(timeout=WAIT) as client:
            request = asyncio.create_task(client.get(url_of(sock)))
            await asyncio.wait_for(started.wait(), WAIT)
            server.should_exit = True
            # The log line is the only sign the server is draining; the server shares this loop: poll.
            while not any("Waiting for connections to close." in line for line in log.lines):
                await asyncio.sleep(0.01)
            server.force_exit = True
            await asyncio.wait_for(task, WAIT)
            request.cancel()
            with pytest.raises((asyncio.CancelledError, httpx.HTTPError)):
                await request
    assert "test app: lifespan shutdown ran" not in log.lines
    assert "Finished server process" in log.lines[-1]


async def test_shutdown_stops_accepting_and_runs_lifespan_shutdown():
    sock = listening_socket()
    url = url_of(sock)
    server = Server(make_config(apps.hello, lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await wait_started(server, task)
    with LogWatcher() as log:
        async with httpx.AsyncClient(timeout=WAIT) as client:
            assert (await client.get(url)).text == "hello"
            await asyncio.wait_for(server.shutdown(sockets=[sock]), WAIT)
            with pytest.raises(httpx.ConnectError):
                await client.get(url)
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)
    assert log.lines.count("test app: lifespan shutdown ran") == 1
    assert log.lines.count("Application shutdown complete.") == 1


def test_logging_left_alone_with_log_config_none():
    before = logging.getLogger("uvicorn").handlers[:]
    Config(apps.hello, log_config=None)
    assert logging.getLogger("uvicorn").handlers == before


async def test_serve_raises_system_exit_3_when_lifespan_startup_fails():
    server = Server(make_config(apps.startup_fails, lifespan="on"))
    with pytest.raises(SystemExit) as info:
        await server.serve()  # not inside wait_for: SystemExit must not pass through a task
    assert info.value.code == 3
    assert not server.started
