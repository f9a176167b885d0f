"""WebSocket echo benchmark: cyasgi against every peer that serves ASGI WebSockets, in one run, on this machine.

    python perf/ws_bench.py                      # every such server of perf/registry.py, defaults below
    python perf/ws_bench.py --servers cyasgi,uvicorn,socketify --duration 5 --rounds 3
    python perf/ws_bench.py --quick              # 1 round of 2 s, 200 idle connections: that the rows come out
    python perf/ws_bench.py --workloads deflate  # only the permessage-deflate echo

What it measures
* Throughput, in two workloads (``--workloads``, both by default): ``--connections`` WebSocket
  connections each keep ``--depth`` text messages in flight against a bare ASGI echo app
  (``perf/apps/ws_app.py``); messages echoed per second over ``--duration`` seconds, after a short
  warm-up. ``echo`` sends ``--size`` bytes as they are. ``deflate`` offers permessage-deflate (RFC 7692,
  with client_no_context_takeover) and sends a ``--deflate-size``-byte JSON text compressed; a server
  that does not accept the offer gets a row that says so and is no peer of that workload's bar. Rounds
  alternate between servers and the median is reported, with each server's ratio to uvicorn.
* Memory: the resident set (the server's whole process tree) grown by ``--idle`` open, idle
  WebSocket connections, reported per 1,000 connections.

The servers are those of perf/registry.py marked ``websocket``, each started with the same command as in
perf/bench.py (its fastest documented single-worker setup). Before its load, each is probed: one handshake
and one message that must come back as sent. A server that is not installed, does not start or fails the
probe or a round gets a row that says so, and the others run on.

The server runs pinned to CPU 1 (``taskset -c 1``), the load client to CPU 0, each in its own
process. The client is deliberately cheap: one pre-masked (and for deflate pre-compressed) frame sent
again and again, a byte-level frame counter that never inflates, uvloop when available, so it can
outpace every server it drives.

cyasgi runs from the project's venv (``.venv``); the peers from ``perf/.venv-ws``, created on first use
and topped up when PEER_PACKAGES changes (``--setup`` reinstalls them). Results go to stdout (and
``--json FILE``); server logs to perf/results/raw/.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import zlib
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
#: cyasgi's echo rate at least this many times the best peer's in the same run (issue 15), for each workload.
PEER_BAR = 1.5
#: The workloads: small text messages as they are, and JSON texts over permessage-deflate.
ECHO = "echo"
DEFLATE = "deflate"
WORKLOADS = (ECHO, DEFLATE)
#: Bytes of the deflate workload's JSON message (--deflate-size): a few hundred, like a typical push.
DEFLATE_SIZE = 300
#: The largest message either workload sends (--size, --deflate-size): a message, not a test of limits.
MAX_MESSAGE_SIZE = 65536
TICKER_SYMBOLS = ("ACME", "GLOBX", "INITECH", "UMBRL", "WAYNE")
#: The row of a server that answered the deflate workload's handshake without accepting the extension.
NO_DEFLATE = "no permessage-deflate"
#: How each workload is named in its heading and its bar line.
TITLES = {ECHO: "WebSocket echo", DEFLATE: "WebSocket echo with permessage-deflate"}


# The load client (runs in its own process) --------------------------------------------------------

_KEY = base64.b64encode(b"cyasgi-ws-bench!").decode()
#: RFC 7692's offer: every client message compressed on its own, so one pre-compressed frame stays valid.
DEFLATE_OFFER = "permessage-deflate; client_no_context_takeover"
#: The end of every Z_SYNC_FLUSH block: a permessage-deflate sender strips it (RFC 7692, 7.2.1).
DEFLATE_TAIL = b"\x00\x00\xff\xff"
_MASK = b"\x11\x22\x33\x44"
#: First byte of a frame: FIN, RSV1 (the message is compressed), and the text opcode.
FIN = 0x80
RSV1 = 0x40
TEXT = 0x01


def _handshake(port: int, deflate: bool = False) -> bytes:
    extensions = f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n" if deflate else ""
    return (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {_KEY}\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n"
    ).encode()


def _masked_text_frame(payload: bytes, compressed: bool = False) -> bytes:
    """One client text frame of ``payload`` (already deflated when ``compressed``), in the shortest length form."""
    first = FIN | TEXT | (RSV1 if compressed else 0)
    size = len(payload)
    if size < 126:
        head = bytes([first, 0x80 | size])
    elif size < 1 << 16:
        head = bytes([first, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([first, 0x80 | 127]) + size.to_bytes(8, "big")
    masked = bytes(b ^ _MASK[i % 4] for i, b in enumerate(payload))
    return head + _MASK + masked


def deflate_payload(message: bytes) -> bytes:
    """``message`` as one permessage-deflate payload: raw deflate, sync-flushed, its 00 00 ff ff dropped."""
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(DEFLATE_TAIL)
    return data[: -len(DEFLATE_TAIL)]


def _hex_id(seed: int, length: int) -> str:
    digest = ""
    while len(digest) < length:
        digest += hashlib.sha256(f"{seed}-{len(digest)}".encode()).hexdigest()
    return digest[:length]


def _tick(seq: int) -> dict[str, Any]:
    return {
        "seq": 1000 + seq, "id": _hex_id(seq, 16), "symbol": TICKER_SYMBOLS[seq % len(TICKER_SYMBOLS)],
        "bid": round(101.25 + seq * 0.13, 2), "ask": round(101.27 + seq * 0.13, 2), "qty": 100 * (seq % 7 + 1),
    }  # fmt: skip


def _json_text(ticks: list[dict[str, Any]], trace: str) -> bytes:
    return json.dumps({"type": "ticks", "events": ticks, "trace": trace}, separators=(",", ":")).encode()


#: The shortest message json_message() makes: no event, an empty trace id.
MIN_JSON_SIZE = len(_json_text([], ""))


def json_message(size: int) -> bytes:
    """A JSON text of exactly ``size`` bytes, as a live feed would push: a batch of ticker events, each with
    an id, and a trace id that fills it up. Repeated keys and close numbers compress like real JSON; the
    hex ids do not, so the message is not unrealistically compressible."""
    if size < MIN_JSON_SIZE:
        raise ValueError(f"a JSON message needs at least {MIN_JSON_SIZE} bytes")
    ticks: list[dict[str, Any]] = []
    while len(_json_text([*ticks, _tick(len(ticks))], "")) <= size:
        ticks.append(_tick(len(ticks)))
    return _json_text(ticks, _hex_id(-1, size - len(_json_text(ticks, ""))))


def deflate_negotiated(head: bytes) -> bool:
    """Whether a 101's head accepts permessage-deflate (in any of its Sec-WebSocket-Extensions lines)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() != b"sec-websocket-extensions":
            continue
        for extension in value.split(b","):
            if extension.split(b";")[0].strip().lower() == b"permessage-deflate":
                return True
    return False


class _EchoClient(asyncio.Protocol):
    """One connection: handshake, then keep ``depth`` messages in flight, counting echoes (compressed or
    not: a frame is counted, never inflated)."""

    def __init__(
        self, port: int, frame: bytes, depth: int, stats: dict[str, int], ready: asyncio.Future,
        deflate: bool = False,
    ) -> None:  # fmt: skip
        self.port = port
        self.deflate = deflate
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
        self.transport.write(_handshake(self.port, self.deflate))

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
            if self.deflate and not deflate_negotiated(buffer[:end]):
                # Compressed frames to a server that did not accept them would be a protocol error.
                if not self.ready.done():
                    self.ready.set_exception(RuntimeError("the server did not accept permessage-deflate"))
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
    port: int, count: int, frame: bytes, depth: int, stats: dict[str, int], deflate: bool = False
) -> list[_EchoClient]:
    loop = asyncio.get_running_loop()
    clients = []
    for start in range(0, count, 50):  # in batches: a listen backlog is finite
        batch = []
        for _ in range(start, min(start + 50, count)):
            ready = loop.create_future()
            _, client = await loop.create_connection(
                lambda ready=ready: _EchoClient(port, frame, depth, stats, ready, deflate), "127.0.0.1", port
            )
            batch.append(client)
        try:
            await asyncio.wait_for(asyncio.gather(*(c.ready for c in batch)), 30)
        except BaseException:  # no connection left open behind a failed handshake
            for client in clients + batch:
                client.ready.cancel()  # a no-op once set; else connection_lost leaves no unread error
                if client.transport is not None:
                    client.transport.abort()
            raise
        clients += batch
    return clients


def load_frame(size: int, deflate: bool) -> bytes:
    """The one frame a load client sends again and again: ``size`` bytes of text, or with ``deflate`` the
    JSON message of that size, compressed on its own (client_no_context_takeover keeps it valid each time)."""
    if deflate:
        return _masked_text_frame(deflate_payload(json_message(size)), compressed=True)
    return _masked_text_frame(b"x" * size)


async def _load(
    port: int, connections: int, depth: int, size: int, duration: float, warmup: float, deflate: bool = False
) -> dict[str, float]:
    stats = {"received": 0, "lost": 0}
    frame = load_frame(size, deflate)
    clients = await _open_connections(port, connections, frame, depth, stats, deflate)
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
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate, send a compressed JSON text")
    args = parser.parse_args(argv)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - PyPy
        runner = asyncio.run
    if args.mode == "load":
        result = runner(
            _load(args.port, args.connections, args.depth, args.size, args.duration, args.warmup, args.deflate)
        )
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


class DeflateNotNegotiated(RuntimeError):
    """The server answered a handshake that offered permessage-deflate without accepting it."""


def probe(port: int, payload: bytes = b"cyasgi-ws-probe", deflate: bool = False) -> None:
    """One handshake and one text message that must come back as sent; raises RuntimeError saying what
    came instead. With ``deflate`` the handshake offers permessage-deflate and the message goes compressed
    (the echo is inflated to check it); DeflateNotNegotiated when the server does not accept the offer."""
    try:
        _probe(port, payload, deflate)
    except socket.timeout:  # the server holds the connection without answering
        raise RuntimeError(f"no answer in {PROBE_TIMEOUT:g} s (to the handshake or the message)") from None


def _probe(port: int, payload: bytes, deflate: bool) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT) as sock:
        sock.sendall(_handshake(port, deflate))
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
        if deflate and not deflate_negotiated(head):
            raise DeflateNotNegotiated(NO_DEFLATE)
        sock.sendall(_masked_text_frame(deflate_payload(payload) if deflate else payload, compressed=deflate))
        first, second = _recv_exactly(sock, 2, buffer)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(_recv_exactly(sock, 2, buffer), "big")
        elif length == 127:
            length = int.from_bytes(_recv_exactly(sock, 8, buffer), "big")
        body = _recv_exactly(sock, length, buffer)
        if first & RSV1 and deflate:  # the server may send any message uncompressed
            body = zlib.decompressobj(wbits=-zlib.MAX_WBITS).decompress(body + DEFLATE_TAIL)
            first &= ~RSV1
        if first != FIN | TEXT or body != payload:
            raise RuntimeError(f"echo wrong: frame byte {first:#x}, payload {body[:40]!r}, sent {payload[:40]!r}")


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


def measure_throughput(server: Server, opts: argparse.Namespace, workload: str = ECHO) -> float:
    """One round of ``workload``'s echo load; DeflateNotNegotiated for a deflate round on a server that does
    not accept permessage-deflate."""
    running = _started(server)
    try:
        size = opts.size
        if workload == DEFLATE:
            size = opts.deflate_size
            probe(running.port, json_message(size), deflate=True)
        args = [
            "load", "--port", str(running.port), "--connections", str(opts.connections), "--depth", str(opts.depth),
            "--size", str(size), "--duration", str(opts.duration), "--warmup", str(opts.warmup),
            *(["--deflate"] if workload == DEFLATE else []),
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
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS),
        help=f"comma-separated, of {', '.join(WORKLOADS)}: {ECHO} sends --size bytes of text as they are, "
        f"{DEFLATE} offers permessage-deflate and sends a --deflate-size JSON text compressed (both by default)",
    )  # fmt: skip
    parser.add_argument("--size", type=int, default=32, help="payload bytes per message of the echo workload")
    parser.add_argument(
        "--deflate-size", type=int, default=DEFLATE_SIZE,
        help=f"bytes of the deflate workload's JSON text, before compression ({DEFLATE_SIZE})",
    )  # fmt: skip
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
    opts.workloads = [name.strip() for name in opts.workloads.split(",") if name.strip()]
    if not opts.workloads or any(name not in WORKLOADS for name in opts.workloads):
        parser.error(f"--workloads: one or more of {', '.join(WORKLOADS)}")
    opts.workloads = [name for name in WORKLOADS if name in opts.workloads]  # each once, in the table's order
    if not 0 < opts.size <= MAX_MESSAGE_SIZE or not MIN_JSON_SIZE <= opts.deflate_size <= MAX_MESSAGE_SIZE:
        parser.error(
            f"--size must be 1-{MAX_MESSAGE_SIZE}, --deflate-size {MIN_JSON_SIZE}-{MAX_MESSAGE_SIZE} (a JSON text)"
        )
    if opts.rounds < 1 or opts.duration <= 0:
        parser.error("--rounds must be at least 1, --duration above 0")
    return opts


def peer_bar(workload: str, medians: dict[str, float]) -> dict[str, Any]:
    """Issue 15's bar for one workload: the compiled twin's median against the best peer's of the run (for
    deflate, the peers that negotiated it: the others have no figure). ``line`` is what the bench prints."""
    title = TITLES[workload]
    condition = f"{title} msg/s >= {PEER_BAR:g}x the best peer's"
    peers = {name: rate for name, rate in medians.items() if not name.startswith("cyasgi")}
    if "cyasgi" not in medians or not peers:
        why = "cyasgi has no figure" if "cyasgi" not in medians else "no peer has a figure"
        return {"verdict": "not measured", "line": f"bar: {condition}: not measured ({why})"}
    best = max(peers, key=lambda name: peers[name])
    got = medians["cyasgi"] / peers[best]
    verdict = "met" if got >= PEER_BAR else "missed"
    line = (
        f"bar: {condition}: {verdict} ({got:.2f}x: {medians['cyasgi']:,.0f} vs {best}'s {peers[best]:,.0f} msg/s)"
    )
    return {"verdict": verdict, "ratio": got, "best_peer": best, "line": line}


def workload_heading(opts: argparse.Namespace, workload: str, cpu: str) -> str:
    load = f"{opts.connections} connections, {opts.depth} in flight each"
    timing = f"{opts.duration:g} s x {opts.rounds} round(s) (median)"
    if workload == DEFLATE:
        deflated = len(deflate_payload(json_message(opts.deflate_size)))
        message = (
            f"one {opts.deflate_size}-byte JSON text ({deflated} bytes deflated, offered with "
            f"client_no_context_takeover)"
        )
    else:
        message = f"{opts.size}-byte text messages"
    return f"{TITLES[workload]} on {cpu}: {load}, {message}, {timing}"


def render_table(
    opts: argparse.Namespace, cpu: str, rates: dict[str, dict[str, list[float]]], memory: dict[str, float],
    problems: dict[str, dict[str, str]],
) -> list[str]:  # fmt: skip
    """The tables the bench prints, one per workload run (``rates`` and ``problems`` by workload, then by
    server): one row per server asked for, a failed or missing one saying why, then the workload's bar."""
    out: list[str] = []
    for workload in opts.workloads:
        if out:
            out.append("")
        out += _workload_table(opts, workload, cpu, rates[workload], memory, problems[workload])
    return out


def _workload_table(
    opts: argparse.Namespace, workload: str, cpu: str, rates: dict[str, list[float]], memory: dict[str, float],
    problems: dict[str, str],
) -> list[str]:  # fmt: skip
    medians = {name: statistics.median(values) for name, values in rates.items() if values}
    base = medians.get(BASELINE)
    # Each round's ratio compares servers measured seconds apart: steadier on a shared machine.
    round_ratios = {
        name: statistics.median(r / u for r, u in zip(values, rates[BASELINE]))
        for name, values in rates.items()
        if values and rates.get(BASELINE)
    }
    # Idle connections negotiate nothing: their memory is a column of the plain echo's table only.
    with_memory = workload == ECHO
    header = f"{'server':12s} {'msg/s':>10s} {'vs uvicorn':>11s} {'per round':>10s}"
    out = [workload_heading(opts, workload, cpu), header + (f" {'KiB/1k idle':>12s}" if with_memory else "")]
    for name in rates:
        if name in problems:
            out.append(f"{name:12s} {problems[name]}")
            continue
        ratio = f"{medians[name] / base:.2f}x" if base else "-"
        per_round = f"{round_ratios[name]:.2f}x" if name in round_ratios else "-"
        row = f"{name:12s} {medians[name]:10.0f} {ratio:>11s} {per_round:>10s}"
        if with_memory:
            row += f" {memory[name]:12.0f}" if name in memory else f" {'-':>12s}"
        out.append(row)
    out.append(peer_bar(workload, medians)["line"])
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

    # By workload, then by server; a server that is not available has that problem in every workload.
    rates: dict[str, dict[str, list[float]]] = {w: {server.name: [] for server in servers} for w in opts.workloads}
    problems: dict[str, dict[str, str]] = {workload: {} for workload in opts.workloads}
    statuses: dict[str, dict[str, str]] = {}
    for server in servers:
        availability = server.availability(context_of(server))
        statuses[server.name] = {"label": server.label, "status": availability.status, "detail": availability.detail}
        if not availability.ok:
            for workload in opts.workloads:
                problems[workload][server.name] = (
                    f"{availability.status}: {availability.detail.splitlines()[-1:] or ''}"
                )
    for round_number in range(1, opts.rounds + 1):
        for workload in opts.workloads:
            for server in servers:  # interleaved, so drift in the machine's load spreads over every server
                if server.name in problems[workload]:
                    continue
                label = f"round {round_number}: {workload:7s} {server.name:12s}"
                try:
                    rate = measure_throughput(server, opts, workload)
                except DeflateNotNegotiated:
                    problems[workload][server.name] = NO_DEFLATE
                    print(f"{label} {NO_DEFLATE}", flush=True)
                    continue
                except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError) as exc:
                    problems[workload][server.name] = f"failed: {exc}"
                    print(f"{label} failed: {exc}", flush=True)
                    continue
                rates[workload][server.name].append(rate)
                print(f"{label} {rate:10.0f} msg/s", flush=True)
    memory = {}
    # Not for one that is missing or failed: "no permessage-deflate" says nothing about plain connections.
    failed = {name for by_server in problems.values() for name, why in by_server.items() if why != NO_DEFLATE}
    if opts.idle:
        for server in servers:
            if server.name in failed:
                continue
            try:
                memory[server.name] = measure_idle_memory(server, opts)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                print(f"idle memory: {server.name:12s} failed: {exc}", flush=True)

    cpu = environment.cpu_model()
    print()
    print("\n".join(render_table(opts, cpu, rates, memory, problems)))
    if opts.json:
        result = json_result(opts, cpu, servers, statuses, rates, memory, problems)
        Path(opts.json).write_text(json.dumps(result, indent=2))


def json_result(
    opts: argparse.Namespace, cpu: str, servers: list[Server], statuses: dict[str, dict[str, str]],
    rates: dict[str, dict[str, list[float]]], memory: dict[str, float], problems: dict[str, dict[str, str]],
) -> dict[str, Any]:  # fmt: skip
    """What --json writes: the plain echo's figures where they always were, the deflate workload's under
    ``deflate`` (with the servers that did not accept the offer), each workload's bar under ``bars``."""
    medians = {
        workload: {name: statistics.median(values) for name, values in by_server.items() if values}
        for workload, by_server in rates.items()
    }
    result: dict[str, Any] = {
        "options": vars(opts),
        "cpu_model": cpu,
        "servers": {
            server.name: {
                **statuses[server.name],
                "problem": problems.get(ECHO, {}).get(server.name, ""),
                **({"deflate_problem": problems[DEFLATE].get(server.name, "")} if DEFLATE in problems else {}),
            }
            for server in servers
        },
        "versions": {
            **(versions(PEERS_PY, [p.split("=")[0] for p in PEER_PACKAGES]) if PEERS_PY.exists() else {}),
            **versions(PROJECT_PY, ["cyasgi"]),
        },
        "rates": rates.get(ECHO, {}),
        "medians": medians.get(ECHO, {}),
        "idle_kib_per_1000": memory,
        "bars": {workload: peer_bar(workload, medians[workload]) for workload in opts.workloads},
    }
    if DEFLATE in rates:
        message = json_message(opts.deflate_size)
        result["deflate"] = {
            "message_bytes": len(message),
            "deflated_bytes": len(deflate_payload(message)),
            "offer": DEFLATE_OFFER,
            "rates": rates[DEFLATE],
            "medians": medians[DEFLATE],
            "not_negotiated": [name for name, why in problems[DEFLATE].items() if why == NO_DEFLATE],
        }
    return result

if __name__ == "__main__":
    main()
