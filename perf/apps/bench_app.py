"""The plain ASGI app of the benchmark: no framework, so the numbers measure the server.

Routes (anything else answers like ``/``):

- ``/``        ``Hello, world!`` as text/plain with a content-length
- ``/echo``    reads the whole request body and sends it back with a content-length
- ``/stream``  1 MiB as 16 chunks of 64 KiB, no content-length (the server picks chunked framing)
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Callable

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

HELLO = b"Hello, world!"
STREAM_CHUNK = b"x" * (64 * 1024)
STREAM_CHUNKS = 16

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
    else:
        await send({"type": "http.response.start", "status": 200, "headers": HELLO_HEADERS})
        await send({"type": "http.response.body", "body": HELLO})
