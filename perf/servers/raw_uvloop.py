"""The ceiling: a uvloop ``asyncio.Protocol`` that answers every request with a canned response.

It does not parse HTTP. It counts request heads by their blank line (``\\r\\n\\r\\n``) and writes
one canned response per head, so keep-alive, pipelining and ``Connection: close`` work, but request
bodies do not (it serves only the GET workloads). No Python server on this loop can do less work
per request, so its numbers are the physical limit of this Python, this loop and this machine.

    python perf/servers/raw_uvloop.py --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

HEAD_END = b"\r\n\r\n"
BODY = b"Hello, world!"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: text/plain\r\n"
    b"content-length: " + str(len(BODY)).encode() + b"\r\n"
    b"\r\n" + BODY
)
CLOSE_RESPONSE = RESPONSE.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n", 1)


class CannedProtocol(asyncio.Protocol):
    """Writes ``RESPONSE`` once per request head received; closes after a ``Connection: close`` one."""

    __slots__ = ("tail", "transport")

    def __init__(self) -> None:
        self.transport: Any = None
        self.tail = b""  # the last bytes of the previous read, in case a head ends across reads

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.tail:
            data = self.tail + data
        count = data.count(HEAD_END)
        self.tail = data[-3:] if not data.endswith(HEAD_END) else b""
        if not count:
            return
        if b"lose\r\n" in data:  # "Connection: close" in any capitalisation of the C
            self.transport.write(RESPONSE * (count - 1) + CLOSE_RESPONSE)
            self.transport.close()
        elif count == 1:
            self.transport.write(RESPONSE)
        else:
            self.transport.write(RESPONSE * count)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.transport = None


async def serve(host: str, port: int, ready: Any = None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(CannedProtocol, host, port, backlog=2048)
    stop = asyncio.Event()
    if ready is not None:
        ready(server)
    try:
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    except (RuntimeError, ValueError):  # not the main thread (tests): the caller cancels us
        pass
    try:
        await stop.wait()
    finally:
        server.close()  # no wait_closed(): on 3.12+ it would wait for every open connection


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args(argv)
    if args.loop == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    else:
        loop_factory = asyncio.new_event_loop
    loop = loop_factory()
    try:
        loop.run_until_complete(serve(args.host, args.port))
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
