"""Serve a WSGI application (``--interface wsgi``): a2wsgi when installed, else a built-in bridge.

The built-in bridge reads the whole request body, runs the app in a thread pool, and streams each
chunk the app yields back through the event loop.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

_ENVIRON_SKIPPED_HEADERS = {b"content-type": "CONTENT_TYPE", b"content-length": "CONTENT_LENGTH"}


def build_environ(scope: dict[str, Any], body: bytes) -> dict[str, Any]:
    root_path = scope.get("root_path", "")
    path = scope["path"]
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root_path.encode("utf-8").decode("latin-1"),
        "PATH_INFO": path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stdout,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    server = scope.get("server") or ("localhost", 80)
    environ["SERVER_NAME"] = server[0]
    environ["SERVER_PORT"] = str(server[1]) if server[1] is not None else "0"
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"] = client[0]
        environ["REMOTE_PORT"] = str(client[1])
    for name, value in scope["headers"]:
        key = _ENVIRON_SKIPPED_HEADERS.get(name) or "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        text = value.decode("latin-1")
        if key in environ and key.startswith("HTTP_"):
            text = environ[key] + "," + text
        environ[key] = text
    return environ


class _BuiltinWSGIMiddleware:
    def __init__(self, app: Callable[..., Iterable[bytes]], workers: int = 10) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cyasgi-wsgi")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError(f"A WSGI application cannot handle {scope['type']!r} scopes.")
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        environ = build_environ(scope, bytes(body))
        loop = asyncio.get_running_loop()
        started: list[dict[str, Any]] = []

        def send_from_thread(message: dict[str, Any]) -> None:
            asyncio.run_coroutine_threadsafe(send(message), loop).result()

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            if exc_info is not None and started and started[0].get("sent"):
                raise exc_info[1].with_traceback(exc_info[2])
            code = int(status.split(" ", 1)[0])
            encoded = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
            started[:] = [{"type": "http.response.start", "status": code, "headers": encoded}]
            return write

        def write(data: bytes) -> None:
            flush_start()
            if data:
                send_from_thread({"type": "http.response.body", "body": data, "more_body": True})

        def flush_start() -> None:
            if not started:
                raise RuntimeError("The WSGI application wrote a body before calling start_response().")
            if not started[0].get("sent"):
                message = dict(started[0])
                started[0]["sent"] = True
                send_from_thread(message)

        def run() -> None:
            result = self.app(environ, start_response)
            try:
                for chunk in result:
                    write(chunk)
                flush_start()
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()

        await loop.run_in_executor(self.executor, run)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


try:
    from a2wsgi import WSGIMiddleware
except ImportError:  # a2wsgi is optional
    WSGIMiddleware = _BuiltinWSGIMiddleware  # type: ignore[misc,assignment]
