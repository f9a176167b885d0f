"""Per-request cost of the HTTP/1.1 protocol twins without sockets: the user-space hot path only.

Feeds requests to ``HttpProtocol.data_received`` over a transport that discards writes, inside a
real event loop, and reports nanoseconds per request (noisy on a shared machine) or, under
``--callgrind``, instructions per request (exact and repeatable whatever else the machine does).

    python perf/microbench.py                      # both twins, every workload, ns/request
    python perf/microbench.py --callgrind          # instructions/request via valgrind
    python perf/microbench.py --twin c --workload headers12 --requests 20000
    pypy3 perf/microbench.py --twin py --http h11  # the pure twin driving h11 (PyPy: asyncio, JIT warm-up)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cyasgi._compat import IS_PYPY  # noqa: E402
from cyasgi.config import HTTP_PARSERS, Config  # noqa: E402
from cyasgi.metrics.recorder import BLOCK_SIZE  # noqa: E402
from cyasgi.protocols.http.wire import encode_headers_block  # noqa: E402
from cyasgi.server import ServerState  # noqa: E402

TWINS = {"c": "cyasgi._speedups.http", "py": "cyasgi.protocols.http.protocol"}

BROWSER_HEADERS = (
    b"Host: localhost:8000\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Connection: keep-alive\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"Sec-Fetch-Dest: document\r\n"
    b"Sec-Fetch-Mode: navigate\r\n"
    b"Sec-Fetch-Site: none\r\n"
    b"Sec-Fetch-User: ?1\r\n"
    b"Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n"
)

WORKLOADS: dict[str, tuple[bytes, int]] = {
    # name: (bytes fed per data_received call, requests in them)
    "hello": (b"GET / HTTP/1.1\r\nHost: localhost:8000\r\n\r\n", 1),
    "headers12": (b"GET / HTTP/1.1\r\n" + BROWSER_HEADERS + b"\r\n", 1),
    "pipelined16": (b"GET / HTTP/1.1\r\nHost: localhost:8000\r\n\r\n" * 16, 16),
    "echo1k": (b"POST /echo HTTP/1.1\r\nHost: localhost:8000\r\nContent-Length: 1024\r\n\r\n" + b"x" * 1024, 1),
}


async def hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    more_body = True
    while more_body:
        message = await receive()
        body += message["body"]
        more_body = message["more_body"]
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


class NullTransport:
    """Discards writes; counts the bytes so a broken protocol cannot look fast."""

    def __init__(self) -> None:
        self.written = 0
        self.closed = False

    def get_extra_info(self, key: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(key, default)

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.written += len(chunk)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0  # everything written is gone at once


#: Requests before the clock starts: caches, freelists, the eager-task path; on PyPy, the JIT's traces.
WARMUP = 50_000 if IS_PYPY else 200


def make_protocol(
    twin: str, app: Callable[..., Any], loop: asyncio.AbstractEventLoop, http: str = "auto", metrics: bool = False
) -> tuple[Any, NullTransport]:
    module = importlib.import_module(TWINS[twin])
    # The --http name picks the parser; the protocol class is the twin's whatever the name says.
    config = Config(app, http=http, log_config=None, access_log=False, lifespan="off")
    config.load()
    state = ServerState()
    state.default_headers = [(b"date", b"Thu, 01 Jan 2026 00:00:00 GMT"), (b"server", b"cyasgi")]
    state.default_headers_block = encode_headers_block(state.default_headers)
    if metrics:  # what --metrics-bind / --metrics-path turn on: every request counted
        state.metrics_block = bytearray(BLOCK_SIZE)
    protocol = module.HttpProtocol(config=config, server_state=state, app_state={}, _loop=loop)
    transport = NullTransport()
    protocol.connection_made(transport)
    return protocol, transport


def feeds_for(workload: str, requests: int) -> int:
    """The data_received calls that carry about ``requests`` requests (whole feeds, at least one)."""
    return max(requests // WORKLOADS[workload][1], 1)


async def run(
    twin: str, workload: str, requests: int, http: str = "auto", warmup: int = WARMUP, metrics: bool = False
) -> float:
    data, per_feed = WORKLOADS[workload]
    app = echo_app if workload.startswith("echo") else hello_app
    protocol, transport = make_protocol(twin, app, asyncio.get_running_loop(), http, metrics)
    feeds = feeds_for(workload, requests)
    for _ in range(max(warmup // per_feed, 1)):
        protocol.data_received(data)
        await asyncio.sleep(0)
    transport.written = 0
    start = time.perf_counter()
    for _ in range(feeds):
        protocol.data_received(data)
        if protocol.active is not None:  # without eager tasks, let the loop run the app
            await asyncio.sleep(0)
    elapsed = time.perf_counter() - start
    assert not transport.closed and transport.written > 0, "the protocol did not answer"
    return elapsed / (feeds * per_feed) * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--twin", choices=["c", "py", "both"], default="both")
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="asyncio" if IS_PYPY else "uvloop")
    parser.add_argument("--http", choices=list(HTTP_PARSERS), default="auto", help="the request parser (auto)")
    parser.add_argument("--warmup", type=int, default=WARMUP, help=f"requests before timing ({WARMUP} here)")
    parser.add_argument("--callgrind", action="store_true", help="count instructions per request with valgrind")
    parser.add_argument("--metrics", action="store_true", help="count every request for the metrics")
    args = parser.parse_args()
    twins = ["c", "py"] if args.twin == "both" else [args.twin]
    workloads = list(WORKLOADS) if args.workload == "all" else [args.workload]

    if args.callgrind:
        for workload in workloads:
            for twin in twins:
                count = callgrind_instructions(twin, workload, args.loop, args.http, metrics=args.metrics)
                print(f"{workload:12} {twin:3} {count:>10,.0f} instructions/request")
        return

    loop_factory = asyncio.new_event_loop
    if args.loop == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    for workload in workloads:
        for twin in twins:
            loop = loop_factory()
            try:
                ns = loop.run_until_complete(
                    run(twin, workload, args.requests, args.http, args.warmup, args.metrics)
                )
            finally:
                loop.close()
            print(f"{workload:12} {twin:3} {ns:8.0f} ns/request")


#: Requests of the shorter callgrind run; the longer one feeds twice as many.
CALLGRIND_REQUESTS = 2_000
#: The measured runs' whole environment. A fixed hash seed: random ones change dict and set layouts, so
#: instruction counts, from run to run. No bytecode written: a module compiled in the shorter run only
#: would be counted as a (negative) cost per request. Nothing of the caller's: its size moves every
#: address, which moves the count per request a little too (docs/benchmarks.md, make perf-check).
CALLGRIND_ENV = {"PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


def script_argv(twin: str, workload: str, requests: int, loop: str, http: str, metrics: bool = False) -> list[str]:
    argv = [sys.executable, os.path.abspath(__file__), "--twin", twin, "--workload", workload]
    return argv + ["--requests", str(requests), "--loop", loop, "--http", http] + (["--metrics"] if metrics else [])


def callgrind_count(
    twin: str, workload: str, requests: int, loop: str, http: str = "auto", metrics: bool = False
) -> int:
    """Instructions of one whole run of this script (start-up included) under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        valgrind = shutil.which("valgrind") or "valgrind"  # found on the caller's PATH, not the child's
        callgrind = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}"]
        subprocess.run(
            callgrind + script_argv(twin, workload, requests, loop, http, metrics),
            check=True,
            capture_output=True,
            env=CALLGRIND_ENV,
        )
        with open(out) as file:
            summary = re.search(r"^summary:\s+(\d+)", file.read(), re.MULTILINE)
    assert summary, "no summary in the callgrind output"
    return int(summary.group(1))


def callgrind_instructions(
    twin: str,
    workload: str,
    loop: str,
    http: str = "auto",
    requests: int = CALLGRIND_REQUESTS,
    metrics: bool = False,
) -> float:
    """Instructions per request: the difference of two runs (N and 2N requests) cancels start-up."""
    # One quick run outside valgrind first: it writes the bytecode caches the measured runs then read.
    env = {key: value for key, value in CALLGRIND_ENV.items() if key != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(script_argv(twin, workload, 1, loop, http, metrics), check=True, capture_output=True, env=env)
    per_feed = WORKLOADS[workload][1]
    short, long = (callgrind_count(twin, workload, n, loop, http, metrics) for n in (requests, 2 * requests))
    fed = (feeds_for(workload, 2 * requests) - feeds_for(workload, requests)) * per_feed
    return (long - short) / fed


if __name__ == "__main__":
    main()
