"""The benchmark harness in perf/, without load: its parsers on canned input, its registry, its report,
and the workload apps (and the raw ceiling) answering what the harness checks before it times a server."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cyasgi._compat import IS_PYPY
from perf import environment, measure, microbench, perf_check, registry, report, ws_bench
from perf.apps import bench_app
from perf.registry import (
    BASELINE,
    CEILING,
    CPYTHON,
    H2_REFERENCES,
    H2C,
    HTTP1,
    LUA,
    PERF,
    PYPY,
    SERVERS,
    WORKLOADS,
    Context,
)
from perf.servers import raw_uvloop
from tests.utils import WAIT, make_config, run_server

WRK_OUTPUT = """\
Running 5s test @ http://127.0.0.1:8000/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.71ms  324.05us   1.97s    91.25%
    Req/Sec    23.67k     1.20k   25.28k    78.00%
  Latency Distribution
     50%  812.00us
     75%    2.75ms
     90%    2.93ms
     99%    1.20s
  117749 requests in 5.00s, 16.73MB read
  Socket errors: connect 1, read 12, write 3, timeout 4
  Non-2xx or 3xx responses: 5
Requests/sec:  23548.12
Transfer/sec:      3.35MB
"""

WRK_PIPELINED = """\
Running 2s test @ http://127.0.0.1:8911/
  1 threads and 64 connections
  Latency Distribution
     50%  168.00us
     75%  303.00us
     90%    0.00us
     99%    0.00us
  5038352 requests in 2.00s, 374.79MB read
Requests/sec: 2518532.51
"""


# wrk output -------------------------------------------------------------------------------------


def test_parse_wrk_reads_throughput_latency_and_errors() -> None:
    result = measure.parse_wrk(WRK_OUTPUT)
    assert result.requests == 117749
    assert result.seconds == pytest.approx(5.0)
    assert result.rps == pytest.approx(23548.12)
    assert result.p50_ms == pytest.approx(0.812)
    assert result.p99_ms == pytest.approx(1200.0)
    assert result.socket_errors == {"connect": 1, "read": 12, "write": 3, "timeout": 4}
    assert result.non_2xx_3xx == 5
    assert result.errors == 25
    assert result.as_dict()["errors"] == 25


def test_parse_wrk_without_errors_or_with_empty_percentiles() -> None:
    result = measure.parse_wrk(WRK_PIPELINED)
    assert result.requests == 5038352
    assert result.p50_ms == pytest.approx(0.168)
    assert result.p99_ms is None  # wrk's 0.00us means "no sample", not "instant"
    assert result.errors == 0


def test_parse_wrk_refuses_what_is_not_a_wrk_summary() -> None:
    with pytest.raises(ValueError):
        measure.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_wrk_command_is_pinned_bounded_and_passes_script_arguments(tmp_path: Path) -> None:
    argv = measure.wrk_command(
        "http://127.0.0.1:1/echo",
        duration=5,
        connections=64,
        script=tmp_path / "post.lua",
        script_args=["1024"],
        cpu=0,
    )
    assert argv[:3] == ["taskset", "-c", "0"]
    assert "-t1" in argv and "-c64" in argv and "-d5s" in argv and "--latency" in argv
    assert argv[-3:] == ["http://127.0.0.1:1/echo", "--", "1024"]
    assert measure.wrk_command("http://x/", duration=1, connections=1, cpu=None)[0] == "wrk"


# h2load output ----------------------------------------------------------------------------------

H2LOAD_OUTPUT = """\
starting benchmark...
spawning thread #0: 64 total client(s). Timing-based test with 1s of warm-up time and 3s of main duration \
for measurements.
Application protocol: h2c

finished in 4.00s, 76361.67 req/s, 2.91MB/s
requests: 229085 total, 229085 started, 229085 done, 229085 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 229085 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 8.74MB (9167816) total, 2.64MB (2768547) headers (space savings 90.40%), 3.80MB (3987087) data
                     min         max         mean         sd        +/- sd
time for request:     2.15ms     22.48ms      8.37ms      1.92ms    88.57%
time for connect:        0us         0us         0us         0us     0.00%
req/s           :    1189.46     1196.56     1192.91        1.55    73.44%
"""

H2LOAD_FAILED = (
    H2LOAD_OUTPUT.replace(
        "229085 succeeded, 0 failed, 0 errored, 0 timeout", "229000 succeeded, 80 failed, 5 errored, 0 timeout"
    )
    .replace("229085 2xx, 0 3xx, 0 4xx, 0 5xx", "229000 2xx, 0 3xx, 0 4xx, 85 5xx")
)  # fmt: skip


def test_parse_h2load_reads_the_measured_window() -> None:
    result = measure.parse_h2load(H2LOAD_OUTPUT)
    assert (result.requests, result.total, result.rps) == (229085, 229085, pytest.approx(76361.67))
    assert result.seconds == pytest.approx(3.0, rel=1e-3)  # "finished in" counts the 1 s warm-up too
    assert result.mean_ms == pytest.approx(8.37)
    assert result.errors == 0 and result.problem() is None
    assert result.as_dict()["errors"] == 0 and result.as_dict()["status"]["2xx"] == 229085


def test_parse_h2load_says_why_a_run_is_rejected() -> None:
    result = measure.parse_h2load(H2LOAD_FAILED)
    assert (result.failed, result.errored, result.status["5xx"]) == (80, 5, 85)
    assert result.errors == 170
    problem = result.problem()
    assert problem is not None and "80 failed, 5 errored, 0 timeout" in problem and "85 5xx" in problem
    assert measure.parse_h2load(H2LOAD_OUTPUT.replace(" 229085 succeeded", " 0 succeeded")).problem() == (
        "h2load completed no request"
    )
    with pytest.raises(ValueError):
        measure.parse_h2load("connect to 127.0.0.1:1 failed: Connection refused\n")


def test_h2load_command_is_pinned_bounded_and_posts_its_body(tmp_path: Path) -> None:
    body = tmp_path / "body.bin"
    argv = measure.h2load_command(
        "http://127.0.0.1:1/echo", duration=5, warmup=1, connections=64, streams=10, body=body, cpu=0
    )
    assert argv[:3] == ["taskset", "-c", "0"] and argv[3] == "h2load"
    assert argv[4:] == ["-t1", "-c64", "-m10", "-D", "5s", "--warm-up-time", "1s", "-d", str(body),
                        "http://127.0.0.1:1/echo"]  # fmt: skip
    bare = measure.h2load_command("http://x/", duration=2, warmup=0, connections=1, streams=1)
    assert bare == ["h2load", "-t1", "-c1", "-m1", "-D", "2s", "http://x/"]


def test_run_h2load_samples_the_server_after_the_warm_up_and_rejects_errors() -> None:
    samples: list[float] = []

    def server_cpu() -> float:
        samples.append(time.monotonic())
        return 10.0 * len(samples)

    started = time.monotonic()
    fake = [sys.executable, "-c", f"import sys, time; time.sleep(0.5); sys.stdout.write({H2LOAD_OUTPUT!r})"]
    run = measure.run_h2load(fake, 0.3, 0.2, server_cpu)
    assert run.result.requests == 229085
    assert samples[0] - started >= 0.2  # not before the warm-up's end
    assert run.server_cpu_seconds == 10.0 and 0 < run.elapsed < run.wall
    failing = [sys.executable, "-c", f"import sys; sys.stdout.write({H2LOAD_FAILED!r})"]
    with pytest.raises(RuntimeError, match="80 failed"):
        measure.run_h2load(failing, 0.1, 0.0, server_cpu)
    with pytest.raises(RuntimeError, match="exited with 3"):
        measure.run_h2load([sys.executable, "-c", "raise SystemExit(3)"], 0.1, 0.0, server_cpu)


# /proc ------------------------------------------------------------------------------------------

# A command name with spaces and parentheses, as a thread or process may set it.
STAT = "4242 (python (a) b) S 4200 4242 4242 0 -1 4194560 1 0 0 0 150 25 3 4 20 0 3 0 1 2 3 4"
STATUS = "Name:\tpython\nVmPeak:\t  300000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n"


def test_parse_stat_counts_fields_after_the_command_name() -> None:
    assert measure.parse_stat(STAT) == (4200, 175)


def test_parse_status_kb() -> None:
    assert measure.parse_status_kb(STATUS) == 51200
    assert measure.parse_status_kb(STATUS, "VmRSS") == 40960
    assert measure.parse_status_kb("Name:\tkthreadd\n") is None


def fake_proc(root: Path, processes: dict[int, tuple[int, int, int | None]]) -> Path:
    """A /proc with ``pid: (ppid, cpu ticks, VmHWM kB or None)`` entries."""
    for pid, (ppid, ticks, hwm) in processes.items():
        folder = root / str(pid)
        folder.mkdir(parents=True)
        (folder / "stat").write_text(f"{pid} (x) S {ppid} 1 1 0 -1 0 0 0 0 0 {ticks} 0 0 0 20 0 1 0 1 2 3\n")
        (folder / "status").write_text(f"Name:\tx\nVmHWM:\t{hwm} kB\n" if hwm is not None else "Name:\tx\n")
    (root / "self").mkdir()
    (root / "cpuinfo").write_text("")
    return root


def test_process_tree_cpu_and_peak_rss_over_a_fake_proc(tmp_path: Path) -> None:
    proc = fake_proc(
        tmp_path,
        {1: (0, 1, 10), 100: (1, 200, 1000), 101: (100, 300, 2000), 102: (101, 50, None), 200: (1, 999, 999)},
    )
    tree = measure.process_tree(100, proc)
    assert sorted(tree) == [100, 101, 102]
    assert measure.cpu_seconds(tree, proc) == pytest.approx(550 / measure.CLOCK_TICKS)
    assert measure.peak_rss_kb(tree, proc) == 3000
    assert measure.cpu_seconds([12345], proc) == 0  # a process that is gone counts nothing
    assert measure.peak_rss_kb([12345], proc) is None


def test_readers_work_on_the_real_proc() -> None:
    import os

    me = os.getpid()
    assert me in measure.process_tree(me)
    assert measure.cpu_seconds([me]) > 0
    assert (measure.peak_rss_kb([me]) or 0) > 1000


# registry and report ----------------------------------------------------------------------------


def test_registry_is_complete() -> None:
    assert {BASELINE, CEILING, "cyasgi", "cyasgi-pure", "uvicorn-h11", "granian", "hypercorn"} <= set(SERVERS)
    assert list(WORKLOADS) == [
        "hello", "headers", "pipelined", "new-connection", "echo-1k", "echo-64k", "stream-1m", "file-64k",
        "file-4m", "starlette-file-64k", "starlette-file-4m", "fastapi-json", "h2-hello", "h2-hello-m1", "h2-echo-1k",
    ]  # fmt: skip
    ceiling = SERVERS[CEILING]
    assert ceiling.workloads == {"hello", "headers", "pipelined", "new-connection"}
    for workload in WORKLOADS.values():
        assert workload.script is None or (LUA / workload.script).is_file()
    ctx = Context(Path("/venv/bin"))
    for server in SERVERS.values():
        argv = server.command(ctx, "bench_app:app", 8123)
        assert "8123" in " ".join(argv), server.name
    assert "--runtime-mode" in SERVERS["granian"].command(ctx, "a:b", 1)
    assert SERVERS["cyasgi-pure"].environment({})["CYASGI_NO_EXTENSIONS"] == "1"
    assert "CYASGI_NO_EXTENSIONS" not in SERVERS["cyasgi"].environment({"CYASGI_NO_EXTENSIONS": "1"})


def test_socketify_runs_every_http1_workload_and_the_websocket_rows() -> None:
    socketify = SERVERS["socketify"]
    argv = socketify.command(Context(Path("/venv/bin")), "bench_app:app", 8123)
    assert argv[:3] == ["/venv/bin/python", "-m", "socketify"] and "bench_app:app" in argv
    assert argv[argv.index("--interface") + 1] == "asgi" and argv[argv.index("--workers") + 1] == "1"
    assert socketify.interpreter == CPYTHON and socketify.protocols == {HTTP1} and socketify.websocket
    assert all(socketify.serves(w) for w in WORKLOADS.values() if w.protocol == HTTP1)
    assert "socketify" in (PERF / "requirements.txt").read_text().split()
    pypy = SERVERS["socketify-pypy"]  # the same command, run by the PyPy venv's interpreter
    assert pypy.interpreter == PYPY and pypy.command is socketify.command and not pypy.websocket
    assert pypy.serves(WORKLOADS["new-connection"]) and not pypy.serves(WORKLOADS["fastapi-json"])
    assert "socketify" in (PERF / "requirements-pypy.txt").read_text().split()


def test_every_http1_server_has_the_new_connection_row_and_every_peer_the_websocket_rows() -> None:
    for server in SERVERS.values():
        if HTTP1 in server.protocols:
            assert server.serves(WORKLOADS["new-connection"]), server.name
    websocket = {server.name for server in ws_bench.ws_servers()}
    assert {"cyasgi", "cyasgi-pure", BASELINE, "uvicorn-h11", "granian", "hypercorn", "socketify"} == websocket
    assert CEILING not in websocket  # a bare HTTP/1.1 protocol: it has no WebSockets


def test_the_docs_list_every_server_command_line_as_the_registry_builds_it() -> None:
    text = (PERF.parent / "docs" / "benchmarks.md").read_text()
    start, stop = text.index(report.COMMANDS_BEGIN), text.index(report.COMMANDS_END)
    block = text[start + len(report.COMMANDS_BEGIN) : stop].strip()
    assert block == "\n".join(report.render_commands(SERVERS.values())), "run: python3 perf/bench.py --update-commands"
    for server in SERVERS.values():
        assert f"| `{server.name}` |" in block
    assert registry.command_line(SERVERS["cyasgi-pure"]).startswith("env CYASGI_NO_EXTENSIONS=1 cyasgi bench_app:app")
    assert registry.command_line(SERVERS[CEILING]).startswith("python perf/servers/raw_uvloop.py --host")


def cell(server: str, workload: str, rps: list[float], status: str = "ok") -> dict[str, Any]:
    rounds = [{"rps": value, "p50_ms": 1.0, "p99_ms": 2.0, "cpu_us_per_req": 1e6 / value, "server_cpu_pct": 99.0,
               "client_cpu_pct": 40.0, "errors": 1} for value in rps]  # fmt: skip
    return report.summarize({"server": server, "workload": workload, "status": status, "rounds": rounds})


def test_medians_and_ratios_come_from_the_same_run() -> None:
    cells = [
        cell(BASELINE, "hello", [100.0, 300.0, 200.0]),
        cell(CEILING, "hello", [1000.0, 1000.0, 1000.0]),
        cell("cyasgi-pure", "hello", [500.0, 400.0, 450.0]),
        cell("cyasgi-pure", "echo-1k", [50.0]),
    ]
    report.add_ratios(cells)
    pure = cells[2]
    assert pure["median"]["rps"] == 450.0
    assert pure["errors"] == 3
    assert pure["vs_baseline"] == pytest.approx(2.25)
    assert pure["vs_ceiling"] == pytest.approx(0.45)
    assert pure["cpu_vs_ceiling"] == pytest.approx((1e6 / 450) / 1000, rel=0.02)
    assert cells[3]["vs_baseline"] is None and cells[3]["vs_ceiling"] is None
    assert report.median([None, 3.0, 1.0]) == 2.0 and report.median([None]) is None


def test_a_failed_row_says_what_killed_the_server() -> None:
    from perf import bench

    wrk = "wrk exited with 1:\nunable to connect to 127.0.0.1:1 Connection refused\nmore"
    assert bench.failure(wrk) == "wrk exited with 1: unable to connect to 127.0.0.1:1 Connection refused"
    log = "starting\nFatal Python error: b_from_handle: garbage\n  File x, line 1\n"
    died = bench.failure(wrk, died=True, log=log)
    assert died.startswith("the server died (Fatal Python error: b_from_handle: garbage); wrk exited with 1:")
    assert bench.failure("the server died during the round", died=True) == "the server died during the round"
    assert bench.failure("") == "failed"


def test_markdown_shows_every_server_workload_and_the_header() -> None:
    cells = [cell(BASELINE, "hello", [100.0]), cell("cyasgi-pure", "hello", [250.0])]
    cells.append(
        {"server": "granian", "workload": "hello", "status": "failed", "error": "boom", "rounds": []}
    )
    report.summarize(cells[-1])
    report.add_ratios(cells)
    meta = {
        "date": "2026-01-01 00:00 UTC", "elapsed_s": 90.0, "python": "CPython 3.12.1", "python_executable": "/py",
        "cpu_model": "Some CPU", "cpus": 2, "server_cpu": 1, "client_cpu": 0, "kernel": "6.1", "wrk": "wrk 4.1.0",
        "connections": 64, "duration_s": 5, "warmup_s": 1, "rounds": 3, "load_before": [1.0], "load_after": [2.0],
        "note": "shared machine", "cyasgi_revision": "abc123", "twins": {"cyasgi": "not built"}, "versions": {},
    }  # fmt: skip
    servers = {
        BASELINE: {"label": "uvicorn[standard]", "status": "ok"},
        "cyasgi-pure": {"label": "cyasgi (pure twin)", "status": "ok"},
        "granian": {"label": "granian", "status": "ok"},
        "cyasgi": {"label": "cyasgi (compiled twin)", "status": "not built", "detail": "pure twin loaded"},
    }
    doc = {
        "meta": meta,
        "servers": servers,
        "workloads": {"hello": {"description": "plain"}},
        "results": cells,
    }
    text = report.render_markdown(doc)
    assert "CPython 3.12.1" in text and "Some CPU" in text and "2026-01-01" in text and "1.5 min" in text
    headings = [line for line in text.splitlines() if line.startswith("#") and "benchmark" not in line]
    tables = [heading for heading in headings if "Requests per second" in heading or "CPU µs" in heading]
    assert len(tables) == 2 and all("on Some CPU" in heading for heading in tables)
    assert "## Per workload, on Some CPU" in text
    assert "| hello | 100 | 250 (2.50×) | failed |" in text
    assert "cyasgi (compiled twin): **not built**" in text
    assert "failed: boom" in text
    summary = "\n".join(report.render_summary(doc, level=3, image="chart.png"))
    assert summary.startswith("### cyasgi benchmark") and "![" in summary and "chart.png" in summary
    assert "| hello | 10,000.0 | 4,000.0 (0.40×) | failed |" in summary


def test_pypy_rows_run_in_their_own_venv_and_ratios_can_be_to_another_baseline() -> None:
    pypy = [name for name, server in SERVERS.items() if server.interpreter == PYPY]
    assert {"cyasgi-pypy", "uvicorn-pypy", "uvicorn-h11-pypy", "hypercorn-pypy"} <= set(pypy)
    assert SERVERS["cyasgi"].interpreter == CPYTHON
    ctx = Context(Path("/venv-pypy/bin"))
    for name in pypy:
        assert "uvloop" not in " ".join(SERVERS[name].command(ctx, "a:b", 1)), name  # uvloop does not run on PyPy
    expected = "requirements-pypy.txt" if IS_PYPY else "requirements.txt"
    assert environment.venv_for(sys.executable)[0].requirements.name == expected

    cells = [
        cell("uvicorn-pypy", "hello", [100.0]), cell("cyasgi-pypy", "hello", [300.0]), cell(BASELINE, "hello", [1.0])
    ]
    report.add_ratios(cells, "uvicorn-pypy")
    assert cells[1]["vs_baseline"] == pytest.approx(3.0)
    meta = {
        "date": "d", "elapsed_s": 60.0, "python": "CPython 3.12.1", "python_executable": "/py", "cpu_model": "c",
        "cpus": 2, "server_cpu": 1, "client_cpu": 0, "kernel": "k", "wrk": "w", "connections": 64, "duration_s": 5,
        "warmup_s": 1, "first_warmup_s": 20, "rounds": 3, "load_before": [], "load_after": [], "note": "",
        "cyasgi_revision": "r", "twins": {}, "versions": {}, "baseline": "uvicorn-pypy",
        "interpreters": {
            "cpython": {"python": "CPython 3.12.1", "executable": "/py", "servers": [BASELINE], "versions": {}},
            "pypy": {"python": "PyPy 3.9.16", "executable": "/pypy", "servers": ["uvicorn-pypy", "cyasgi-pypy"],
                     "versions": {"uvicorn": "0.39.0"}},
        },
    }  # fmt: skip
    servers = {name: {"label": name, "status": "ok"} for name in ("uvicorn-pypy", "cyasgi-pypy", BASELINE)}
    doc = {"meta": meta, "servers": servers, "workloads": {"hello": {"description": "plain"}}, "results": cells}
    text = report.render_markdown(doc)
    assert "PyPy 3.9.16 (`/pypy`) for uvicorn-pypy, cyasgi-pypy" in text
    assert "Versions on PyPy 3.9.16**: uvicorn 0.39.0" in text
    assert "20 s of load (JIT warm-up)" in text
    assert "× uvicorn-pypy in the same run" in text and "| hello | 100 | 300 (3.00×) | 1 (0.01×) |" in text


def test_a_workload_runs_only_on_servers_of_its_protocol() -> None:
    h2_servers = {name for name, server in SERVERS.items() if H2C in server.protocols}
    assert h2_servers == {"cyasgi-h2", "granian-h2", "hypercorn-h2", "uvicorn-h2"}
    assert set(H2_REFERENCES) <= h2_servers
    h2 = [w for w in WORKLOADS.values() if w.protocol == H2C]
    assert [(w.name, w.streams, len(w.upload), w.tool) for w in h2] == [
        ("h2-hello", 10, 0, "h2load"), ("h2-hello-m1", 1, 0, "h2load"), ("h2-echo-1k", 10, 1024, "h2load")
    ]
    assert WORKLOADS["h2-echo-1k"].probe.check(WORKLOADS["h2-echo-1k"].upload)
    assert SERVERS["cyasgi"].skip_reason(WORKLOADS["h2-hello"]) == "serves HTTP/1.1 only"
    assert SERVERS["granian-h2"].skip_reason(WORKLOADS["hello"]) == "serves HTTP/2 (h2c) only"
    assert SERVERS[CEILING].skip_reason(WORKLOADS["echo-1k"]) == "not registered for this workload"
    assert SERVERS["granian-h2"].serves(WORKLOADS["h2-echo-1k"]) and not SERVERS["cyasgi"].serves(h2[0])
    ctx = Context(Path("/venv/bin"))
    assert "--http2" in SERVERS["cyasgi-h2"].command(ctx, "a:b", 1)
    granian = SERVERS["granian-h2"].command(ctx, "a:b", 1)
    for flag, value in (("--http", "2"), ("--runtime-mode", "st"), ("--runtime-threads", "1"),
                        ("--runtime-blocking-threads", "1"), ("--blocking-threads", "1"), ("--workers", "1")):
        assert granian[granian.index(flag) + 1] == value, flag  # fmt: skip
    uvicorn = " ".join(SERVERS["uvicorn-h2"].command(ctx, "a:b", 1))
    assert "--http zttp --http2" in uvicorn

    from perf import bench

    skipped = bench.skips([SERVERS["cyasgi"], SERVERS["granian-h2"]], ["hello", "h2-hello", "h2-echo-1k"])
    assert skipped == [
        ("cyasgi", "serves HTTP/1.1 only", ["h2-hello", "h2-echo-1k"]),
        ("granian-h2", "serves HTTP/2 (h2c) only", ["hello"]),
    ]


def h2_cell(server: str, workload: str, rps: float, cpu: float) -> dict[str, Any]:
    rounds = [{"rps": rps, "cpu_us_per_req": cpu, "server_cpu_pct": 99.0, "client_cpu_pct": 30.0, "errors": 0}]
    return report.summarize({"server": server, "workload": workload, "status": "ok", "rounds": rounds})


def test_bars_of_http2_are_met_missed_or_not_measured() -> None:
    cells = [
        h2_cell("cyasgi-h2", "h2-hello", 40_000.0, 20.0),
        h2_cell("granian-h2", "h2-hello", 25_000.0, 40.0),
        h2_cell("hypercorn-h2", "h2-hello", 4_000.0, 250.0),
        h2_cell("cyasgi-h2", "h2-hello-m1", 30_000.0, 13.0),
        h2_cell("cyasgi", "hello", 120_000.0, 8.0),
        h2_cell("granian-h2", "h2-echo-1k", 20_000.0, 50.0),
    ]
    cells.append(report.summarize({"server": "cyasgi-h2", "workload": "h2-echo-1k", "status": "failed",
                                   "error": "h2load: 3 failed", "rounds": []}))  # fmt: skip
    report.add_ratios(cells)
    assert cells[0]["vs"] == {"granian-h2": pytest.approx(1.6), "hypercorn-h2": pytest.approx(10.0)}
    assert cells[0]["cpu_vs"]["granian-h2"] == pytest.approx(0.5)
    assert cells[4]["vs"] == {}
    servers = {"cyasgi-h2": {"status": "ok"}, "granian-h2": {"status": "ok"}}
    bars = report.check_bars(cells, servers, ["hello", "h2-hello", "h2-hello-m1", "h2-echo-1k"])
    assert [bar["line"] for bar in bars] == [
        "bar: h2-hello req/s ≥ 1.5× granian's: met (1.60×: 40,000 vs 25,000 req/s)",
        "bar: h2-hello req/s ≥ 8× hypercorn's: met (10.00×: 40,000 vs 4,000 req/s)",
        "bar: h2-echo-1k req/s ≥ 1.2× granian's: not measured (cyasgi-h2 on h2-echo-1k: failed)",
        "bar: h2-hello-m1 server CPU per request ≤ 1.5× cyasgi's HTTP/1.1 hello: missed (1.62×: 13.0 vs 8.0 µs/req; "
        "the servers used 99 % and 99 % of their core)",
    ]
    assert [bar["met"] for bar in bars] == [True, True, None, False]
    assert report.check_bars(cells, servers, ["hello"]) == []  # no h2c workload, no bar
    close = [h2_cell("cyasgi-h2", "h2-hello", 84_056.0, 10.0), h2_cell("granian-h2", "h2-hello", 56_046.0, 13.0)]
    line = report.check_bars(close, servers, ["h2-hello"])[0]["line"]
    assert line == "bar: h2-hello req/s ≥ 1.5× granian's: missed (1.4998×: 84,056 vs 56,046 req/s)"
    only_hello_m1 = report.check_bars(cells[3:4], {"cyasgi": {"status": "not built"}}, ["h2-hello-m1"])
    assert only_hello_m1[0]["line"].endswith("not measured (cyasgi on hello: not built)")


def test_markdown_of_a_run_with_http2_rows() -> None:
    cells = [
        h2_cell("cyasgi", "hello", 120_000.0, 8.0),
        h2_cell("granian-h2", "h2-hello", 25_000.0, 40.0),
        h2_cell("hypercorn-h2", "h2-hello", 4_000.0, 250.0),
    ]
    report.add_ratios(cells)
    meta = {
        "date": "d", "elapsed_s": 60.0, "python": "CPython 3.12.1", "python_executable": "/py", "cpu_model": "c",
        "cpus": 2, "server_cpu": 1, "client_cpu": 0, "kernel": "k", "wrk": "wrk 4.1.0",
        "h2load": "h2load nghttp2/1.52.0", "connections": 64, "duration_s": 5, "warmup_s": 1, "rounds": 3,
        "load_before": [], "load_after": [], "note": "", "cyasgi_revision": "r", "twins": {}, "versions": {},
    }  # fmt: skip
    servers = {
        "cyasgi": {"label": "cyasgi (compiled twin)", "status": "ok"},
        "cyasgi-h2": {"label": "cyasgi --http2", "status": "no --http2", "detail": "not supported"},
        "granian-h2": {"label": "granian h2", "status": "ok"},
        "hypercorn-h2": {"label": "hypercorn h2", "status": "ok"},
    }
    workloads = {
        "hello": {"description": "plain"},
        "h2-hello": {"description": "hello over h2c", "protocol": H2C, "streams": 10},
    }
    doc = {
        "meta": meta, "servers": servers, "workloads": workloads, "results": cells,
        "skipped": [{"server": "cyasgi", "reason": "serves HTTP/1.1 only", "workloads": ["h2-hello"]}],
    }  # fmt: skip
    text = report.render_markdown(doc)
    assert "| workload | cyasgi (compiled twin) |" in text  # the HTTP/1.1 tables: no h2c-only column
    assert "`h2load nghttp2/1.52.0`, h2c with prior knowledge, `h2load -t1 -c64 -m<streams> -D 5s" in text
    assert "| h2-hello | granian h2 | 25,000 | 1.00× | 6.25× | 40.0 | 1.00× | 0.16× |" in text
    assert "| h2-hello | hypercorn h2 | 4,000 | 0.16× | 1.00× | 250.0 | 6.25× | 1.00× |" in text
    assert "- bar: h2-hello req/s ≥ 1.5× granian's: not measured (cyasgi-h2 on h2-hello: no --http2)" in text
    assert "- cyasgi: serves HTTP/1.1 only (not on h2-hello)" in text
    assert "10 concurrent stream(s) per connection" in text
    assert "## HTTP/2 (h2c, h2load) on c:" in text


def test_interleaved_workloads_run_as_one_group_in_the_order_asked() -> None:
    from perf import bench

    assert bench.groups(["hello", "h2-hello", "h2-hello-m1"], []) == [["hello"], ["h2-hello"], ["h2-hello-m1"]]
    assert bench.groups(["hello", "h2-hello", "h2-hello-m1", "h2-echo-1k"], [["hello", "h2-hello-m1"]]) == [
        ["hello", "h2-hello-m1"], ["h2-hello"], ["h2-echo-1k"]
    ]
    assert bench.groups(["h2-hello-m1", "headers"], [["hello", "h2-hello-m1"]]) == [["h2-hello-m1"], ["headers"]]
    settings = bench.parse_args(["--interleave", "hello,h2-hello-m1", "--interleave", "echo-1k,h2-echo-1k"])
    assert settings.interleave == [["hello", "h2-hello-m1"], ["echo-1k", "h2-echo-1k"]]
    with pytest.raises(SystemExit):
        bench.parse_args(["--interleave", "hello,no-such-workload"])


def test_bench_options_for_a_pypy_run() -> None:
    from perf import bench

    assert bench.parse_args([]).update_docs is None
    assert bench.parse_args(["--update-docs"]).update_docs == bench.DOCS
    settings = bench.parse_args(["--update-docs", "docs/pypy.md", "--first-warmup", "10", "--baseline", "uvicorn-pypy"])
    assert settings.update_docs == Path("docs/pypy.md")
    assert (settings.first_warmup, settings.baseline) == (10, "uvicorn-pypy")
    with pytest.raises(SystemExit):
        bench.parse_args(["--baseline", "no-such-server"])


# the apps answer what the probes expect -----------------------------------------------------------


@pytest.mark.parametrize("name", [name for name, w in WORKLOADS.items() if w.app == "bench_app:app"])
def test_bench_app_answers_each_workload_probe(name: str) -> None:
    workload = WORKLOADS[name]
    probe = workload.probe
    with run_server(make_config(bench_app.app, lifespan="on")) as server:
        status, _headers, body = measure.http_request(
            "127.0.0.1", server.port, probe.method, workload.path, probe.headers, probe.body, timeout=WAIT
        )
    assert status == 200
    assert probe.check(body), body[:80]


@pytest.mark.anyio
@pytest.mark.parametrize("extensions", [{}, {"http.response.pathsend": {}}], ids=["chunks", "pathsend"])
async def test_bench_app_sends_files_by_pathsend_only_where_announced(extensions: dict[str, Any]) -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/file-4m", "extensions": extensions}
    await bench_app.app(scope, None, send)  # type: ignore[arg-type]
    assert dict(sent[0]["headers"])[b"content-length"] == b"%d" % (4 * 1024 * 1024)
    if extensions:
        assert [m["type"] for m in sent[1:]] == ["http.response.pathsend"]
    else:
        bodies = [m["body"] for m in sent[1:]]
        assert max(map(len, bodies)) == 64 * 1024 and not sent[-1]["more_body"]
        assert b"".join(bodies) == bench_app.file_content(4 * 1024 * 1024)


def test_fastapi_app_answers_its_probe() -> None:
    from perf.apps import fastapi_app

    workload = WORKLOADS["fastapi-json"]
    with run_server(make_config(fastapi_app.app)) as server:
        status, headers, body = measure.http_request(
            "127.0.0.1", server.port, "GET", workload.path, timeout=WAIT
        )
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert workload.probe.check(body)
    assert not workload.probe.check(b"Hello, world!")


def test_ws_probe_passes_on_the_echo_app_and_says_why_it_fails_elsewhere(raw_server: int) -> None:
    from perf.apps import ws_app

    with run_server(make_config(ws_app.app)) as server:
        ws_bench.probe(server.port)
    with pytest.raises(RuntimeError, match="no 101 to the handshake"):
        ws_bench.probe(raw_server)  # a canned 200 to every head


def test_ws_table_names_the_processor_and_says_why_a_row_has_no_figure() -> None:
    opts = ws_bench.parse_args(["--quick", "--servers", "cyasgi,uvicorn,socketify,granian", "--workloads", "echo"])
    assert (opts.rounds, opts.duration, opts.idle) == (1, 2.0, 200)
    rates = {"cyasgi": [300.0], BASELINE: [100.0], "socketify": [], "granian": []}
    problems = {"socketify": "failed: no 101 to the handshake: b'HTTP/1.1 404'", "granian": "not installed: x"}
    lines = ws_bench.render_table(opts, "Some CPU", {"echo": rates}, {"cyasgi": 10.0}, {"echo": problems})
    assert lines[0].startswith("WebSocket echo on Some CPU: 100 connections")
    assert lines[2].split() == ["cyasgi", "300", "3.00x", "3.00x", "10"]
    assert lines[4] == "socketify    failed: no 101 to the handshake: b'HTTP/1.1 404'"
    assert lines[5] == "granian      not installed: x"
    # The bar against the best peer that has a figure (here uvicorn, the only one).
    assert lines[6] == "bar: WebSocket echo msg/s >= 1.5x the best peer's: met (3.00x: 300 vs uvicorn's 100 msg/s)"
    with pytest.raises(SystemExit):
        ws_bench.parse_args(["--servers", "raw-uvloop"])


# The WebSocket bench's permessage-deflate workload ---------------------------------------------------


def _client_frame(frame: bytes) -> tuple[int, bytes]:
    """A masked client frame's first byte and unmasked payload, read by its length form."""
    assert frame[1] & 0x80, "a client frame is masked"
    length, start = frame[1] & 0x7F, 2
    if length == 126:
        length, start = int.from_bytes(frame[2:4], "big"), 4
    elif length == 127:
        length, start = int.from_bytes(frame[2:10], "big"), 10
    mask, payload = frame[start : start + 4], frame[start + 4 :]
    assert len(payload) == length
    return frame[0], bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_the_deflate_handshake_offers_permessage_deflate_without_client_context_takeover() -> None:
    offer = b"Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n"
    deflate = ws_bench._handshake(8000, deflate=True)
    assert offer in deflate and deflate.endswith(b"\r\n\r\n") and deflate.count(b"\r\n\r\n") == 1
    plain = ws_bench._handshake(8000)
    assert b"Sec-WebSocket-Extensions" not in plain and plain == deflate.replace(offer, b"")


@pytest.mark.parametrize("size", [ws_bench.DEFLATE_SIZE, ws_bench.MIN_JSON_SIZE, 100, 20_000])
def test_the_deflate_frame_inflates_back_to_its_json_message(size: int) -> None:
    message = ws_bench.json_message(size)
    assert len(message) == size
    assert json.loads(message)["type"] == "ticks"
    first, payload = _client_frame(ws_bench.load_frame(size, deflate=True))
    assert first == 0xC1  # FIN, RSV1 (compressed), text
    assert not payload.endswith(b"\x00\x00\xff\xff")  # RFC 7692 7.2.1: the sender strips it
    inflated = zlib.decompressobj(wbits=-15).decompress(payload + b"\x00\x00\xff\xff")
    assert inflated == message
    # Every message on its own: the same bytes inflate again in a context that has seen them already.
    reader = zlib.decompressobj(wbits=-15)
    assert [reader.decompress(payload + b"\x00\x00\xff\xff") for _ in range(2)] == [message, message]


def test_client_frames_take_the_length_form_of_their_size() -> None:
    assert ws_bench.load_frame(32, deflate=False)[:2] == bytes([0x81, 0x80 | 32])
    default = ws_bench.load_frame(ws_bench.DEFLATE_SIZE, deflate=True)
    compressed = len(ws_bench.deflate_payload(ws_bench.json_message(ws_bench.DEFLATE_SIZE)))
    assert compressed > 125 and default[1] == 0x80 | 126 and int.from_bytes(default[2:4], "big") == compressed
    big = ws_bench.load_frame(70_000, deflate=False)
    assert big[1] == 0x80 | 127 and _client_frame(big) == (0x81, b"x" * 70_000)


def test_deflate_negotiation_is_read_from_the_101() -> None:
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    assert ws_bench.deflate_negotiated(head + b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
    assert ws_bench.deflate_negotiated(
        head + b"sec-websocket-extensions: x-other, PerMessage-Deflate ; client_no_context_takeover\r\n"
    )
    assert ws_bench.deflate_negotiated(
        head + b"Sec-WebSocket-Extensions: x-other\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"
    )
    assert not ws_bench.deflate_negotiated(head)
    assert not ws_bench.deflate_negotiated(head + b"Sec-WebSocket-Extensions: x-permessage-deflate\r\n")
    assert not ws_bench.deflate_negotiated(head + b"X-Note: permessage-deflate\r\n")


def test_ws_tables_of_both_workloads_and_a_deflate_bar_without_the_servers_that_refused_it() -> None:
    opts = ws_bench.parse_args(["--quick", "--servers", "cyasgi,uvicorn,granian,socketify"])
    assert opts.workloads == ["echo", "deflate"] and opts.deflate_size == ws_bench.DEFLATE_SIZE
    rates = {
        "echo": {"cyasgi": [300.0], BASELINE: [100.0], "granian": [250.0], "socketify": [180.0]},
        # granian is faster than cyasgi here, but did not negotiate deflate: no peer of that bar.
        "deflate": {"cyasgi": [90.0], BASELINE: [50.0], "granian": [], "socketify": [40.0]},
    }
    problems: dict[str, dict[str, str]] = {"echo": {}, "deflate": {"granian": ws_bench.NO_DEFLATE}}
    lines = ws_bench.render_table(opts, "Some CPU", rates, {"cyasgi": 10.0}, problems)
    blank = lines.index("")
    echo, deflate = lines[:blank], lines[blank + 1 :]
    assert echo[0].startswith("WebSocket echo on Some CPU: 100 connections")
    assert echo[-1] == "bar: WebSocket echo msg/s >= 1.5x the best peer's: missed (1.20x: 300 vs granian's 250 msg/s)"
    deflated = len(ws_bench.deflate_payload(ws_bench.json_message(300)))
    assert deflate[0] == (
        f"WebSocket echo with permessage-deflate on Some CPU: 100 connections, 1 in flight each, one 300-byte "
        f"JSON text ({deflated} bytes deflated, offered with client_no_context_takeover), 2 s x 1 round(s) (median)"
    )
    assert deflate[1].split() == ["server", "msg/s", "vs", "uvicorn", "per", "round"]  # no idle memory column
    assert deflate[2].split() == ["cyasgi", "90", "1.80x", "1.80x"]
    assert deflate[4] == "granian      no permessage-deflate"
    assert deflate[5].split() == ["socketify", "40", "0.80x", "0.80x"]
    assert deflate[6] == (
        "bar: WebSocket echo with permessage-deflate msg/s >= 1.5x the best peer's: met "
        "(1.80x: 90 vs uvicorn's 50 msg/s)"
    )
    result = ws_bench.json_result(opts, "Some CPU", [], {}, rates, {}, problems)
    assert result["medians"] == {"cyasgi": 300.0, BASELINE: 100.0, "granian": 250.0, "socketify": 180.0}
    assert result["deflate"]["medians"] == {"cyasgi": 90.0, BASELINE: 50.0, "socketify": 40.0}
    assert result["deflate"]["not_negotiated"] == ["granian"]
    assert (result["deflate"]["message_bytes"], result["deflate"]["deflated_bytes"]) == (300, deflated)
    assert [result["bars"][w]["verdict"] for w in ("echo", "deflate")] == ["missed", "met"]
    # No peer negotiated it: the bar is not measured, not met.
    problems["deflate"] = {name: ws_bench.NO_DEFLATE for name in ("uvicorn", "granian", "socketify")}
    rates["deflate"] = {"cyasgi": [90.0], BASELINE: [], "granian": [], "socketify": []}
    assert ws_bench.render_table(opts, "Some CPU", rates, {}, problems)[-1] == (
        "bar: WebSocket echo with permessage-deflate msg/s >= 1.5x the best peer's: not measured (no peer has a figure)"
    )


def test_ws_bench_workload_and_message_options() -> None:
    assert ws_bench.parse_args(["--workloads", "deflate"]).workloads == ["deflate"]
    assert ws_bench.parse_args(["--workloads", "deflate, echo,deflate"]).workloads == ["echo", "deflate"]
    assert ws_bench.parse_args(["--size", "200", "--deflate-size", "4096"]).deflate_size == 4096
    for wrong in (
        ["--workloads", "gzip"], ["--workloads", ","], ["--size", "0"], ["--size", "70000"],
        ["--deflate-size", str(ws_bench.MIN_JSON_SIZE - 1)], ["--deflate-size", "70000"], ["--rounds", "0"],
    ):  # fmt: skip
        with pytest.raises(SystemExit):
            ws_bench.parse_args(wrong)
    with pytest.raises(ValueError, match="at least"):
        ws_bench.json_message(ws_bench.MIN_JSON_SIZE - 1)


def test_ws_deflate_load_against_cyasgi_and_a_server_that_refuses_the_offer() -> None:
    from perf.apps import ws_app

    with run_server(make_config(ws_app.app)) as server:
        ws_bench.probe(server.port, ws_bench.json_message(ws_bench.DEFLATE_SIZE), deflate=True)
        result = asyncio.run(
            ws_bench._load(server.port, 4, 2, ws_bench.DEFLATE_SIZE, duration=0.5, warmup=0.2, deflate=True)
        )
    assert result["messages_per_s"] > 0 and result["lost"] == 0
    with run_server(make_config(ws_app.app, ws_per_message_deflate=False)) as server:
        with pytest.raises(ws_bench.DeflateNotNegotiated):
            ws_bench.probe(server.port, b"{}", deflate=True)
        with pytest.raises(RuntimeError, match="did not accept permessage-deflate"):
            asyncio.run(ws_bench._load(server.port, 2, 1, ws_bench.DEFLATE_SIZE, 0.1, 0.1, deflate=True))


def test_stream_is_chunked_in_64k_pieces() -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(bench_app.app({"type": "http", "path": "/stream"}, receive, send))
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert len(bodies) == 16 and all(len(m["body"]) == 64 * 1024 for m in bodies)
    assert [m.get("more_body", False) for m in bodies] == [True] * 15 + [False]
    assert b"content-length" not in dict(sent[0]["headers"])


# the raw ceiling ----------------------------------------------------------------------------------


@pytest.fixture
def raw_server() -> Iterator[int]:
    """The raw protocol on asyncio (uvloop is not needed to check what it writes), in a thread."""
    ready = threading.Event()
    port: list[int] = []
    loop = asyncio.new_event_loop()

    def on_ready(server: Any) -> None:
        port.append(server.sockets[0].getsockname()[1])
        ready.set()

    task: list[asyncio.Task[None]] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        task.append(loop.create_task(raw_uvloop.serve("127.0.0.1", 0, ready=on_ready)))
        try:
            loop.run_until_complete(task[0])
        except asyncio.CancelledError:
            pass
        finally:
            loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(WAIT)
    try:
        yield port[0]
    finally:
        loop.call_soon_threadsafe(task[0].cancel)
        thread.join(WAIT)
        assert not thread.is_alive()


def read_until(sock: socket.socket, count: int) -> bytes:
    data = b""
    while data.count(raw_uvloop.RESPONSE.split(b"\r\n")[0]) < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_raw_ceiling_answers_pipelined_and_split_heads(raw_server: int) -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", raw_server), timeout=WAIT) as sock:
        sock.sendall(request * 16)
        assert read_until(sock, 16) == raw_uvloop.RESPONSE * 16
        sock.sendall(request[:-2])  # a head split across reads, right inside its blank line
        sock.sendall(request[-2:])
        assert read_until(sock, 1) == raw_uvloop.RESPONSE


def test_raw_ceiling_closes_after_connection_close(raw_server: int) -> None:
    with socket.create_connection(("127.0.0.1", raw_server), timeout=WAIT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data == raw_uvloop.CLOSE_RESPONSE
    assert b"connection: close" in data


def test_update_block_replaces_only_between_the_markers() -> None:
    text = "intro\n<!-- results:begin -->\nold\n<!-- results:end -->\noutro\n"
    updated = report.update_block(text, "new\n")
    assert updated == "intro\n<!-- results:begin -->\nnew\n<!-- results:end -->\noutro\n"
    assert report.update_block(updated, "newer") == updated.replace("new\n", "newer\n")
    with pytest.raises(ValueError):
        report.update_block("no markers", "x")


# make perf-check: the comparison against the committed callgrind baseline (no valgrind here) ------

META = {
    "python": "CPython 3.12.1",
    "how": {"environment": {"PYTHONHASHSEED": "0"}, "loop": "uvloop", "http": "auto",
            "parsers": {"c": "cyasgi.RequestParser"}, "requests": [2000, 4000], "warmup": 200},
    "versions": {"Cython": "3.3.1", "uvloop": "0.23.0"},
}  # fmt: skip
FIGURES = {"hello": {"c": 31000.04, "py": 100000.0}, "echo1k": {"c": 40000.0}}


def baseline_of(figures: dict[str, dict[str, float]], **meta: Any) -> perf_check.Baseline:
    return perf_check.parse_baseline(
        perf_check.baseline_text(figures, {**META, **meta}, "2026-12-02", "abc1234")
    )


def test_baseline_file_round_trips() -> None:
    baseline = baseline_of(FIGURES)
    assert (baseline.python, baseline.date, baseline.commit) == ("CPython 3.12.1", "2026-12-02", "abc1234")
    assert baseline.figures == {"hello": {"c": 31000.0, "py": 100000.0}, "echo1k": {"c": 40000.0}}
    assert baseline.how["environment"] == {"PYTHONHASHSEED": "0"} and baseline.versions["uvloop"] == "0.23.0"


HEAD = '"format": 1, "python": "p", "date": "d", "commit": "c"'


@pytest.mark.parametrize(
    "text, error",
    [
        ("{", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"format": 99}', "format 99"),
        ('{"format": 1, "date": "d", "commit": "c"}', "'python'"),
        ("{" + HEAD + "}", "instructions_per_request"),
        ("{" + HEAD + ', "instructions_per_request": {"hello": {}}}', "hello: no figures"),
        ("{" + HEAD + ', "instructions_per_request": {"hello": {"c": -1}}}', "hello/c"),
        ("{" + HEAD + ', "instructions_per_request": {"hello": {"c": true}}}', "hello/c"),
    ],
)
def test_parse_baseline_says_what_is_wrong(text: str, error: str) -> None:
    with pytest.raises(perf_check.BaselineError, match=error):
        perf_check.parse_baseline(text)


def test_compare_holds_each_figure_to_its_own_baseline() -> None:
    baseline = {"hello": {"c": 1000.0, "py": 1000.0}, "headers12": {"c": 1000.0, "py": 1000.0}}
    measured = {
        "hello": {"c": 1030.0, "py": 1030.1},  # exactly +3 % passes; just over it fails
        "headers12": {"c": 969.9, "py": 980.0},  # cheaper past the tolerance is said, not failed
        "echo1k": {"c": 1.0},  # nothing to hold it to
    }
    rows = perf_check.compare(baseline, measured, 3.0)
    assert [(r.workload, r.twin, r.status) for r in rows] == [
        ("hello", "c", perf_check.OK),
        ("hello", "py", perf_check.SLOWER),
        ("headers12", "c", perf_check.CHEAPER),
        ("headers12", "py", perf_check.OK),
        ("echo1k", "c", perf_check.NO_BASELINE),
    ]
    assert rows[0].change_pct == pytest.approx(3.0) and rows[4].change_pct is None
    assert perf_check.exit_status(rows) == perf_check.EXIT_SLOWER
    assert perf_check.exit_status(rows[:1] + rows[2:4]) == perf_check.EXIT_OK
    assert perf_check.exit_status(rows[4:]) == perf_check.EXIT_SLOWER  # a missing bar fails too
    assert perf_check.compare(baseline, {"hello": {"py": 1030.1}}, 5.0)[0].status == perf_check.OK


def test_table_and_verdict() -> None:
    rows = perf_check.compare({"hello": {"c": 31000.0}}, {"hello": {"c": 32000.0, "py": 5.0}}, 3.0)
    table = perf_check.render_table(rows)
    assert "spread" not in table
    assert "hello        c        31,000     32,000   +3.23 %  SLOWER" in table
    assert "hello        py            -          5         -  no baseline" in table
    verdict = perf_check.verdict(rows, 3.0)
    assert (
        "more than +3 % over the baseline: hello/c" in verdict
        and "no baseline figure for hello/py" in verdict
    )
    assert "UPDATE=1" in verdict and not verdict.startswith("OK")

    spread = perf_check.compare(
        {"hello": {"c": 31000.0}}, {"hello": {"c": 29000.0}}, 3.0, {"hello": {"c": 0.5}}
    )
    assert "spread" in perf_check.render_table(spread) and "0.5  cheaper" in perf_check.render_table(spread)
    assert perf_check.verdict(spread, 3.0).startswith("OK: every figure within +3 %")
    assert "lower figures the bar" in perf_check.verdict(spread, 3.0)


def test_mismatches_refuse_another_python_or_loop_and_note_the_rest() -> None:
    baseline = baseline_of(FIGURES)
    assert perf_check.mismatches(baseline, META) == ([], [])
    hard, soft = perf_check.mismatches(baseline, {**META, "python": "CPython 3.13.0"})
    assert hard == ["the baseline is for CPython 3.12.1, this is CPython 3.13.0"] and soft == []
    hard, soft = perf_check.mismatches(baseline, {**META, "python": "CPython 3.12.8"})
    assert hard == [] and soft == ["Python: CPython 3.12.1 in the baseline, CPython 3.12.8 now"]
    how = {**META["how"], "loop": "asyncio", "requests": [5000, 10000], "parsers": {"c": "x.P", "py": "y.Q"}}
    how["environment"] = {}
    hard, soft = perf_check.mismatches(baseline, {**META, "how": how, "versions": {"uvloop": "0.22.0"}})
    assert hard == [
        "environment: {'PYTHONHASHSEED': '0'} in the baseline, {} now",
        "loop: 'uvloop' in the baseline, 'asyncio' now",
    ]
    assert soft == [
        "parsers[c]: 'cyasgi.RequestParser' in the baseline, 'x.P' now",  # py: no parser in the baseline
        "requests: [2000, 4000] in the baseline, [5000, 10000] now",
        "uvloop: 0.23.0 in the baseline, 0.22.0 now",
    ]


def test_perf_check_options() -> None:
    args = perf_check.parse_args([])
    assert args.workloads == list(microbench.WORKLOADS) and args.twins == list(microbench.TWINS)
    assert (args.tolerance, args.update, args.baseline) == (
        perf_check.TOLERANCE_PCT,
        False,
        perf_check.BASELINE,
    )
    args = perf_check.parse_args(["--workloads", "hello,echo1k", "--twins", "py", "--tolerance", "5"])
    assert (args.workloads, args.twins, args.tolerance) == (["hello", "echo1k"], ["py"], 5.0)
    for wrong in (["--workloads", "nope"], ["--twins", "c,java"], ["--repeat", "0"], ["--tolerance", "-1"]):
        with pytest.raises(SystemExit):
            perf_check.parse_args(wrong)
    with pytest.raises(SystemExit):  # a baseline is one commit's figures: all of them or none
        perf_check.parse_args(["--update", "--twins", "c"])


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, float]]:
    """main() with canned figures in place of valgrind; tests change the figures it returns."""
    figures = {workload: {twin: 1000.0 for twin in microbench.TWINS} for workload in microbench.WORKLOADS}
    monkeypatch.setattr(perf_check, "unready", lambda twins: None)
    monkeypatch.setattr(perf_check, "current_meta", lambda twins: META)
    monkeypatch.setattr(perf_check, "commit_description", lambda: "abc1234")

    def measure(workloads: list[str], twins: list[str], repeat: int) -> tuple[Any, Any]:
        return {w: {t: figures[w][t] for t in twins} for w in workloads}, {}

    monkeypatch.setattr(perf_check, "measure", measure)
    return figures


def test_perf_check_update_then_check(measured: dict[str, dict[str, float]], tmp_path: Path) -> None:
    path = tmp_path / "baseline" / "callgrind.json"
    assert perf_check.main(["--baseline", str(path)]) == perf_check.EXIT_ERROR  # nothing to compare with yet
    assert perf_check.main(["--baseline", str(path), "--update"]) == perf_check.EXIT_OK
    written = perf_check.parse_baseline(path.read_text())
    assert written.commit == "abc1234" and written.python == "CPython 3.12.1"
    assert written.figures == measured
    assert perf_check.main(["--baseline", str(path)]) == perf_check.EXIT_OK

    measured["echo1k"]["py"] = 1031.0
    assert perf_check.main(["--baseline", str(path)]) == perf_check.EXIT_SLOWER
    assert perf_check.main(["--baseline", str(path), "--tolerance", "3.5"]) == perf_check.EXIT_OK
    assert perf_check.main(["--baseline", str(path), "--twins", "c"]) == perf_check.EXIT_OK

    measured["echo1k"]["py"] = 900.0  # cheaper: passes, and an update makes it the bar
    assert perf_check.main(["--baseline", str(path)]) == perf_check.EXIT_OK
    assert perf_check.main(["--baseline", str(path), "--update"]) == perf_check.EXIT_OK
    assert perf_check.parse_baseline(path.read_text()).figures["echo1k"]["py"] == 900.0
    measured["echo1k"]["py"] = 1000.0
    assert perf_check.main(["--baseline", str(path)]) == perf_check.EXIT_SLOWER


def test_perf_check_refuses_a_broken_or_foreign_baseline(
    measured: dict[str, dict[str, float]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "callgrind.json"
    path.write_text("{}")
    assert perf_check.main(["--baseline", str(path)]) == perf_check.EXIT_ERROR
    assert perf_check.main(["--baseline", str(path), "--update"]) == perf_check.EXIT_OK  # rewrites it
    monkeypatch.setattr(perf_check, "current_meta", lambda twins: {**META, "python": "CPython 3.13.0"})
    assert perf_check.main(["--baseline", str(path)]) == perf_check.EXIT_ERROR
    monkeypatch.setattr(perf_check, "unready", lambda twins: "valgrind is not installed")
    assert perf_check.main(["--baseline", str(path)]) == perf_check.EXIT_ERROR


def test_committed_baseline_covers_every_workload_and_twin_on_cpython_312() -> None:
    baseline = perf_check.parse_baseline(perf_check.BASELINE.read_text())
    assert perf_check.series(baseline.python) == "CPython 3.12"
    assert {w: set(twins) for w, twins in baseline.figures.items()} == {
        workload: set(microbench.TWINS) for workload in microbench.WORKLOADS
    }
    assert baseline.how["environment"] == microbench.CALLGRIND_ENV
    assert (baseline.how["loop"], baseline.how["http"]) == (perf_check.LOOP, perf_check.HTTP)


def test_parser_of_names_the_package_and_class() -> None:
    package, _, name = perf_check.parser_of("py").partition(".")
    assert package in {"cyasgi", "httptools", "h11"} and name and "." not in name


def test_feeds_cover_the_requests_in_whole_pipelines() -> None:
    assert microbench.feeds_for("hello", 2000) == 2000
    assert (
        microbench.feeds_for("pipelined16", 2000) == 125 and microbench.feeds_for("pipelined16", 1000) == 62
    )
    assert microbench.feeds_for("pipelined16", 1) == 1


def test_bars_against_the_best_peer() -> None:
    cells = [
        h2_cell("cyasgi", "hello", 130_000.0, 7.5),
        h2_cell("uvicorn", "hello", 50_000.0, 18.0),
        h2_cell("granian", "hello", 95_000.0, 10.0),
        h2_cell("socketify", "hello", 60_000.0, 16.0),
        h2_cell("cyasgi", "new-connection", 20_000.0, 40.0),
        h2_cell("granian", "new-connection", 24_000.0, 33.0),
        h2_cell("raw-uvloop", "new-connection", 30_000.0, 25.0),
        h2_cell("cyasgi", "pipelined", 400_000.0, 2.0),
    ]
    lines = [bar["line"] for bar in report.check_peer_bars(cells, ["hello", "new-connection", "pipelined"])]
    assert lines == [
        "bar: hello req/s ≥ 1.3× the best peer's: met (1.37×: 130,000 vs granian's 95,000 req/s)",
        "bar: new-connection req/s ≥ 1.2× the best peer's: missed (0.83×: 20,000 vs granian's 24,000 req/s)",
        "bar: pipelined req/s ≥ 1× the best peer's: not measured (every peer has no result)",
        "bar: hello req/s ≥ 2.5× uvicorn's: met (2.60×: 130,000 vs uvicorn's 50,000 req/s)",
        "bar: new-connection server CPU per request ≤ 1.3× the raw uvloop ceiling's: missed "
        "(1.60×: 40.0 vs raw-uvloop's 25.0 µs/req)",
    ]
    assert report.check_peer_bars(cells, ["h2-hello"]) == []
