"""Server: listen, tick, handle signals, shut down gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Generator, Sequence
from email.utils import formatdate
from types import FrameType
from typing import Any

import click

from cyasgi._compat import asyncio_run
from cyasgi.config import STARTUP_FAILURE, Config, is_ipv6_wildcard, tcp_socket
from cyasgi.metrics import recorder_for
from cyasgi.metrics.block import Block
from cyasgi.metrics.endpoint import MetricsListener, MetricsPage, local_text
from cyasgi.metrics.exposition import Snapshot
from cyasgi.metrics.sampler import LoopSampler
from cyasgi.metrics.workers import METRICS_REQUEST
from cyasgi.protocols.http import sweep_deadlines, twin_name
from cyasgi.protocols.http.wire import encode_headers_block

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
if sys.platform == "win32":  # pragma: no cover
    HANDLED_SIGNALS += (signal.SIGBREAK,)  # type: ignore[attr-defined]

#: Seconds between ticks: the Date header, deadlines, max-requests and exit checks run this often.
TICK_INTERVAL = 0.1
#: How long a worker's --metrics-path waits for the supervisor's exposition.
METRICS_REPLY_TIMEOUT = 10.0

logger = logging.getLogger("uvicorn.error")


class ServerState:
    """State shared by the server and every connection protocol."""

    def __init__(self) -> None:
        self.total_requests = 0
        self.connections: set[asyncio.Protocol] = set()
        # Request tasks that are still running (an app that finishes without waiting never lands here).
        self.tasks: set[asyncio.Task[None]] = set()
        #: ``[(name, value)]``: date, server and --header defaults (uvicorn's shape).
        self.default_headers: list[tuple[bytes, bytes]] = []
        #: The same headers as ready-to-write ``name: value\r\n`` lines, rebuilt once a second.
        self.default_headers_block = b""
        #: Set as soon as shutdown begins (before the --shutdown-delay): --health-path answers 503.
        self.shutting_down = False
        #: Connections whose response started in this loop iteration: at its end, a head still
        #: held for the first body chunk is written (one callback per iteration for all of them).
        self.pending_heads: list[Any] = []
        #: --metrics-bind / --metrics-path: the memory the protocols count into (None: metrics off),
        #: and the --metrics-path answer.
        self.metrics_block: Any = None
        self.metrics_page: Any = None


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.server_state = ServerState()

        self.started = False
        self.should_exit = False
        self.force_exit = False
        self.last_notified = 0.0
        self.servers: list[Any] = []

        #: Set by the --workers supervisor in each worker: the Connection its health pings arrive on.
        self.health_channel: Any = None
        #: Set by the --workers supervisor: the shared block this worker counts into (it reads them all).
        self.metrics_block: Any = None
        self._metrics_listener: Any = None
        self._own_metrics_block: Any = None
        self._loop_sampler: Any = None
        self._metrics_reply: asyncio.Future[bytes] | None = None

        self._captured_signals: list[int] = []
        self._shutdown_started = False
        self._date_second = -1
        self._limit_max_requests: int | None | bool = False  # False: not computed yet
        self._delay_until = 0.0  # time.monotonic() at which the --shutdown-delay ends; 0: not started
        #: True when startup bound --bind's listeners itself: its UNIX socket files are its to remove.
        self._own_unix_paths = False

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        # The factory first: a bad --loop exits before the coroutine exists (no "never awaited").
        loop_factory = self.config.get_loop_factory()
        return asyncio_run(self.serve(sockets=sockets), loop_factory=loop_factory)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        with self.capture_signals(), self.answer_health_checks():
            await self._serve(sockets)

    @contextlib.contextmanager
    def answer_health_checks(self) -> Generator[None, None, None]:
        """Answer the supervisor's health pings from this event loop, never from a side thread.

        Each ping on ``health_channel`` is echoed back with ``1`` once the server has started,
        ``0`` before. A loop blocked by synchronous code stops answering, which is how the
        supervisor (cyasgi.supervisors.multiprocess) tells a stuck worker from a busy one.
        No-op without a channel.
        """
        channel = self.health_channel
        if channel is None:
            yield
            return
        loop = asyncio.get_running_loop()
        fd = channel.fileno()

        def answer() -> None:
            try:
                message = channel.recv_bytes()
                if message.startswith(METRICS_REQUEST):  # the exposition this worker asked for
                    reply = self._metrics_reply
                    if reply is not None and not reply.done():
                        reply.set_result(message[len(METRICS_REQUEST) :])
                    return
                channel.send_bytes(message + (b"1" if self.started else b"0"))
            except (EOFError, OSError):  # the supervisor went away: stop listening
                loop.remove_reader(fd)

        loop.add_reader(fd, answer)
        try:
            yield
        finally:
            loop.remove_reader(fd)

    def announce_started(self) -> None:
        """Tell the supervisor (if any) at once that this worker serves, before the loop runs any
        request: from then on, a loop that stops answering pings is a blocked one."""
        if self.health_channel is not None:
            try:
                self.health_channel.send_bytes(b"!1")
            except OSError:
                pass

    async def _serve(self, sockets: list[socket.socket] | None = None) -> None:
        process_id = os.getpid()

        config = self.config
        if not config.loaded:
            try:
                config.load()
            except ValueError as exc:  # ConfigError and friends: a one-line reason, no traceback
                logger.error("%s", exc)
                sys.exit(STARTUP_FAILURE)

        self.lifespan = config.lifespan_class(config)
        if config.metrics_enabled:
            self._start_metrics()

        message = "Started server process [%d]"
        color_message = "Started server process [" + click.style("%d", fg="cyan") + "]"
        logger.info(message, process_id, extra={"color_message": color_message})
        self._log_implementation()

        try:
            await self.startup(sockets=sockets)
            if self.should_exit and not self.started:
                return  # stopped before it listened; a signal once listening still shuts down gracefully
            await self.main_loop()
            await self.shutdown(sockets=sockets)
        finally:
            self._stop_metrics()

        message = "Finished server process [%d]"
        color_message = "Finished server process [" + click.style("%d", fg="cyan") + "]"
        logger.info(message, process_id, extra={"color_message": color_message})

    def _log_implementation(self) -> None:
        protocol = self.config.http_protocol_class
        twin = twin_name(protocol)
        if twin is not None:
            description = f"{twin} twin ({protocol.__module__})"
        else:
            description = f"custom protocol {protocol.__module__}.{protocol.__qualname__}"
        loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
        python = f"{platform.python_implementation()} {platform.python_version()}"
        logger.info("HTTP/1.1: %s on %s, %s", description, loop_name, python)
        if self.config.http2 and twin is not None:
            # The HTTP/1.1 protocol hands h2c and ALPN h2 connections to the HTTP/2 protocol of its build.
            module = "cyasgi._speedups.h2protocol" if twin == "compiled" else "cyasgi.protocols.http2.protocol"
            ways = "ALPN h2 over TLS" if self.config.is_ssl else "h2c with prior knowledge"
            logger.info("HTTP/2: %s twin (%s), %s", twin, module, ways)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            # As uvicorn: serve() and run() end with SystemExit(3), so no caller mistakes it for a clean stop.
            sys.exit(STARTUP_FAILURE)

        config = self.config
        self._refresh_default_headers(time.time())

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            return config.http_protocol_class(
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=_loop,
            )

        loop = asyncio.get_running_loop()
        # The twins' HttpProtocol has a factory of its own that makes a connection's protocol cheaper.
        connection_factory = getattr(config.http_protocol_class, "connection_factory", None)
        if connection_factory is not None:
            create_protocol = (
                connection_factory(config, self.server_state, self.lifespan.state, loop) or create_protocol
            )
        listeners: Sequence[socket.SocketType]
        try:
            if sockets is not None:
                # Sockets bound by a parent process (--workers, --reload) or by the caller.
                for sock in sockets:
                    server = await loop.create_server(
                        create_protocol, sock=sock, ssl=config.ssl, backlog=config.backlog
                    )
                    self.servers.append(server)
                listeners = sockets
            elif config.listeners:
                # --bind: every listener bound here, each with its own server, all with one TLS setting.
                listeners = config.open_listeners()
                self._own_unix_paths = True
                for sock in listeners:
                    server = await loop.create_server(
                        create_protocol, sock=sock, ssl=config.ssl, backlog=config.backlog
                    )
                    self.servers.append(server)
            elif config.fd is not None:
                # Inherited, e.g. from systemd socket activation: its family is read from the fd.
                sock = socket.socket(fileno=os.dup(config.fd))
                server = await loop.create_server(create_protocol, sock=sock, ssl=config.ssl, backlog=config.backlog)
                assert server.sockets is not None
                listeners = server.sockets
                self.servers = [server]
            elif config.uds is not None:
                uds_perms = 0o666
                if os.path.exists(config.uds):
                    uds_perms = os.stat(config.uds).st_mode
                server = await loop.create_unix_server(
                    create_protocol, path=config.uds, ssl=config.ssl, backlog=config.backlog
                )
                os.chmod(config.uds, uds_perms)
                assert server.sockets is not None
                listeners = server.sockets
                self.servers = [server]
            elif is_ipv6_wildcard(config.host):
                # Our own socket: the loops would make it IPv6-only, and "::" should serve IPv4 too.
                sock = tcp_socket(config.host, config.port, config.reuse_port)
                sock.listen(config.backlog)
                server = await loop.create_server(
                    create_protocol, sock=sock, ssl=config.ssl, backlog=config.backlog
                )
                listeners = [sock]
                self.servers = [server]
            else:
                server = await loop.create_server(
                    create_protocol, host=config.host, port=config.port, ssl=config.ssl, backlog=config.backlog
                )
                assert server.sockets is not None
                listeners = server.sockets
                self.servers = [server]
        except OSError as exc:
            logger.error(exc)
            if sockets is None:
                config.remove_unix_sockets()
            await self.lifespan.shutdown()
            sys.exit(STARTUP_FAILURE)

        listening_on = getattr(create_protocol, "listening_on", None)
        if listening_on is not None:
            listening_on(listeners)
        if sockets is None and config.listeners:
            for listener, listening in zip(config.listeners, listeners):
                config.announce_listener(listener, listening)
        elif sockets is None:  # a supervisor that bound the sockets has logged the address itself
            self._log_started_message(listeners)
        self.started = True
        self.announce_started()

    def _log_started_message(self, listeners: Sequence[socket.SocketType]) -> None:
        config = self.config

        if config.fd is not None:
            sock = listeners[0]
            logger.info("cyasgi running on socket %s (Press CTRL+C to quit)", sock.getsockname())
        elif config.uds is not None:
            logger.info("cyasgi running on unix socket %s (Press CTRL+C to quit)", config.uds)
        else:
            addr_format = "%s://%s:%d"
            host = "0.0.0.0" if config.host is None else config.host
            if ":" in host:
                addr_format = "%s://[%s]:%d"
            port = config.port
            if port == 0:
                port = listeners[0].getsockname()[1]
            protocol_name = "https" if config.ssl else "http"
            message = f"cyasgi running on {addr_format} (Press CTRL+C to quit)"
            color_message = "cyasgi running on " + click.style(addr_format, bold=True) + " (Press CTRL+C to quit)"
            logger.info(message, protocol_name, host, port, extra={"color_message": color_message})

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        sampler = self._loop_sampler
        while not should_exit:
            counter += 1
            counter = counter % 864000
            if sampler is not None:
                sampler.before_sleep(time.monotonic())
            await asyncio.sleep(TICK_INTERVAL)
            if sampler is not None:
                sampler.tick(time.monotonic())
            should_exit = await self.on_tick(counter)

    # Metrics (docs/metrics.md) ------------------------------------------------------------------

    def _start_metrics(self) -> None:
        """Count into a block: the supervisor's (--workers), else one of this server's own, which
        its --metrics-bind listener reads."""
        config = self.config
        state = self.server_state
        block = self.metrics_block
        if block is None:
            block = self._own_metrics_block = Block()
        state.metrics_block = block.memory
        self._loop_sampler = LoopSampler(recorder_for(state), state, TICK_INTERVAL)

        def read() -> Snapshot:
            values = block.values()
            return Snapshot(values, [("0", values)])

        if self._own_metrics_block is not None and config.metrics_address is not None:
            self._metrics_listener = MetricsListener(*config.metrics_address, read)
            try:
                self._metrics_listener.start()
            except OSError as exc:
                self._metrics_listener = None
                logger.error("--metrics-bind: %s", exc)
                sys.exit(STARTUP_FAILURE)
        if config.metrics_path_raw is not None:
            ask = self._ask_supervisor if self._own_metrics_block is None else local_text(read)
            state.metrics_page = MetricsPage(ask)

    async def _ask_supervisor(self) -> tuple[bytes, str]:
        """The exposition of every worker, from the supervisor (asked on the health pipe)."""
        from prometheus_client import CONTENT_TYPE_LATEST

        reply = self._metrics_reply
        if reply is None or reply.done():  # one question at a time; concurrent scrapes share its answer
            reply = self._metrics_reply = asyncio.get_running_loop().create_future()
            self.health_channel.send_bytes(METRICS_REQUEST)
        try:
            text = await asyncio.wait_for(asyncio.shield(reply), METRICS_REPLY_TIMEOUT)
        except asyncio.TimeoutError:
            if self._metrics_reply is reply:
                self._metrics_reply = None  # the next scrape asks again
            raise
        return text, CONTENT_TYPE_LATEST

    def _stop_metrics(self) -> None:
        if self._metrics_listener is not None:
            self._metrics_listener.stop()
            self._metrics_listener = None
        if self._own_metrics_block is not None:
            self.server_state.metrics_block = None
            self._own_metrics_block = None  # (its memory goes with the last protocol holding it)

    async def on_tick(self, counter: int) -> bool:
        now = time.time()
        if int(now) != self._date_second:
            self._refresh_default_headers(now)
            if self.config.callback_notify is not None and now - self.last_notified > self.config.timeout_notify:
                self.last_notified = now
                await self.config.callback_notify()

        sweep_deadlines(self.server_state.connections, time.monotonic())

        if self.should_exit:
            return self._shutdown_delay_over()

        max_requests = self.limit_max_requests
        if max_requests is not None and self.server_state.total_requests >= max_requests:
            logger.info("Maximum request limit of %d exceeded. Terminating process.", max_requests)
            return True
        return False

    def _shutdown_delay_over(self) -> bool:
        """Asked to stop: with --shutdown-delay, keep serving (health checks failing) that long first."""
        self.server_state.shutting_down = True
        delay = self.config.shutdown_delay
        if not delay or self.force_exit:
            return True
        now = time.monotonic()
        if not self._delay_until:
            self._delay_until = now + delay
            logger.info(
                "Shutdown delay: serving %gs more with health checks failing, then shutting down."
                " (CTRL+C to force quit)",
                delay,
            )
        return now >= self._delay_until

    def _refresh_default_headers(self, now: float) -> None:
        """Rebuild the date/server/custom header block; runs once a second, never per request."""
        self._date_second = int(now)
        headers = list(self.config.encoded_headers)
        if self.config.date_header:
            headers.insert(0, (b"date", formatdate(now, usegmt=True).encode("ascii")))
        self.server_state.default_headers = headers
        self.server_state.default_headers_block = encode_headers_block(headers)

    @property
    def limit_max_requests(self) -> int | None:
        """``--limit-max-requests`` plus a random jitter in ``[0, --limit-max-requests-jitter]``, drawn once."""
        if self._limit_max_requests is False:
            limit = self.config.limit_max_requests
            if limit is not None and self.config.limit_max_requests_jitter > 0:
                limit += random.randint(0, self.config.limit_max_requests_jitter)
            self._limit_max_requests = limit
        return self._limit_max_requests

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, let in-flight requests finish (bounded), then run lifespan shutdown.

        Runs once: serve() calls it too when its loop ends, after a caller already has.
        """
        if self._shutdown_started:
            return
        self._shutdown_started = True
        self.server_state.shutting_down = True
        logger.info("Shutting down")
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        # Idle connections close now, busy ones right after their current response.
        for connection in list(self.server_state.connections):
            connection.shutdown()  # type: ignore[attr-defined]
        await asyncio.sleep(TICK_INTERVAL)

        try:
            await asyncio.wait_for(self._drain(), timeout=self.config.timeout_graceful_shutdown)
        except asyncio.TimeoutError:
            tasks = list(self.server_state.tasks)
            logger.error("Cancel %s running task(s), timeout graceful shutdown exceeded", len(tasks))
            for task in tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
            self._abort_connections()
        if self.force_exit:
            self._abort_connections()

        if not self.force_exit:
            await self.lifespan.shutdown()
        if self._own_unix_paths:
            self.config.remove_unix_sockets()

    def _abort_connections(self) -> None:
        """Drop whatever is still connected: the graceful period is over (or was cut short)."""
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()

    async def _drain(self) -> None:
        state = self.server_state
        if state.connections and not self.force_exit:
            logger.info("Waiting for connections to close. (CTRL+C to force quit)")
            while state.connections and not self.force_exit:
                await asyncio.sleep(TICK_INTERVAL)
        if state.tasks and not self.force_exit:
            logger.info("Waiting for background tasks to complete. (CTRL+C to force quit)")
            while state.tasks and not self.force_exit:
                await asyncio.sleep(TICK_INTERVAL)
        if self.force_exit:
            return  # on 3.12+ wait_closed() would wait for the connections we are leaving behind
        for server in self.servers:
            await server.wait_closed()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """SIGINT/SIGTERM start a graceful shutdown; a second SIGINT forces it.

        signal.signal (not loop.add_signal_handler) so the previous handlers come back afterwards,
        and each captured signal is raised again then: the process ends the way the signal asked
        (KeyboardInterrupt for Ctrl-C, termination status for SIGTERM). Only the main thread can
        install handlers; elsewhere serving goes on without them.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        for captured in reversed(self._captured_signals):
            signal.raise_signal(captured)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._captured_signals.append(sig)
        self.server_state.shutting_down = True  # --health-path answers 503 from now on
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True
