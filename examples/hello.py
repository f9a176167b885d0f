"""The example app `make run` serves: plain text on every path, JSON on /json."""

import json


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http"
    if scope["path"] == "/json":
        body = json.dumps({"message": "Hello, world!", "path": scope["path"]}).encode()
        content_type = b"application/json"
    else:
        body = b"Hello, world!"
        content_type = b"text/plain"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
