"""The programmatic API: run(), Config, Server (run, serve, started, should_exit, force_exit, shutdown), serve()."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import socket
import sys
import threading
from typing import Any

import httpx
import pytest

import cyasgi
from cyasgi.config import Config
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


def test_run_takes_configs_parameters_plus_app_dir():
    run_params = inspect.signature(cyasgi.run).parameters
    config_params = dict(inspect.signature(Config.__init__).parameters)
    config_params.pop("self")
    assert set(run_params) == set(config_params) | {"app_dir"}
    for name, param in config_params.items():
        if name != "app":
            assert run_params[name].default == param.default, name
            assert run_params[name].kind is inspect.Parameter.KEYWORD_ONLY


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
