"""Measuring one server: its processes, their CPU time and peak RSS from /proc, wrk and h2load runs and
their output.

Stdlib only, so that the harness runs under any Python >= 3.9 before its own venv exists.
"""

from __future__ import annotations

import http.client
import os
import re
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Callable

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# wrk output --------------------------------------------------------------------------------------

_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME = r"([\d.]+)(us|ms|s|m|h)"


def to_ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS_MS[unit]


@dataclass
class WrkResult:
    """What one wrk run reported. Latencies in milliseconds; ``None`` where wrk printed none."""

    requests: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    non_2xx_3xx: int = 0
    socket_errors: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("connect", "read", "write", "timeout"), 0)
    )

    @property
    def errors(self) -> int:
        return self.non_2xx_3xx + sum(self.socket_errors.values())

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["errors"] = self.errors
        return data


def parse_wrk(output: str) -> WrkResult:
    """Parse ``wrk --latency`` output. Raises ValueError when it is not wrk's summary at all."""
    result = WrkResult()
    match = re.search(r"^\s*(\d+) requests in " + _TIME, output, re.MULTILINE)
    if not match:
        raise ValueError("no 'N requests in T' line in the wrk output:\n" + output)
    result.requests = int(match.group(1))
    result.seconds = to_ms(match.group(2), match.group(3)) / 1000.0
    match = re.search(r"^Requests/sec:\s*([\d.]+)", output, re.MULTILINE)
    if match:
        result.rps = float(match.group(1))
    elif result.seconds:
        result.rps = result.requests / result.seconds
    for percentile, attr in (("50", "p50_ms"), ("99", "p99_ms")):
        match = re.search(r"^\s*" + percentile + r"(?:\.0+)?%\s+" + _TIME, output, re.MULTILINE)
        if match and float(match.group(1)) > 0:  # wrk prints 0.00us where it has no sample
            setattr(result, attr, to_ms(match.group(1), match.group(2)))
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if match:
        result.socket_errors = dict(zip(("connect", "read", "write", "timeout"), map(int, match.groups())))
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if match:
        result.non_2xx_3xx = int(match.group(1))
    return result


# /proc ------------------------------------------------------------------------------------------


def parse_stat(text: str) -> tuple[int, int]:
    """``(ppid, utime + stime)`` from the text of /proc/<pid>/stat (times in clock ticks).

    The command name (field 2) is in parentheses and may itself hold spaces and parentheses,
    so the fields are counted from the last ``)``.
    """
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    return int(rest[1]), int(rest[11]) + int(rest[12])


def parse_status_kb(text: str, key: str = "VmHWM") -> int | None:
    """A ``kB`` value such as VmHWM (peak RSS) or VmRSS from the text of /proc/<pid>/status."""
    match = re.search(r"^" + re.escape(key) + r":\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:  # the process is gone (or never was)
        return None


def process_tree(pid: int, proc: Path = PROC) -> list[int]:
    """``pid`` and all its live descendants (granian and hypercorn serve from a child process)."""
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        text = _read(entry / "stat")
        if text is None:
            continue
        try:
            ppid, _ = parse_stat(text)
        except (ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        if current in tree:
            continue
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def cpu_seconds(pids: Iterable[int], proc: Path = PROC) -> float:
    """User + system CPU time of these processes (all their threads), in seconds."""
    ticks = 0
    for pid in pids:
        text = _read(proc / str(pid) / "stat")
        if text is not None:
            ticks += parse_stat(text)[1]
    return ticks / CLOCK_TICKS


def peak_rss_kb(pids: Iterable[int], proc: Path = PROC) -> int | None:
    """The sum of the processes' peak resident set sizes (VmHWM), in KiB."""
    values = [parse_status_kb(_read(proc / str(pid) / "status") or "") for pid in pids]
    known = [value for value in values if value is not None]
    return sum(known) if known else None


# ports and processes ----------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def pinned(argv: Sequence[str], cpu: int | None) -> list[str]:
    """``argv`` run through ``taskset -c CPU`` (taskset execs, so the pid stays the command's)."""
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None else list(argv)


class ServerProcess:
    """One server under test: started in its own session, stopped with SIGINT, always reaped."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cwd: Path,
        log_path: Path,
        cpu: int | None,
        host: str = "127.0.0.1",
        port: int,
    ) -> None:
        self.argv = pinned(argv, cpu)
        self.env, self.cwd, self.log_path, self.host, self.port = env, cwd, log_path, host, port
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.pids: list[int] = []

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )

    @property
    def alive(self) -> bool:
        """Running (checked without reaping it: only stop() reaps, see there)."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return False
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None

    def wait_ready(self, timeout: float) -> None:
        """Poll the port every 50 ms until it accepts, the process dies, or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError("exited before listening")
            if port_open(self.host, self.port):
                self.pids = process_tree(self.proc.pid) if self.proc else []
                return
            time.sleep(0.05)
        raise RuntimeError(f"not listening on {self.host}:{self.port} after {timeout:.0f} s")

    def refresh_pids(self) -> list[int]:
        if self.alive and self.proc is not None:
            self.pids = process_tree(self.proc.pid)
        return self.pids

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.refresh_pids())

    def peak_rss_kb(self) -> int | None:
        return peak_rss_kb(self.refresh_pids())

    def log_tail(self, lines: int = 15) -> str:
        text = _read(self.log_path) or ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGINT (graceful), then SIGTERM, then SIGKILL; then SIGKILL whatever is left of the session
        (workers of a multi-process server) while the leader is still unreaped, so the group id cannot
        have been reused; then reap. Returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        try:
            if proc.returncode is None:
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
                    os.kill(proc.pid, sig)
                    if _wait_exited(proc.pid, timeout):
                        break
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(timeout)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
        return proc.returncode


def _wait_exited(pid: int, timeout: float) -> bool:
    """Whether the child ``pid`` exits within ``timeout``, leaving it unreaped (a zombie)."""
    deadline = time.monotonic() + timeout
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


# wrk --------------------------------------------------------------------------------------------


@dataclass
class WrkRun:
    result: WrkResult
    output: str
    client_cpu_seconds: float


def wrk_command(
    url: str,
    *,
    duration: float,
    connections: int,
    script: Path | None = None,
    script_args: Sequence[str] = (),
    cpu: int | None = None,
    wrk: str = "wrk",
    timeout: float = 10.0,
) -> list[str]:
    argv = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={timeout:g}s",
        "--latency",
    ]
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(url)
    if script_args:
        argv += ["--", *script_args]
    return pinned(argv, cpu)


def run_wrk(argv: Sequence[str], duration: float) -> WrkRun:
    """Run wrk (bounded: killed 30 s after its duration) and parse its summary."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    output = completed.stdout + completed.stderr
    if completed.returncode != 0:
        raise RuntimeError(f"wrk exited with {completed.returncode}:\n{output}")
    return WrkRun(parse_wrk(output), output, cpu)


# h2load ------------------------------------------------------------------------------------------


@dataclass
class H2loadResult:
    """What one h2load run reported about its measured window (the warm-up is not in it)."""

    requests: int = 0  # succeeded
    seconds: float = 0.0
    rps: float = 0.0
    total: int = 0
    failed: int = 0
    errored: int = 0
    timeout: int = 0
    status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("2xx", "3xx", "4xx", "5xx"), 0))
    mean_ms: float | None = None  # "time for request" mean: h2load prints no percentiles

    @property
    def errors(self) -> int:
        """Requests that did not end in a 2xx answer."""
        not_2xx = sum(count for kind, count in self.status.items() if kind != "2xx")
        return self.failed + self.errored + self.timeout + not_2xx

    def problem(self) -> str | None:
        """Why this run may not be timed (None: every request answered 2xx)."""
        if self.requests == 0:
            return "h2load completed no request"
        if self.errors == 0:
            return None
        codes = ", ".join(f"{count} {kind}" for kind, count in self.status.items())
        return (
            f"h2load: {self.failed} failed, {self.errored} errored, {self.timeout} timeout of {self.total} "
            f"requests; status codes {codes}"
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["errors"] = self.errors
        return data


def parse_h2load(output: str) -> H2loadResult:
    """Parse h2load's summary (nghttp2 1.4x-1.6x). Raises ValueError when it has none."""
    result = H2loadResult()
    match = re.search(r"^finished in " + _TIME + r", ([\d.]+) req/s", output, re.MULTILINE)
    counts = re.search(
        r"^requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, "
        r"(\d+) timeout",
        output,
        re.MULTILINE,
    )
    if not match or not counts:
        raise ValueError("no 'finished in' and 'requests:' lines in the h2load output:\n" + output)
    result.rps = float(match.group(3))
    result.total, result.requests, result.failed, result.errored, result.timeout = map(int, counts.groups())
    # "finished in" counts the warm-up too; req/s is over the measured window only.
    finished = to_ms(match.group(1), match.group(2)) / 1000.0
    result.seconds = result.total / result.rps if result.rps else finished
    match = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", output, re.MULTILINE)
    if match:
        result.status = dict(zip(("2xx", "3xx", "4xx", "5xx"), map(int, match.groups())))
    match = re.search(r"^time for request:\s+\S+\s+\S+\s+" + _TIME, output, re.MULTILINE)
    if match:
        result.mean_ms = to_ms(match.group(1), match.group(2))
    return result


def h2load_command(
    url: str,
    *,
    duration: float,
    warmup: float,
    connections: int,
    streams: int,
    body: Path | None = None,
    cpu: int | None = None,
    h2load: str = "h2load",
) -> list[str]:
    """h2c with prior knowledge (h2load's default for an http:// URL), one thread, bounded in time."""
    argv = [h2load, "-t1", f"-c{connections}", f"-m{streams}", "-D", f"{max(1, round(duration))}s"]
    if warmup > 0:
        argv += ["--warm-up-time", f"{max(1, round(warmup))}s"]
    if body is not None:
        argv += ["-d", str(body)]
    argv.append(url)
    return pinned(argv, cpu)


@dataclass
class H2loadRun:
    result: H2loadResult
    output: str
    client_cpu_seconds: float
    #: The server's CPU seconds over the measured window (sampled when the warm-up ended and at the end),
    #: that window's wall-clock length, and the whole run's (warm-up included: h2load's CPU is over it).
    server_cpu_seconds: float
    elapsed: float
    wall: float


def run_h2load(
    argv: Sequence[str], duration: float, warmup: float, server_cpu: Callable[[], float]
) -> H2loadRun:
    """Run h2load (bounded: killed 30 s after its warm-up and duration) and parse its summary.

    h2load warms up for ``warmup`` seconds on the connections it then measures on, within one run, so
    the server's CPU time is sampled ``warmup`` seconds after it starts and again when it has exited.
    Raises RuntimeError for a run with any request not answered 2xx: such a run is reported, not timed.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(max(0.0, started + warmup - time.monotonic()))
        cpu_start, window_start = server_cpu(), time.monotonic()
        output, _ = proc.communicate(timeout=duration + warmup + 30)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    cpu_end, window_end = server_cpu(), time.monotonic()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"h2load exited with {proc.returncode}:\n{output}")
    result = parse_h2load(output)
    problem = result.problem()
    if problem:
        raise RuntimeError(problem)
    return H2loadRun(result, output, client, cpu_end - cpu_start, window_end - window_start, window_end - started)


def curl_h2c(
    host: str,
    port: int,
    method: str,
    path: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    timeout: float = 10.0,
    curl: str = "curl",
) -> tuple[int, bytes]:
    """``(status, body)`` of one request over h2c with prior knowledge, by curl (stdlib has no HTTP/2).
    Raises RuntimeError when the answer did not come over HTTP/2."""
    argv = [curl, "--http2-prior-knowledge", "-sS", "--max-time", f"{timeout:g}", "-X", method, "-H", "Expect:"]
    for name, value in headers:
        argv += ["-H", f"{name}: {value}"]
    if body:
        argv += ["--data-binary", "@-"]
    argv += ["-o", "-", "-w", "\n%{http_code} %{http_version}", f"http://{host}:{port}{path}"]
    completed = subprocess.run(argv, input=body, capture_output=True, timeout=timeout + 5, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"curl exited with {completed.returncode}: {completed.stderr.decode(errors='replace')}")
    data, _, trailer = completed.stdout.rpartition(b"\n")
    status, _, version = trailer.decode().partition(" ")
    if version != "2":
        raise RuntimeError(f"answered over HTTP/{version or '?'}, not HTTP/2")
    return int(status), data


# a single request, to check what a server answers before loading it ------------------------------


def http_request(
    host: str,
    port: int,
    method: str,
    path: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """``(status, headers with lower-case names, body)`` of one request on a fresh connection."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request(method, path, body=body or None, headers=dict(headers))
        response = connection.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        connection.close()
