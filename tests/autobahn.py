"""``make test-autobahn``: the Autobahn fuzzing-client cases against a real cyasgi server, per ``--ws``.

For each implementation a server process runs ``app`` (below: an echo app) on a socket this script
bound, and kosoku (a Rust runner of the Autobahn TestSuite's case files) drives the cases against
it. A summary line per implementation counts the verdicts; any FAILED case (a message exchange or a
closing handshake that breaks the RFC) makes the exit status non-zero.

    python tests/autobahn.py                              # cases 1-7 and 10, every --ws
    python tests/autobahn.py --ws wsproto --case '7.*'    # a few cases, one implementation
    python tests/autobahn.py --verbose                    # every case that is not OK, with why

kosoku needs Python >= 3.10 (requirements/test.txt installs it only there). The deflate cases (12,
13) and the performance cases (9) are not in the default selection.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: Every implementation ``--ws`` names (``auto`` is one of them).
IMPLEMENTATIONS = ("websockets", "websockets-sansio", "wsproto")
#: Autobahn sections run by default: framing, pings, reserved bits, opcodes, fragmentation, UTF-8,
#: closing, auto-fragmentation.
DEFAULT_CASES = ("1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*")
#: Cases kosoku runs at once against one server.
CONCURRENCY = 4
#: Seconds for a server to answer its first request, and for one implementation's whole run.
START_TIMEOUT = 20.0
RUN_TIMEOUT = 300.0
#: The summary's columns, in Autobahn's words (ERROR: kosoku could not reach a verdict).
VERDICTS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "ERROR")
#: Closing-handshake verdicts that are a pass.
CLOSE_PASSES = ("OK", "INFORMATIONAL")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echo every WebSocket message; answer plain HTTP (the readiness probe) with 200."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


def start_server(ws: str, extra: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """A cyasgi process serving ``app`` with ``--ws ws`` on a socket bound here (no port race)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    command = [
        sys.executable, "-m", "cyasgi", "tests.autobahn:app", "--fd", str(sock.fileno()), "--ws", ws,
        "--lifespan", "off", "--log-level", "warning", "--no-access-log", *extra,
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(command, cwd=ROOT, env=env, pass_fds=(sock.fileno(),))
    sock.close()
    try:
        wait_ready(port, process)
    except BaseException:
        stop_server(process)
        raise
    return process, port


def wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    """Until the server answers a plain GET (bounded)."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode} before answering")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=START_TIMEOUT) as probe:
                probe.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if probe.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not answer in time")
        time.sleep(0.05)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(START_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def verdict(result: Any) -> str:
    """One word per case: the exchange's verdict, or FAILED when the closing handshake broke the RFC."""
    behavior = result.behavior.value
    if behavior in ("FAILED", "ERROR"):
        return behavior
    if result.behavior_close.value not in CLOSE_PASSES:
        return "FAILED"
    return behavior


async def run_cases(port: int, cases: list[str], exclude: list[str], concurrency: int) -> list[Any]:
    from kosoku import FailureError, run_fuzzingclient

    try:
        return await asyncio.wait_for(
            run_fuzzingclient(f"ws://127.0.0.1:{port}", cases, exclude or None, concurrency=concurrency),
            RUN_TIMEOUT,
        )
    except FailureError as failure:  # the results come with it
        return list(failure.results)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ws", action="append", choices=(*IMPLEMENTATIONS, "auto"), help="repeatable")
    parser.add_argument("--case", action="append", help="case id or glob, repeatable (default: 1-7, 10)")
    parser.add_argument("--exclude", action="append", default=[], help="case id or glob, repeatable")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--verbose", action="store_true", help="print every case that is not OK")
    parser.add_argument("server_args", nargs="*", help="after --: more cyasgi options")
    args = parser.parse_args()
    try:
        import kosoku  # noqa: F401
    except ImportError:
        print("kosoku is not installed (it needs Python >= 3.10): pip install kosoku", file=sys.stderr)
        return 2
    cases = args.case or list(DEFAULT_CASES)
    failed = False
    for ws in args.ws or IMPLEMENTATIONS:
        started = time.monotonic()
        process, port = start_server(ws, args.server_args)
        try:
            results = asyncio.run(run_cases(port, cases, args.exclude, args.concurrency))
        finally:
            stop_server(process)
        elapsed = time.monotonic() - started
        counts = Counter(verdict(result) for result in results)
        summary = "  ".join(f"{name} {counts[name]}" for name in VERDICTS if counts[name] or name != "ERROR")
        print(f"--ws {ws:<18} {len(results)} cases in {elapsed:.1f} s: {summary}", flush=True)
        for result in results:
            word = verdict(result)
            if word in ("FAILED", "ERROR") or (args.verbose and word != "OK"):
                print(
                    f"    {result.case_id} {word}: {result.behavior.value} / close {result.behavior_close.value}"
                    f" (server sent {result.remote_close_code}); {result.result} {result.result_close}"
                )
        if not results or counts["FAILED"] or counts["ERROR"]:
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
