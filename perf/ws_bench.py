"""WebSocket echo benchmark: cyasgi against every peer that serves ASGI WebSockets, in one run, on this machine.

    python perf/ws_bench.py                      # every such server of perf/registry.py, defaults below
    python perf/ws_bench.py --servers cyasgi,uvicorn,socketify --duration 5 --rounds 3
    python perf/ws_bench.py --quick              # 1 round of 2 s, 200 idle connections: that the rows come out

What it measures
* Throughput: ``--connections`` WebSocket connections each keep ``--depth`` small text messages in
  flight against a bare ASGI echo app (``perf/apps/ws_app.py``); messages echoed per second over
  ``--duration`` seconds, after a short warm-up. Rounds alternate between servers and the median is
  reported, with each server's ratio to uvicorn.
* Memory: the resident set (the server's whole process tree) grown by ``--idle`` open, idle
  WebSocket connections, reported per 1,000 connections.

The servers are those of perf/registry.py marked ``websocket``, each started with the same command as in
perf/bench.py (its fastest documented single-worker setup). Before its load, each is probed: one handshake
and one message that must come back as sent. A server that is not installed, does not start or fails the
probe or a round gets a row that says so, and the others run on.

The server runs pinned to CPU 1 (``taskset -c 1``), the load client to CPU 0, each in its own
process. The client is deliberately cheap: pre-masked frames, a byte-level frame counter, uvloop when
available, so it can outpace every server it drives.

cyasgi runs from the project's venv (``.venv``); the peers from ``perf/.venv-ws``, created on first use
and topped up when PEER_PACKAGES changes (``--setup`` reinstalls them). Results go to stdout (and
``--json FILE``); server logs to perf/results/raw/.
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
from typing import Any

if __package__ in (None, ""):  # run as a script: make the ``perf`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perf import environment
from perf.registry import APPS, BASELINE, CPYTHON, SERVERS, Context, Server

ROOT = Path(__file__).resolve().parent.parent
PERF = ROOT / "perf"
RAW = PERF / "results" / "raw"
PROJECT_PY = ROOT / ".venv" / "bin" / "python"
PEERS_VENV = PERF / ".venv-ws"
PEERS_PY = PEERS_VENV / "bin" / "python"
#: One pip install each, so one that fails leaves the others (its server's row says "not installed").
PEER_PACKAGES = ["uvicorn==0.54.0", "granian", "websockets", "uvloop", "httptools", "h11", "hypercorn", "socketify"]
#: In the peers' venv: the PEER_PACKAGES it was last filled with.
PEERS_MARKER = PEERS_VENV / ".ws-packages"
WS_APP = "ws_app:app"
#: The servers whose own checkout runs from .venv; every other from perf/.venv-ws.
PROJECT_SERVERS = ("cyasgi", "cyasgi-pure")

SERVER_CPU = "1"
CLIENT_CPU = "0"
START_TIMEOUT = 30.0
PROBE_TIMEOUT = 10.0
#: --quick: rounds, seconds measured, seconds of warm-up, idle connections.
QUICK = (1, 2.0, 1.0, 200)
DEFAULTS = (3, 5.0, 1.0, 1000)
#: cyasgi's echo rate at least this many times the best peer's in the same run (issue 15).
PEER_BAR = 1.5


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


def ws_servers() -> list[Server]:
    """The registry's servers that serve ASGI WebSockets on CPython, in its order."""
    return [s for s in SERVERS.values() if s.websocket and s.interpreter == CPYTHON]


def context_of(server: Server) -> Context:
    venv = PROJECT_PY.parent if server.name in PROJECT_SERVERS else PEERS_VENV / "bin"
    return Context(venv)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = START_TIMEOUT) -> None:
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


def _recv_exactly(sock: socket.socket, size: int, buffer: bytearray) -> bytes:
    while len(buffer) < size:
        data = sock.recv(65536)
        if not data:
            raise RuntimeError("the server closed the connection")
        buffer += data
    taken = bytes(buffer[:size])
    del buffer[:size]
    return taken


def probe(port: int, payload: bytes = b"cyasgi-ws-probe") -> None:
    """One handshake and one text message that must come back as sent; raises RuntimeError saying what
    came instead."""
    try:
        _probe(port, payload)
    except socket.timeout:  # the server holds the connection without answering
        raise RuntimeError(f"no answer in {PROBE_TIMEOUT:g} s (to the handshake or the message)") from None


def _probe(port: int, payload: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT) as sock:
        sock.sendall(_handshake(port))
        buffer = bytearray()
        while b"\r\n\r\n" not in buffer:
            data = sock.recv(65536)
            if not data:
                raise RuntimeError(f"closed during the handshake: {bytes(buffer[:80])!r}")
            buffer += data
        end = buffer.index(b"\r\n\r\n") + 4
        head = bytes(buffer[:end])
        del buffer[:end]
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"no 101 to the handshake: {head.splitlines()[0]!r}")
        sock.sendall(_masked_text_frame(payload))
        first, second = _recv_exactly(sock, 2, buffer)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(_recv_exactly(sock, 2, buffer), "big")
        elif length == 127:
            length = int.from_bytes(_recv_exactly(sock, 8, buffer), "big")
        body = _recv_exactly(sock, length, buffer)
        if first != 0x81 or body != payload:
            raise RuntimeError(f"echo wrong: frame byte {first:#x}, payload {body[:40]!r}, sent {payload!r}")


class RunningServer:
    def __init__(self, server: Server) -> None:
        self.name = server.name
        self.port = _free_port()
        command = ["taskset", "-c", SERVER_CPU, *server.command(context_of(server), WS_APP, self.port)]
        RAW.mkdir(parents=True, exist_ok=True)
        self.log_path = RAW / f"ws-{server.name}.log"
        with open(self.log_path, "wb") as log:  # a file, not a pipe: a chatty server never blocks on it
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=server.environment(os.environ), cwd=APPS,
                start_new_session=True,
            )  # fmt: skip
        try:
            _wait_listening(self.port, self.proc)
            probe(self.port)
        except BaseException:
            self.stop()
            raise

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def rss_kib(self) -> int:
        """Resident set of the server and all its descendants (granian and hypercorn run workers)."""
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


def _client(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        ["taskset", "-c", CLIENT_CPU, str(PROJECT_PY), str(Path(__file__).resolve()), "--client", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _started(server: Server) -> RunningServer:
    """The server, listening and past its probe; RuntimeError with the end of its log otherwise."""
    try:
        return RunningServer(server)
    except RuntimeError as exc:
        log_path = RAW / f"ws-{server.name}.log"
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] if log_path.exists() else []
        raise RuntimeError(f"{exc}{f' (its log: {tail[0]})' if tail else ''}") from None


def measure_throughput(server: Server, opts: argparse.Namespace) -> float:
    running = _started(server)
    try:
        args = [
            "load", "--port", str(running.port), "--connections", str(opts.connections), "--depth", str(opts.depth),
            "--size", str(opts.size), "--duration", str(opts.duration), "--warmup", str(opts.warmup),
        ]  # fmt: skip
        proc = _client(args)
        out, err = proc.communicate(timeout=opts.duration + opts.warmup + 60)
        if running.proc.poll() is not None:  # the client may finish all the same: no figure from a crash
            raise RuntimeError(f"the server died during the round (its log: {running.log_tail(1)})")
        if proc.returncode != 0:
            lines = err.strip().splitlines()
            raise RuntimeError(f"load client failed: {lines[-1] if lines else proc.returncode}")
        return float(json.loads(out.strip().splitlines()[-1])["messages_per_s"])
    finally:
        running.stop()


def measure_idle_memory(server: Server, opts: argparse.Namespace) -> float:
    """KiB of resident memory per 1,000 idle open WebSocket connections."""
    running = _started(server)
    hold = Path(f"/tmp/ws-bench-hold-{os.getpid()}")
    hold.write_text("")
    try:
        # Warm the server up with a short burst of connections so lazy imports don't count.
        warm = _client(["idle", "--port", str(running.port), "--connections", "20", "--hold-file", "/nonexistent"])
        warm.communicate(timeout=60)
        time.sleep(0.5)
        before = running.rss_kib()
        proc = _client(
            ["idle", "--port", str(running.port), "--connections", str(opts.idle), "--hold-file", str(hold)]
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            lines = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
            raise RuntimeError(f"idle client failed: {lines[-1] if lines else 'no output'}")
        time.sleep(1.0)
        after = running.rss_kib()
        hold.unlink()
        proc.communicate(timeout=60)
        return (after - before) * 1000.0 / opts.idle
    finally:
        if hold.exists():
            hold.unlink()
        running.stop()


def ensure_peers(force: bool) -> None:
    """perf/.venv-ws with PEER_PACKAGES, each installed on its own (a failure is logged; that server's
    check then says "not installed")."""
    if PEERS_PY.exists() and not force and PEERS_MARKER.exists() and PEERS_MARKER.read_text() == repr(PEER_PACKAGES):
        return
    if not PEERS_PY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    failed = []
    for package in PEER_PACKAGES:
        completed = subprocess.run(
            [str(PEERS_PY), "-m", "pip", "install", "-q", "--disable-pip-version-check", package],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if completed.returncode != 0:
            failed.append(package)
            print(f"could not install {package}: {completed.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    if not failed:  # a failed one is tried again next time
        PEERS_MARKER.write_text(repr(PEER_PACKAGES))


def versions(python: Path, names: list[str]) -> dict[str, str]:
    script = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        pass\n"
        "print(json.dumps(out))\n"
    )
    completed = subprocess.run([str(python), "-c", script, *names], capture_output=True, text=True, check=False)
    return json.loads(completed.stdout) if completed.returncode == 0 else {}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [server.name for server in ws_servers()]
    parser.add_argument("--servers", default=",".join(names), help=f"comma-separated, of {', '.join(names)}")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--depth", type=int, default=1, help="messages in flight per connection")
    parser.add_argument("--size", type=int, default=32, help="payload bytes per message (< 126)")
    parser.add_argument("--duration", type=float, default=None, help=f"seconds measured per round ({DEFAULTS[1]:g})")
    parser.add_argument("--warmup", type=float, default=None, help=f"seconds of warm-up per round ({DEFAULTS[2]:g})")
    parser.add_argument("--rounds", type=int, default=None, help=f"({DEFAULTS[0]})")
    parser.add_argument(
        "--idle", type=int, default=None, help=f"idle connections for the memory figure (0: skip; {DEFAULTS[3]})"
    )
    parser.add_argument(
        "--quick", action="store_true",
        help=f"{QUICK[0]} round of {QUICK[1]:g} s after {QUICK[2]:g} s of warm-up, {QUICK[3]} idle connections",
    )  # fmt: skip
    parser.add_argument("--setup", action="store_true", help="reinstall perf/.venv-ws's packages")
    parser.add_argument("--json", help="also write the results here")
    opts = parser.parse_args(argv)
    chosen = QUICK if opts.quick else DEFAULTS
    for index, key in enumerate(("rounds", "duration", "warmup", "idle")):
        if getattr(opts, key) is None:
            setattr(opts, key, chosen[index])
    unknown = [name for name in opts.servers.split(",") if name.strip() and name.strip() not in names]
    if unknown:
        known = ", ".join(names)
        parser.error(f"--servers: {', '.join(unknown)}: not a WebSocket server of perf/registry.py ({known})")
    if not 0 < opts.size < 126 or opts.rounds < 1 or opts.duration <= 0:
        parser.error("--size must be 1-125 (one-byte frame lengths), --rounds at least 1, --duration above 0")
    return opts


def render_table(
    opts: argparse.Namespace, cpu: str, rates: dict[str, list[float]], memory: dict[str, float],
    problems: dict[str, str],
) -> list[str]:  # fmt: skip
    """The table the bench prints: one row per server asked for, a failed or missing one saying why."""
    medians = {name: statistics.median(values) for name, values in rates.items() if values}
    base = medians.get(BASELINE)
    # Each round's ratio compares servers measured seconds apart: steadier on a shared machine.
    round_ratios = {
        name: statistics.median(r / u for r, u in zip(values, rates[BASELINE]))
        for name, values in rates.items()
        if values and rates.get(BASELINE)
    }
    out = [
        f"WebSocket echo on {cpu}: {opts.connections} connections, {opts.depth} in flight each, {opts.size}-byte "
        f"text messages, {opts.duration:g} s x {opts.rounds} round(s) (median)",
        f"{'server':12s} {'msg/s':>10s} {'vs uvicorn':>11s} {'per round':>10s} {'KiB/1k idle':>12s}",
    ]
    for name in rates:
        if name in problems:
            out.append(f"{name:12s} {problems[name]}")
            continue
        ratio = f"{medians[name] / base:.2f}x" if base else "-"
        per_round = f"{round_ratios[name]:.2f}x" if name in round_ratios else "-"
        mem = f"{memory[name]:.0f}" if name in memory else "-"
        out.append(f"{name:12s} {medians[name]:10.0f} {ratio:>11s} {per_round:>10s} {mem:>12s}")
    # The bar of issue 15: the compiled twin against the best peer of the run.
    peers = {name: rate for name, rate in medians.items() if not name.startswith("cyasgi")}
    if "cyasgi" in medians and peers:
        best = max(peers, key=lambda name: peers[name])
        got = medians["cyasgi"] / peers[best]
        verdict = "met" if got >= PEER_BAR else "missed"
        out.append(
            f"bar: WebSocket echo msg/s >= {PEER_BAR:g}x the best peer's: {verdict} ({got:.2f}x: "
            f"{medians['cyasgi']:,.0f} vs {best}'s {peers[best]:,.0f} msg/s)"
        )
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main(sys.argv[2:])
        return
    opts = parse_args()
    if shutil.which("taskset") is None:
        sys.exit("taskset (util-linux) is needed to pin the server and the client to separate cores")
    if not PROJECT_PY.exists():
        sys.exit("run `make venv` first: cyasgi and the load client run from .venv")
    servers = [SERVERS[name.strip()] for name in opts.servers.split(",") if name.strip()]
    if any(server.name not in PROJECT_SERVERS for server in servers):
        ensure_peers(opts.setup)

    rates: dict[str, list[float]] = {server.name: [] for server in servers}
    problems: dict[str, str] = {}
    statuses: dict[str, dict[str, str]] = {}
    for server in servers:
        availability = server.availability(context_of(server))
        statuses[server.name] = {"label": server.label, "status": availability.status, "detail": availability.detail}
        if not availability.ok:
            problems[server.name] = f"{availability.status}: {availability.detail.splitlines()[-1:] or ''}"
    for round_number in range(1, opts.rounds + 1):
        for server in servers:  # interleaved, so drift in the machine's load spreads over every server
            if server.name in problems:
                continue
            try:
                rate = measure_throughput(server, opts)
            except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError) as exc:
                problems[server.name] = f"failed: {exc}"
                print(f"round {round_number}: {server.name:12s} failed: {exc}", flush=True)
                continue
            rates[server.name].append(rate)
            print(f"round {round_number}: {server.name:12s} {rate:10.0f} msg/s", flush=True)
    memory = {}
    if opts.idle:
        for server in servers:
            if server.name in problems:
                continue
            try:
                memory[server.name] = measure_idle_memory(server, opts)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                print(f"idle memory: {server.name:12s} failed: {exc}", flush=True)

    cpu = environment.cpu_model()
    print()
    print("\n".join(render_table(opts, cpu, rates, memory, problems)))
    if opts.json:
        result: dict[str, Any] = {
            "options": vars(opts),
            "cpu_model": cpu,
            "servers": {
                server.name: {**statuses[server.name], "problem": problems.get(server.name, "")} for server in servers
            },
            "versions": {
                **(versions(PEERS_PY, [p.split("=")[0] for p in PEER_PACKAGES]) if PEERS_PY.exists() else {}),
                **versions(PROJECT_PY, ["cyasgi"]),
            },
            "rates": rates,
            "medians": {name: statistics.median(values) for name, values in rates.items() if values},
            "idle_kib_per_1000": memory,
        }
        Path(opts.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
