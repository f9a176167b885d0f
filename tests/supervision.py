"""Helpers for tests that run a supervisor (--workers, --reload, gunicorn) as real processes."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Callable

import httpx

from tests.utils import ROOT, WAIT, CliProcess

#: Bound for waits that span a worker (re)start: a spawn re-imports cyasgi and the app.
SPAWN_WAIT = 3 * WAIT

APP = "tests.process_app:app"


@contextlib.contextmanager
def run_supervised(
    command: Sequence[str],
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    pass_fds: Sequence[int] = (),
) -> Iterator[CliProcess]:
    """Run ``command`` in a session of its own; afterwards SIGTERM it and kill whatever is left.

    The own session means every process it starts (workers, resource tracker) can be reaped
    with one killpg even when the supervisor itself misbehaves.
    """
    full_env = dict(os.environ)
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env.update(env or {})
    proc = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=full_env,
        cwd=cwd if cwd is not None else ROOT,
        start_new_session=True,
        pass_fds=tuple(pass_fds),
    )
    cli = CliProcess(proc)
    try:
        yield cli
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(SPAWN_WAIT)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(WAIT)
        cli._reader.join(WAIT)


def cyasgi(*args: str) -> list[str]:
    return [sys.executable, "-m", "cyasgi", *args]


def wait_for_count(cli: CliProcess, needle: str, count: int, timeout: float = SPAWN_WAIT) -> list[str]:
    """Block until ``count`` printed lines contain ``needle``; return them."""
    deadline = time.monotonic() + timeout
    with cli._changed:
        while True:
            lines = [line for line in cli._lines if needle in line]
            if len(lines) >= count:
                return lines
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (cli.proc.poll() is not None and not cli._reader.is_alive()):
                raise AssertionError(f"{count} x {needle!r} not printed; output so far:\n{''.join(cli._lines)}")
            cli._changed.wait(min(remaining, 0.5))


def started_pids(cli: CliProcess) -> list[int]:
    return [int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", cli.output)]


def get(url: str, path: str = "/") -> httpx.Response:
    """One request on a fresh connection."""
    return httpx.get(url + path, timeout=WAIT, headers={"connection": "close"})


def ignore_http_errors(call: Callable[[], object]) -> None:
    """Run ``call``; an HTTP error is expected (e.g. the server is made to drop the request)."""
    try:
        call()
    except httpx.HTTPError:
        pass


def stop_during_request(cli: CliProcess, url: str, path: str, started_line: str) -> tuple[int, list[int]]:
    """Send a request to ``path``; once the app printed ``started_line`` (it is in flight), SIGTERM
    the supervisor. Return its exit status and the request's status (empty if it failed)."""
    statuses: list[int] = []
    thread = threading.Thread(target=ignore_http_errors, args=(lambda: statuses.append(get(url, path).status_code),))
    thread.start()
    cli.wait_for_line(started_line)
    cli.proc.send_signal(signal.SIGTERM)
    code = cli.wait(SPAWN_WAIT)
    thread.join(WAIT)
    return code, statuses


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"  # a zombie has exited already
    except OSError:
        return False


def wait_until_dead(pid: int, timeout: float = SPAWN_WAIT) -> None:
    """Wait for another process's exit (not our child, so no waitpid) through a pidfd."""
    if not hasattr(os, "pidfd_open"):  # e.g. PyPy: poll instead
        deadline = time.monotonic() + timeout
        while pid_alive(pid):
            assert time.monotonic() < deadline, f"process {pid} is still alive after {timeout}s"
            time.sleep(0.05)
        return
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        readable, _, _ = select.select([pidfd], [], [], timeout)
        assert readable, f"process {pid} is still alive after {timeout}s"
    finally:
        os.close(pidfd)


class Load:
    """Client threads sending requests in a loop until stopped; every outcome is recorded."""

    def __init__(self, url: str, threads: int = 4, keep_alive: bool = True) -> None:
        self.url = url
        self.keep_alive = keep_alive
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.progress = threading.Condition(self.lock)
        self.statuses: dict[int, int] = {}
        self.errors: list[str] = []
        self.pids: set[str] = set()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(WAIT)
            assert not thread.is_alive(), "a load thread did not stop"

    def _total(self) -> int:
        return sum(self.statuses.values()) + len(self.errors)

    def _run(self) -> None:
        headers = {} if self.keep_alive else {"connection": "close"}
        with httpx.Client(timeout=WAIT, headers=headers) as client:
            while not self.stop_event.is_set():
                try:
                    response = client.get(self.url + "/")
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.errors.append(repr(exc))
                        self.progress.notify_all()
                    continue
                with self.lock:
                    self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
                    self.pids.add(response.text)
                    self.progress.notify_all()

    def wait_for_requests(self, count: int, timeout: float = SPAWN_WAIT) -> None:
        """Wait until ``count`` more requests completed (so the load really ran across an event)."""
        with self.progress:
            target = self._total() + count
            if not self.progress.wait_for(lambda: self._total() >= target, timeout):
                raise AssertionError(f"the load stalled at {self._total()} requests")
