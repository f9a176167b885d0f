"""The plain ASGI app of the benchmark: no framework, so the numbers measure the server.

Routes (anything else answers like ``/``):

- ``/``        ``Hello, world!`` as text/plain with a content-length
- ``/echo``    reads the whole request body and sends it back with a content-length
- ``/stream``  1 MiB as 16 chunks of 64 KiB, no content-length (the server picks chunked framing)
- ``/file-64k``, ``/file-4m``  a file on disk with a content-length: by ``http.response.pathsend``
  where the server announces it, else read and sent in 64 KiB chunks as Starlette's FileResponse
  does without pathsend (read in the loop, not in a thread: the cheaper way for such servers)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Awaitable
from typing import Any, Callable

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

HELLO = b"Hello, world!"
STREAM_CHUNK = b"x" * (64 * 1024)
STREAM_CHUNKS = 16

FILE_CHUNK = 64 * 1024
FILE_SIZES = {"/file-64k": 64 * 1024, "/file-4m": 4 * 1024 * 1024}
FILE_DIR = os.path.join(tempfile.gettempdir(), "cyasgi-bench-files")


def file_content(size: int) -> bytes:
    """What the benchmark files hold (the probe checks every byte)."""
    return bytes(range(256)) * (size // 256)


def _make_files() -> dict[str, str]:
    os.makedirs(FILE_DIR, exist_ok=True)
    paths = {}
    for route, size in FILE_SIZES.items():
        path = os.path.join(FILE_DIR, f"{size}.bin")
        if not os.path.exists(path) or os.path.getsize(path) != size:
            partial = f"{path}.{os.getpid()}"
            with open(partial, "wb") as file:
                file.write(file_content(size))
            os.replace(partial, path)  # servers starting together never see half a file
        paths[route] = path
    return paths


FILES = _make_files()

HELLO_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(HELLO)).encode())]
STREAM_HEADERS = [(b"content-type", b"application/octet-stream")]

# Every message is a fresh dict, as apps built on a framework send them: a server may keep or
# change what it is given.


async def lifespan(receive: Receive, send: Send) -> None:
    """Startup, then shutdown: the only two lifespan events, always in that order."""
    await receive()
    await send({"type": "lifespan.startup.complete"})
    await receive()
    await send({"type": "lifespan.shutdown.complete"})


async def echo(receive: Receive, send: Send) -> None:
    chunks = []
    more_body = True
    while more_body:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunks.append(message.get("body", b""))
        more_body = message.get("more_body", False)
    body = b"".join(chunks)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def stream(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
    for _ in range(STREAM_CHUNKS - 1):
        await send({"type": "http.response.body", "body": STREAM_CHUNK, "more_body": True})
    await send({"type": "http.response.body", "body": STREAM_CHUNK})


async def send_file(scope: dict[str, Any], send: Send, path: str) -> None:
    size = os.path.getsize(path)
    headers = [(b"content-type", b"application/octet-stream"), (b"content-length", str(size).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if "http.response.pathsend" in scope.get("extensions", {}):
        await send({"type": "http.response.pathsend", "path": path})
        return
    with open(path, "rb") as file:
        more_body = True
        while more_body:
            chunk = file.read(FILE_CHUNK)
            more_body = len(chunk) == FILE_CHUNK
            await send({"type": "http.response.body", "body": chunk, "more_body": more_body})


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind != "http":
        if kind == "lifespan":
            await lifespan(receive, send)
        return
    path = scope["path"]
    if path == "/echo":
        await echo(receive, send)
    elif path == "/stream":
        await stream(send)
    elif path in FILES:
        await send_file(scope, send, FILES[path])
    else:
        await send({"type": "http.response.start", "status": 200, "headers": HELLO_HEADERS})
        await send({"type": "http.response.body", "body": HELLO})
