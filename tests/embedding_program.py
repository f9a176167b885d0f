"""A program that embeds cyasgi and has SIGINT/SIGTERM handlers of its own (tests/server/test_signals.py).

    python -m tests.embedding_program run           cyasgi.run(app, port=0)
    python -m tests.embedding_program serve         asyncio.run(cyasgi.Server(config).serve())
    python -m tests.embedding_program handle-exit   as serve; GET /stop makes the app call
                                                    server.handle_exit(SIGTERM, None)

Its own handler prints ``own handler ran: SIGNAME``; once serving has returned it prints whether its
handlers are installed again. It never exits because of a signal: the exit status is 0 unless
something failed.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import cyasgi

HANDLED = (signal.SIGINT, signal.SIGTERM)

server: cyasgi.Server | None = None


def own_handler(sig: int, frame: Any) -> None:
    print(f"own handler ran: {signal.Signals(sig).name}", flush=True)


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/stop":
        assert server is not None
        # What a program's own code does to stop the server as a signal would.
        server.handle_exit(signal.SIGTERM, None)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def main(mode: str) -> None:
    global server
    for sig in HANDLED:
        signal.signal(sig, own_handler)
    if mode == "run":
        cyasgi.run(app, port=0, lifespan="off")
    else:
        server = cyasgi.Server(cyasgi.Config(app, port=0, lifespan="off"))
        asyncio.run(server.serve())
    restored = all(signal.getsignal(sig) is own_handler for sig in HANDLED)
    print(f"serving returned; own handlers installed: {restored}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
