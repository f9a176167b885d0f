"""Per-request cost of the HTTP/2 protocol twins without sockets: what h2load's requests cost the server
in user space, connection core and HPACK included.

Feeds ``H2Protocol.data_received`` the frames h2load sends (a HEADERS frame per GET, ``--streams`` of
them per read, every field indexed after the first request) over a transport that discards writes, in
a real event loop; reports ns per request, or instructions per request under ``--callgrind``.

    python perf/h2_microbench.py                  # both twins, ns/request
    python perf/h2_microbench.py --callgrind      # instructions/request via valgrind (exact)
    python perf/h2_microbench.py --twin c --streams 1
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cyasgi._compat import IS_PYPY  # noqa: E402
from cyasgi.config import Config  # noqa: E402
from cyasgi.protocols.http2.frames import (  # noqa: E402
    SETTINGS_ACK_FRAME,
    headers_frames,
    settings_frame,
    window_update_frame,
)
from cyasgi.server import ServerState  # noqa: E402
from perf.callgrind import instructions_per_operation  # noqa: E402
from perf.microbench import NullTransport, hello_app  # noqa: E402

TWINS = {"c": "cyasgi._speedups.h2protocol", "py": "cyasgi.protocols.http2.protocol"}
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
WARMUP = 50_000 if IS_PYPY else 500
CALLGRIND_REQUESTS = 2_000


def request_blocks() -> tuple[bytes, bytes]:
    """h2load's GET as HPACK blocks: the first of a connection (literals, indexed into the client's
    table) and every later one (all indexed). Made by the ``hpack`` package, as a client would."""
    import hpack

    encoder = hpack.Encoder()
    fields = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "127.0.0.1:8000"),
              ("accept-encoding", "gzip, deflate"), ("user-agent", "h2load nghttp2/1.52.0")]
    return encoder.encode(fields), encoder.encode(fields)


def make_protocol(twin: str, loop: asyncio.AbstractEventLoop) -> tuple[object, NullTransport]:
    module = importlib.import_module(TWINS[twin])
    config = Config(hello_app, log_config=None, access_log=False, lifespan="off", http2=True)
    config.load()
    state = ServerState()
    state.default_headers = [(b"date", b"Thu, 01 Jan 2026 00:00:00 GMT"), (b"server", b"cyasgi")]
    protocol = module.H2Protocol(config=config, server_state=state, app_state={}, _loop=loop)
    transport = NullTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def run(twin: str, requests: int, streams: int, warmup: int = WARMUP) -> float:
    protocol, transport = make_protocol(twin, asyncio.get_running_loop())
    first, repeat = request_blocks()
    # The client's preface, SETTINGS, the ACK of ours, and all the connection window it will need.
    window = window_update_frame(0, 2**31 - 1 - 65535)
    protocol.data_received(PREFACE + settings_frame([]) + SETTINGS_ACK_FRAME + window)
    stream_id = 1

    # Every later HEADERS frame is the same but for its stream id: built by hand, cheaply (the
    # instructions spent here are counted under --callgrind too).
    repeat_head = len(repeat).to_bytes(3, "big") + b"\x01\x05"

    def feed() -> bytes:
        nonlocal stream_id
        frames = []
        for _ in range(streams):
            if stream_id == 1:
                frames.append(headers_frames(1, first, True, 16384))
            else:
                frames.append(repeat_head + stream_id.to_bytes(4, "big") + repeat)
            stream_id += 2
        return b"".join(frames)

    feeds = max(requests // streams, 1)
    for _ in range(max(warmup // streams, 1)):
        protocol.data_received(feed())
        await asyncio.sleep(0)
    batches = [feed() for _ in range(feeds)]
    transport.written = 0
    start = time.perf_counter()
    for data in batches:
        protocol.data_received(data)
        if protocol.streams:  # without eager tasks, let the loop run the apps
            await asyncio.sleep(0)
    await asyncio.sleep(0)
    elapsed = time.perf_counter() - start
    assert not transport.closed and transport.written > 0, "the protocol did not answer"
    return elapsed / (feeds * streams) * 1e9


def script_argv(twin: str, requests: int, streams: int, loop: str) -> list[str]:
    argv = [sys.executable, os.path.abspath(__file__), "--twin", twin, "--requests", str(requests)]
    return argv + ["--streams", str(streams), "--loop", loop, "--warmup", str(WARMUP)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--twin", choices=["c", "py", "both"], default="both")
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--streams", type=int, default=10, help="requests per read, as h2load -m (10)")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="asyncio" if IS_PYPY else "uvloop")
    parser.add_argument("--warmup", type=int, default=WARMUP)
    parser.add_argument("--callgrind", action="store_true", help="count instructions per request with valgrind")
    args = parser.parse_args()
    twins = ["c", "py"] if args.twin == "both" else [args.twin]
    for twin in twins:
        if args.callgrind:
            count = instructions_per_operation(
                lambda n, twin=twin: script_argv(twin, n, args.streams, args.loop), CALLGRIND_REQUESTS
            )
            print(f"h2-hello x{args.streams:<3} {twin:3} {count:>10,.0f} instructions/request")
            continue
        if args.loop == "uvloop":
            import uvloop

            loop = uvloop.new_event_loop()
        else:
            loop = asyncio.new_event_loop()
        try:
            ns = loop.run_until_complete(run(twin, args.requests, args.streams, args.warmup))
        finally:
            loop.close()
        print(f"h2-hello x{args.streams:<3} {twin:3} {ns:8.0f} ns/request")


if __name__ == "__main__":
    main()
