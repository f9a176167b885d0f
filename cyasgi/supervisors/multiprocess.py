"""--workers N: a supervisor process that keeps N worker processes serving its addresses.

The supervisor binds the listening sockets (one, or one per --bind listener) and every worker
accepts on all of them (or, with ``--reuse-port``, each worker binds its own SO_REUSEPORT socket
per TCP address). It never serves a request.
It restarts workers that die, replaces workers whose event loop stops answering health pings
(after logging their stacks), rolls the workers over one by one on SIGHUP, and scales on
SIGTTIN / SIGTTOU. A worker that exits with the start-up failure code (3) stops everything,
since its replacement would fail the same way.

Health checks: the supervisor sends a ping over a per-worker pipe and the worker answers from
its event loop (``Server.answer_health_checks``). A worker whose loop is blocked by synchronous
code cannot answer; after ``--timeout-worker-healthcheck`` seconds the supervisor sends it
``STACK_DUMP_SIGNAL``, on which faulthandler writes every thread's stack to a second pipe and the
worker dies; the supervisor logs that stack and starts a replacement.
"""

from __future__ import annotations

import faulthandler
import functools
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from multiprocessing import Pipe
from multiprocessing.connection import Connection, wait
from types import FrameType
from typing import Any

import click

from cyasgi._subprocess import get_subprocess
from cyasgi.config import STARTUP_FAILURE, Config
from cyasgi.metrics.workers import METRICS_REQUEST, WorkersMetrics
from cyasgi.server import Server

SIGNALS: dict[int, str] = {
    signal.SIGINT: "INT",
    signal.SIGTERM: "TERM",
    signal.SIGHUP: "HUP",
    signal.SIGTTIN: "TTIN",
    signal.SIGTTOU: "TTOU",
}

#: Sent to a worker whose event loop does not answer: it writes its stacks, then dies.
STACK_DUMP_SIGNAL = signal.SIGUSR1

#: The health ping; the worker echoes it with 1 (serving) or 0 (starting), and sends "!1" once started.
PING = b"?"

#: Longest the supervisor sleeps between two looks at its workers (signals wake it at once).
TICK = 0.5
#: Extra time a stopping worker gets beyond --timeout-graceful-shutdown (lifespan shutdown, exit).
STOP_MARGIN = 5.0
#: How long a dying worker gets to write its stacks before it is killed outright.
STACK_DUMP_TIMEOUT = 3.0
#: Back-off before replacing a worker that died before it ever served: doubles per failure, up to the max.
RESPAWN_BACKOFF = 0.5
RESPAWN_BACKOFF_MAX = 10.0

logger = logging.getLogger("uvicorn.error")

# The worker's end of its stack-dump pipe; faulthandler writes to its fd, so it must stay open.
_stack_dump_channel: socket.socket | None = None


def run_worker(
    sockets: list[socket.socket],
    health: Connection,
    stack_dump: socket.socket,
    config: Config,
    metrics_block: Any = None,
) -> None:
    """The worker process's body (called by cyasgi._subprocess after logging is set up)."""
    global _stack_dump_channel
    _stack_dump_channel = stack_dump
    # Default action after the dump: the worker ends, killed by the signal.
    signal.signal(STACK_DUMP_SIGNAL, signal.SIG_DFL)
    faulthandler.register(STACK_DUMP_SIGNAL, file=stack_dump.fileno(), all_threads=True, chain=True)

    if config.reuse_port and config.listeners:
        # Its own SO_REUSEPORT socket per TCP listener; the UNIX and fd ones are the supervisor's.
        tcp = [listener for listener in config.listeners if listener.kind == "tcp"]
        try:
            sockets = config.bind_sockets(tcp, announce=False) + sockets
        except SystemExit:  # bind_sockets logged why
            sys.exit(STARTUP_FAILURE)
    elif config.reuse_port and not sockets:
        try:
            sockets = [config.bind_socket(announce=False)]
        except SystemExit:  # bind_socket logged why
            sys.exit(STARTUP_FAILURE)

    server = Server(config=config)
    server.health_channel = health
    server.metrics_block = metrics_block  # counted there, read by the supervisor
    server.run(sockets=sockets)
    if not server.started:
        sys.exit(STARTUP_FAILURE)


class WorkerProcess:
    """The supervisor's handle on one worker: its process, health pipe and stack-dump pipe."""

    def __init__(
        self, config: Config, sockets: list[socket.socket], metrics: WorkersMetrics | None = None, number: int = 0
    ) -> None:
        self.health, child_health = Pipe()
        self.stack_dump, child_stack_dump = socket.socketpair()
        self._child_ends: tuple[Any, ...] = (child_health, child_stack_dump)
        #: The worker's slot number: its ``worker`` label in the metrics, reused once it is gone.
        self.number = number
        self.metrics = metrics
        #: The worker asked for the metrics' text (--metrics-path): the supervisor answers it.
        self.metrics_requested = False
        extra = {} if metrics is None else {"metrics_block": metrics.new_block(self, str(number)).for_child()}
        self.process = get_subprocess(
            config,
            target=functools.partial(run_worker, config=config),
            sockets=sockets,
            health=child_health,
            stack_dump=child_stack_dump,
            **extra,
        )
        #: True once the worker answered a ping with "started".
        self.ready = False
        #: When the unanswered ping was sent (None: no ping outstanding).
        self.ping_sent: float | None = None
        self.last_ping = 0.0
        #: When the supervisor asked it to stop (None: it is not being stopped).
        self.stop_requested: float | None = None
        self.killed = False
        self.health_open = True
        self.closed = False  # reaped: its number is free again

    def start(self) -> None:
        self.process.start()
        # The child has its own copies now; ours would keep the pipes open after it dies.
        for end in self._child_ends:
            end.close()

    @property
    def pid(self) -> int:
        return self.process.pid  # type: ignore[return-value]

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode

    def is_alive(self) -> bool:
        return self.process.is_alive()

    def waitables(self) -> list[Any]:
        return [self.process.sentinel, self.health] if self.health_open else [self.process.sentinel]

    def ping(self, now: float, interval: float) -> None:
        """Send a ping unless one is outstanding or the last went out less than ``interval`` ago."""
        if self.ping_sent is not None or not self.health_open or now - self.last_ping < interval:
            return
        try:
            self.health.send_bytes(PING)
        except OSError:  # it is dying; reaping deals with it
            self.health_open = False
            return
        self.ping_sent = self.last_ping = now

    def read_answers(self) -> None:
        while self.health_open and self.health.poll():
            try:
                answer = self.health.recv_bytes()
            except (EOFError, OSError):
                self.health_open = False
                return
            if answer == METRICS_REQUEST:
                self.metrics_requested = True
                continue
            if answer.startswith(PING):
                self.ping_sent = None
            if answer.endswith(b"1"):  # an answer or the worker's own "started" announcement
                self.ready = True

    def overdue(self, now: float, timeout: float) -> bool:
        """A started worker whose loop has not answered a ping for ``timeout`` seconds."""
        return self.ready and self.ping_sent is not None and now - self.ping_sent > timeout

    def overstayed(self, limit: float | None) -> bool:
        """Asked to stop more than ``limit`` seconds ago and not killed yet (None: no limit)."""
        if limit is None or self.stop_requested is None or self.killed:
            return False
        return time.monotonic() - self.stop_requested > limit

    def terminate(self) -> None:
        """Ask for a graceful stop (SIGTERM); the worker finishes its requests and exits."""
        if self.stop_requested is None:
            self.stop_requested = time.monotonic()
        if self.exitcode is None:
            os.kill(self.pid, signal.SIGTERM)
            logger.info("Terminated child process [%d]", self.pid)

    def signal(self, sig: int) -> None:
        if self.exitcode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        if self.stop_requested is None:
            self.stop_requested = time.monotonic()
        self.killed = True
        if self.exitcode is None:
            self.process.kill()

    def dump_stacks_and_kill(self) -> str:
        """Make the worker write its threads' stacks and die; return what it wrote."""
        self.stop_requested = time.monotonic()
        self.signal(STACK_DUMP_SIGNAL)
        self.process.join(STACK_DUMP_TIMEOUT)
        if self.exitcode is None:
            self.process.kill()
            self.process.join(STACK_DUMP_TIMEOUT)
        chunks = []
        self.stack_dump.settimeout(0.5)
        try:
            while True:
                chunk = self.stack_dump.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError:  # timed out: the worker never wrote (e.g. it was killed)
            pass
        text = b"".join(chunks).decode("utf-8", "replace").rstrip()
        return text or "(no stack: the worker did not write one)"

    def answer_metrics(self) -> None:
        """Send the exposition the worker asked for (its --metrics-path shows every worker)."""
        self.metrics_requested = False
        if self.metrics is not None and self.health_open:
            try:
                self.health.send_bytes(METRICS_REQUEST + self.metrics.exposition())
            except OSError:  # it is dying; reaping deals with it
                self.health_open = False

    def close(self) -> None:
        self.process.join()
        self.health.close()
        self.stack_dump.close()
        self.closed = True
        if self.metrics is not None:
            self.metrics.retire(self)


class Multiprocess:
    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        self.config = config
        self.sockets = sockets
        # With --reuse-port the parent's TCP sockets only hold their address; each worker binds its own.
        self.worker_sockets = [] if config.reuse_port else sockets
        if config.reuse_port and config.listeners:
            kinds = [listener.kind for listener in config.listeners]
            self.worker_sockets = [sock for kind, sock in zip(kinds, sockets) if kind != "tcp"]
        if config.reuse_port and sockets and config.port == 0:
            config.port = sockets[0].getsockname()[1]

        self.processes_num = config.workers
        self.workers: list[WorkerProcess] = []
        #: Workers told to stop (SIGHUP, SIGTTOU): reaped when they exit, killed past the deadline.
        self.retiring: list[WorkerProcess] = []
        #: SIGHUP: the workers still to replace, and the replacement being started for the first.
        self.to_replace: deque[WorkerProcess] = deque()
        self.incoming: WorkerProcess | None = None
        self.incoming_for: WorkerProcess | None = None
        self.incoming_deadline = 0.0

        #: Slots whose worker died and awaits a replacement (delayed while workers keep failing to boot).
        self.missing = 0
        self.boot_failures = 0
        self.next_spawn_at = 0.0

        self.should_exit = threading.Event()
        self.failed = False
        self.signal_queue: list[int] = []
        self.health_timeout = float(config.timeout_worker_healthcheck)
        self.health_interval = min(1.0, self.health_timeout / 4)
        #: --metrics-bind / --metrics-path: the workers' blocks, added up here (None: metrics off).
        self.metrics = WorkersMetrics(config) if config.metrics_enabled else None

    @property
    def processes(self) -> list[WorkerProcess]:
        """The serving workers (uvicorn's name for them)."""
        return self.workers

    # Life cycle ---------------------------------------------------------------------------

    def run(self) -> None:
        pid = os.getpid()
        message = "Started parent process [%d]"
        color_message = "Started parent process [" + click.style("%d", fg="cyan", bold=True) + "]"
        logger.info(message, pid, extra={"color_message": color_message})

        if self.metrics is not None:
            try:
                self.metrics.start()
            except OSError as exc:
                logger.error("--metrics-bind: %s", exc)
                sys.exit(STARTUP_FAILURE)
        previous = self._install_signal_handlers()
        try:
            for _ in range(self.processes_num):
                self.workers.append(self.spawn())
            while not self.should_exit.is_set():
                self.wait(TICK)
                self.handle_signals()
                if self.should_exit.is_set():
                    break
                self.keep_subprocess_alive()
                self.check_health()
                self.step_restart()
            self.stop_all()
        finally:
            self._restore_signal_handlers(previous)
            if self.metrics is not None:
                self.metrics.stop()

        message = "Stopping parent process [%d]"
        color_message = "Stopping parent process [" + click.style("%d", fg="cyan", bold=True) + "]"
        logger.info(message, pid, extra={"color_message": color_message})
        if self.failed:
            sys.exit(STARTUP_FAILURE)

    def spawn(self) -> WorkerProcess:
        taken = {worker.number for worker in self.all_processes() if not worker.closed}
        number = next(number for number in range(len(taken) + 1) if number not in taken)
        worker = WorkerProcess(self.config, self.worker_sockets, self.metrics, number)
        worker.start()
        return worker

    def _restarted(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.restarted(reason)

    def all_processes(self) -> list[WorkerProcess]:
        extra = [self.incoming] if self.incoming is not None else []
        return self.workers + extra + self.retiring

    def wait(self, timeout: float) -> None:
        """Sleep until a signal, a worker's exit or a health answer, or ``timeout``."""
        waitables: list[Any] = [self._wakeup_reader]
        for worker in self.all_processes():
            waitables += worker.waitables()
        wait(waitables, min(timeout, self.health_interval))
        self._drain_wakeups()
        for worker in self.workers + ([self.incoming] if self.incoming else []):
            worker.read_answers()
            if worker.metrics_requested:
                worker.answer_metrics()

    def stop_all(self) -> None:
        """SIGTERM every worker; wait for them within the graceful timeout, then kill what remains."""
        processes = self.all_processes()
        self.incoming = None
        for worker in processes:
            worker.terminate()
        limit = self._retire_deadline()
        forced = False
        for worker in processes:
            logger.info("Waiting for child process [%d]", worker.pid)
        while any(worker.is_alive() for worker in processes):
            wait([self._wakeup_reader] + [w.process.sentinel for w in processes if w.is_alive()], TICK)
            self._drain_wakeups()
            stop_signals = [sig for sig in self.signal_queue if sig in (signal.SIGINT, signal.SIGTERM)]
            self.signal_queue.clear()
            if stop_signals and not forced:
                # A second Ctrl-C / SIGTERM: the workers skip waiting for their connections.
                forced = True
                logger.info("Forcing the child processes to quit.")
                for worker in processes:
                    worker.signal(signal.SIGINT)
            for worker in processes:
                if worker.is_alive() and worker.overstayed(limit):
                    logger.warning("Child process [%d] did not stop in time; killing it.", worker.pid)
                    worker.kill()
        for worker in processes:
            worker.close()
        self.workers = []
        self.retiring = []

    # Supervision ----------------------------------------------------------------------------

    def keep_subprocess_alive(self) -> None:
        for worker in list(self.workers):
            if worker.is_alive():
                if worker.ready:
                    self.boot_failures = 0
                continue
            worker.close()
            self.workers.remove(worker)
            if worker.exitcode == STARTUP_FAILURE:
                logger.error("Child process [%d] failed to start, stopping the parent process.", worker.pid)
                self.failed = True
                self.should_exit.set()
                return
            if worker.exitcode == 0:  # it served its --limit-max-requests
                logger.info("Child process [%d] exited; starting a new one.", worker.pid)
                self._restarted("max_requests")
            else:
                logger.warning("Child process [%d] died (%s); starting a new one.", worker.pid, _describe(worker))
                self._restarted("crash")
            self.missing += 1
            if not worker.ready:  # it never served: do not spin if every new worker dies the same way
                self.boot_failures += 1
                delay = min(RESPAWN_BACKOFF * 2 ** (self.boot_failures - 1), RESPAWN_BACKOFF_MAX)
                self.next_spawn_at = time.monotonic() + delay
        while self.missing and time.monotonic() >= self.next_spawn_at:
            self.missing -= 1
            self.workers.append(self.spawn())

        deadline = self._retire_deadline()
        for worker in list(self.retiring):
            if not worker.is_alive():
                worker.close()
                self.retiring.remove(worker)
            elif worker.overstayed(deadline):
                logger.warning("Child process [%d] did not stop in time; killing it.", worker.pid)
                worker.kill()

    def check_health(self) -> None:
        now = time.monotonic()
        for index, worker in enumerate(self.workers):
            if worker.overdue(now, self.health_timeout):
                stacks = worker.dump_stacks_and_kill()
                logger.error(
                    "Child process [%d] did not answer the health check within %gs: its event loop is "
                    "blocked. Replacing it. Its threads were at:\n%s",
                    worker.pid,
                    self.health_timeout,
                    stacks,
                )
                worker.close()
                self.workers[index] = self.spawn()
                self._restarted("health_check")
                now = time.monotonic()
            else:
                worker.ping(now, self.health_interval)
        if self.incoming is not None:
            self.incoming.ping(now, self.health_interval)

    def step_restart(self) -> None:
        """One step of a rolling restart: start a replacement, then retire the old worker once it serves."""
        incoming = self.incoming
        if incoming is not None:
            old = self.incoming_for
            assert old is not None
            if incoming.ready:
                self.incoming = self.incoming_for = None
                if old in self.workers:
                    self.workers[self.workers.index(old)] = incoming
                    self.retire(old)
                    self._restarted("reload")
                else:  # the old one died (or was removed) meanwhile and its slot is already refilled
                    self.retire(incoming)
            elif not incoming.is_alive():
                logger.error(
                    "New child process [%d] failed to start (%s); keeping worker [%d] and aborting the restart.",
                    incoming.pid,
                    _describe(incoming),
                    old.pid,
                )
                self._abort_restart()
            elif time.monotonic() > self.incoming_deadline:
                logger.error(
                    "New child process [%d] was not ready in time; keeping worker [%d] and aborting the restart.",
                    incoming.pid,
                    old.pid,
                )
                incoming.kill()
                self._abort_restart()
            return
        while self.to_replace:
            old = self.to_replace.popleft()
            if old in self.workers:
                self.incoming = self.spawn()
                self.incoming_for = old
                self.incoming_deadline = time.monotonic() + self.health_timeout
                return

    def _abort_restart(self) -> None:
        assert self.incoming is not None
        self.incoming.close()
        self.incoming = self.incoming_for = None
        self.to_replace.clear()

    def retire(self, worker: WorkerProcess) -> None:
        if worker in self.workers:
            self.workers.remove(worker)
        worker.terminate()
        self.retiring.append(worker)

    def _retire_deadline(self) -> float | None:
        graceful = self.config.timeout_graceful_shutdown
        # A stopping worker first keeps serving for --shutdown-delay, then drains.
        return None if graceful is None else graceful + self.config.shutdown_delay + STOP_MARGIN

    # Signals ------------------------------------------------------------------------------------

    def _install_signal_handlers(self) -> dict[int, Any]:
        self._wakeup_reader, self._wakeup_writer = socket.socketpair()
        self._wakeup_reader.setblocking(False)
        self._wakeup_writer.setblocking(False)
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            previous = {sig: signal.signal(sig, self._queue_signal) for sig in SIGNALS}
            self._previous_wakeup_fd = signal.set_wakeup_fd(self._wakeup_writer.fileno(), warn_on_full_buffer=False)
        return previous

    def _restore_signal_handlers(self, previous: dict[int, Any]) -> None:
        if previous:
            signal.set_wakeup_fd(self._previous_wakeup_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self._wakeup_reader.close()
        self._wakeup_writer.close()

    def _drain_wakeups(self) -> None:
        """Empty the signal wake-up socket (the signals themselves are in ``signal_queue``)."""
        try:
            while self._wakeup_reader.recv(512):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _queue_signal(self, sig: int, frame: FrameType | None) -> None:
        self.signal_queue.append(sig)

    def handle_signals(self) -> None:
        while self.signal_queue:
            sig = self.signal_queue.pop(0)
            handler = getattr(self, f"handle_{SIGNALS[sig].lower()}")
            handler()

    def handle_int(self) -> None:
        logger.info("Received SIGINT, exiting.")
        self.should_exit.set()

    def handle_term(self) -> None:
        logger.info("Received SIGTERM, exiting.")
        self.should_exit.set()

    def handle_hup(self) -> None:
        logger.info("Received SIGHUP, restarting processes.")
        self.to_replace = deque(self.workers)

    def handle_ttin(self) -> None:
        logger.info("Received SIGTTIN, increasing the number of processes.")
        self.processes_num += 1
        self.workers.append(self.spawn())

    def handle_ttou(self) -> None:
        logger.info("Received SIGTTOU, decreasing number of processes.")
        if self.processes_num <= 1 or len(self.workers) <= 1:
            logger.info("Already reached one process, cannot decrease the number of processes anymore.")
            return
        self.processes_num -= 1
        self.retire(self.workers[-1])


def _describe(worker: WorkerProcess) -> str:
    code = worker.exitcode
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
