"""WebSocket echo benchmark: cyasgi against uvicorn and granian, in one run, on this machine.

    python perf/ws_bench.py                      # all servers, defaults below
    python perf/ws_bench.py --servers cyasgi,uvicorn --duration 5 --rounds 3

What it measures
* Throughput: ``--connections`` WebSocket connections each keep ``--depth`` small text messages in
  flight against a bare ASGI echo app (``app`` below); messages echoed per second over ``--duration``
  seconds, after a short warm-up. Rounds alternate between servers and the median is reported, with
  each server's ratio to uvicorn.
* Memory: the resident set (the server's whole process tree) grown by ``--idle`` open, idle
  WebSocket connections, reported per 1,000 connections.

The server runs pinned to CPU 1 (``taskset -c 1``), the load client to CPU 0, each in its own
process. The client is deliberately cheap: pre-masked frames, a byte-level frame counter, uvloop when
available, so it can outpace every server it drives.

cyasgi runs from the project's venv (``.venv``); uvicorn and granian from ``perf/.venv-ws``, created
and filled on first use (``--setup`` forces it). Results go to stdout (and ``--json FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PERF = ROOT / "perf"
PROJECT_PY = ROOT / ".venv" / "bin" / "python"
PEERS_VENV = PERF / ".venv-ws"
PEERS_PY = PEERS_VENV / "bin" / "python"
PEER_PACKAGES = ["uvicorn==0.54.0", "granian", "websockets", "uvloop", "httptools"]

SERVER_CPU = "1"
CLIENT_CPU = "0"


# The app every server runs ------------------------------------------------------------------


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    """Bare ASGI echo: accept, then send every message back as it came."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        text = message.get("text")
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes")})


# The load client (runs in its own process) --------------------------------------------------------

_KEY = base64.b64encode(b"cyasgi-ws-bench!").decode()


def _handshake(port: int) -> bytes:
    return (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def _masked_text_frame(payload: bytes) -> bytes:
    mask = b"\x11\x22\x33\x44"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


class _EchoClient(asyncio.Protocol):
    """One connection: handshake, then keep ``depth`` messages in flight, counting echoes."""

    def __init__(
        self, port: int, frame: bytes, depth: int, stats: dict[str, int], ready: asyncio.Future
    ) -> None:
        self.port = port
        self.frame = frame
        self.depth = depth
        self.stats = stats
        self.ready = ready
        self.buffer = b""
        self.open = False
        self.transport: asyncio.Transport | None = None
        self.running = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(_handshake(self.port))

    def start(self) -> None:
        self.running = True
        assert self.transport is not None
        self.transport.write(self.frame * self.depth)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if not self.open:
            end = buffer.find(b"\r\n\r\n")
            if end == -1:
                self.buffer = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                if not self.ready.done():
                    self.ready.set_exception(RuntimeError(buffer[:200].decode("latin-1")))
                return
            self.open = True
            buffer = buffer[end + 4 :]
            if not self.ready.done():
                self.ready.set_result(None)
        count = 0
        pos = 0
        size = len(buffer)
        while size - pos >= 2:
            length = buffer[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > size:
                break
            if buffer[pos] & 0x0F in (1, 2):
                count += 1
            pos = end
        self.buffer = buffer[pos:]
        if count:
            self.stats["received"] += count
            if self.running:
                self.transport.write(self.frame * count)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats["lost"] += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("connection lost during the handshake"))


async def _open_connections(
    port: int, count: int, frame: bytes, depth: int, stats: dict[str, int]
) -> list[_EchoClient]:
    loop = asyncio.get_running_loop()
    clients = []
    for start in range(0, count, 50):  # in batches: a listen backlog is finite
        batch = []
        for _ in range(start, min(start + 50, count)):
            ready = loop.create_future()
            _, client = await loop.create_connection(
                lambda ready=ready: _EchoClient(port, frame, depth, stats, ready), "127.0.0.1", port
            )
            batch.append(client)
        await asyncio.wait_for(asyncio.gather(*(c.ready for c in batch)), 30)
        clients += batch
    return clients


async def _load(
    port: int, connections: int, depth: int, size: int, duration: float, warmup: float
) -> dict[str, float]:
    stats = {"received": 0, "lost": 0}
    frame = _masked_text_frame(b"x" * size)
    clients = await _open_connections(port, connections, frame, depth, stats)
    for client in clients:
        client.start()
    await asyncio.sleep(warmup)
    before, started = stats["received"], time.perf_counter()
    await asyncio.sleep(duration)
    after, elapsed = stats["received"], time.perf_counter() - started
    for client in clients:
        client.running = False
        assert client.transport is not None
        client.transport.abort()
    return {"messages_per_s": (after - before) / elapsed, "lost": stats["lost"]}


async def _idle(port: int, connections: int, hold_file: str) -> None:
    """Open ``connections`` idle sockets, report, and hold them until ``hold_file`` disappears."""
    stats = {"received": 0, "lost": 0}
    clients = await _open_connections(port, connections, b"", 0, stats)
    print(json.dumps({"open": len(clients)}), flush=True)
    deadline = time.monotonic() + 120
    while os.path.exists(hold_file) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for client in clients:
        assert client.transport is not None
        client.transport.abort()


def client_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["load", "idle"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--hold-file", default="")
    args = parser.parse_args(argv)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - PyPy
        runner = asyncio.run
    if args.mode == "load":
        result = runner(_load(args.port, args.connections, args.depth, args.size, args.duration, args.warmup))
        print(json.dumps(result), flush=True)
    else:
        runner(_idle(args.port, args.connections, args.hold_file))


# Servers -------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(name: str, port: int) -> list[str]:
    app = "ws_bench:app"
    if name in ("cyasgi", "uvicorn"):  # the same CLI, by design
        python = PROJECT_PY if name == "cyasgi" else PEERS_PY
        options = f"--port {port} --log-level warning --no-access-log"
        return [str(python), "-m", name, app, "--app-dir", str(PERF), *options.split()]
    if name == "granian":
        options = f"--interface asgi --host 127.0.0.1 --port {port} --workers 1 --log-level warning"
        return [str(PEERS_VENV / "bin" / "granian"), *options.split(), "--working-dir", str(PERF), app]
    raise ValueError(name)


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start listening")


class RunningServer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.port = _free_port()
        command = ["taskset", "-c", SERVER_CPU, *server_command(name, self.port)]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True
        )
        try:
            _wait_listening(self.port, self.proc)
        except BaseException:
            self.stop()
            raise

    def rss_kib(self) -> int:
        """Resident set of the server and all its descendants (granian runs workers)."""
        total = 0
        for pid in [self.proc.pid, *_descendants(self.proc.pid)]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def _descendants(pid: int) -> list[int]:
    found = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return found
    for child in children:
        found.append(int(child))
        found += _descendants(int(child))
    return found


def _client(args: list[str], timeout: float) -> subprocess.Popen:
    return subprocess.Popen(
        ["taskset", "-c", CLIENT_CPU, str(PROJECT_PY), str(Path(__file__).resolve()), "--client", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def measure_throughput(name: str, opts: argparse.Namespace) -> float:
    server = RunningServer(name)
    try:
        proc = _client(
            [
                "load",
                "--port",
                str(server.port),
                "--connections",
                str(opts.connections),
                "--depth",
                str(opts.depth),
                "--size",
                str(opts.size),
                "--duration",
                str(opts.duration),
                "--warmup",
                str(opts.warmup),
            ],
            timeout=opts.duration + 60,
        )
        out, err = proc.communicate(timeout=opts.duration + opts.warmup + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"load client failed: {err[-2000:]}")
        return float(json.loads(out.strip().splitlines()[-1])["messages_per_s"])
    finally:
        server.stop()


def measure_idle_memory(name: str, opts: argparse.Namespace) -> float:
    """KiB of resident memory per 1,000 idle open WebSocket connections."""
    server = RunningServer(name)
    hold = Path(f"/tmp/ws-bench-hold-{os.getpid()}")
    hold.write_text("")
    try:
        # Warm the server up with a short burst of connections so lazy imports don't count.
        warm = _client(
            ["idle", "--port", str(server.port), "--connections", "20", "--hold-file", "/nonexistent"], 60
        )
        warm.communicate(timeout=60)
        time.sleep(0.5)
        before = server.rss_kib()
        proc = _client(
            ["idle", "--port", str(server.port), "--connections", str(opts.idle), "--hold-file", str(hold)],
            120,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"idle client failed: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
        time.sleep(1.0)
        after = server.rss_kib()
        hold.unlink()
        proc.communicate(timeout=60)
        return (after - before) * 1000.0 / opts.idle
    finally:
        if hold.exists():
            hold.unlink()
        server.stop()


def ensure_peers(force: bool) -> None:
    if PEERS_PY.exists() and not force:
        return
    subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    subprocess.run([str(PEERS_PY), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--servers", default="cyasgi,uvicorn,granian")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--depth", type=int, default=1, help="messages in flight per connection")
    parser.add_argument("--size", type=int, default=32, help="payload bytes per message")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per round")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--idle", type=int, default=1000, help="idle connections for the memory figure (0: skip)"
    )
    parser.add_argument("--setup", action="store_true", help="(re)create perf/.venv-ws")
    parser.add_argument("--json", help="also write the results here")
    opts = parser.parse_args()
    if shutil.which("taskset") is None:
        sys.exit("taskset (util-linux) is needed to pin the server and the client to separate cores")
    if not PROJECT_PY.exists():
        sys.exit("run `make venv` first: cyasgi runs from .venv")
    servers = [s.strip() for s in opts.servers.split(",") if s.strip()]
    if any(s != "cyasgi" for s in servers):
        ensure_peers(opts.setup)

    rates: dict[str, list[float]] = {name: [] for name in servers}
    for round_number in range(1, opts.rounds + 1):
        for name in servers:  # interleaved, so drift in the machine's load spreads over every server
            rate = measure_throughput(name, opts)
            rates[name].append(rate)
            print(f"round {round_number}: {name:8s} {rate:10.0f} msg/s", flush=True)
    memory = {}
    if opts.idle:
        for name in servers:
            memory[name] = measure_idle_memory(name, opts)

    medians = {name: statistics.median(values) for name, values in rates.items()}
    base = medians.get("uvicorn")
    print()
    print(
        f"{opts.connections} connections, {opts.depth} in flight each, {opts.size}-byte text messages, "
        f"{opts.duration:g} s x {opts.rounds} rounds (median)"
    )
    # Each round's ratio compares servers measured seconds apart: steadier on a shared machine.
    round_ratios = {
        name: statistics.median(r / u for r, u in zip(rates[name], rates["uvicorn"]))
        for name in servers
        if "uvicorn" in rates
    }
    print(f"{'server':10s} {'msg/s':>10s} {'vs uvicorn':>11s} {'per round':>10s} {'KiB/1k idle':>12s}")
    for name in servers:
        ratio = f"{medians[name] / base:.2f}x" if base else "-"
        per_round = f"{round_ratios[name]:.2f}x" if name in round_ratios else "-"
        mem = f"{memory[name]:.0f}" if name in memory else "-"
        print(f"{name:10s} {medians[name]:10.0f} {ratio:>11s} {per_round:>10s} {mem:>12s}")
    if opts.json:
        result = {
            "options": vars(opts),
            "rates": rates,
            "medians": medians,
            "round_ratio_medians": round_ratios,
            "idle_kib_per_1000": memory,
        }
        Path(opts.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
