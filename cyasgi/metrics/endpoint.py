"""Where the metrics are read: the ``--metrics-bind`` listener and the ``--metrics-path`` answer.

The listener is ``prometheus_client``'s own HTTP server, in a thread of the process that can see
every count: the server itself, or the ``--workers`` supervisor. A scrape never waits for the event
loop, so a blocked loop still shows in the lag series. ``--metrics-path`` is answered on the main
port by the server, like ``--health-path``; with ``--workers`` the worker asks the supervisor, so
every scrape shows all the workers whichever one it lands on.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable
from typing import Any, Callable

from cyasgi.metrics.exposition import Snapshot, render

logger = logging.getLogger("uvicorn.error")

#: How long a stopping listener's thread gets to end.
STOP_TIMEOUT = 5.0


class MetricsListener:
    """``--metrics-bind HOST:PORT``: Prometheus' text on every path, from a thread of its own."""

    def __init__(self, host: str, port: int, read: Callable[[], Snapshot]) -> None:
        self.host = host
        self.port = port
        self.read = read
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve; OSError when the address cannot be bound."""
        from prometheus_client import CollectorRegistry, start_http_server

        from cyasgi.metrics.exposition import ServerCollector

        registry = CollectorRegistry(auto_describe=False)
        registry.register(ServerCollector(self.read))
        self._server, self._thread = start_http_server(self.port, addr=self.host, registry=registry)
        self.port = self._server.server_port
        host = f"[{self.host}]" if ":" in self.host else self.host
        logger.info("Metrics on http://%s:%d/metrics", host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
            self._thread = None


class MetricsPage:
    """The ``--metrics-path`` answer, an ASGI app the server runs itself (the app never sees it).

    ``text`` gives the exposition and its content type: made here from this process's block, or
    asked of the supervisor with ``--workers``.
    """

    __slots__ = ("text",)

    def __init__(self, text: Callable[[], Awaitable[tuple[bytes, str]]]) -> None:
        self.text = text

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        status = 200
        try:
            body, content_type = await self.text()
        except (asyncio.TimeoutError, OSError) as exc:  # the supervisor did not answer in time, or is gone
            logger.warning("--metrics-path: no metrics from the supervisor (%s).", type(exc).__name__)
            status, body, content_type = 503, b"metrics unavailable\n", "text/plain; charset=utf-8"
        headers = [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", b"%d" % len(body)),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def local_text(read: Callable[[], Snapshot]) -> Callable[[], Awaitable[tuple[bytes, str]]]:
    """The exposition of this process's own counts, for a MetricsPage."""

    async def text() -> tuple[bytes, str]:
        return render(read)

    return text
