"""The app the process-management tests serve (imported by worker processes as tests.process_app:app).

GET /          the worker's pid
GET /block     blocks the event loop with time.sleep (a stuck worker)
GET /slow      answers after an asynchronous 0.5 s wait (an in-flight request)
GET /hang      waits (asynchronously) for an hour: only a graceful-shutdown timeout ends it
GET /client    "scheme client-host" as the app sees them (proxy headers)
"""

from __future__ import annotations

import asyncio
import os
import time


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()  # startup, then shutdown: both succeed
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    path = scope["path"]
    if path == "/block":
        print(f"worker {os.getpid()} blocks its event loop", flush=True)
        time.sleep(30)
    elif path == "/hang":
        print(f"worker {os.getpid()} starts a request that never ends", flush=True)
        await asyncio.sleep(3600)
    elif path == "/slow":
        print(f"worker {os.getpid()} starts a slow request", flush=True)
        await asyncio.sleep(0.5)
    if path == "/client":
        client = scope.get("client") or ("-", 0)
        body = f"{scope['scheme']} {client[0]}".encode()
    else:
        body = str(os.getpid()).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
