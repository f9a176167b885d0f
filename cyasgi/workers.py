"""gunicorn worker classes: ``gunicorn -k cyasgi.workers.CyasgiWorker module:app``.

gunicorn's arbiter binds the sockets, forks the workers and watches them; each worker runs a
cyasgi ``Server`` on the inherited sockets. gunicorn settings map onto ``Config``:

- ``bind``: the arbiter's listeners are served as they are (TCP, UNIX or inherited fds);
- ``backlog`` → ``backlog``; ``keepalive`` → ``timeout_keep_alive``;
- ``timeout`` → the heartbeat: the worker notifies the arbiter from its event-loop tick, so a
  loop blocked longer than ``timeout`` is killed by gunicorn (its stacks go to stderr first);
- ``graceful_timeout`` → ``timeout_graceful_shutdown`` (one second less, so the lifespan
  shutdown still runs before gunicorn's SIGKILL);
- ``max_requests`` (+ ``max_requests_jitter``, drawn by gunicorn) → ``limit_max_requests``;
- ``forwarded_allow_ips`` → ``forwarded_allow_ips``;
- ``certfile``/``keyfile``/``ca_certs``/``cert_reqs``/``ciphers`` → gunicorn's own TLS context
  (its ``ssl_context`` hook included).

Signals, as gunicorn sends them: TERM is a graceful stop, QUIT (and a second INT) a quick one,
USR1 reopens the log files, ABRT (gunicorn's timeout) logs the stacks and exits.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import signal
import socket
import ssl
import sys
from typing import Any, Callable

from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

from cyasgi._compat import asyncio_run
from cyasgi.config import Config
from cyasgi.server import Server


class CyasgiWorker(Worker):
    """cyasgi under gunicorn: the compiled HTTP/1.1 twin (where built) and uvloop (where installed)."""

    CONFIG_KWARGS: dict[str, Any] = {"loop": "auto", "http": "auto"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._adopt_gunicorn_logging()
        self.server: Server | None = None

        cfg = self.cfg
        config_kwargs: dict[str, Any] = {
            "app": None,
            "log_config": None,
            "timeout_keep_alive": cfg.keepalive,
            # self.timeout is half of gunicorn's --timeout already; the server checks once a second
            # whether to notify, so halve it again to stay clear of the arbiter's deadline.
            "timeout_notify": self.timeout / 2,
            "callback_notify": self.callback_notify,
            "limit_max_requests": self.max_requests if cfg.max_requests > 0 else None,
            "forwarded_allow_ips": cfg.forwarded_allow_ips,
            "timeout_graceful_shutdown": max(int(cfg.graceful_timeout) - 1, 1),
        }
        if cfg.backlog:
            config_kwargs["backlog"] = cfg.backlog
        if cfg.is_ssl:
            config_kwargs["ssl_context_factory"] = self._ssl_context
        config_kwargs.update(self.CONFIG_KWARGS)
        self.config = Config(**config_kwargs)

    def _adopt_gunicorn_logging(self) -> None:
        """Send cyasgi's loggers (uvicorn's names) to gunicorn's error and access logs."""
        for name, source in (("uvicorn.error", self.log.error_log), ("uvicorn.access", self.log.access_log)):
            logger = logging.getLogger(name)
            logger.handlers = source.handlers
            logger.setLevel(source.level)
            logger.propagate = False

    def _ssl_context(self, config: Config, default_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        try:
            from gunicorn.sock import ssl_context
        except ImportError:  # gunicorn < 21: build it from the same settings ourselves
            options = self.cfg.ssl_options
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(options["certfile"], options.get("keyfile"))
            context.verify_mode = options.get("cert_reqs", ssl.CERT_NONE)
            if options.get("ca_certs"):
                context.load_verify_locations(options["ca_certs"])
            if options.get("ciphers"):
                context.set_ciphers(options["ciphers"])
            return context
        return ssl_context(self.cfg)

    def init_signals(self) -> None:
        # gunicorn's handlers only flip self.alive, which the server never reads: start from the
        # defaults and let Server.capture_signals own SIGINT and SIGTERM.
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, self.handle_usr1)
        signal.siginterrupt(signal.SIGUSR1, False)
        signal.signal(signal.SIGABRT, self.handle_abort)

    def handle_abort(self, sig: int, frame: Any) -> None:
        """gunicorn's timeout (the loop stopped notifying): log every thread's stack, then exit."""
        self.alive = False
        self.log.critical("Worker timed out: its event loop was blocked. Stacks of its threads:")
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        self.cfg.worker_abort(self)
        sys.stderr.flush()
        # Not sys.exit(): the SystemExit would surface inside the blocked request, where the
        # protocol reports it as an app error and the worker carries on.
        os._exit(1)

    def handle_quick_exit(self) -> None:
        """SIGQUIT: gunicorn's quick shutdown; stop without waiting for open connections."""
        self.alive = False
        if self.server is not None:
            self.server.should_exit = True
            self.server.force_exit = True

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        self.server = server = Server(config=self.config)
        asyncio.get_running_loop().add_signal_handler(signal.SIGQUIT, self.handle_quick_exit)
        sockets: list[socket.socket] = [getattr(listener, "sock", listener) for listener in self.sockets]
        await server.serve(sockets=sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    def run(self) -> None:
        # The arbiter's clock for this worker starts with the first notify: without one, a loop
        # blocked before the first tick would never be timed out.
        self.notify()
        asyncio_run(self._serve(), loop_factory=self.config.get_loop_factory())

    async def callback_notify(self) -> None:
        self.notify()


class CyasgiH11Worker(CyasgiWorker):
    """The pure-Python stack: asyncio and the h11 parser. On PyPy (or with CYASGI_NO_EXTENSIONS=1)
    the pure HTTP/1.1 twin is the one selected, so nothing compiled runs."""

    CONFIG_KWARGS = {"loop": "asyncio", "http": "h11"}


# uvicorn's names, so that switching is a search-and-replace of "uvicorn" with "cyasgi".
UvicornWorker = CyasgiWorker
UvicornH11Worker = CyasgiH11Worker

__all__ = ["CyasgiH11Worker", "CyasgiWorker", "UvicornH11Worker", "UvicornWorker"]
