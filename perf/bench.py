"""Benchmark cyasgi against its peers on this machine: ``python perf/bench.py --help`` (or ``make bench``).

For each workload, every selected server that can answer it is started (pinned to one core), checked
with one request, then loaded with wrk, or h2load for the HTTP/2 (h2c) workloads (pinned to the other
core), for a warm-up and a measured window per round. Rounds are interleaved across servers, so drifting
background load hits all of them alike. Then the servers of that workload are stopped and reaped, and the
next workload starts afresh.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the ``perf`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perf import environment, measure, report
from perf.registry import (
    APPS,
    BASELINE,
    CPYTHON,
    H2C,
    PERF,
    PYPY,
    SERVERS,
    WORKLOADS,
    Context,
    Server,
    Workload,
)

RESULTS = PERF / "results"
RAW = RESULTS / "raw"
DOCS = PERF.parent / "docs" / "benchmarks.md"
START_TIMEOUT = 30.0


@dataclass
class Settings:
    servers: list[str]
    workloads: list[str]
    rounds: int = 3
    duration: int = 5
    warmup: int = 1
    connections: int = 64
    server_cpu: int | None = 1
    client_cpu: int | None = 0
    python: str | None = None
    pypy: str | None = None
    install: bool = True
    output: Path = RESULTS
    name: str = "latest"
    note: str = ""
    #: The markdown file whose results block gets the summary (``--update-docs [FILE]``), if any.
    update_docs: Path | None = None
    baseline: str = BASELINE
    #: Seconds of load each server gets once, before its first round (a JIT's warm-up).
    first_warmup: int = 0
    #: Groups of workloads whose servers run together and whose rounds are taken in turn.
    interleave: list[list[str]] = field(default_factory=list)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _names(value: str, registry: dict[str, Any], kind: str) -> list[str]:
    if value:
        names = [name.strip() for name in value.split(",") if name.strip()]
    else:
        names = [name for name, entry in registry.items() if getattr(entry, "default_run", True)]
    unknown = [name for name in names if name not in registry]
    if unknown:
        raise SystemExit(f"unknown {kind}: {', '.join(unknown)} (known: {', '.join(registry)})")
    return names


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2])
    parser.add_argument("--servers", default="", help="comma-separated names (default: all); see --list")
    parser.add_argument("--workloads", default="", help="comma-separated names (default: all); see --list")
    parser.add_argument(
        "--rounds", type=int, default=None, help="measured rounds per server and workload (3)"
    )
    parser.add_argument("--duration", type=int, default=None, help="seconds per measured round (5)")
    parser.add_argument("--warmup", type=int, default=None, help="seconds of warm-up before each round (1)")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s after a 1 s warm-up")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    parser.add_argument(
        "--python", default=None, help="interpreter for the venv (default: pyenv 3.12, else python3)"
    )
    parser.add_argument(
        "--pypy", default=None, help="interpreter for the PyPy servers' venv (default: pypy3 on the PATH)"
    )
    parser.add_argument(
        "--first-warmup", type=int, default=0,
        help="seconds of load for each server once, before its first round: a JIT's warm-up (0)",
    )  # fmt: skip
    parser.add_argument(
        "--interleave", action="append", default=[], metavar="W1,W2",
        help="run these workloads' servers together and take their rounds in turn, so that a ratio between "
        "two workloads (the h2-hello-m1 CPU bar against hello) meets the same machine load; repeatable",
    )  # fmt: skip
    parser.add_argument("--baseline", default=BASELINE, help=f"the server ratios are given to ({BASELINE})")
    parser.add_argument("--no-install", action="store_true", help="use the venv as it is, install nothing")
    parser.add_argument(
        "--server-cpu", default="1", help="core the servers are pinned to ('none': no pinning)"
    )
    parser.add_argument("--client-cpu", default="0", help="core wrk is pinned to ('none': no pinning)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS, help="where NAME.md/.json/.png go")
    parser.add_argument("--name", default="latest", help="file name stem of the outputs (latest)")
    parser.add_argument("--note", default="", help="a remark for the report header, e.g. about machine load")
    parser.add_argument(
        "--list", action="store_true", help="list the registered servers and workloads, then exit"
    )
    parser.add_argument(
        "--commands", action="store_true", help="print every server's exact command line (markdown), then exit"
    )
    parser.add_argument(
        "--update-commands", nargs="?", type=Path, const=DOCS, default=None, metavar="FILE",
        help="put that table into FILE's commands block, then exit "
        f"({DOCS.relative_to(PERF.parent)} if not named)",
    )  # fmt: skip
    parser.add_argument(
        "--from-json", type=Path, default=None, help="only redo the table and chart of a saved run"
    )
    parser.add_argument(
        "--update-docs",
        nargs="?",
        type=Path,
        const=DOCS,
        default=None,
        metavar="FILE",
        help=f"also put the summary into FILE's results block ({DOCS.relative_to(PERF.parent)} if not named)",
    )
    args = parser.parse_args(argv)
    if args.list:
        for server in SERVERS.values():
            only = f"  (only {', '.join(sorted(server.workloads))})" if server.workloads is not None else ""
            only += "  (h2c only)" if server.protocols == {H2C} else ""
            print(f"server    {server.name:16} {server.label}{only}")
        for workload in WORKLOADS.values():
            print(f"workload  {workload.name:16} {workload.description}  ({workload.tool})")
        raise SystemExit(0)
    if args.commands or args.update_commands is not None:
        table = "\n".join(report.render_commands(SERVERS.values())) + "\n"
        if args.update_commands is not None:
            text = args.update_commands.read_text()
            block = report.update_block(text, table, report.COMMANDS_BEGIN, report.COMMANDS_END)
            args.update_commands.write_text(block)
            log(f"wrote {args.update_commands}")
        else:
            print(table, end="")
        raise SystemExit(0)
    if args.from_json is not None:
        doc = json.loads(args.from_json.read_text())
        write(doc, args.output_dir, args.name, args.update_docs)
        raise SystemExit(0)
    quick = (1, 2, 1) if args.quick else (3, 5, 1)
    rounds, duration, warmup = (
        given if given is not None else default
        for given, default in zip((args.rounds, args.duration, args.warmup), quick)
    )
    if rounds < 1 or duration < 1 or warmup < 0 or args.first_warmup < 0:
        parser.error("--rounds and --duration must be at least 1, --warmup and --first-warmup at least 0")
    if args.baseline not in SERVERS:
        parser.error(f"--baseline {args.baseline}: no such server (see --list)")

    def cpu(value: str) -> int | None:
        return None if value.lower() == "none" else int(value)

    return Settings(
        servers=_names(args.servers, SERVERS, "server"),
        workloads=_names(args.workloads, WORKLOADS, "workload"),
        rounds=rounds,
        duration=duration,
        warmup=warmup,
        connections=args.connections,
        server_cpu=cpu(args.server_cpu),
        client_cpu=cpu(args.client_cpu),
        python=args.python,
        pypy=args.pypy,
        install=not args.no_install,
        output=args.output_dir,
        name=args.name,
        note=args.note,
        update_docs=args.update_docs,
        baseline=args.baseline,
        first_warmup=args.first_warmup,
        interleave=[_names(group, WORKLOADS, "workload") for group in args.interleave],
    )


# one server ---------------------------------------------------------------------------------------


def start(ctx: Context, server: Server, workload: Workload, settings: Settings) -> measure.ServerProcess:
    port = measure.free_port(ctx.host)
    process = measure.ServerProcess(
        server.command(ctx, workload.app, port),
        env=server.environment(os.environ),
        cwd=APPS,
        log_path=RAW / f"{workload.name}-{server.name}.log",
        cpu=settings.server_cpu,
        host=ctx.host,
        port=port,
    )
    process.start()
    return process


def check_answer(process: measure.ServerProcess, workload: Workload) -> None:
    probe = workload.probe
    if workload.protocol == H2C:
        status, body = measure.curl_h2c(
            process.host, process.port, probe.method, workload.path, probe.headers, probe.body
        )
    else:
        status, _headers, body = measure.http_request(
            process.host, process.port, probe.method, workload.path, probe.headers, probe.body
        )
    if status != 200 or not probe.check(body):
        raise RuntimeError(f"wrong answer: status {status}, wanted 200 and {probe.expect}, got {body[:60]!r}")


#: The commands the h2c workloads need on the PATH, and the Debian package of each.
H2_TOOLS = {"h2load": "nghttp2-client", "curl": "curl"}


def missing_h2_tools() -> list[str]:
    return [f"{tool} (Debian: {package})" for tool, package in H2_TOOLS.items() if shutil.which(tool) is None]


def upload_file(workload: Workload) -> Path | None:
    """The file h2load posts (``-d``) for ``workload``, written once per run."""
    if not workload.upload:
        return None
    path = RAW / f"{workload.name}-upload.bin"
    if not path.exists() or path.read_bytes() != workload.upload:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(workload.upload)
    return path


def load_h2(
    process: measure.ServerProcess, workload: Workload, settings: Settings, seconds: int, warmup: int = 0
) -> measure.H2loadRun:
    """h2load over h2c against the server: ``warmup`` seconds, then ``seconds`` measured, one run."""
    argv = measure.h2load_command(
        f"http://{process.host}:{process.port}{workload.path}",
        duration=seconds,
        warmup=warmup,
        connections=settings.connections,
        streams=workload.streams,
        body=upload_file(workload),
        cpu=settings.client_cpu,
    )
    return measure.run_h2load(argv, seconds, warmup, process.cpu_seconds)


def load(
    process: measure.ServerProcess, workload: Workload, settings: Settings, seconds: int
) -> measure.WrkRun | measure.H2loadRun:
    """wrk (h2load for an h2c workload) against the server for ``seconds``, as a round does."""
    if workload.protocol == H2C:
        return load_h2(process, workload, settings, seconds)
    url = f"http://{process.host}:{process.port}{workload.path}"
    argv = measure.wrk_command(
        url,
        duration=seconds,
        connections=settings.connections,
        script=workload.script_path,
        script_args=workload.script_args,
        cpu=settings.client_cpu,
    )
    return measure.run_wrk(argv, seconds)


def measure_round(process: measure.ServerProcess, workload: Workload, settings: Settings) -> dict[str, Any]:
    if workload.protocol == H2C:
        # h2load warms up on the connections it measures on; the server's CPU is sampled after it.
        h2 = load_h2(process, workload, settings, settings.duration, settings.warmup)
        requests = h2.result.requests
        return {
            **h2.result.as_dict(),
            "cpu_us_per_req": h2.server_cpu_seconds * 1e6 / requests if requests else None,
            "server_cpu_pct": 100.0 * h2.server_cpu_seconds / h2.elapsed,
            "client_cpu_pct": 100.0 * h2.client_cpu_seconds / h2.wall,
        }
    if settings.warmup:
        load(process, workload, settings, settings.warmup)
    cpu_before, started = process.cpu_seconds(), time.monotonic()
    run = load(process, workload, settings, settings.duration)
    cpu_after, elapsed = process.cpu_seconds(), time.monotonic() - started
    result = run.result
    if not workload.latency:
        result.p50_ms = result.p99_ms = None
    server_cpu = cpu_after - cpu_before
    return {
        **result.as_dict(),
        "cpu_us_per_req": server_cpu * 1e6 / result.requests if result.requests else None,
        "server_cpu_pct": 100.0 * server_cpu / elapsed,
        "client_cpu_pct": 100.0 * run.client_cpu_seconds / elapsed,
    }


def _ms(value: float | None) -> str:
    return "    n/a" if value is None else f"{value:7.2f}"


#: How much of a dead server's log is searched for the cause.
DEATH_LOG_LINES = 60
#: What marks the line of a server's log that says why it died (a fatal error, an uncaught exception).
DEATH_MARKS = ("Fatal Python error", "Segmentation fault", "Error:", "Exception:")
#: The longest cause quoted from a server's log in a report row.
CAUSE_CHARS = 120


def failure(error: str, died: bool = False, log: str = "") -> str:
    """One line for a failed row: the error's first two lines (wrk's own message is its second), led by
    what the server's log says killed it when it is gone, so a crash under load is not read as wrk's fault."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    text = " ".join(lines[:2]) or "failed"
    if died:
        causes = [line.strip() for line in log.splitlines() if any(mark in line for mark in DEATH_MARKS)]
        cause = f" ({causes[0][:CAUSE_CHARS]})" if causes else ""
        died_text = "the server died"
        rest = text[len(died_text):] if text.startswith(died_text) else f"; {text}"
        text = f"{died_text}{cause}{rest}"
    return text


def _fail(cell: dict[str, Any], process: measure.ServerProcess | None, error: str) -> None:
    cell["status"] = "failed"
    died = process is not None and process.proc is not None and not process.alive
    cell["error"] = failure(error, died, process.log_tail(DEATH_LOG_LINES) if died and process else "")
    log(f"  {cell['server']} on {cell['workload']}: {error}")
    if process is not None:
        tail = process.log_tail()
        if tail:
            log("  its log ends with:\n" + tail)


# the run ------------------------------------------------------------------------------------------


def run_workload(
    contexts: dict[str, Context], workload: Workload, servers: list[Server], settings: Settings
) -> list[dict[str, Any]]:
    return run_group(contexts, [(workload, servers)], settings)


def run_group(
    contexts: dict[str, Context], plan: list[tuple[Workload, list[Server]]], settings: Settings
) -> list[dict[str, Any]]:
    """The servers of one workload (or of several, ``--interleave``: all started together, their rounds
    taken in turn), probed, loaded round by round, then stopped and reaped."""
    cells: list[dict[str, Any]] = []
    running: list[tuple[dict[str, Any], measure.ServerProcess, Workload]] = []
    try:
        for workload, servers in plan:
            for server in servers:
                cell: dict[str, Any] = {
                    "server": server.name,
                    "workload": workload.name,
                    "status": "ok",
                    "rounds": [],
                }
                cells.append(cell)
                try:
                    process = start(contexts[server.interpreter], server, workload, settings)
                except OSError as exc:
                    _fail(cell, None, f"could not start: {exc}")
                    continue
                try:
                    process.wait_ready(START_TIMEOUT)
                    check_answer(process, workload)
                except Exception as exc:  # noqa: BLE001 - any failure to start or answer is reported, not fatal
                    _fail(cell, process, str(exc))
                    cell["exit_code"] = process.stop()
                    continue
                running.append((cell, process, workload))
        if settings.first_warmup:
            for cell, process, workload in running:
                log(f"{workload.name} first warm-up {cell['server']:12} {settings.first_warmup} s")
                try:
                    load(process, workload, settings, settings.first_warmup)
                except Exception as exc:  # noqa: BLE001
                    _fail(cell, process, str(exc))
        for index in range(settings.rounds):
            shift = index % max(1, len(running))
            for cell, process, workload in running[shift:] + running[:shift]:
                if cell["status"] != "ok":
                    continue
                if not process.alive:
                    _fail(cell, process, "the server died")
                    continue
                try:
                    result = measure_round(process, workload, settings)
                except Exception as exc:  # noqa: BLE001
                    _fail(cell, process, str(exc))
                    continue
                if not process.alive:  # wrk may still exit 0 (its writes failing): no figure from a crash
                    _fail(cell, process, "the server died during the round")
                    continue
                cell["rounds"].append(result)
                log(
                    f"{workload.name} round {index + 1}/{settings.rounds} {cell['server']:12} "
                    f"{result['rps']:>10,.0f} req/s  p99 {_ms(result.get('p99_ms'))} ms  "
                    f"{result['cpu_us_per_req'] or 0:6.1f} µs/req  errors {result['errors']}"
                )
    finally:
        for cell, process, _workload in running:
            cell["peak_rss_kb"] = process.peak_rss_kb()
            cell["exit_code"] = process.stop()
    return [report.summarize(cell) for cell in cells]


def groups(workloads: list[str], interleave: list[list[str]]) -> list[list[str]]:
    """``workloads`` in their order, those of one ``interleave`` group together at the place of the first
    of them (a name in no group is a group of its own; a group's names not in ``workloads`` are left out)."""
    out: list[list[str]] = []
    placed: set[str] = set()
    for name in workloads:
        if name in placed:
            continue
        group = next((g for g in interleave if name in g), [name])
        members = [member for member in group if member in workloads and member not in placed]
        placed.update(members)
        out.append(members)
    return out


def estimate_seconds(settings: Settings, servers: list[Server]) -> float:
    cells = sum(1 for w in settings.workloads for s in servers if s.serves(WORKLOADS[w]))
    return cells * (settings.rounds * (settings.warmup + settings.duration + 0.3) + settings.first_warmup + 2.0)


def run(settings: Settings) -> dict[str, Any]:
    began, began_wall = time.monotonic(), datetime.datetime.now().astimezone()
    # One venv per interpreter the selected servers run on; CPython's first (it also draws the chart).
    wanted = {SERVERS[name].interpreter for name in settings.servers}
    interpreters = [kind for kind in (CPYTHON, PYPY) if kind in wanted]
    venvs: dict[str, environment.Venv] = {}
    infos: dict[str, dict[str, str]] = {}
    contexts: dict[str, Context] = {}
    for kind in interpreters:
        python = environment.find_pypy(settings.pypy) if kind == PYPY else environment.find_python(settings.python)
        venv, info = environment.venv_for(python)
        if settings.install:
            venv.ensure(log)
        elif not Path(venv.python).exists():
            raise SystemExit(f"--no-install, but there is no venv at {venv.path}")
        venvs[kind], infos[kind], contexts[kind] = venv, info, Context(venv.bin_dir)
    main_kind = interpreters[0]
    venv, info = venvs[main_kind], infos[main_kind]

    server_info: dict[str, dict[str, Any]] = {}
    runnable: list[Server] = []
    twins: dict[str, str] = {}
    for name in settings.servers:
        server = SERVERS[name]
        availability = server.availability(contexts[server.interpreter])
        server_info[name] = {
            "label": server.label,
            "status": availability.status,
            "detail": availability.detail,
        }
        if name.startswith("cyasgi"):
            twins[name] = availability.detail.splitlines()[0] if availability.detail else availability.status
        if availability.ok:
            runnable.append(server)
        else:
            log(f"{server.label}: {availability.status} ({availability.detail.splitlines()[-1:] or ''})")
    log(
        f"{len(runnable)} server(s), {len(settings.workloads)} workload(s), {settings.rounds} round(s) of "
        f"{settings.duration} s: about {estimate_seconds(settings, runnable) / 60:.0f} min on "
        + ", ".join(f"{infos[kind]['implementation']} {infos[kind]['version']}" for kind in interpreters)
    )

    skipped = skips(runnable, settings.workloads)
    for server, reason, names in skipped:
        log(f"skipping {server} on {', '.join(names)}: {reason}")
    missing = missing_h2_tools() if any(WORKLOADS[name].protocol == H2C for name in settings.workloads) else []
    if missing:
        log(f"not installed: {', '.join(missing)}; the h2c workloads are not run (make bench installs them)")

    load_before = environment.load_average()
    cells: list[dict[str, Any]] = []
    for group in groups(settings.workloads, settings.interleave):
        plan = []
        for name in group:
            workload = WORKLOADS[name]
            servers = [s for s in runnable if s.serves(workload)]
            if missing and workload.protocol == H2C:
                for server in servers:
                    cell = {"server": server.name, "workload": name, "status": "h2load not installed",
                            "error": ", ".join(missing), "rounds": []}  # fmt: skip
                    cells.append(report.summarize(cell))
            else:
                plan.append((workload, servers))
        cells += run_group(contexts, plan, settings)
    # In the order of the workloads asked for, whatever the grouping.
    cells.sort(key=lambda cell: settings.workloads.index(cell["workload"]))
    report.add_ratios(cells, settings.baseline)
    bars = report.check_bars(cells, server_info, settings.workloads)
    for bar in bars + report.check_peer_bars(cells, settings.workloads):
        log(bar["line"])

    doc = {
        "meta": {
            "date": began_wall.strftime("%Y-%m-%d %H:%M %Z"),
            "elapsed_s": round(time.monotonic() - began, 1),
            "python": f"{info['implementation']} {info['version']}",
            "python_executable": venv.base_python,
            # Every interpreter of the run, when the servers ran on more than one.
            "interpreters": {
                kind: {
                    "python": f"{infos[kind]['implementation']} {infos[kind]['version']}",
                    "executable": venvs[kind].base_python,
                    "servers": [s.name for s in runnable if s.interpreter == kind],
                    "versions": venvs[kind].versions(),
                }
                for kind in interpreters
            },
            "cpu_model": environment.cpu_model(),
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "server_cpu": settings.server_cpu,
            "client_cpu": settings.client_cpu,
            "wrk": environment.wrk_version(),
            "h2load": environment.h2load_version(),
            "connections": settings.connections,
            "duration_s": settings.duration,
            "warmup_s": settings.warmup,
            "first_warmup_s": settings.first_warmup,
            "baseline": settings.baseline,
            "rounds": settings.rounds,
            "load_before": load_before,
            "load_after": environment.load_average(),
            "note": settings.note,
            "cyasgi_revision": environment.git_revision(),
            "twins": twins,
            "versions": venv.versions(),
            "install_failures": {
                (name if kind == CPYTHON else f"{name} ({kind})"): failure
                for kind in interpreters
                for name, failure in venvs[kind].failures.items()
            },
        },
        "servers": server_info,
        "workloads": {
            name: {
                "description": WORKLOADS[name].description,
                "latency": WORKLOADS[name].latency,
                "protocol": WORKLOADS[name].protocol,
                "tool": WORKLOADS[name].tool,
                "streams": WORKLOADS[name].streams,
                "upload_bytes": len(WORKLOADS[name].upload),
            }
            for name in settings.workloads
        },
        "results": cells,
        "skipped": [{"server": server, "reason": reason, "workloads": names} for server, reason, names in skipped],
        "bars": bars,
    }
    return doc


def skips(servers: list[Server], workloads: list[str]) -> list[tuple[str, str, list[str]]]:
    """``(server, reason, workloads)`` for each server and reason it does not run some of ``workloads``."""
    out: dict[tuple[str, str], list[str]] = {}
    for server in servers:
        for name in workloads:
            reason = server.skip_reason(WORKLOADS[name])
            if reason is not None:
                out.setdefault((server.name, reason), []).append(name)
    return [(server, reason, names) for (server, reason), names in out.items()]


def write(doc: dict[str, Any], directory: Path, name: str, update_docs: Path | None = None) -> None:
    paths = report.write_outputs(doc, directory, name)
    png = directory / f"{name}.png"
    python = environment.venv_for(doc["meta"]["python_executable"])[0].python
    completed = subprocess.run([python, str(PERF / "plot.py"), str(paths["json"]), str(png)],
                               capture_output=True, text=True, check=False)  # fmt: skip
    if completed.returncode != 0:
        log(f"no chart: {(completed.stderr or completed.stdout).strip().splitlines()[-1:]}")
    else:
        paths["png"] = png
    if update_docs is not None:
        image = os.path.relpath(png, update_docs.parent)
        details = os.path.relpath(paths["md"], update_docs.parent)
        block = report.render_summary(doc, level=3, image=image)
        block += ["", f"Every metric for every workload and server: [{details}]({details})."]
        update_docs.write_text(report.update_block(update_docs.read_text(), "\n".join(block) + "\n"))
        paths["docs"] = update_docs
    for path in paths.values():
        log(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    doc = run(settings)
    write(doc, settings.output, settings.name, settings.update_docs)
    print(report.render_markdown(doc))
    failed = [cell for cell in doc["results"] if cell["status"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
