"""What a new connection costs a server, exactly: instructions per ``Connection: close`` request, counted
by callgrind in the server process while a client process (not counted) connects, sends one GET and
reads to EOF, again and again, one connection at a time; and the same GET over one kept-alive
connection, so that the difference is what a connection's setup and teardown cost.

The server runs on uvloop in this process; the count is the difference of two runs (N and 2N
requests), so start-up, warm-up and shutdown cancel out. ``raw`` is the ceiling: the canned uvloop
protocol of perf/servers/raw_uvloop.py, which does no HTTP work at all.

    python perf/conn_callgrind.py                      # cyasgi and raw, both ways
    python perf/conn_callgrind.py --server cyasgi --twin py
    python perf/conn_callgrind.py --server cyasgi --keep /tmp/conn   # + /tmp/conn.<server>.<way>.<n>
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from perf.callgrind import instructions_per_operation  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: conn-callgrind\r\n"
CLOSE = b"Connection: close\r\n"
#: Connections before the counted ones (the same in both runs): caches, freelists, first imports.
WARMUP = 200
CALLGRIND_CONNECTIONS = 1000

CLIENT = """
import socket, sys
port, count, request, close = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode("latin-1"), sys.argv[4] == "close"
sock = None
for _ in range(count):
    if sock is None:
        sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(request)
    data = b""
    while not data.endswith(b"Hello, world!"):
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    if close:
        assert sock.recv(65536) == b""
        sock.close()
        sock = None
"""


def start_client(port: int, count: int, close: bool) -> subprocess.Popen[bytes]:
    request = REQUEST + (CLOSE if close else b"") + b"\r\n"
    argv = [sys.executable, "-c", CLIENT, str(port), str(count), request.decode("latin-1")]
    return subprocess.Popen([*argv, "close" if close else "keep-alive"])


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


async def wait_for(client: subprocess.Popen[bytes]) -> None:
    code = await asyncio.get_running_loop().run_in_executor(None, client.wait)
    assert code == 0, f"the client failed ({code})"


async def serve_raw(count: int, close: bool) -> None:
    from perf.servers.raw_uvloop import CannedProtocol

    sock = listening_socket()
    server = await asyncio.get_running_loop().create_server(CannedProtocol, sock=sock)
    await wait_for(start_client(sock.getsockname()[1], count, close))
    server.close()


async def serve_cyasgi(count: int, close: bool, twin: str) -> None:
    import cyasgi
    from perf.apps.bench_app import app

    sock = listening_socket()
    http = "cyasgi._speedups.http:HttpProtocol" if twin == "c" else "cyasgi.protocols.http.protocol:HttpProtocol"
    config = cyasgi.Config(app, log_config=None, access_log=False, lifespan="off", http=http)
    server = cyasgi.Server(config)
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        assert not serving.done(), serving
        await asyncio.sleep(0.01)
    await wait_for(start_client(sock.getsockname()[1], count, close))
    server.should_exit = True
    await serving


def script_argv(server: str, twin: str, close: bool, count: int) -> list[str]:
    argv = [sys.executable, os.path.abspath(__file__), "--server", server, "--twin", twin, "--run", str(count)]
    return argv + ([] if close else ["--keep-alive"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", choices=["cyasgi", "raw", "both"], default="both")
    parser.add_argument("--twin", choices=["c", "py"], default="c")
    parser.add_argument("--connections", type=int, default=CALLGRIND_CONNECTIONS)
    parser.add_argument("--keep", metavar="PREFIX", help="keep the callgrind.out files, for callgrind_annotate")
    parser.add_argument("--run", type=int, help=argparse.SUPPRESS)  # one measured run (under callgrind)
    parser.add_argument("--keep-alive", action="store_true", help=argparse.SUPPRESS)  # with --run
    args = parser.parse_args()
    import uvloop

    if args.run is not None:
        count = WARMUP + args.run
        close = not args.keep_alive
        serve = serve_raw(count, close) if args.server == "raw" else serve_cyasgi(count, close, args.twin)
        uvloop.run(serve)
        return
    print(f"{'server':22} {'close':>10} {'keep-alive':>10} {'connection':>10}  (instructions per request)")
    for server in ["cyasgi", "raw"] if args.server == "both" else [args.server]:
        close, kept = (
            instructions_per_operation(
                lambda n: script_argv(server, args.twin, way, n),
                args.connections,
                None if args.keep is None else f"{args.keep}.{server}.{'close' if way else 'keep-alive'}",
            )
            for way in (True, False)
        )
        label = f"cyasgi ({args.twin})" if server == "cyasgi" else "raw uvloop (ceiling)"
        print(f"{label:22} {close:>10,.0f} {kept:>10,.0f} {close - kept:>10,.0f}", flush=True)


if __name__ == "__main__":
    main()
