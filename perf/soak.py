"""Load and soak: mixed traffic against one cyasgi worker for a set time, then idle keep-alive connections.

The soak drives, all at once: keep-alive requests, a new connection per request, uploads (with a
Content-Length or chunked), streamed responses, clients that reset mid-request or mid-response,
slow clients (a head dribbled in, a response read slowly) and WebSocket echo sessions. It reports
requests served, errors (anything unexpected, on either side) and the server's RSS after the warm-up
and at the end. The idle phase then holds thousands of kept-alive connections open and checks that
the server still answers new requests, and the held ones, promptly.

    python perf/soak.py --minutes 10                 # the soak, then 10,000 idle connections
    python perf/soak.py --minutes 1 --idle 0         # a short soak only
    python perf/soak.py --minutes 0 --idle 10000     # the idle phase only
    python perf/soak.py --twin py --loop asyncio     # the pure twin on asyncio

Needs a free port range and raises its own ``ulimit -n`` (the server inherits it). Not a test:
numbers depend on the machine; docs/reliability.md records a run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30.0  # for any one exchange: a slower answer counts as an error
LINGER_RST = struct.pack("ii", 1, 0)
UPLOAD = os.urandom(256 * 1024)  # uploads are slices of it: the client's CPU goes to the traffic


# The server ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, args: argparse.Namespace, *extra: str) -> None:
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="cyasgi-soak-", suffix=".log", delete=False)  # noqa: SIM115
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if args.twin == "py":
            env["CYASGI_NO_EXTENSIONS"] = "1"
        command = [
            sys.executable, "-m", "cyasgi", "perf.apps.soak_app:app", "--port", str(self.port),
            "--loop", args.loop, "--no-access-log", "--log-level", "warning", "--backlog", "4096", *extra,
        ]
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start; see {self.log.name}") from None
                time.sleep(0.1)

    def rss_mib(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def problems(self) -> list[str]:
        """Lines the server logged at WARNING or above, and tracebacks."""
        text = Path(self.log.name).read_text(errors="replace")
        return [line for line in text.splitlines() if line.startswith(("WARNING", "ERROR", "CRITICAL", "Traceback"))]

    def stop(self) -> None:
        self.proc.send_signal(2)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# A small HTTP/1.1 client ---------------------------------------------------------------------------


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding") == b"chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        body = await reader.read()
    return status, headers, body


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    writer.transport.abort()


# The traffic ----------------------------------------------------------------------------------------


class Soak:
    def __init__(self, port: int, until: float) -> None:
        self.port = port
        self.until = until
        self.served: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.samples: list[str] = []

    def running(self) -> bool:
        return time.monotonic() < self.until

    async def worker(self, kind: str, step: Callable[[], Awaitable[int]]) -> None:
        while self.running():
            try:
                self.served[kind] += await asyncio.wait_for(step(), TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - every failure is counted and sampled
                self.errors[kind] += 1
                if len(self.samples) < 20:
                    self.samples.append(f"{kind}: {exc!r}")

    async def keep_alive(self) -> int:
        reader, writer = await connect(self.port)
        try:
            for _ in range(200):
                writer.write(b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n")
                status, _, body = await read_response(reader)
                expect(status == 200 and body == b"ok", f"keep-alive: {status} {body!r}")
            return 200
        finally:
            writer.close()

    async def new_connection(self) -> int:
        reader, writer = await connect(self.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
        status, headers, body = await read_response(reader)
        expect(status == 200 and body == b"ok" and headers.get(b"connection") == b"close", "close")
        expect(await reader.read() == b"", "bytes after a closing response")
        writer.close()
        return 1

    async def upload(self) -> int:
        reader, writer = await connect(self.port)
        try:
            for _ in range(10):
                size = random.randint(0, len(UPLOAD))
                body = UPLOAD[:size]
                if random.random() < 0.5:
                    writer.write(b"POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: %d\r\n\r\n" % size + body)
                else:
                    writer.write(b"POST /upload HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: chunked\r\n\r\n")
                    for i in range(0, size, 8192):
                        piece = body[i : i + 8192]
                        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        await writer.drain()
                    writer.write(b"0\r\n\r\n")
                status, _, answer = await read_response(reader)
                expect(status == 200 and answer == str(size).encode(), f"upload of {size}: {status} {answer!r}")
            return 10
        finally:
            writer.close()

    async def stream(self) -> int:
        reader, writer = await connect(self.port)
        try:
            writer.write(b"GET /stream?n=64 HTTP/1.1\r\nHost: soak\r\n\r\n")
            status, headers, body = await read_response(reader)
            expect(status == 200 and len(body) == 64 * 16384, f"stream: {status} {len(body)}")
            expect(headers.get(b"transfer-encoding") == b"chunked", "stream framing")
            return 1
        finally:
            writer.close()

    async def reset(self) -> int:
        reader, writer = await connect(self.port)
        choice = random.randrange(3)
        if choice == 0:  # mid-head
            writer.write(b"GET / HTTP/1.1\r\nHos")
        elif choice == 1:  # mid-body, the app waiting for the rest
            writer.write(b"POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: 1000000\r\n\r\n" + b"u" * 10000)
        else:  # mid-response
            writer.write(b"GET /stream?n=256 HTTP/1.1\r\nHost: soak\r\n\r\n")
            await reader.readexactly(32768)
        await writer.drain()
        await asyncio.sleep(random.random() * 0.05)
        rst(writer)
        return 1

    async def slow(self) -> int:
        reader, writer = await connect(self.port)
        try:
            if random.random() < 0.5:  # a head dribbled in, well within --timeout-header-read
                request = b"GET / HTTP/1.1\r\nHost: soak\r\nUser-Agent: slow\r\n\r\n"
                for i in range(0, len(request), 5):
                    writer.write(request[i : i + 5])
                    await asyncio.sleep(0.05)
                status, _, body = await read_response(reader)
                expect(status == 200 and body == b"ok", "slow head")
            else:  # a response read slowly: flow control holds the app back
                writer.write(b"GET /stream?n=64 HTTP/1.1\r\nHost: soak\r\n\r\n")
                head = await reader.readuntil(b"\r\n\r\n")
                expect(head.startswith(b"HTTP/1.1 200"), "slow reader")
                received = 0
                while not (await reader.read(16384)).endswith(b"0\r\n\r\n"):
                    received += 1
                    await asyncio.sleep(0.01)
            return 1
        finally:
            writer.close()

    async def websocket(self) -> int:
        from websockets.asyncio.client import connect as ws_connect

        async with ws_connect(f"ws://127.0.0.1:{self.port}/ws", open_timeout=TIMEOUT) as ws:
            for i in range(20):
                message = f"message {i} " + "w" * random.randint(0, 4000)
                await ws.send(message)
                expect(await ws.recv() == message, "websocket echo")
        return 1


async def soak(args: argparse.Namespace) -> int:
    server = Server(args)
    started = time.monotonic()
    duration = args.minutes * 60
    warmup = min(60.0, duration / 10)
    run = Soak(server.port, started + duration)
    mix = {
        "keep-alive": (run.keep_alive, 8),
        "new-connection": (run.new_connection, 4),
        "upload": (run.upload, 2),
        "stream": (run.stream, 2),
        "reset": (run.reset, 2),
        "slow": (run.slow, 4),
        "websocket": (run.websocket, 4),
    }
    print(f"soak: {args.minutes} min against {args.twin} twin on {args.loop}, pid {server.proc.pid}", flush=True)
    tasks = [asyncio.ensure_future(run.worker(kind, step)) for kind, (step, count) in mix.items() for _ in range(count)]
    rss_start = None
    rss_max = 0.0
    last_report = started
    last_total = 0
    while any(not task.done() for task in tasks):
        await asyncio.sleep(1)
        now = time.monotonic()
        rss = server.rss_mib()
        rss_max = max(rss_max, rss)
        if rss_start is None and now - started >= warmup:
            rss_start = rss
        if now - last_report >= args.report or not run.running():
            total = sum(run.served.values())
            print(
                f"  {now - started:6.0f} s  {total:>9,} served ({(total - last_total) / (now - last_report):,.0f}/s)"
                f"  errors {sum(run.errors.values())}  RSS {rss:.1f} MiB",
                flush=True,
            )
            last_report, last_total = now, total
    await asyncio.gather(*tasks)
    rss_end = server.rss_mib()
    server.stop()
    problems = server.problems()
    total = sum(run.served.values())
    elapsed = time.monotonic() - started
    print(f"\nserved {total:,} in {elapsed:.0f} s ({total / elapsed:,.0f}/s):", dict(run.served))
    print(f"client errors: {sum(run.errors.values())}", dict(run.errors), *run.samples, sep="\n  ")
    print(f"server warnings/errors/tracebacks: {len(problems)}", *problems[:20], sep="\n  ")
    rss_start = rss_start or rss_end
    print(
        f"server RSS: {rss_start:.1f} MiB after the {warmup:.0f} s warm-up, {rss_end:.1f} MiB at the end "
        f"({(rss_end - rss_start) / rss_start * 100:+.1f}%), {rss_max:.1f} MiB at most"
    )
    return 1 if run.errors or problems else 0


async def idle(args: argparse.Namespace) -> int:
    """Hold ``args.idle`` kept-alive connections; check new and held ones are still answered."""
    server = Server(args, "--timeout-keep-alive", "3600", "--limit-concurrency", str(args.idle * 2))
    print(f"idle: {args.idle:,} kept-alive connections, pid {server.proc.pid}", flush=True)
    rss_empty = server.rss_mib()
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    started = time.monotonic()

    async def open_one() -> None:
        reader, writer = await connect(server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n")
        status, _, _ = await read_response(reader)
        expect(status == 200, "idle open")
        held.append((reader, writer))

    for first in range(0, args.idle, 500):
        await asyncio.gather(*(open_one() for _ in range(min(500, args.idle - first))))
    opened = time.monotonic() - started
    rss_idle = server.rss_mib()

    latencies = []
    reader, writer = await connect(server.port)
    for _ in range(200):
        sent = time.perf_counter()
        writer.write(b"GET / HTTP/1.1\r\nHost: fresh\r\n\r\n")
        status, _, _ = await asyncio.wait_for(read_response(reader), TIMEOUT)
        expect(status == 200, "fresh request")
        latencies.append(time.perf_counter() - sent)
    writer.close()
    sample = random.sample(held, min(500, len(held)))
    for held_reader, held_writer in sample:  # the held connections were kept, and still work
        held_writer.write(b"GET / HTTP/1.1\r\nHost: held\r\n\r\n")
    answers = await asyncio.gather(*(asyncio.wait_for(read_response(r), TIMEOUT) for r, _ in sample))
    latencies.sort()
    for _, held_writer in held:
        held_writer.close()
    server.stop()
    problems = server.problems()
    print(f"  opened in {opened:.1f} s; RSS {rss_empty:.1f} MiB empty, {rss_idle:.1f} MiB with them held "
          f"({(rss_idle - rss_empty) * 1024 / len(held):.1f} KiB per connection)")
    print(f"  a fresh connection meanwhile: p50 {latencies[len(latencies) // 2] * 1000:.2f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.2f} ms over {len(latencies)} requests")
    print(f"  {sum(status == 200 for status, _, _ in answers)}/{len(sample)} held connections answered again")
    print(f"  server warnings/errors/tracebacks: {len(problems)}", *problems[:20], sep="\n  ")
    return 1 if problems or any(status != 200 for status, _, _ in answers) else 0


def raise_open_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard == resource.RLIM_INFINITY else max(soft, min(hard, needed))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        raise SystemExit(f"ulimit -n is {soft}; {needed} open files are needed (raise the hard limit)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the mixed traffic runs")
    parser.add_argument("--idle", type=int, default=10000, help="kept-alive connections held in the idle phase")
    parser.add_argument("--twin", choices=["c", "py"], default="c")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--report", type=float, default=60.0, help="seconds between progress lines")
    args = parser.parse_args()
    raise_open_files(args.idle + 1024)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    failed = 0
    if args.minutes > 0:
        failed |= runner(soak(args))
    if args.idle > 0:
        failed |= runner(idle(args))
    sys.exit(failed)


if __name__ == "__main__":
    main()
