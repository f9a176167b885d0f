"""Small applications the server tests serve: in-process, or as ``tests.apps:NAME`` in a subprocess.

Every ASGI app here answers the lifespan protocol properly unless its name says otherwise, so
``--lifespan auto`` and ``on`` both work with it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

log = logging.getLogger("uvicorn.error")


async def lifespan(scope: dict[str, Any], receive: Any, send: Any, state: dict[str, Any] | None = None) -> None:
    """A well-behaved lifespan: fills ``scope["state"]`` from ``state`` at startup, logs shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"].update(state or {})
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            log.info("test app: lifespan shutdown ran")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def send_text(
    send: Any, body: bytes, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = headers or [(b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    await send_text(send, b"hello")


def scope_summary(scope: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able parts of a scope that tests look at."""
    return {
        "type": scope["type"],
        "asgi": scope["asgi"],
        "http_version": scope["http_version"],
        "scheme": scope["scheme"],
        "method": scope["method"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "root_path": scope["root_path"],
        "query_string": scope["query_string"].decode("latin-1"),
        "client": list(scope["client"]) if scope.get("client") else None,
        "server": list(scope["server"]) if scope.get("server") else None,
        "headers": [[name.decode("latin-1"), value.decode("latin-1")] for name, value in scope["headers"]],
        "state": {key: value for key, value in scope.get("state", {}).items() if isinstance(value, (int, str))},
        "env": os.environ.get("CYASGI_TEST_VALUE"),
    }


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every request with a JSON summary of its scope (lifespan state: ``{"started": "yes"}``)."""
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send, {"started": "yes"})
    body = json.dumps(scope_summary(scope)).encode()
    await send_text(send, body, headers=[(b"content-type", b"application/json")])


async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/slow?S``: logs "slow request started", waits S seconds (default 1), answers "done".

    ``/until?PATH``: the same, but waits until the file PATH exists (at most 30 s), so a test in
    another process decides when the request completes.
    """
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    if scope["path"] == "/slow":
        delay = float(scope["query_string"] or b"1")
        log.info("test app: slow request started")
        await asyncio.sleep(delay)
        await send_text(send, b"done")
    elif scope["path"] == "/until":
        path = scope["query_string"].decode()
        log.info("test app: slow request started")
        for _ in range(1500):  # no cross-process event to await: poll the file, bounded
            if os.path.exists(path):
                break
            await asyncio.sleep(0.02)
        await send_text(send, b"done")
    else:
        await send_text(send, b"fast")


async def long_poll(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A long-poll: reads the request, then waits in ``receive()`` for news that never comes, until
    the client goes; logs "long poll waiting" and then "long poll saw the client leave"."""
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    while (await receive()).get("more_body"):
        pass
    log.info("test app: long poll waiting")
    message = await receive()
    log.info("test app: long poll saw the client leave (%s)", message["type"])


async def startup_fails(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reports ``lifespan.startup.failed`` with a message."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "test app: the database is down"})
        return
    await send_text(send, b"never served")


async def startup_raises(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Raises during lifespan startup."""
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("test app: boom in startup")
    await send_text(send, b"served anyway")


async def no_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An app that does not speak lifespan at all (raises on any scope but http)."""
    assert scope["type"] == "http", "only http"
    await send_text(send, b"no lifespan")


def create_app() -> Any:
    """A factory: ``--factory tests.apps:create_app``."""
    return echo


class ASGI2App:
    """An ASGI2 (double-callable) app: ``ASGI2App(scope)`` then ``await instance(receive, send)``."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        await send_text(send, b"asgi2 " + self.scope["path"].encode())


def asgi2_function(scope: dict[str, Any]) -> Any:
    async def instance(receive: Any, send: Any) -> None:
        await send_text(send, b"asgi2 function")

    return instance


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read()
    text = f"wsgi {environ['REQUEST_METHOD']} {environ['PATH_INFO']} {environ['QUERY_STRING']} body={body.decode()}"
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Wsgi", "yes")])
    return [text.encode()]


nested = type("Namespace", (), {"inner": type("Inner", (), {"app": staticmethod(hello)})})
