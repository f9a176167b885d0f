"""The HTTP/2 asyncio protocol: one connection, its streams, and the ASGI ``receive``/``send`` of each.

One source, two builds, like the connection core it drives: PyPy and ``CYASGI_NO_EXTENSIONS=1`` run this
file, and CPython runs it compiled by Cython as ``cyasgi._speedups.h2protocol`` (a link to this file) with
the augmenting ``cyasgi/_speedups/h2protocol.pxd``. Use it through ``cyasgi.protocols.http2.serving``.

* ``H2Protocol``: one per connection, an ``asyncio.Protocol``. It feeds the bytes read to the sans-I/O
  ``H2Connection`` (engine.py), turns its events into streams and wakes, and writes what the connection
  queued once per batch (at the end of ``data_received``, or at the end of the loop iteration in which
  an application sent something).
* ``StreamCycle``: one per request stream. The ASGI pair: ``receive()`` hands out the body as the
  client sends it (and opens the flow-control windows only as the app consumes it), ``send()`` writes
  the response within the client's windows: a body the client has no room for waits, in the stream,
  until a WINDOW_UPDATE, and the app waits with it (nothing is buffered beyond the message it passed).

Streams with data waiting for window are served round-robin, a frame's worth each, so one large
response cannot starve the others. A ``CONNECT`` with ``:protocol websocket`` (RFC 8441) opens a
WebSocket on its stream instead, run by the ``--ws`` protocol over a ``websocket.StreamTransport``.
A connection reaches its clients as the HTTP/1.1 protocol's does:
after the h2c preface was recognised on a plain connection, or after TLS negotiated ``h2`` by ALPN.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import os
from collections import deque
from typing import Any
from urllib.parse import unquote

try:
    import cython
except ImportError:  # no Cython where this runs: the pure build, as with PyPy
    from cyasgi import _cython_shim as cython

from cyasgi.logging import TRACE_LOG_LEVEL
from cyasgi.middleware.proxy_headers import apply_proxy_headers, is_trusted_peer
from cyasgi.protocols.http.access import log_access
from cyasgi.protocols.http.errors import ClientDisconnected
from cyasgi.protocols.http.extensions import (
    accepts_trailers,
    early_hint_links,
    open_path,
    trailer_fields,
    zerocopy_range,
)

if not cython.compiled:  # the compiled build takes these from the C kernel and core (h2protocol.pxd)
    from cyasgi.metrics.recorder import Recorder
    from cyasgi.protocols.http.kernel import (
        completed,
        failed,
        has_proxy_headers,
        header_name,
        is_ascii,
        monotonic,
        parse_content_length,
        split_target,
        start_task,
        task_kwargs,
        valid_field_value,
    )
    from cyasgi.protocols.http2.engine import H2Connection, asgi_headers
from cyasgi.protocols.http.rules import as_bytes, header_pair
from cyasgi.protocols.http.server_apps import HealthCheck, service_unavailable
from cyasgi.protocols.http.wire import FILE_CHUNK_SIZE, HTTP_EXTENSIONS, SHUTDOWN_GRACE, http_scope_template
from cyasgi.protocols.http2.engine import (
    CONNECTION_SPECIFIC,
    ConnectionTerminated,
    DataReceived,
    HeadersTooLarge,
    PingAckReceived,
    PingReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamClosedError,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from cyasgi.protocols.http2.errors import CANCEL, ENHANCE_YOUR_CALM, INTERNAL_ERROR, NO_ERROR
from cyasgi.protocols.http2.websocket import StreamTransport, upgrade_request_head, websocket_over_h2
from cyasgi.protocols.tls import tls_extension
from cyasgi.protocols.utils import get_local_addr, get_remote_addr, is_ssl
from cyasgi.protocols.websockets.base import MAX_HEAD_SIZE

__all__ = ["COMPILED", "H2Protocol", "StreamCycle"]

#: True in the compiled build (cyasgi._speedups.h2protocol), False where this file runs as Python.
COMPILED: bool = cython.compiled

logger = logging.getLogger("uvicorn.error")
access_logger = logging.getLogger("uvicorn.access")

#: The connection preface a client sends first (RFC 9113 §3.4); the HTTP/1.1 protocol sniffs it.
PREFACE: bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

#: ``:status`` values, encoded once.
STATUS_VALUES = [str(code).encode("ascii") for code in range(600)]

#: ``content-length`` values of small bodies, encoded once.
CACHED_LENGTHS = 1024
LENGTH_VALUES = [str(size).encode("ascii") for size in range(CACHED_LENGTHS)]

#: The common methods as ``str``, without decoding them for every request.
METHODS = {
    name.encode("ascii"): name for name in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT")
}

#: Octets a stream with data waiting may send per turn when several wait (round-robin fairness).
SEND_QUANTUM = 16384

#: The opaque data of the keep-alive PING (--http2-keep-alive-interval).
KEEP_ALIVE_PING = b"cyasgika"

#: Octets of PING and SETTINGS acknowledgements a client may leave in our write buffer (it is not
#: reading them) before the connection is ended with ENHANCE_YOUR_CALM.
UNREAD_ACKS_LIMIT = 16384
PING_ACK_SIZE = 17  # a frame header and 8 octets
SETTINGS_ACK_SIZE = 9

def _caused_by_disconnect(exc: BaseException) -> bool:
    return isinstance(exc, (ClientDisconnected, ConnectionError))


class StreamCycle:
    """One request stream: its scope, its body as it arrives, and the response the app sends."""

    def __init__(self, protocol: H2Protocol, stream_id: int, scope: dict, app: Any, end_stream: bool) -> None:
        self._init(protocol, stream_id, scope, app, end_stream)

    def _init(self, protocol: H2Protocol, stream_id: int, scope: dict, app: Any, end_stream: bool) -> None:
        self.protocol = protocol
        self.conn = protocol.conn
        self.stream_id = stream_id
        self.scope = scope
        self.app = app
        # Request body: chunks not yet handed to the app, and their flow-controlled size.
        self.body: list = []
        self.body_size = 0
        self.body_credit = 0
        self.more_body = not end_stream
        self.body_limit = protocol.limit_body
        self.body_received = 0
        self.end_delivered = False
        self.waiter: Any = None
        # Connection and response state.
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self.bodyless = scope["method"] == "HEAD"
        self.head: Any = None  # the response head, until the first body chunk sends it
        self.status = 0
        self.content_length = -1
        self.bytes_sent = 0
        self.stream_ended = False  # our END_STREAM is queued
        self.trailers = False  # the app announced trailers and the client takes them
        self.trailers_announced = False
        self.awaiting_trailers = False
        self.trailer_list: list = []
        # For the access line's duration and the metrics' request duration histogram.
        self.started = monotonic() if protocol.access_log or protocol.metrics is not None else 0.0
        # Data waiting for flow-control window (or for the transport to drain).
        self.pending: Any = None
        self.pending_end = False
        self.send_waiter: Any = None
        self.last_progress = 0.0

    # Waking --------------------------------------------------------------------------------------

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def wake_sender(self) -> None:
        waiter = self.send_waiter
        if waiter is not None:
            self.send_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def on_reset(self) -> None:
        """The stream ended without its response (RST_STREAM either way, or the connection ended)."""
        self.disconnected = True
        self.pending = None
        self.wake()
        self.wake_sender()

    # ASGI ----------------------------------------------------------------------------------------

    async def run_asgi(self) -> None:
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            self.abort()
            raise
        except BaseException as exc:
            if self.disconnected and _caused_by_disconnect(exc):
                logger.debug("Client disconnected while the application was sending the response.")
            else:
                logger.error("Exception in ASGI application\n", exc_info=exc)
            if not self.disconnected and (not self.response_started or self.head is not None):
                self.send_500()
            else:
                self.abort()
        else:
            if result is not None:
                logger.error("ASGI callable should return None, but returned '%s'.", result)
                self.abort()
            elif self.disconnected:
                if self.response_started and not self.response_complete and self.protocol.access_log:
                    self.log_access(True)
            elif not self.response_started:
                logger.error("ASGI callable returned without starting response.")
                self.send_500()
            elif self.head is not None:
                logger.error("ASGI callable returned without completing response.")
                self.send_500()
            elif not self.response_complete:
                logger.error("ASGI callable returned without completing response.")
                self.abort()
        self.protocol.stream_done(self)

    async def receive(self) -> dict:
        while True:
            if self.disconnected or self.response_complete:
                return {"type": "http.disconnect"}
            if self.body or (not self.more_body and not self.end_delivered):
                break
            self.waiter = self.protocol.loop.create_future()
            await self.waiter
        chunks = self.body
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.body = []
        self.body_size = 0
        credit = self.body_credit
        if credit:
            self.body_credit = 0
            self.protocol.consumed(self.stream_id, credit)
        if not self.more_body:
            self.end_delivered = True
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    def send(self, message: dict) -> Any:
        """ASGI ``send``. Handled at once when nothing needs waiting (the returned awaitable is done);
        else the awaitable waits for the client's window (or the transport) to take the data."""
        protocol = self.protocol
        protocol.sending = True
        try:
            pending = self._send(message)
        except BaseException as error:
            pending = failed(error)
        protocol.sending = False
        if protocol.write_due:
            protocol.write_after_send()
        if pending is not None:
            return pending
        return completed()

    def _send(self, message: dict) -> Any:
        if type(message) is not dict:
            message = dict(message)
        if self.disconnected:
            raise ClientDisconnected
        message_type = message.get("type")
        if not self.response_started:
            if message_type == "http.response.start":
                self.start_response(message.get("status"), message.get("headers", ()), message.get("trailers", False))
                return None
            if message_type == "http.response.early_hint":
                self.send_early_hint(message.get("links", ()))
                return None
            raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{message_type}'.")
        if self.response_complete:
            raise RuntimeError(f"Unexpected ASGI message '{message_type}' sent, after response already completed.")
        if self.awaiting_trailers:
            if message_type != "http.response.trailers":
                raise RuntimeError(f"Expected ASGI message 'http.response.trailers', but got '{message_type}'.")
            self.send_trailers(message.get("headers", ()), message.get("more_trailers", False))
            return None
        if message_type == "http.response.body":
            return self.send_body(message.get("body", b""), message.get("more_body", False))
        if message_type == "http.response.pathsend":
            return self.send_path(message.get("path"))
        if message_type == "http.response.zerocopysend":
            return self.send_zerocopy(message)
        raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{message_type}'.")

    # The response --------------------------------------------------------------------------------

    def start_response(self, status: Any, headers: Any, trailers: Any) -> None:
        # Everything is checked before anything is recorded, so a bad start still gets a 500.
        if type(status) is not int or not 100 <= status <= 599:
            raise RuntimeError(f"Invalid HTTP status code {status!r} in response.")
        code: int = status
        if code < 200:
            raise RuntimeError(f"Invalid HTTP status code {code} in http.response.start (use early hints for 103).")
        head = [(b":status", STATUS_VALUES[code])]
        head.extend(self.protocol.default_headers)
        content_length = -1
        for field in headers:
            pair = field if type(field) is tuple and len(field) == 2 else header_pair(field)
            raw_name, raw_value = pair
            name = header_name(raw_name if type(raw_name) is bytes else as_bytes(raw_name, "header name"))
            value = raw_value if type(raw_value) is bytes else as_bytes(raw_value, "header value")
            if name is None:
                raise RuntimeError("Invalid HTTP header name.")
            if not valid_field_value(value):
                raise RuntimeError("Invalid HTTP header value.")
            if name == b"content-length":
                length = parse_content_length(value)
                if length < 0 or (content_length != -1 and length != content_length):
                    raise RuntimeError("Invalid Content-Length header value in response.")
                if content_length != -1:
                    continue  # the same length twice: sent once
                content_length = length
            elif name in CONNECTION_SPECIFIC:
                continue  # HTTP/2 frames the body and has no connection-level fields (RFC 9113 §8.2.2)
            head.append((name, value))
        self.response_started = True
        self.status = code
        self.content_length = content_length
        if code == 204 or code == 304:
            self.bodyless = True
        if trailers:
            self.trailers_announced = True
            self.trailers = not self.bodyless and accepts_trailers(self.scope["headers"])
        self.head = head

    def send_head(self, body_size: int, more_body: bool) -> None:
        """The response head, with the first body chunk: a complete body gets its content-length."""
        head = self.head
        self.head = None
        if self.content_length == -1 and not more_body and not self.trailers:
            length = LENGTH_VALUES[body_size] if body_size < CACHED_LENGTHS else str(body_size).encode("ascii")
            head.append((b"content-length", length))
        end = self.bodyless or (not more_body and body_size == 0 and not self.trailers)
        self.conn.send_headers(self.stream_id, head, end)
        if end:
            self.stream_ended = True
        self.protocol.flush_soon()

    def send_body(self, body: Any, more_body: Any) -> Any:
        if type(body) is not bytes:
            body = as_bytes(body, "body")
        size = len(body)
        if not self.bodyless and 0 <= self.content_length < self.bytes_sent + size:
            raise RuntimeError("Response content longer than Content-Length")
        if self.head is not None:
            self.send_head(size, more_body)
        if size and not self.bodyless:
            self.bytes_sent += size
            waiting = self.send_data(body, not more_body and not self.trailers)
            if waiting is not None:
                return self.finish_after(waiting, more_body)
        if not more_body:
            self.end_body()
        return None

    def send_data(self, data: Any, end_stream: bool) -> Any:
        """Send ``data`` on the stream as far as the windows allow; None when all went, else the future
        that is done when the rest has gone (or the stream ended)."""
        protocol = self.protocol
        if not protocol.waiting and not protocol.write_paused:
            taken = self.conn.send_data(self.stream_id, data, end_stream)
            protocol.flush_soon()
            if taken == len(data):
                self.stream_ended = end_stream
                return None
            data = data[taken:]
        self.pending = data
        self.pending_end = end_stream
        self.last_progress = monotonic()
        waiter = protocol.loop.create_future()
        self.send_waiter = waiter
        protocol.wait_for_window(self)
        return waiter

    async def finish_after(self, waiter: Any, more_body: bool) -> None:
        await waiter
        if self.disconnected:
            raise ClientDisconnected
        if not more_body:
            self.end_body()

    def send_pending(self, quantum: int) -> int:
        """Up to ``quantum`` octets of the waiting data (the protocol's round-robin); what went."""
        data = self.pending
        size = len(data)
        chunk = data if size <= quantum else data[:quantum]
        last = self.pending_end and size <= quantum
        try:
            taken = self.conn.send_data(self.stream_id, chunk, last)
        except StreamClosedError:
            self.on_reset()
            return 0
        if taken:
            self.last_progress = monotonic()
            if taken == size:
                self.pending = None
                self.stream_ended = last
                self.wake_sender()
            else:
                self.pending = data[taken:]
        return taken

    def end_body(self) -> None:
        if self.bytes_sent < self.content_length and not self.bodyless:
            raise RuntimeError("Response content shorter than Content-Length")
        if self.trailers_announced:
            self.awaiting_trailers = True  # (trailers the client did not ask for still end the response)
            return
        if not self.stream_ended:
            self.stream_ended = True
            self.conn.end_stream(self.stream_id)
            self.protocol.flush_soon()
        self.complete()

    def complete(self) -> None:
        """The response is queued whole (its END_STREAM sent)."""
        self.response_complete = True
        self.wake()
        protocol = self.protocol
        if protocol.access_log:
            self.log_access(False)
        if protocol.metrics is not None:
            protocol.metrics.request_done(self.scope["method"], self.status, self.started)
        protocol.response_complete(self)

    def send_trailers(self, headers: Any, more_trailers: Any) -> None:
        fields = trailer_fields(headers)  # checked even when dropped: the same app errors everywhere
        if self.trailers:
            self.trailer_list.extend(fields)
        if more_trailers:
            return
        if not self.stream_ended:
            self.stream_ended = True
            if self.trailers and self.trailer_list:
                self.conn.send_headers(self.stream_id, self.trailer_list, True)
            else:
                self.conn.end_stream(self.stream_id)
            self.protocol.flush_soon()
        self.complete()

    def send_early_hint(self, links: Any) -> None:
        values = early_hint_links(links)
        if values:
            head = [(b":status", b"103")]
            for value in values:
                head.append((b"link", value))
            self.conn.send_headers(self.stream_id, head, False)
            self.protocol.flush_soon()

    def send_path(self, path: Any) -> Any:
        fd, size = open_path(path)
        return self.send_file(fd, 0, size, False, True, False)

    def send_zerocopy(self, message: dict) -> Any:
        fd, offset, count, advance = zerocopy_range(message.get("file"), message.get("offset"), message.get("count"))
        return self.send_file(fd, offset, count, message.get("more_body", False), False, advance)

    async def send_file(self, fd: int, offset: int, count: int, more_body: Any, owned: bool, advance: bool) -> None:
        """A body chunk of ``count`` octets of a file, read as the client's window allows (never more
        than a window or FILE_CHUNK_SIZE at a time), as DATA frames."""
        try:
            if 0 <= self.content_length < self.bytes_sent + count and not self.bodyless:
                raise RuntimeError("Response content longer than Content-Length")
            if self.head is not None:
                self.send_head(count, more_body)
            if not self.bodyless:
                last = not more_body and not self.trailers
                position = offset
                end = offset + count
                while position < end:
                    window = self.protocol.window_for(self.stream_id)
                    size = min(end - position, FILE_CHUNK_SIZE, max(window, SEND_QUANTUM))
                    chunk = os.pread(fd, size, position)
                    if not chunk:
                        raise RuntimeError("The file ended before the response did.")
                    position += len(chunk)
                    self.bytes_sent += len(chunk)
                    waiting = self.send_data(chunk, last and position == end)
                    if waiting is not None:
                        await waiting
                    if self.disconnected:
                        raise ClientDisconnected
                if advance:
                    os.lseek(fd, end, os.SEEK_SET)
        finally:
            if owned:
                os.close(fd)
        if not more_body:
            self.end_body()

    def send_500(self) -> None:
        if self.protocol.metrics is not None:
            self.protocol.metrics.server_response(500)
        self.trailers = False
        self.trailers_announced = False
        self.start_response(500, [(b"content-type", b"text/plain; charset=utf-8")], False)
        self.send_body(b"Internal Server Error", False)

    def abort(self) -> None:
        """The response cannot be completed: the stream is reset (the connection goes on)."""
        if self.response_complete or self.disconnected:
            return
        if self.response_started and self.protocol.access_log:
            self.log_access(True)
        if self.response_started and self.protocol.metrics is not None:
            self.protocol.metrics.request_done(self.scope["method"], self.status, self.started)
        self.disconnected = True
        self.pending = None
        self.protocol.reset(self.stream_id, INTERNAL_ERROR)

    def log_access(self, aborted: bool) -> None:
        duration = monotonic() - self.started
        log_access(self.protocol.access_logger, self.scope, self.status, duration, self.bytes_sent, aborted)


class H2Settings:
    """What every HTTP/2 connection of a server takes from its Config and server state, read once per
    server rather than per connection."""

    def __init__(self, config: Any, server_state: Any) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.server_state = server_state
        self.app = config.http_app
        self.access_log = access_logger.hasHandlers()
        self.trusted_hosts = config.proxy_trusted_hosts
        self.root_path = config.root_path
        self.root_path_raw = config.root_path.encode("utf-8")
        self.asgi_version = config.asgi_version
        self.reset_contextvars = config.reset_contextvars
        self.limit = -1 if config.limit_concurrency is None else config.limit_concurrency
        self.limit_body = -1 if config.limit_request_body_size is None else config.limit_request_body_size
        self.limit_headers = config.limit_request_headers or 0
        self.timeout_keep_alive = config.timeout_keep_alive
        self.stall_timeout = config.http2_stall_timeout or 0.0
        self.ping_interval = config.http2_keep_alive_interval or 0.0
        self.ping_timeout = config.http2_keep_alive_timeout or 0.0
        self.health_path = config.health_path_raw
        self.health_app = None if self.health_path is None else HealthCheck(server_state)
        # WebSockets over HTTP/2 (RFC 8441) with the --ws protocol, when there is one to run.
        self.websocket_class = websocket_over_h2(config.ws_protocol_class)
        # --metrics-bind / --metrics-path: the counts go into the server's block (None: metrics off).
        block = getattr(server_state, "metrics_block", None)
        self.metrics = None if block is None else Recorder(block)
        self.metrics_page = getattr(server_state, "metrics_page", None)
        self.metrics_path = None if self.metrics_page is None else config.metrics_path_raw


#: The settings of the server whose HTTP/2 connections were made last (one server per process, usually).
_settings: H2Settings | None = None


def h2_settings(config: Any, server_state: Any) -> H2Settings:
    global _settings
    settings = _settings
    if settings is None or settings.config is not config or settings.server_state is not server_state:
        settings = _settings = H2Settings(config, server_state)
    return settings


class H2Protocol:
    """One HTTP/2 connection (an ``asyncio.Protocol``): see the module docstring."""

    def __init__(self, config: Any, server_state: Any, app_state: dict, _loop: Any = None) -> None:
        settings: H2Settings = h2_settings(config, server_state)
        self.config = config
        self.app = settings.app
        self.loop = _loop if _loop is not None else asyncio.get_running_loop()
        self.logger = logger
        self.access_logger = access_logger
        self.access_log = settings.access_log
        self.trusted_hosts = settings.trusted_hosts
        self.root_path = settings.root_path
        self.root_path_raw = settings.root_path_raw
        self.asgi_version = settings.asgi_version
        self.reset_contextvars = settings.reset_contextvars
        self.limit = settings.limit
        self.limit_body = settings.limit_body
        self.limit_headers = settings.limit_headers
        self.timeout_keep_alive = settings.timeout_keep_alive
        self.stall_timeout = settings.stall_timeout
        self.ping_interval = settings.ping_interval
        self.ping_timeout = settings.ping_timeout
        self.health_path = settings.health_path
        self.health_app = settings.health_app
        self.app_state = app_state
        self.server_state = server_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.websocket_class = settings.websocket_class
        self.conn = H2Connection(
            max_concurrent_streams=config.http2_max_concurrent_streams,
            initial_window_size=config.http2_initial_stream_window_size,
            max_frame_size=config.http2_max_frame_size,
            max_header_list_size=config.http2_max_header_list_size,
            connection_window_size=config.http2_initial_connection_window_size,
            max_rapid_resets=config.http2_max_rapid_resets,
            max_empty_data_frames=config.http2_max_empty_data_frames,
            max_control_frames=config.http2_max_control_frames,
            max_stream_errors=config.http2_max_stream_errors,
            enable_connect_protocol=self.websocket_class is not None,
        )
        self.transport: Any = None
        self.server: Any = None
        self.client: Any = None
        self.scheme = "http"
        self.tls: Any = None
        self.context: Any = None
        self.proxy_trusted = False
        self.task_kwargs = task_kwargs(self.loop)
        self.scope_template: Any = None
        self.default_headers: list = []
        self.streams: dict = {}  # stream id -> StreamCycle, until its app returned
        self.websockets: dict = {}  # stream id -> StreamTransport of a WebSocket, until it ended
        self.waiting: deque = deque()  # streams with data waiting for window, in turn
        self.write_paused = False
        self.reading_paused = False
        self.flush_due = False
        self.receiving = False  # inside data_received: it writes at its end
        self.sending = False  # inside an application's send(): it writes at its end
        self.write_due = False  # that send() queued something
        self.pumping = False
        self.closed = False
        self.draining = False
        self.deadline = 0.0  # monotonic() when on_deadline must run; 0: none
        self.idle_since = 0.0  # when the last stream ended (0: a stream is open)
        self.last_read = 0.0  # when the client last sent something (kept with a keep-alive PING only)
        self.ping_sent = 0.0  # when the keep-alive PING went out (0: none outstanding)
        self.unread_acks = 0  # octets of our ACKs written since the write buffer was last seen empty
        self.metrics = settings.metrics
        self.metrics_page = settings.metrics_page
        self.metrics_path = settings.metrics_path

    # asyncio.Protocol ----------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.connections.add(self)
        self.transport = transport
        self.server = get_local_addr(transport)
        self.client = get_remote_addr(transport)
        if is_ssl(transport):
            self.scheme = "https"
            self.tls = tls_extension(transport, self.config.ssl_server_cert)
        self.context = contextvars.copy_context()
        self.proxy_trusted = self.trusted_hosts is not None and is_trusted_peer(
            self.trusted_hosts, self.client, self.server
        )
        self.default_headers = [(name.lower(), value) for name, value in self.server_state.default_headers]
        self.write(self.conn.initiate())
        if self.ping_interval:
            self.last_read = monotonic()
        self.refresh_deadline()
        if self.logger.isEnabledFor(TRACE_LOG_LEVEL):
            self.logger.log(TRACE_LOG_LEVEL, "%sHTTP/2 connection made", self.log_prefix())

    def connection_lost(self, exc: Any) -> None:
        self.connections.discard(self)
        self.closed = True
        self.deadline = 0.0
        if self.logger.isEnabledFor(TRACE_LOG_LEVEL):
            self.logger.log(TRACE_LOG_LEVEL, "%sHTTP/2 connection lost", self.log_prefix())
        self.end_streams()
        self.waiting.clear()

    def eof_received(self) -> Any:
        return None  # the client closed its end: the connection closes (streams learn it)

    def pause_writing(self) -> None:
        self.write_paused = True
        if not self.reading_paused:
            # A client that does not read what we write gets nothing more read (its ACKs are bounded).
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.reading_paused and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()
        if self.websockets:
            self.pump_websockets()
        self.pump()

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if self.metrics is not None:
            self.metrics.received(len(data))
        if self.ping_interval:
            self.last_read = monotonic()
        if self.unread_acks and not self.transport.get_write_buffer_size():
            self.unread_acks = 0  # the client has read them
        self.receiving = True  # what the streams queue now is written once, at the end
        try:
            self.on_events(conn.receive(data))
        finally:
            self.receiving = False
        self.flush()
        if self.unread_acks > UNREAD_ACKS_LIMIT and not self.closed:
            self.logger.debug("%sHTTP/2 client leaves our PING/SETTINGS ACKs unread: closed.", self.log_prefix())
            self.end_streams()
            self.conn.close_connection(ENHANCE_YOUR_CALM)
            self.close()
            self.transport.abort()  # what is buffered would never be read
            return
        if not self.closed:
            if self.streams and not self.waiting and not self.ping_interval:
                self.deadline = 0.0  # busy: no timeout runs (stream_done arms the idle one)
            else:
                self.refresh_deadline()

    def on_events(self, events: list) -> None:
        for event in events:
            kind = type(event)
            if kind is RequestReceived:
                self.on_request(event.stream_id, event.headers, event.end_stream)
            elif kind is DataReceived:
                self.on_data(event.stream_id, event.data, event.flow_controlled_length, event.end_stream)
            elif kind is WindowUpdated or kind is RemoteSettingsChanged:
                if kind is RemoteSettingsChanged:
                    self.unread_acks += SETTINGS_ACK_SIZE
                if self.websockets:
                    self.pump_websockets()
                if self.waiting:
                    self.pump()
            elif kind is PingReceived:
                self.unread_acks += PING_ACK_SIZE
            elif kind is StreamReset:
                cycle = self.streams.get(event.stream_id)
                if cycle is not None:
                    if not cycle.response_complete:
                        cycle.on_reset()
                elif self.websockets:
                    websocket = self.websockets.get(event.stream_id)
                    if websocket is not None:
                        websocket.on_reset()
            elif kind is TrailersReceived:
                self.on_data(event.stream_id, b"", 0, True)
            elif kind is HeadersTooLarge:
                self.refuse(event.stream_id, 431, b"Request Header Fields Too Large")
            elif kind is PingAckReceived:
                self.ping_sent = 0.0  # (the shutdown PING's answer too: either shows the client is there)
                if self.draining:
                    self.close_if_done()
            elif kind is ConnectionTerminated:
                self.on_terminated(event)

    # Requests --------------------------------------------------------------------------------------

    def on_request(self, stream_id: int, headers: list, end_stream: bool) -> None:
        method = ""
        target = b""
        extended_connect = None
        for name, value in headers:  # (pseudo-headers come first: the core checked it)
            if name == b":method":
                method = METHODS.get(value) or value.decode("ascii", "replace")
            elif name == b":path":
                target = value
            elif name == b":protocol":
                extended_connect = value
            elif not name.startswith(b":"):
                break
        fields = asgi_headers(headers)
        if self.limit_headers and len(fields) > self.limit_headers:
            self.refuse(stream_id, 431, b"Request Header Fields Too Large")
            return
        if extended_connect is not None:
            self.open_websocket(stream_id, headers, extended_connect, end_stream)
            return
        raw_path, query_string = split_target(target)
        path = raw_path.decode("latin-1") if is_ascii(raw_path) else raw_path.decode("utf-8", "replace")
        if "%" in path:
            path = unquote(path)
        template = self.scope_template
        if template is None:
            template = self.scope_template = http_scope_template(
                self.asgi_version, "2", self.server, self.client, self.scheme, self.root_path
            )
        scope = template.copy()
        scope["asgi"] = template["asgi"].copy()
        scope["method"] = method
        scope["path"] = self.root_path + path if self.root_path else path
        scope["raw_path"] = self.root_path_raw + raw_path if self.root_path else raw_path
        scope["query_string"] = query_string
        scope["headers"] = fields
        scope["state"] = self.app_state.copy()
        extensions = HTTP_EXTENSIONS.copy()
        scope["extensions"] = extensions
        if self.tls is not None:
            extensions["tls"] = self.tls.copy()
        if self.proxy_trusted and has_proxy_headers(fields):
            apply_proxy_headers(scope, self.trusted_hosts)

        app = self.app
        limit = self.limit
        if self.health_path is not None and raw_path == self.health_path and (method == "GET" or method == "HEAD"):
            app = self.health_app
        elif self.metrics_path is not None and raw_path == self.metrics_path and (method == "GET" or method == "HEAD"):
            app = self.metrics_page
        elif limit >= 0 and (len(self.connections) >= limit or len(self.tasks) >= limit):
            app = service_unavailable
            self.logger.warning("Exceeded concurrency limit.")
            if self.metrics is not None:
                self.metrics.server_response(503)
        elif self.limit_body >= 0:
            for name, value in fields:
                if name == b"content-length" and parse_content_length(value) > self.limit_body:
                    self.refuse(stream_id, 413, b"Request Entity Too Large")
                    return
        self.idle_since = 0.0
        cycle = StreamCycle.__new__(StreamCycle)
        cycle._init(self, stream_id, scope, app, end_stream)
        self.streams[stream_id] = cycle
        context = contextvars.Context() if self.reset_contextvars else self.context
        task = start_task(self.loop, cycle.run_asgi(), context, self.task_kwargs)
        if not task.done():
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def open_websocket(self, stream_id: int, headers: list, protocol_name: bytes, end_stream: bool) -> None:
        """An extended CONNECT (RFC 8441; the core checked its form): a WebSocket over the stream, run by
        the --ws protocol (websocket.py)."""
        if protocol_name != b"websocket":
            self.refuse(stream_id, 501, b"Not Implemented")
            return
        if end_stream:  # the tunnel would be closed before it opened
            self.refuse(stream_id, 400, b"Bad Request")
            return
        if self.draining:  # shutting down: the server will not close a WebSocket opened now
            self.refuse(stream_id, 503, b"Service Unavailable")
            return
        if self.limit >= 0 and (len(self.connections) >= self.limit or len(self.tasks) >= self.limit):
            self.logger.warning("Exceeded concurrency limit.")
            self.refuse(stream_id, 503, b"Service Unavailable")
            return
        head = upgrade_request_head(headers)
        if len(head) > MAX_HEAD_SIZE:
            self.refuse(stream_id, 431, b"Request Header Fields Too Large")
            return
        self.idle_since = 0.0
        transport = StreamTransport(self, stream_id)
        self.websockets[stream_id] = transport
        websocket = self.websocket_class(
            config=self.config, server_state=self.server_state, app_state=self.app_state
        )
        transport.open(websocket, headers, head)

    def websocket_done(self, transport: Any) -> None:
        """A WebSocket's stream ended (``StreamTransport``)."""
        if self.websockets.pop(transport.stream_id, None) is not None:
            self.server_state.total_requests += 1
            self.stream_done_any()

    def pump_websockets(self) -> None:
        for transport in list(self.websockets.values()):
            if transport.has_output:
                transport.window_opened()

    def on_data(self, stream_id: int, data: bytes, credit: int, end_stream: bool) -> None:
        cycle = self.streams.get(stream_id)
        if cycle is None and self.websockets:
            websocket = self.websockets.get(stream_id)
            if websocket is not None:
                websocket.data_received(data, credit, end_stream)
                return
        if cycle is None or cycle.response_complete or cycle.disconnected:
            self.conn.acknowledge_received(stream_id, credit)  # nobody will read it
            return
        if data:
            cycle.body_received += len(data)
            if 0 <= cycle.body_limit < cycle.body_received:
                self.conn.acknowledge_received(stream_id, credit)
                self.body_too_large(cycle)
                return
            cycle.body.append(data)
            cycle.body_size += len(data)
        cycle.body_credit += credit
        if end_stream:
            cycle.more_body = False
        cycle.wake()

    def body_too_large(self, cycle: StreamCycle) -> None:
        self.logger.warning("%sRequest body larger than --limit-request-body-size: 413.", self.log_prefix())
        cycle.body = []
        if self.metrics is not None:
            self.metrics.server_response(413)
        if not cycle.response_started:
            cycle.start_response(413, [(b"content-type", b"text/plain; charset=utf-8")], False)
            cycle.send_body(b"Request Entity Too Large", False)
            cycle.disconnected = True  # the app's receive() says http.disconnect from now on
            cycle.wake()
        else:
            cycle.abort()

    def refuse(self, stream_id: int, status: int, body: bytes) -> None:
        """Answer a stream the app never sees (431, 413) and end it (the rest of its request is not
        wanted: RST_STREAM(NO_ERROR) if it goes on)."""
        try:
            head = [(b":status", STATUS_VALUES[status])]
            head.extend(self.default_headers)
            head.append((b"content-type", b"text/plain; charset=utf-8"))
            head.append((b"content-length", str(len(body)).encode("ascii")))
            self.conn.send_headers(stream_id, head, False)
            self.conn.send_data(stream_id, body, True)
        except StreamClosedError:
            return
        if self.conn.stream_state(stream_id) != "closed":
            self.conn.reset_stream(stream_id, NO_ERROR)
        self.server_state.total_requests += 1
        if self.metrics is not None:
            self.metrics.server_response(status)

    # Flow control and writing ---------------------------------------------------------------------

    def consumed(self, stream_id: int, credit: int) -> None:
        """The app took ``credit`` flow-controlled octets of ``stream_id``: the windows open again."""
        if not self.closed:
            self.conn.acknowledge_received(stream_id, credit)
            self.flush_soon()

    def window_for(self, stream_id: int) -> int:
        return self.conn.local_flow_window(stream_id)

    def wait_for_window(self, cycle: StreamCycle) -> None:
        self.waiting.append(cycle)
        self.pump()
        if self.waiting and self.stall_timeout:
            self.refresh_deadline()

    def pump(self) -> None:
        """Serve the streams waiting for window, a quantum each in turn, while window is there."""
        if self.pumping or self.write_paused or self.closed:
            return
        self.pumping = True
        waiting = self.waiting
        try:
            progress = True
            while waiting and progress:
                progress = False
                for _ in range(len(waiting)):
                    cycle = waiting.popleft()
                    if cycle.pending is None:
                        cycle.wake_sender()
                        continue
                    if cycle.send_pending(SEND_QUANTUM):
                        progress = True
                    if cycle.pending is not None:
                        waiting.append(cycle)
                if self.write_paused:
                    break
        finally:
            self.pumping = False
        self.flush()

    def flush_soon(self) -> None:
        """Write what the connection queued: at the end of ``data_received`` when it runs (an eager
        application), at the end of the application's ``send()``, or at the end of this loop
        iteration (one write for all the streams that sent in it)."""
        if self.receiving or self.flush_due:
            return
        if self.sending:
            self.write_due = True
            return
        self.flush_due = True
        self.loop.call_soon(self.flush)

    def write_after_send(self) -> None:
        """An application's ``send()`` queued frames: the only stream writes them now; with others
        busy, they go in one write at the end of the iteration."""
        self.write_due = False
        if len(self.streams) <= 1:
            self.flush()
        else:
            self.flush_soon()

    def flush(self) -> None:
        self.flush_due = False
        data = self.conn.data_to_send()
        if data and not self.closed and not self.transport.is_closing():
            self.write(data)
        if self.conn.closed and not self.closed:
            self.close()

    def write(self, data: bytes) -> None:
        if self.metrics is not None:
            self.metrics.sent(len(data))
        self.transport.write(data)

    def reset(self, stream_id: int, code: int) -> None:
        self.conn.reset_stream(stream_id, code)
        self.flush_soon()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            data = self.conn.data_to_send()
            if data and not self.transport.is_closing():
                self.write(data)
            self.transport.close()

    def response_complete(self, cycle: StreamCycle) -> None:
        self.server_state.total_requests += 1
        if cycle.more_body and not self.closed:
            # Answered before the request ended: the rest of it is not wanted (RFC 9113 §8.1).
            self.conn.reset_stream(cycle.stream_id, NO_ERROR)
        self.flush_soon()

    def stream_done(self, cycle: StreamCycle) -> None:
        """The stream's app returned."""
        if self.streams.get(cycle.stream_id) is cycle:
            del self.streams[cycle.stream_id]
        if cycle.body_credit:
            self.consumed(cycle.stream_id, cycle.body_credit)
            cycle.body_credit = 0
        self.stream_done_any()

    def stream_done_any(self) -> None:
        """A stream ended (a request's app returned, or a WebSocket closed): the last one arms the idle
        timeout, or closes a draining connection."""
        if not self.streams and not self.websockets:
            if self.draining:
                self.close_if_done()
            elif not self.closed:
                self.refresh_deadline()

    def on_terminated(self, event: Any) -> None:
        if event.remote:
            # The client's GOAWAY: streams in flight go on; the connection closes once they are done.
            self.draining = True
            if not self.streams and not self.websockets:
                self.close()
            return
        self.logger.debug("%sHTTP/2 connection error: %s", self.log_prefix(), event.message)
        self.end_streams()
        self.close()

    def end_streams(self) -> None:
        """The connection is over: every stream still in progress learns it."""
        for cycle in list(self.streams.values()):
            if not cycle.response_complete:
                cycle.on_reset()
        for websocket in list(self.websockets.values()):
            websocket.on_reset()

    # Timeouts and shutdown -------------------------------------------------------------------------

    def refresh_deadline(self) -> None:
        """When ``on_deadline`` must next run: the idle timeout (--timeout-keep-alive, from the moment
        no stream is open), a stream stalled on a zero window (--http2-stall-timeout), the keep-alive
        PING (--http2-keep-alive-interval) and its answer (--http2-keep-alive-timeout)."""
        deadline = 0.0
        if not self.streams and not self.websockets:
            if self.idle_since == 0.0:
                self.idle_since = monotonic()
            deadline = self.idle_since + self.timeout_keep_alive
        else:
            self.idle_since = 0.0
        if self.waiting and self.stall_timeout:
            stall = min([cycle.last_progress for cycle in self.waiting]) + self.stall_timeout
            deadline = stall if deadline == 0.0 else min(deadline, stall)
        if self.ping_interval:
            if self.ping_sent:
                ping = self.ping_sent + self.ping_timeout if self.ping_timeout else 0.0
            else:
                ping = self.last_read + self.ping_interval
            if ping:
                deadline = ping if deadline == 0.0 else min(deadline, ping)
        self.deadline = deadline

    def on_deadline(self) -> None:
        """Called by the server's tick once ``deadline`` has passed."""
        self.deadline = 0.0
        if self.closed:
            return
        now = monotonic()
        if self.waiting and self.stall_timeout:
            for cycle in [cycle for cycle in self.waiting if now - cycle.last_progress >= self.stall_timeout]:
                self.logger.debug(
                    "%sHTTP/2 stream %d got no window in time: reset.", self.log_prefix(), cycle.stream_id
                )
                self.waiting.remove(cycle)
                cycle.on_reset()
                self.conn.reset_stream(cycle.stream_id, CANCEL)
        if self.ping_interval:
            if self.ping_sent:
                if self.ping_timeout and now - self.ping_sent >= self.ping_timeout:
                    self.logger.debug("%sHTTP/2 keep-alive PING not answered in time.", self.log_prefix())
                    self.abandon()
                    return
            elif now - self.last_read >= self.ping_interval:
                self.ping_sent = now
                self.conn.ping(KEEP_ALIVE_PING)
        if (
            not self.streams
            and not self.websockets
            and self.idle_since
            and now - self.idle_since >= self.timeout_keep_alive
        ):
            self.conn.close_connection(NO_ERROR)
            self.close()
            return
        self.flush()
        self.refresh_deadline()

    def abandon(self) -> None:
        """Close at once: the client is gone (its streams learn it)."""
        self.end_streams()
        self.conn.close_connection(NO_ERROR)
        self.close()

    def shutdown(self) -> None:
        """Graceful shutdown: GOAWAY(2^31-1) and a PING, then the final GOAWAY when its ACK comes;
        the connection closes once its streams are done."""
        self.draining = True
        self.conn.graceful_shutdown()
        self.flush()
        self.loop.call_later(SHUTDOWN_GRACE, self.close_if_done)

    def close_if_done(self) -> None:
        if not self.streams and not self.websockets and not self.closed:
            self.conn.close_connection(NO_ERROR)
            self.close()

    def log_prefix(self) -> str:
        return f"{self.client[0]}:{self.client[1]} - " if self.client else ""


# send() is a coroutine function to frameworks that check (it returns awaitables).
if hasattr(inspect, "markcoroutinefunction"):
    inspect.markcoroutinefunction(StreamCycle.send)
StreamCycle.send._is_coroutine = getattr(asyncio.coroutines, "_is_coroutine", None)  # type: ignore[attr-defined]
