"""What the benchmark runs: a registry of servers and of workloads.

To add one, build a :class:`Server` or a :class:`Workload` and pass it to :func:`register_server` or
:func:`register_workload` (here, or in a script of your own that then calls ``perf.bench.main()``).
A workload is a URL path on one of the apps in ``perf/apps/``, the protocol it is loaded over (HTTP/1.1
with wrk and an optional lua script from ``perf/lua/`` with its arguments, or h2c with h2load and its
streams per connection and request body), and a probe: one request whose answer must pass a check before
the server is loaded, so a server that answers wrongly is reported, not timed. A server says which
protocols it serves; a workload runs only on the servers that serve its protocol, the others are skipped
with the reason said in the log and the report.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

PERF = Path(__file__).resolve().parent
APPS = PERF / "apps"
LUA = PERF / "lua"

#: Ratios in the report are to these two rows of the same run (``--baseline`` picks another first one).
BASELINE = "uvicorn"
CEILING = "raw-uvloop"

#: The interpreters a server can run on; each gets a venv of its own (perf/environment.py).
CPYTHON = "cpython"
PYPY = "pypy"

#: The protocols a workload is loaded over: HTTP/1.1 by wrk, HTTP/2 over cleartext TCP with prior
#: knowledge (the client sends the HTTP/2 preface at once, no Upgrade) by h2load.
HTTP1 = "http/1.1"
H2C = "h2c"
PROTOCOL_NAMES = {HTTP1: "HTTP/1.1", H2C: "HTTP/2 (h2c)"}
#: The reference peers of the HTTP/2 rows: their ratios are given beside every h2c result.
H2_REFERENCES = ("granian-h2", "hypercorn-h2")


@dataclass(frozen=True)
class Context:
    """Where the benchmark's venv is; every command is built from it."""

    bin_dir: Path
    host: str = "127.0.0.1"

    @property
    def python(self) -> str:
        return str(self.bin_dir / "python")

    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)


@dataclass(frozen=True)
class Probe:
    """One request and a check of its answer's body (the status must be 200)."""

    method: str = "GET"
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    check: Callable[[bytes], bool] = lambda body: True
    expect: str = "any body"  # what ``check`` wants, for the error message


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    app: str  # "module:attribute" in perf/apps
    path: str
    script: str | None = None  # a file in perf/lua
    script_args: Sequence[str] = ()
    probe: Probe = field(default_factory=Probe)
    #: Whether wrk's latency percentiles mean anything here (with pipelining wrk records one sample per
    #: batch and prints zeros for the upper percentiles, so they are left out).
    latency: bool = True
    #: HTTP1 (wrk) or H2C (h2load).
    protocol: str = HTTP1
    #: h2c only: concurrent streams per connection (``h2load -m``) and the body each request posts
    #: (``h2load -d``; empty: a GET).
    streams: int = 1
    upload: bytes = b""

    @property
    def script_path(self) -> Path | None:
        return LUA / self.script if self.script else None

    @property
    def tool(self) -> str:
        return "h2load" if self.protocol == H2C else "wrk"


@dataclass(frozen=True)
class Availability:
    ok: bool
    status: str  # "ok", "not built", "not installed", ...
    detail: str = ""


@dataclass(frozen=True)
class Server:
    name: str
    label: str
    #: argv to serve ``app`` ("module:attribute", importable from perf/apps) on ``port``.
    command: Callable[[Context, str, int], list[str]]
    env: Mapping[str, str] = field(default_factory=dict)
    unset_env: Sequence[str] = ()
    #: Names of the workloads this server can answer; None for all.
    workloads: frozenset[str] | None = None
    #: Asked once per run, in the venv: may this server run, and what exactly runs (e.g. which twin)?
    check: Callable[[Context, Server], Availability] | None = None
    #: CPYTHON or PYPY: which venv (and so which interpreter) runs it.
    interpreter: str = CPYTHON
    #: The protocols ``command`` serves (HTTP1, H2C).
    protocols: frozenset[str] = frozenset({HTTP1})
    #: Whether ``command`` serves ASGI WebSockets as it is: such a server gets the rows of perf/ws_bench.py.
    websocket: bool = False
    #: Whether it runs when no --servers are named (False: a variant for a comparison of its own).
    default_run: bool = True

    def serves(self, workload: Workload) -> bool:
        return self.skip_reason(workload) is None

    def skip_reason(self, workload: Workload) -> str | None:
        """Why this server does not run ``workload`` (None: it does)."""
        if workload.protocol not in self.protocols:
            served = " and ".join(PROTOCOL_NAMES.get(p, p) for p in sorted(self.protocols))
            return f"serves {served} only"
        if self.workloads is not None and workload.name not in self.workloads:
            return "not registered for this workload"
        return None

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        env = {key: value for key, value in base.items() if key not in self.unset_env}
        env.update(self.env)
        env["PYTHONPATH"] = str(APPS)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def availability(self, ctx: Context) -> Availability:
        return self.check(ctx, self) if self.check else Availability(True, "ok")


SERVERS: dict[str, Server] = {}
WORKLOADS: dict[str, Workload] = {}

#: What the docs' command lines show for the parts that vary: the venv's tools go by their bare names.
DOC_BIN = Path("/venv/bin")
DOC_APP = "bench_app:app"
DOC_PORT = 8000


def register_server(server: Server) -> Server:
    SERVERS[server.name] = server
    return server


def register_workload(workload: Workload) -> Workload:
    WORKLOADS[workload.name] = workload
    return workload


def command_line(server: Server, app: str = DOC_APP, port: int = DOC_PORT) -> str:
    """``server``'s command as a shell line for the docs: exactly the argv the bench runs, with the venv's
    tools by their names, this checkout's files relative to it and the environment it changes first."""
    ctx = Context(DOC_BIN)
    words = []
    for word in server.command(ctx, app, port):
        if word == ctx.python:
            word = "python"
        elif word.startswith(f"{DOC_BIN}/"):
            word = word[len(f"{DOC_BIN}/"):]
        elif word.startswith(f"{PERF.parent}/"):
            word = word[len(f"{PERF.parent}/"):]
        words.append(word)
    prefix = [f"-u {name}" for name in server.unset_env] + [f"{k}={v}" for k, v in server.env.items()]
    line = shlex.join(words)
    return f"env {' '.join(prefix)} {line}" if prefix else line


# checks run in the venv --------------------------------------------------------------------------


def _run(ctx: Context, server: Server, argv: list[str]) -> tuple[int, str]:
    try:
        completed = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=60,
            env=server.environment(os.environ),
            cwd=APPS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, str(exc)
    return completed.returncode, (completed.stdout + completed.stderr).strip()


def cyasgi_twin(expected: str) -> Callable[[Context, Server], Availability]:
    """Ask the installed ``cyasgi --version`` which twin loads under this server's environment."""

    def check(ctx: Context, server: Server) -> Availability:
        code, output = _run(ctx, server, [ctx.tool("cyasgi"), "--version"])
        if code != 0:
            return Availability(False, "not installed", output)
        if f"{expected} twin" in output:
            return Availability(True, "ok", output)
        status = "not built" if expected == "compiled" else f"not {expected}"
        return Availability(False, status, output)

    return check


def cyasgi_http2(ctx: Context, server: Server) -> Availability:
    """The compiled twin, and a cyasgi that takes ``--http2`` (one that refuses it says so as a usage
    error before it imports the app: a module that does not exist tells the two apart without serving)."""
    twin = cyasgi_twin("compiled")(ctx, server)
    if not twin.ok:
        return twin
    code, output = _run(ctx, server, [ctx.tool("cyasgi"), "perf_no_such_module:app", "--http2", "--port", "0"])
    if code == 2 or "not supported" in output.lower():
        lines = [line for line in output.splitlines() if line.strip()]
        return Availability(False, "no --http2", lines[-1] if lines else f"exit code {code}")
    return twin


def importable(*modules: str) -> Callable[[Context, Server], Availability]:
    def check(ctx: Context, server: Server) -> Availability:
        script = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
        code, output = _run(ctx, server, [ctx.python, "-c", script])
        if code != 0:
            return Availability(False, "not installed", output.splitlines()[-1] if output else "")
        return Availability(True, "ok", ", ".join(modules))

    return check


# the servers ------------------------------------------------------------------------------------


def _uvicorn_style(tool: str, *options: str) -> Callable[[Context, str, int], list[str]]:
    def command(ctx: Context, app: str, port: int) -> list[str]:
        return [ctx.tool(tool), app, "--host", ctx.host, "--port", str(port), "--no-access-log", "--log-level",
                "warning", *options]  # fmt: skip

    return command


def _granian(ctx: Context, app: str, port: int) -> list[str]:
    return [
        ctx.tool("granian"), "--interface", "asgi", "--host", ctx.host, "--port", str(port),
        "--workers", "1", "--runtime-mode", "st", "--runtime-threads", "1", "--loop", "uvloop",
        "--http", "1", "--no-access-log", "--log-level", "warning", app,
    ]  # fmt: skip


def _granian_h2(ctx: Context, app: str, port: int) -> list[str]:
    # Its fastest single-worker HTTP/2 setup: one runtime thread, one blocking thread of either kind.
    return [
        ctx.tool("granian"), "--interface", "asgi", "--host", ctx.host, "--port", str(port),
        "--workers", "1", "--runtime-mode", "st", "--runtime-threads", "1", "--runtime-blocking-threads", "1",
        "--blocking-threads", "1", "--loop", "uvloop", "--http", "2", "--no-access-log", "--log-level", "warning",
        app,
    ]  # fmt: skip


def _hypercorn_with(worker_class: str) -> Callable[[Context, str, int], list[str]]:
    def command(ctx: Context, app: str, port: int) -> list[str]:
        # No --access-logfile: hypercorn logs no access lines without one.
        return [ctx.tool("hypercorn"), app, "--bind", f"{ctx.host}:{port}", "--worker-class", worker_class,
                "--workers", "1", "--log-level", "warning"]  # fmt: skip

    return command


_hypercorn = _hypercorn_with("uvloop")
_hypercorn_asyncio = _hypercorn_with("asyncio")


def _socketify(ctx: Context, app: str, port: int) -> list[str]:
    # Its documented CLI with the ASGI interface named (not sniffed) and one worker, served in the one
    # process. The rest stays at the CLI's defaults, its preallocated task factory included; the listen
    # line, its only log, is turned off.
    return [ctx.python, "-m", "socketify", app, "--interface", "asgi", "--workers", "1", "--host", ctx.host,
            "--port", str(port), "--disable-listen-log", "true"]  # fmt: skip


def _raw_uvloop(ctx: Context, app: str, port: int) -> list[str]:
    return [ctx.python, str(PERF / "servers" / "raw_uvloop.py"), "--host", ctx.host, "--port", str(port)]


NO_EXTENSIONS = "CYASGI_NO_EXTENSIONS"

register_server(Server(
    "cyasgi", "cyasgi (compiled twin)", _uvicorn_style("cyasgi", "--loop", "uvloop"),
    unset_env=(NO_EXTENSIONS,), check=cyasgi_twin("compiled"), websocket=True,
))  # fmt: skip
# The same with Prometheus metrics counted (docs/metrics.md): what counting costs, against "cyasgi" in the same
# run. Not a default row: `--servers cyasgi,cyasgi-metrics`.
register_server(Server(
    "cyasgi-metrics", "cyasgi (compiled twin, --metrics-bind)",
    _uvicorn_style("cyasgi", "--loop", "uvloop", "--metrics-bind", "127.0.0.1:0"),
    unset_env=(NO_EXTENSIONS,), check=cyasgi_twin("compiled"), default_run=False,
))  # fmt: skip
register_server(Server(
    "cyasgi-pure", "cyasgi (pure twin)", _uvicorn_style("cyasgi", "--loop", "uvloop"),
    env={NO_EXTENSIONS: "1"}, check=cyasgi_twin("pure"), websocket=True,
))  # fmt: skip
register_server(Server(
    BASELINE, "uvicorn[standard] (httptools, uvloop)",
    _uvicorn_style("uvicorn", "--loop", "uvloop", "--http", "httptools"),
    check=importable("uvicorn", "httptools", "uvloop"), websocket=True,
))  # fmt: skip
register_server(Server(
    "uvicorn-h11", "uvicorn (h11, uvloop)", _uvicorn_style("uvicorn", "--loop", "uvloop", "--http", "h11"),
    check=importable("uvicorn", "h11", "uvloop"), websocket=True,
))  # fmt: skip
register_server(Server(
    "granian", "granian (ASGI, 1 worker, st runtime)", _granian, check=importable("granian", "uvloop"),
    websocket=True,
))  # fmt: skip
register_server(Server(
    "hypercorn", "hypercorn (h11, uvloop)", _hypercorn, check=importable("hypercorn", "uvloop"),
    websocket=True,
))  # fmt: skip
# uWebSockets (C++) under a Python ASGI layer; every HTTP/1.1 workload is registered, and one whose probe it
# fails is reported as failed in its row.
register_server(Server(
    "socketify", "socketify (ASGI, 1 worker)", _socketify, check=importable("socketify"), websocket=True,
))  # fmt: skip
# On PyPy (asyncio: uvloop does not run there), beside the rows above in the same run. Not the
# FastAPI workload: pydantic-core has no PyPy 3.9 wheel and its sdist needs Rust crates from the
# network, so the PyPy venv has no FastAPI.
_PYPY_WORKLOADS = frozenset(
    {"hello", "headers", "pipelined", "new-connection", "echo-1k", "echo-64k", "stream-1m", "file-64k", "file-4m"}
)
register_server(Server(
    "cyasgi-pypy", "cyasgi on PyPy (pure twin, asyncio)", _uvicorn_style("cyasgi", "--loop", "auto"),
    check=cyasgi_twin("pure"), interpreter=PYPY, workloads=_PYPY_WORKLOADS,
))  # fmt: skip
register_server(Server(
    "uvicorn-pypy", "uvicorn on PyPy (httptools, asyncio)",
    _uvicorn_style("uvicorn", "--loop", "asyncio", "--http", "httptools"), check=importable("uvicorn", "httptools"),
    interpreter=PYPY, workloads=_PYPY_WORKLOADS,
))  # fmt: skip
register_server(Server(
    "uvicorn-h11-pypy", "uvicorn on PyPy (h11, asyncio)",
    _uvicorn_style("uvicorn", "--loop", "asyncio", "--http", "h11"),
    check=importable("uvicorn", "h11"), interpreter=PYPY, workloads=_PYPY_WORKLOADS,
))  # fmt: skip
register_server(Server(
    "hypercorn-pypy", "hypercorn on PyPy (h11, asyncio)", _hypercorn_asyncio, check=importable("hypercorn"),
    interpreter=PYPY, workloads=_PYPY_WORKLOADS,
))  # fmt: skip
register_server(Server(
    "socketify-pypy", "socketify on PyPy (ASGI, 1 worker)", _socketify, check=importable("socketify"),
    interpreter=PYPY, workloads=_PYPY_WORKLOADS,
))  # fmt: skip
# HTTP/2 over cleartext TCP with prior knowledge: the rows of the h2c workloads, the ratios of which are to
# granian and hypercorn (H2_REFERENCES). hypercorn serves h2c on its one port as it is; uvicorn only with
# zttp, which perf/requirements.txt installs where it can.
_H2 = frozenset({H2C})
register_server(Server(
    "cyasgi-h2", "cyasgi --http2 (compiled twin)", _uvicorn_style("cyasgi", "--loop", "uvloop", "--http2"),
    unset_env=(NO_EXTENSIONS,), check=cyasgi_http2, protocols=_H2,
))  # fmt: skip
register_server(Server(
    "granian-h2", "granian --http 2 (ASGI, 1 worker, st runtime, 1 thread)", _granian_h2,
    check=importable("granian", "uvloop"), protocols=_H2,
))  # fmt: skip
register_server(Server(
    "hypercorn-h2", "hypercorn h2c (h2, uvloop)", _hypercorn, check=importable("hypercorn", "h2", "uvloop"),
    protocols=_H2,
))  # fmt: skip
register_server(Server(
    "uvicorn-h2", "uvicorn --http zttp --http2 (uvloop)",
    _uvicorn_style("uvicorn", "--loop", "uvloop", "--http", "zttp", "--http2"),
    check=importable("uvicorn", "zttp", "uvloop"), protocols=_H2,
))  # fmt: skip
register_server(Server(
    CEILING, "raw uvloop protocol (ceiling)", _raw_uvloop,
    workloads=frozenset({"hello", "headers", "pipelined", "new-connection"}), check=importable("uvloop"),
))  # fmt: skip


# the workloads ----------------------------------------------------------------------------------

HELLO = b"Hello, world!"
KIB = 1024
STREAM_SIZE = 1024 * KIB


def _is_hello(body: bytes) -> bool:
    return body == HELLO


def _echo_probe(size: int) -> Probe:
    payload = b"a" * size
    return Probe(
        "POST", (("Content-Type", "application/octet-stream"),), payload,
        check=lambda body: body == payload, expect=f"the {size}-byte body echoed",
    )  # fmt: skip


def _is_listing(body: bytes) -> bool:
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return data.get("message") == "Hello, world!" and len(data.get("items", ())) == 3


HELLO_PROBE = Probe(check=_is_hello, expect="Hello, world!")

register_workload(Workload("hello", "plain text, keep-alive", "bench_app:app", "/", probe=HELLO_PROBE))
register_workload(Workload(
    "headers", "hello with 12 browser-like request headers", "bench_app:app", "/", "headers.lua",
    probe=HELLO_PROBE,
))  # fmt: skip
register_workload(Workload(
    "pipelined", "hello, 16 requests pipelined per connection", "bench_app:app", "/", "pipeline.lua",
    probe=HELLO_PROBE, latency=False,
))  # fmt: skip
register_workload(Workload(
    "new-connection", "hello with Connection: close (a new connection per request)", "bench_app:app", "/",
    "close.lua", probe=Probe(headers=(("Connection", "close"),), check=_is_hello, expect="Hello, world!"),
))  # fmt: skip
register_workload(Workload(
    "echo-1k", "1 KiB POST echoed back", "bench_app:app", "/echo", "post.lua", (str(KIB),), probe=_echo_probe(KIB),
))  # fmt: skip
register_workload(Workload(
    "echo-64k", "64 KiB POST echoed back", "bench_app:app", "/echo", "post.lua", (str(64 * KIB),),
    probe=_echo_probe(64 * KIB),
))  # fmt: skip
register_workload(Workload(
    "stream-1m", "1 MiB response streamed in 64 KiB chunks", "bench_app:app", "/stream",
    probe=Probe(check=lambda body: len(body) == STREAM_SIZE, expect=f"{STREAM_SIZE} bytes"),
))  # fmt: skip
def _file_probe(size: int) -> Probe:
    content = bytes(range(256)) * (size // 256)  # perf/apps/bench_app.py: file_content()
    return Probe(check=lambda body: body == content, expect=f"the {size}-byte file")


register_workload(Workload(
    "file-64k", "64 KiB file (http.response.pathsend where announced)", "bench_app:app", "/file-64k",
    probe=_file_probe(64 * KIB),
))  # fmt: skip
register_workload(Workload(
    "file-4m", "4 MiB file (http.response.pathsend where announced)", "bench_app:app", "/file-4m",
    probe=_file_probe(4 * 1024 * KIB),
))  # fmt: skip
register_workload(Workload(
    "starlette-file-64k", "64 KiB file by Starlette's FileResponse (pathsend where announced, else thread reads)",
    "starlette_files_app:app", "/file-64k", probe=_file_probe(64 * KIB),
))  # fmt: skip
register_workload(Workload(
    "starlette-file-4m", "4 MiB file by Starlette's FileResponse (pathsend where announced, else thread reads)",
    "starlette_files_app:app", "/file-4m", probe=_file_probe(4 * 1024 * KIB),
))  # fmt: skip
register_workload(Workload(
    "fastapi-json", "FastAPI JSON endpoint (pydantic response model)", "fastapi_app:app", "/json",
    probe=Probe(check=_is_listing, expect="the JSON listing"),
))  # fmt: skip


# HTTP/2: h2load (-c connections, -m streams each) over h2c on the same app --------------------------

register_workload(Workload(
    "h2-hello", "hello over h2c, 10 concurrent streams per connection", "bench_app:app", "/", probe=HELLO_PROBE,
    protocol=H2C, streams=10,
))  # fmt: skip
register_workload(Workload(
    "h2-hello-m1", "hello over h2c, 1 stream per connection", "bench_app:app", "/", probe=HELLO_PROBE,
    protocol=H2C, streams=1,
))  # fmt: skip
register_workload(Workload(
    "h2-echo-1k", "1 KiB POST echoed back over h2c, 10 concurrent streams per connection", "bench_app:app",
    "/echo", probe=_echo_probe(KIB), protocol=H2C, streams=10, upload=b"a" * KIB,
))  # fmt: skip
