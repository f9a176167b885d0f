"""The HTTP/1.1 protocol, one source for both builds: PyPy and ``CYASGI_NO_EXTENSIONS=1`` run this file,
CPython runs it compiled as ``cyasgi._speedups.http`` (a link to it) with ``cyasgi/_speedups/http.pxd``.

One class per role:

* ``HttpProtocol``: one per connection. Drives the parser, builds each request's scope, runs
  requests one at a time in arrival order (pipelining), keeps the connection alive or closes it.
* ``RequestCycle``: one per request. The ASGI ``receive``/``send`` pair and response framing.
* ``FlowControl``: one per connection. Stops reading while the app is behind; makes ``send()``
  wait while the transport's write buffer is full.
* Timeouts: a connection only records a ``deadline``; ``sweep_deadlines()``, called from the
  server's tick, expires them. No timer is created or cancelled per request, and nothing keeps a
  closed connection alive.

A request's app starts when the data that completed its head has been parsed, so a body that
came in the same packet is already there on its first ``receive()``. On Python 3.12+ the app runs
eagerly (``asyncio.Task(..., eager_start=True)``): an app that never waits finishes inside
``data_received`` without a trip through the event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import os
import socket
from collections import deque
from collections.abc import Awaitable, Sequence
from contextvars import copy_context
from typing import Any, Callable
from urllib.parse import unquote

try:
    import cython
except ImportError:  # no Cython where this runs: the pure build, as with PyPy
    from cyasgi import _cython_shim as cython

from cyasgi._compat import IS_PYPY
from cyasgi.logging import TRACE_LOG_LEVEL
from cyasgi.middleware.proxy_headers import apply_proxy_headers, is_trusted_peer
from cyasgi.protocols.http.access import log_access
from cyasgi.protocols.http.errors import (
    ClientDisconnected,
    RequestRejected,
    bad_request,
    body_too_large,
    head_too_large,
    too_many_headers,
)
from cyasgi.protocols.http.extensions import (
    DIRECT_SENDFILE,
    LOOP_SENDFILE,
    accepts_trailers,
    early_hint_head,
    open_path,
    sendfile_way,
    trailer_block,
    transmit_file,
    zerocopy_range,
)
from cyasgi.protocols.http.foreign import (
    OWN_PARSER,
    PARSER_ERRORS,
    PARSER_UPGRADES,
    ParserUpgrade,
    foreign_parse_error,
    httptools,
    httptools_parser_factory,
)

if not cython.compiled:  # the compiled build takes these from the C kernel and parser (http.pxd)
    from cyasgi.metrics.recorder import Recorder
    from cyasgi.protocols.http.kernel import (
        close_file,
        completed,
        failed,
        frame_response,
        has_proxy_headers,
        header_name,
        ipv4_addresses,
        is_ascii,
        monotonic,
        open_file,
        parse_content_length,
        send_file,
        send_more,
        sendfile_supported,
        split_target,
        start_task,
        task_kwargs,
        valid_field_value,
    )
    from cyasgi.protocols.http.parser import RequestParser, RequestSink, new_request_parser
from cyasgi.protocols.http.rules import FRAMING_FIELDS, as_bytes, check_request_head, header_pair
from cyasgi.protocols.http.server_apps import HealthCheck, service_unavailable
from cyasgi.protocols.http.upgrade import (
    is_h2c_upgrade,
    is_websocket_upgrade,
    request_head_bytes,
    warn_unsupported_upgrade,
)
from cyasgi.protocols.http.wire import (
    CHUNKED_LINE,
    CLOSE_LINE,
    COALESCE_LIMIT,
    CONTINUE,
    CRLF,
    FOREIGN_FEED_STEP,
    HELD_ROUNDS_LIMIT,
    HIGH_WATER_LIMIT,
    HTTP_EXTENSIONS,
    KEEP_ALIVE_LINE,
    LAST_CHUNK,
    PIPELINE_HEAD_LIMIT,
    PIPELINE_LIMIT,
    SHUTDOWN_GRACE,
    STATUS_LINES,
    WRITE_BATCH_LIMIT,
    http_scope_template,
    simple_response,
)
from cyasgi.protocols.tls import alpn_protocol, tls_extension
from cyasgi.protocols.utils import get_local_addr, get_remote_addr

__all__ = ["COMPILED", "FlowControl", "HttpProtocol", "RequestCycle", "sweep_deadlines"]

#: True in the compiled build (cyasgi._speedups.http), False where this file runs as Python.
COMPILED = cython.compiled

#: The HTTP/2 connection preface (RFC 9113 §3.4): with --http2, a plain connection that starts with it is
#: h2c with prior knowledge.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_PREFACE_SIZE = len(H2_PREFACE)

logger = logging.getLogger("uvicorn.error")
access_logger = logging.getLogger("uvicorn.access")

#: ``--http auto``: the compiled build drives its C parser; the pure one httptools where it is a C
#: extension (CPython), which costs fewer instructions there than the pure parser, and the pure
#: parser elsewhere (on PyPy the fastest by far; docs/pypy.md has the figures).
_PREFER_HTTPTOOLS = httptools is not None and not IS_PYPY and not cython.compiled

#: What the app said of trailers in http.response.start: none announced, written (the body is
#: chunked to carry them), or dropped (HTTP/1.0, a bodyless response, no ``TE: trailers``).
TRAILERS_NONE = 0
TRAILERS_WRITTEN = 1
TRAILERS_DROPPED = 2

#: Whether the peer may set X-Forwarded-* headers (--forwarded-allow-ips): not decided yet, no, yes.
TRUST_UNKNOWN = -1
PEER_UNTRUSTED = 0
PEER_TRUSTED = 1

#: The IPv4 address a listener bound to every address has: its connections' local addresses vary.
IPV4_WILDCARD = "0.0.0.0"

#: The head clock (--timeout-header-read) when it is not a time: not running (idle after a
#: response, keep-alive applies), or started by a first byte and set at the next reading of the clock.
HEAD_CLOCK_OFF = 0.0
HEAD_CLOCK_STARTED = -1.0

#: The connection header the server adds to a response: none (HTTP/1.1 keep-alive, or the app
#: gave its own), close, or keep-alive (HTTP/1.0).
CONNECTION_AS_GIVEN = 0
CONNECTION_CLOSE = 1
CONNECTION_KEEP_ALIVE = 2

#: How files go out on a connection: not decided yet, the general way (transmit_file), or the
#: kernel's fast path straight to the socket.
FILE_WAY_UNKNOWN = 0
FILE_WAY_GENERAL = 1
FILE_WAY_DIRECT = 2

#: The lines that end a head, by [chunked][connection header].
HEAD_ENDS = (
    (CRLF, CLOSE_LINE + CRLF, KEEP_ALIVE_LINE + CRLF),
    (CHUNKED_LINE + CRLF, CHUNKED_LINE + CLOSE_LINE + CRLF, CHUNKED_LINE + KEEP_ALIVE_LINE + CRLF),
)
CHUNK_END_LAST = CRLF + LAST_CHUNK


def _flush_heads(connections: list[HttpProtocol]) -> None:
    """Called once per loop iteration in which responses started: writes the heads still held."""
    waiting = connections[:]
    connections.clear()
    for connection in waiting:
        connection._flush_head()


def _never_connected(*args: Any) -> bool:
    return True


def _caused_by_disconnect(exc: BaseException | None) -> bool:
    """True when ``exc`` is, or was raised while handling, our ClientDisconnected."""
    seen = 0
    while exc is not None and seen < 16:
        if isinstance(exc, ClientDisconnected):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class FlowControl:
    __slots__ = ("_transport", "read_paused", "write_paused", "_drain_waiters")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.read_paused = False
        self.write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] | None = None

    async def drain(self) -> None:
        """Wait until the transport accepts writes again (or the connection is lost)."""
        while self.write_paused:
            waiter = asyncio.get_running_loop().create_future()
            if self._drain_waiters is None:
                self._drain_waiters = []
            self._drain_waiters.append(waiter)
            try:
                await waiter
            finally:
                if self._drain_waiters is not None and waiter in self._drain_waiters:
                    self._drain_waiters.remove(waiter)

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self._transport.resume_reading()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiters = self._drain_waiters
        if waiters:
            self._drain_waiters = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


class RequestCycle:
    """One request: its scope, its body as it arrives, and the response the app sends."""

    __slots__ = (
        "scope",
        "protocol",
        "app",
        "transport",
        "flow",
        "keep_alive",
        "waiting_for_100_continue",
        "body",
        "body_size",
        "more_body",
        "disconnected",
        "response_started",
        "response_complete",
        "_end_delivered",
        "_disconnect_delivered",
        "_waiter",
        "_bodyless",
        "_head",
        "_app_connection_header",
        "_status",
        "_chunked",
        "_content_length",
        "_bytes_sent",
        "_started",
        "_trailers",
        "_awaiting_trailers",
        "_trailer_lines",
        "_framed_length",
        "_method",
    )

    def __init__(
        self,
        protocol: HttpProtocol,
        scope: dict[str, Any],
        app: Callable[..., Any],
        keep_alive: bool,
        expect_100_continue: bool,
    ) -> None:
        self._init(protocol, scope, app, keep_alive, expect_100_continue)

    def _init(
        self,
        protocol: HttpProtocol,
        scope: dict[str, Any],
        app: Callable[..., Any],
        keep_alive: bool,
        expect_100_continue: bool,
    ) -> None:
        # (The protocol makes its cycles with __new__ and _init: no argument parsing in the compiled build.)
        self.scope = scope
        self.protocol = protocol
        self.app = app
        self.transport = protocol.transport
        self.flow = protocol.flow
        self.keep_alive = keep_alive
        self.waiting_for_100_continue = expect_100_continue
        # Request body: chunks not yet handed to the app.
        self.body: list[bytes] = []
        self.body_size = 0
        self.more_body = True
        self._end_delivered = False
        self._disconnect_delivered = False  # receive() said http.disconnect: the client closed its end
        self._waiter: asyncio.Future[None] | None = None
        # Connection and response state.
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self._bodyless = scope["method"] == "HEAD"
        # The status line and header lines, until the first body chunk writes them with its framing.
        self._head: list[bytes] | None = None
        self._status = 0
        self._app_connection_header = False
        self._chunked = False
        self._content_length = -1  # -1: the app gave no content-length
        self._bytes_sent = 0  # body bytes written (framing excluded)
        # For the access line's duration and the metrics' request duration histogram.
        self._started = monotonic() if protocol.access_log or protocol._metrics is not None else 0.0
        self._method: str | None = None  # set by the protocol when it counts requests
        self._trailers = TRAILERS_NONE
        self._awaiting_trailers = False  # the body is complete, http.response.trailers comes next
        self._trailer_lines = b""
        self._framed_length = -1  # set by _framing

    # Waking receive() ------------------------------------------------------------------------

    def _waits_after_request(self) -> bool:
        """Its app waits in receive() with the whole request delivered."""
        return self._waiter is not None and self._end_delivered

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # ASGI ------------------------------------------------------------------------------------

    async def run_asgi(self) -> None:
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            self._abort()
            raise
        except BaseException as exc:
            if (self.disconnected or self.transport.is_closing()) and _caused_by_disconnect(exc):
                logger.debug("Client disconnected while the application was sending the response.")
            else:
                logger.error("Exception in ASGI application\n", exc_info=exc)
            if self._can_replace_response():
                self._send_500()
            else:
                self._abort()
        else:
            if result is not None:
                logger.error("ASGI callable should return None, but returned '%s'.", result)
                self._abort()
            elif self.disconnected:
                if not self.response_complete and self.response_started and self.protocol.access_log:
                    self._log_access(True)  # the client left mid-response and the app returned quietly
            elif self._disconnect_delivered:
                self._abort()  # told the client closed its end, the app stopped: nothing is owed
            elif not self.response_started:
                logger.error("ASGI callable returned without starting response.")
                self._send_500()
            elif self._head is not None:
                logger.error("ASGI callable returned without completing response.")
                self._send_500()
            elif not self.response_complete:
                logger.error("ASGI callable returned without completing response.")
                self._abort()

    async def receive(self) -> dict[str, Any]:
        if self.waiting_for_100_continue:
            self.waiting_for_100_continue = False
            if not self.response_started and not self.transport.is_closing():
                self.protocol._write(CONTINUE)
        while True:
            if self.disconnected or self.response_complete:
                return {"type": "http.disconnect"}
            if self.body or (not self.more_body and not self._end_delivered):
                break
            if self.more_body:
                self.flow.resume_reading()
            elif self.protocol._eof:
                # The whole request is in and the client has closed its end: it is gone, or waits
                # half-closed for the answer (which is still written). Either way nothing more comes.
                self._disconnect_delivered = True
                return {"type": "http.disconnect"}
            else:
                self.protocol._read_for_eof()
            self._waiter = self.protocol.loop.create_future()
            await self._waiter
        chunks = self.body
        if len(chunks) == 1:
            body = chunks[0]
        else:
            body = b"".join(chunks)
        self.body = []
        self.body_size = 0
        if not self.more_body:
            self._end_delivered = True
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    def send(self, message: dict[str, Any]) -> Awaitable[None]:
        """ASGI ``send``, a coroutine function to the app. A message that needs no waiting (nearly
        all) is handled at once, and what is returned is already done: ``completed()``, or
        ``failed(error)`` which raises the error where the app awaits it."""
        if self.flow.write_paused and not self.disconnected:
            return self._send_after_drain(message)
        try:
            pending = self._send(message)
        except BaseException as error:
            return failed(error)
        if pending is not None:
            return pending  # a file: a coroutine that sends it
        return completed()

    async def _send_after_drain(self, message: dict[str, Any]) -> None:
        await self.flow.drain()
        pending = self._send(message)
        if pending is not None:
            await pending

    def _send(self, message: dict[str, Any]) -> Awaitable[None] | None:
        """Handle one message; None, or a coroutine still to await (files)."""
        if type(message) is not dict:
            message = dict(message)
        if self.disconnected:
            raise ClientDisconnected
        message_type = message.get("type")
        if not self.response_started:
            if message_type != "http.response.start":
                if message_type == "http.response.early_hint":
                    self._send_early_hint(message.get("links", ()))
                    return None
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{message_type}'.")
            self._start_response(message.get("status"), message.get("headers", ()), message.get("trailers", False))
        elif not self.response_complete:
            if message_type == "http.response.body" and not self._awaiting_trailers:
                self._send_body(message.get("body", b""), message.get("more_body", False))
            else:
                return self._send_extension(message_type, message)
        else:
            raise RuntimeError(f"Unexpected ASGI message '{message_type}' sent, after response already completed.")
        return None

    def _send_extension(self, message_type: Any, message: dict[str, Any]) -> Awaitable[None] | None:
        """The response messages of the ASGI extensions, after the start (not the hot path)."""
        if self._awaiting_trailers:
            if message_type != "http.response.trailers":
                raise RuntimeError(f"Expected ASGI message 'http.response.trailers', but got '{message_type}'.")
            self._send_trailers(message.get("headers", ()), message.get("more_trailers", False))
            return None
        if message_type == "http.response.pathsend":
            pending = self._send_path_now(message.get("path"))
            if pending is not False:
                return pending
        if message_type == "http.response.pathsend" or message_type == "http.response.zerocopysend":
            return self._send_file_message(message_type, message)
        raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{message_type}'.")

    async def _send_file_message(self, message_type: Any, message: dict[str, Any]) -> None:
        if message_type == "http.response.pathsend":
            fd, size = open_path(message.get("path"))
            try:
                await self._send_file(fd, 0, size, False)
            finally:
                os.close(fd)
        else:
            fd, offset, count, advance = zerocopy_range(
                message.get("file"), message.get("offset"), message.get("count")
            )
            await self._send_file(fd, offset, count, message.get("more_body", False))
            if advance:
                os.lseek(fd, offset + count, os.SEEK_SET)

    def _send_path_now(self, path: Any) -> Any:
        """pathsend without a coroutine in the common case, where the kernel has the file fast path:
        a whole regular file on a plain TCP socket whose transport holds nothing, answered by one
        send(2) of the head with MSG_MORE (it leaves in the file's first segment instead of a
        packet of its own) and sendfile(2).

        False: this case does not apply and nothing was done (the general path then opens the file
        and raises what the app should see). None: the response is out. Else a coroutine sending
        the rest once the socket takes more."""
        protocol = self.protocol
        if (
            type(path) is not str
            or self._head is None
            or self._bodyless
            or self._trailers == TRAILERS_WRITTEN
            or self.disconnected
        ):
            return False
        sock_fd = protocol._sendfile_socket()
        if sock_fd < 0 or protocol._transport_is_closing() or self.transport.get_write_buffer_size():
            return False
        opened = open_file(path)
        if opened is None:
            return False
        fd, size = opened
        if self._content_length != -1 and self._content_length != size:
            close_file(fd)
            return False  # the general path says which way the lengths disagree
        pending = self._head_bytes(size, False)
        head_size = len(pending)
        self._bytes_sent += size
        batch = protocol._write_batch
        if batch:  # earlier pipelined responses of this dispatch loop go first
            batch.append(pending)
            pending = b"".join(batch)
            protocol._write_batch = []
            protocol._write_batch_size = 0
        if not size:
            close_file(fd)
            protocol._write(pending)
            self._end_body()
            return None
        if protocol._metrics is not None:  # the head and the file go out past _write
            protocol._metrics.sent(head_size + size)
        sent = send_more(sock_fd, pending)
        if sent != len(pending):
            # The socket took part of it, or failed: the transport sends the rest (or meets the
            # error), and transmit_file waits until the transport is empty before the file.
            protocol._transport_write(pending[sent:] if sent > 0 else pending)
            return self._send_file_rest(fd, 0, size)
        offset = send_file(sock_fd, fd, 0, size)
        if offset < size:
            return self._send_file_rest(fd, offset, size)
        close_file(fd)
        self._end_body()
        return None

    async def _send_file_rest(self, fd: int, offset: int, end: int) -> None:
        try:
            await transmit_file(self, fd, offset, end - offset)
        finally:
            os.close(fd)
        self._end_body()

    # Response framing -------------------------------------------------------------------------

    def _start_response(self, status: Any, headers: Any, trailers: Any = False) -> None:
        # Everything is checked before anything is recorded, so a bad start still gets a 500.
        if type(status) is not int or not 100 <= status <= 599:
            raise RuntimeError(f"Invalid HTTP status code {status!r} in response.")
        code: int = status
        trailers_mode = self._trailers_mode(code) if trailers else TRAILERS_NONE
        lines = [STATUS_LINES[code], self.protocol.server_state.default_headers_block]
        content_length = -1
        keep_alive = self.keep_alive
        connection_header = False
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
                content_length = length
                if trailers_mode == TRAILERS_WRITTEN:
                    continue  # the body is chunked to carry the trailers; the length is still checked
            elif name == b"transfer-encoding":
                continue  # the server frames the body itself (ASGI: servers ignore it)
            elif name == b"connection":
                connection_header = True
                if b"close" in value.lower():
                    keep_alive = False
            lines.append(name)
            lines.append(b": ")
            lines.append(value)
            lines.append(CRLF)

        self.response_started = True
        self.keep_alive = keep_alive
        self._app_connection_header = connection_header
        self._status = code
        self._content_length = content_length
        if trailers_mode != TRAILERS_NONE:
            self._trailers = trailers_mode
        if code == 204 or code == 304 or code < 200:
            self._bodyless = True
        self._head = lines
        protocol = self.protocol
        if not protocol._head_check_due and not protocol._dispatching:
            protocol._check_head_soon()  # (an app started eagerly by _dispatch is checked by _run)

    def _log_access(self, aborted: bool) -> None:
        """The access line, once the response is complete (or aborted)."""
        duration = monotonic() - self._started
        log_access(self.protocol.access_logger, self.scope, self._status, duration, self._bytes_sent, aborted)

    def _trailers_mode(self, status: int) -> int:
        """For a start with ``trailers``: TRAILERS_WRITTEN when they can be (an HTTP/1.1 response
        with a body, to a request that said ``TE: trailers``), which makes the body chunked; else
        TRAILERS_DROPPED: the response is framed as usual and the trailers are dropped."""
        if (
            self._bodyless
            or status == 204
            or status == 304
            or status < 200
            or self.scope["http_version"] != "1.1"
        ):
            return TRAILERS_DROPPED
        return TRAILERS_WRITTEN if accepts_trailers(self.scope["headers"]) else TRAILERS_DROPPED

    def _framing(self, body_size: int, more_body: bool) -> bytes:
        """For the head still held, the framing the first body chunk decides: the lines that end
        the head; ``_framed_length`` is set to the content-length to add (-1: none)."""
        http10 = self.scope["http_version"] == "1.0"
        length = -1
        chunked = False
        if not self._bodyless and (self._content_length == -1 or self._trailers == TRAILERS_WRITTEN):
            if not more_body and self._trailers != TRAILERS_WRITTEN:
                length = body_size
            elif http10:
                self.keep_alive = False  # an HTTP/1.0 body of unknown length ends at close
            else:
                self._chunked = chunked = True
        if self._app_connection_header:
            connection = CONNECTION_AS_GIVEN  # the app said what it wanted; never a second header
        elif not self.keep_alive:
            connection = CONNECTION_CLOSE
        elif http10:
            connection = CONNECTION_KEEP_ALIVE
        else:
            connection = CONNECTION_AS_GIVEN
        self._framed_length = length
        return HEAD_ENDS[chunked][connection]

    def _head_bytes(self, body_size: int, more_body: bool) -> bytes:
        """The held head, framed for a body chunk of ``body_size`` bytes (not the hot path)."""
        lines = self._head
        self._head = None
        head_end = self._framing(body_size, more_body)
        return frame_response(lines, self._framed_length, head_end, -1, b"", b"")

    def _flush_head(self) -> None:
        """No body message followed the start within a loop iteration (an event stream before its
        first event, a slow computation): the head goes out now, framed for a body still to come,
        so the client is not left without a status."""
        if self._head is not None and not self.disconnected and not self.transport.is_closing():
            self.protocol._write(self._head_bytes(0, True))

    def _send_body(self, body: bytes, more_body: bool) -> None:
        if more_body and self.transport.is_closing():
            # The client is gone and connection_lost is not delivered yet; an app streaming in a
            # loop that never waits would otherwise never see it (asyncio drops writes silently).
            raise ClientDisconnected
        if type(body) is not bytes:
            body = as_bytes(body, "body")
        size = len(body)
        if 0 <= self._content_length < self._bytes_sent + size and not self._bodyless:
            # Refused before anything is written: a head still held can become a 500.
            raise RuntimeError("Response content longer than Content-Length")
        lines = self._head
        length = -1
        head_end = b""
        if lines is not None:
            self._head = None
            head_end = self._framing(size, more_body)
            length = self._framed_length
        chunk_size = -1
        tail = b""
        if self._bodyless:
            body = b""
        else:
            self._bytes_sent += size
            if self._chunked:
                # An empty chunk would end the body, so empty messages write no chunk.
                if size:
                    chunk_size = size
                    tail = CRLF
                if not more_body and self._trailers != TRAILERS_WRITTEN:
                    tail = CHUNK_END_LAST if size else LAST_CHUNK
        if size < COALESCE_LIMIT or self._bodyless:
            data = frame_response(lines, length, head_end, chunk_size, body, tail)
            if data:
                self.protocol._write(data)
        else:  # a large body is not copied next to its framing
            self.protocol._writelines(
                [frame_response(lines, length, head_end, chunk_size, b"", b""), body, tail]
            )
        if not more_body:
            self._end_body()

    def _end_body(self) -> None:
        if self._bytes_sent < self._content_length and not self._bodyless:
            raise RuntimeError("Response content shorter than Content-Length")
        if self._trailers:
            self._awaiting_trailers = True
            return
        self._complete()

    def _complete(self) -> None:
        """The response is on the wire (its last body chunk, or its trailers)."""
        self.response_complete = True
        self.wake()
        protocol = self.protocol
        if protocol.access_log:
            self._log_access(False)
        protocol._on_response_complete(self)

    async def _send_file(self, fd: int, offset: int, count: int, more_body: bool) -> None:
        """A body chunk of ``count`` bytes of a file (pathsend, zerocopysend): framed as
        ``_send_body`` frames one, its bytes sent by ``transmit_file`` once everything before them
        is on the transport."""
        if 0 <= self._content_length < self._bytes_sent + count and not self._bodyless:
            raise RuntimeError("Response content longer than Content-Length")
        head = self._head_bytes(count, more_body) if self._head is not None else b""
        if self._bodyless:
            count = 0
        else:
            self._bytes_sent += count
        protocol = self.protocol
        if self._chunked and count:
            head += frame_response(None, -1, b"", count, b"", b"")  # the chunk-size line
        if head:
            protocol._write(head)
        if count:
            protocol._flush_writes()
            await transmit_file(self, fd, offset, count)
            if protocol._metrics is not None:
                protocol._metrics.sent(count)
        tail = CRLF if self._chunked and count else b""
        if self._chunked and not more_body and self._trailers != TRAILERS_WRITTEN:
            tail += LAST_CHUNK
        if tail:
            protocol._write(tail)
        if not more_body:
            self._end_body()

    def _send_trailers(self, headers: Any, more_trailers: Any) -> None:
        block = trailer_block(headers)  # checked even when dropped: the same app errors everywhere
        if self._trailers == TRAILERS_WRITTEN:
            self._trailer_lines += block
        if not more_trailers:
            if self._trailers == TRAILERS_WRITTEN:
                self.protocol._write(b"0\r\n" + self._trailer_lines + CRLF)
            self._complete()

    def _send_early_hint(self, links: Any) -> None:
        head = early_hint_head(links)  # checked even for HTTP/1.0, which never gets it
        if head and self.scope["http_version"] == "1.1" and not self.transport.is_closing():
            self.protocol._write(head)

    def _can_replace_response(self) -> bool:
        """Nothing of the response is on the wire yet (its head waits for the first body chunk)."""
        return not self.disconnected and (not self.response_started or self._head is not None)

    def _send_500(self) -> None:
        self._trailers = TRAILERS_NONE  # replacing a response that announced trailers
        if self.protocol._metrics is not None:
            self.protocol._metrics.server_response(500)
        self._start_response(
            500,
            [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"21"),
                (b"connection", b"close"),
            ],
        )
        self._send_body(b"Internal Server Error", False)

    def _abort(self) -> None:
        """The response cannot be completed: close the connection so the client sees it end."""
        if not self.response_complete:
            self.keep_alive = False
            if self.response_started and self.protocol.access_log:
                self._log_access(True)
            if self.response_started and self.protocol._metrics is not None:
                self.protocol._metrics.request_done(self._method, self._status, self._started)
            self.protocol._close()
            self.protocol._on_response_aborted(self)


class ConnectionSettings:
    """What every connection of a server takes from its Config and server state, read once: a client
    that does not keep its connection alive makes one connection per request."""

    def __init__(self, config: Any, server_state: Any) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.server_state = server_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.app = config.http_app
        self.trusted_hosts = config.proxy_trusted_hosts  # None: proxy headers off
        # Request limits (docs/reliability.md); -1 / 0: off.
        self.limit_head = config.limit_request_head_size
        self.limit_headers = config.limit_request_headers
        self.limit_body = -1 if config.limit_request_body_size is None else config.limit_request_body_size
        self.limit_requests = config.limit_keep_alive_requests or 0
        self.timeout_head = config.timeout_header_read or 0.0
        parser_factory = config.http_parser_factory
        if parser_factory is None and _PREFER_HTTPTOOLS:
            parser_factory = httptools_parser_factory
        self.parser_factory = None if parser_factory is OWN_PARSER else parser_factory
        self.ws_protocol_class = config.ws_protocol_class
        self.root_path = config.root_path
        self.root_path_raw = config.root_path.encode("utf-8")
        self.limit_concurrency = config.limit_concurrency
        self.limit = -1 if config.limit_concurrency is None else config.limit_concurrency
        self.timeout_keep_alive = config.timeout_keep_alive
        self.reset_contextvars = config.reset_contextvars
        self.asgi_version = config.asgi_version
        # --health-path: the raw path the server answers itself (None: off), and its answerer.
        self.health_path = config.health_path_raw
        self.health_app = None if self.health_path is None else HealthCheck(server_state)
        self.http2 = bool(config.http2)
        # Whether connections log "connection made/lost" at TRACE: decided with the log level, at load.
        self.trace = logger.isEnabledFor(TRACE_LOG_LEVEL)
        # Whether requests are written to the access log: its handlers are set up at load too.
        self.access_log = access_logger.hasHandlers()
        # Connections whose response started in this loop iteration, checked at its end for a head
        # still held (one callback per iteration for all of the server's connections).
        pending_heads = getattr(server_state, "pending_heads", None)
        self.pending_heads = [] if pending_heads is None else pending_heads
        # The scope's keys and the values all requests share; each connection copies it once and
        # adds its addresses and scheme.
        self.scope_template = http_scope_template(self.asgi_version, None, None, None, "http", self.root_path)
        # --metrics-bind / --metrics-path: the counts go into the server's block (None: metrics off).
        block = getattr(server_state, "metrics_block", None)
        self.metrics = None if block is None else Recorder(block)
        self.metrics_page = getattr(server_state, "metrics_page", None)
        self.metrics_path = None if self.metrics_page is None else config.metrics_path_raw


#: The settings of the server whose connections were made last (one server per process, usually).
_settings: ConnectionSettings | None = None


def connection_settings(config: Any, server_state: Any) -> ConnectionSettings:
    global _settings
    settings = _settings
    if settings is None or settings.config is not config or settings.server_state is not server_state:
        settings = _settings = ConnectionSettings(config, server_state)
    return settings


class ProtocolFactory:
    """What a server hands its loop to make each connection's HttpProtocol (HttpProtocol.connection_factory):
    the protocol made without a Python frame or keyword arguments, with the server's loop."""

    def __init__(
        self, config: Any, server_state: Any, app_state: dict[str, Any], loop: asyncio.AbstractEventLoop
    ) -> None:
        self.config = config
        self.server_state = server_state
        self.app_state = app_state
        self.loop = loop
        # The server listens with ssl=config.ssl: without it, no connection of its is TLS.
        self.plain = config.ssl is None
        self.local_address: tuple[str, int] | None = None  # see listening_on()
        # One dict for every connection's Tasks (start_task fills in the context of each, and the
        # Task keeps no reference to it; the loop runs one thing at a time).
        self.task_kwargs = task_kwargs(loop)

    def listening_on(self, listeners: Sequence[Any]) -> None:
        """The server's listening sockets, once it listens. A server with one listener bound to one
        IPv4 address (not 0.0.0.0) knows every connection's local address: it is that one, so it is
        not read from each connection's socket (nginx does the same)."""
        self.local_address = None
        if len(listeners) == 1 and listeners[0].family == socket.AF_INET:
            host, port = listeners[0].getsockname()
            if host != IPV4_WILDCARD:
                self.local_address = (host, port)

    def __call__(self) -> HttpProtocol:
        return _new_connection(
            self.config, self.server_state, self.app_state, self.loop, self.plain, self.local_address, self.task_kwargs
        )


def _new_connection(
    config: Any,
    server_state: Any,
    app_state: dict[str, Any],
    loop: asyncio.AbstractEventLoop,
    plain: bool,
    local_address: tuple[str, int] | None,
    shared_task_kwargs: dict[str, Any],
) -> HttpProtocol:
    protocol = HttpProtocol.__new__(HttpProtocol)
    protocol._init(config, server_state, app_state, loop, shared_task_kwargs)
    protocol._plain = plain
    protocol._local_address = local_address
    return protocol


class HttpProtocol(RequestSink):
    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._init(config, server_state, app_state, _loop if _loop is not None else asyncio.get_running_loop(), None)

    @classmethod
    def connection_factory(
        cls, config: Any, server_state: Any, app_state: dict[str, Any], loop: asyncio.AbstractEventLoop
    ) -> Callable[[], HttpProtocol] | None:
        """The protocol factory a server gives its loop for this class; None for a class derived from
        it, whose own __init__ must run."""
        return ProtocolFactory(config, server_state, app_state, loop) if cls is HttpProtocol else None

    def _init(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        shared_task_kwargs: dict[str, Any] | None,
    ) -> None:
        # (__init__, callable from ProtocolFactory as a C function in the compiled build; it passes the
        # server's Task keywords, shared_task_kwargs.)
        settings: ConnectionSettings = connection_settings(config, server_state)
        self._settings = settings
        self.config = config
        self.app = settings.app
        self.trusted_hosts = settings.trusted_hosts
        self.loop = loop
        self.logger = logger
        self.access_logger = access_logger
        self.access_log = settings.access_log
        self._limit_head = settings.limit_head
        self._limit_headers = settings.limit_headers
        self._limit_body = settings.limit_body
        self._limit_requests = settings.limit_requests
        self._timeout_head = settings.timeout_head
        parser_factory = settings.parser_factory
        if parser_factory is None:
            self._native_parser: RequestParser | None = new_request_parser(
                self, self._limit_head, self._limit_headers, self._limit_body
            )
            # RequestParser, or a foreign parser (httptools' interface); None once the connection is done
            self.parser: Any = self._native_parser
        else:
            self._native_parser = None
            self.parser = parser_factory(self)
        self.ws_protocol_class = settings.ws_protocol_class
        self.root_path = settings.root_path
        self._root_path_raw = settings.root_path_raw
        self.limit_concurrency = settings.limit_concurrency
        self._limit = settings.limit
        self.timeout_keep_alive = settings.timeout_keep_alive
        self.reset_contextvars = settings.reset_contextvars
        self.asgi_version = settings.asgi_version
        self.app_state = app_state
        self._health_path: bytes | None = settings.health_path
        self._health_app = settings.health_app
        self._metrics = settings.metrics
        self._metrics_path: bytes | None = settings.metrics_path

        # Shared server state.
        self.server_state = server_state
        self.connections = settings.connections
        self.tasks = settings.tasks
        self._pending_heads: list[HttpProtocol] = settings.pending_heads
        self._head_check_due = False  # this connection is in that list

        # Connection state.
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self._transport_is_closing: Callable[[], bool] = _never_connected
        self._transport_write: Callable[[bytes], None] = _never_connected  # type: ignore[assignment]
        self.flow: FlowControl = None  # type: ignore[assignment]
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.deadline = 0.0  # monotonic() at which an idle connection is closed; 0: none
        # When the next request head must be complete: --timeout-header-read from connect, or from
        # the first byte after a response; 0: not running (idle after a response, keep-alive
        # applies); -1: started, resolved at the next reading of the clock.
        self._head_deadline = HEAD_CLOCK_OFF
        self._requests = 0  # requests begun on this connection (for --limit-keep-alive-requests)
        self.draining = False  # after shutdown(): no response keeps the connection open
        self._context: contextvars.Context | None = None
        # The peer may set X-Forwarded-* (PEER_TRUSTED), may not, or not decided yet: decided once per
        # connection, at its first request with such a header (most connections never have one).
        self._proxy_trust = TRUST_UNKNOWN
        self._tls: dict[str, Any] | None = None  # the ASGI tls extension of a TLS connection
        self._plain = False  # made by a server without TLS (ProtocolFactory): no TLS to look for
        self._local_address: tuple[str, int] | None = None  # the listener's, when it has one (ProtocolFactory)
        self._reading_stopped = False  # after a parse error or an upgrade: the parser is done
        self._eof = False
        self._pending_error: bytes | None = None  # written once earlier responses are out
        self._upgrade: bytes | None = None  # request head + trailing bytes for the WebSocket protocol
        self._held: bytes | None = None  # read past a full pipeline, parsed once there is room
        # --http2: the first bytes are looked at for the h2c preface (then the connection is handed
        # over to the HTTP/2 protocol); what came of it so far, while it could still be the preface.
        self._h2_sniff = settings.http2
        self._h2_prefix = b""
        self._queued_head_bytes = 0  # head bytes of the requests parsed since the pipeline was empty

        # Requests: the one being parsed, the one answering, the ones waiting in order.
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect_100_continue = False
        self._parsing = False
        # What httptools and h11 leave to us: where the current message is, and sizes to bound.
        self._in_head = False  # between on_message_begin and on_headers_complete
        self._head_size = 0  # header fields of this head, as they would be written ("n: v\r\n")
        self._trailer_size = 0
        self._body_received = 0
        self._progress = False  # a callback ran during this data_received
        self._backlog = 0  # bytes fed since the parser last handed anything over
        self.cycle: RequestCycle | None = None
        self.active: RequestCycle | None = None
        self.pipeline: deque[RequestCycle] = deque()
        self._dispatching = False
        self._held_resume_due = False
        self._write_batch: list[bytes] | None = None  # writes of the running dispatch loop
        self._write_batch_size = 0
        self._task_kwargs = task_kwargs(loop) if shared_task_kwargs is None else shared_task_kwargs
        # The scope's template: None before the first request, the server's after it, the connection's
        # own from the second request on.
        self._scope_template: dict[str, Any] | None = None
        self._file_way = FILE_WAY_UNKNOWN  # how files go out on this connection (see _sendfile_socket)
        self._file_socket = -1

    # asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.connections.add(self)
        if self._metrics is not None:
            self._metrics.accepted()
        self.transport = transport
        self._transport_is_closing = transport.is_closing  # (bound once: asked at every step)
        self._transport_write = transport.write
        self.flow = FlowControl(transport)
        # (The compiled kernel reads an IPv4 socket's addresses itself.)
        addresses = ipv4_addresses(transport, self._local_address)
        if addresses is not None:
            self.server, self.client = addresses
        else:
            self.server = get_local_addr(transport)
            self.client = get_remote_addr(transport)
        if not self._plain and transport.get_extra_info("sslcontext"):
            self.scheme = "https"
            self._tls = tls_extension(transport, self.config.ssl_server_cert)
        self._context = copy_context()  # (a global of this module: no attribute lookup per connection)
        if self._timeout_head:
            self._head_deadline = self.deadline = monotonic() + self._timeout_head
        if self._settings.trace:
            self.logger.log(TRACE_LOG_LEVEL, "%sHTTP connection made", self._log_prefix())
        if self._h2_sniff and self._tls is not None:
            self._h2_sniff = False  # over TLS, ALPN decides (no prior knowledge)
            if alpn_protocol(transport) == "h2":
                self._hand_over_h2(b"")

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if self._settings.trace:
            self.logger.log(TRACE_LOG_LEVEL, "%sHTTP connection lost", self._log_prefix())
        self.deadline = 0.0
        for cycle in (self.active, self.cycle):
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.wake()
        self.active = None
        self.cycle = None
        self.pipeline.clear()
        if self.flow is not None:
            self.flow.resume_writing()  # senders waiting to drain wake up and see the disconnect
        self.parser = None  # break the parser <-> protocol reference cycle now
        self._native_parser = None

    def eof_received(self) -> bool | None:
        # The client closed its end. An app waiting in receive() after the whole request learns it
        # at once (http.disconnect); responses are still written, so a client that only half-closed
        # after its requests gets them all.
        self._eof = True
        if self.cycle is not None and self.cycle.more_body:
            self._abandon(self.cycle)
        elif self.active is not None:
            self.active.wake()
        if self._transport_is_closing() or self.scheme != "http":
            return None  # (TLS transports cannot stay half-open)
        return True if self.active is not None or self.pipeline or self._held is not None else None

    def data_received(self, data: bytes) -> None:
        if self._metrics is not None:
            self._metrics.received(len(data))
        if self._reading_stopped:
            return
        if self._h2_sniff:
            data = self._sniff_h2(data)
            if not data:
                return
        if self._held is not None:
            # Read while earlier bytes wait for room (reading resumed to watch for EOF, or a
            # transport's buffered data): kept after them, up to a bound.
            self._held += data
            if len(self._held) >= PIPELINE_HEAD_LIMIT:
                self.flow.pause_reading()
            return
        self.deadline = 0.0
        if self._head_deadline == HEAD_CLOCK_OFF and self._timeout_head:
            self._head_deadline = HEAD_CLOCK_STARTED  # the first byte since the last response
        self._parse(data)
        self._dispatch()

    def _parse(self, data: bytes) -> None:
        """Hand ``data`` to the parser; what comes after a full pipeline is held, unparsed."""
        try:
            if self._native_parser is not None:
                self._held = self._native_parser.feed(data)
            else:
                self._feed_foreign(data)
        except RequestRejected as exc:
            self._reject(exc.status, exc.body, exc.log_message)
        except PARSER_ERRORS as exc:
            rejection = foreign_parse_error(exc, self.parser.get_http_version())
            self._reject(rejection.status, rejection.body, rejection.log_message)
        except PARSER_UPGRADES as exc:
            self._on_upgrade(data[exc.args[0] :] if exc.args else b"")
        cycle = self.cycle
        if self._eof and cycle is not None and cycle.more_body:
            self._abandon(cycle)  # held bytes parsed after the client closed its end

    def _abandon(self, cycle: RequestCycle) -> None:
        """The client closed its end inside this request's body, which can never complete: the
        request is dropped, and the requests before it are still answered."""
        cycle.disconnected = True
        cycle.wake()
        self.cycle = None
        if cycle is self.active:
            self._close()  # its app is told; nothing before it is left to answer
        elif cycle in self.pipeline:
            self.pipeline.remove(cycle)

    def _feed_foreign(self, data: bytes) -> None:
        """httptools and h11 parse all they are given: feed them a step at a time, so they stop at
        a full pipeline as the native parsers do."""
        size = len(data)
        pos = 0
        step = FOREIGN_FEED_STEP
        while pos < size:
            if self._pipeline_full():
                self._held = data[pos:]
                return
            chunk = data if pos == 0 and size <= step else data[pos : pos + step]
            queued = len(self.pipeline)
            try:
                self.parser.feed_data(chunk)
            except PARSER_UPGRADES as exc:
                raise ParserUpgrade(pos + exc.args[0] if exc.args else size) from None
            if self._progress:
                self._progress = False
                self._backlog = 0
            else:
                self._bound_backlog(len(chunk))
            pos += len(chunk)
            step = FOREIGN_FEED_STEP if len(self.pipeline) != queued else step * 2

    def _read_for_eof(self) -> bool:
        """The app waits in receive() after its whole request (a long-poll): read on even with
        requests queued behind it, so the client closing its end is seen; what arrives is parsed or
        held as usual, and held bytes are not let grow past a bound. True if reading goes on."""
        if self._reading_stopped or (self._held is not None and len(self._held) >= PIPELINE_HEAD_LIMIT):
            return False
        self.flow.resume_reading()
        return True

    def _pipeline_full(self) -> bool:
        """Enough parsed requests wait for their turn: parse no further until they are answered."""
        if not self.pipeline:
            self._queued_head_bytes = 0
            return False
        return len(self.pipeline) >= PIPELINE_LIMIT or self._queued_head_bytes >= PIPELINE_HEAD_LIMIT

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def _resume_held_soon(self) -> None:
        self._held_resume_due = True
        self.loop.call_soon(self._resume_held)

    def _resume_held(self) -> None:
        self._held_resume_due = False
        if self.transport is None or self._transport_is_closing():
            return
        if self.active is None and not self.pipeline:
            self._dispatch()  # (else the answer in progress resumes them when it completes)

    def resume_writing(self) -> None:
        self.flow.resume_writing()
        if self._held is not None and self.active is None and not self.pipeline:
            self._dispatch()  # parsing stopped while the client read nothing; it reads again

    # Parser callbacks (httptools and h11; the native parser calls the _on_* methods directly) --

    def on_message_begin(self) -> None:
        self._parsing = True
        self._progress = True
        self._in_head = True
        self._head_size = 0
        self.url = b""
        self.headers = []
        self.expect_100_continue = False

    def on_url(self, url: bytes) -> None:
        self._progress = True
        self.url += url
        if len(self.url) > self._limit_head:
            raise head_too_large()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._progress = True
        if not self._in_head:
            # A trailer field: bounded and checked like the native parsers', never a request header.
            self._trailer_size += len(name) + len(value) + 4
            if self._trailer_size > self._limit_head or name.lower() in FRAMING_FIELDS:
                raise bad_request()
            return
        if len(self.headers) >= self._limit_headers:
            raise too_many_headers()
        name = name.lower()
        value = value.rstrip(b" \t")  # llhttp keeps trailing whitespace; it is not part of the value
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self._head_size += len(name) + len(value) + 4
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        self._in_head = False
        self._trailer_size = 0
        self._body_received = 0
        method = parser.get_method()
        # The request line and fields as written with single spaces, and the final CRLF.
        head_size = self._head_size + len(method) + len(self.url) + 14
        if head_size > self._limit_head:
            raise head_too_large()
        self._queued_head_bytes += head_size
        http_version = parser.get_http_version()
        method_name = method.decode("ascii")
        check_request_head(method_name, self.url, http_version, self.headers, self._limit_body)
        self._on_request(
            method_name,
            self.url,
            http_version,
            self.headers,
            parser.should_keep_alive(),
            parser.should_upgrade(),
            self.expect_100_continue,
        )

    def on_body(self, body: bytes) -> None:
        self._progress = True
        if self._limit_body >= 0:
            self._body_received += len(body)
            if self._body_received > self._limit_body:
                raise body_too_large()
        self._on_body(body)

    def on_message_complete(self) -> None:
        self._progress = True
        self._on_message_complete()

    def _bound_backlog(self, size: int) -> None:
        """Bound what httptools / h11 buffer without handing anything over (a header growing
        forever, a trailer): after ``--limit-request-head-size`` such bytes, 431 (or 400)."""
        self._backlog += size
        if self._backlog > self._limit_head:
            raise head_too_large() if self._in_head else bad_request()

    def _on_request(
        self,
        method: str,
        target: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        upgrade: bool,
        expect_100_continue: bool,
    ) -> None:
        """A complete request head: queue its request cycle (or remember the upgrade)."""
        self._parsing = True
        if self.draining:
            keep_alive = False  # shutting down: this response closes the connection
        if self._limit_requests:
            self._requests += 1
            if self._requests >= self._limit_requests:
                keep_alive = False  # --limit-keep-alive-requests: the last one on this connection
        if upgrade:
            websocket = is_websocket_upgrade(headers)
            if websocket and self.ws_protocol_class is not None:
                # Handed to the WebSocket protocol once earlier requests are answered.
                self._upgrade = request_head_bytes(method, target, headers)
                return
            if not (self.config.http2 and is_h2c_upgrade(headers)):
                warn_unsupported_upgrade(websocket)  # (h2c is expected with --http2: answered over HTTP/1.1)
            keep_alive = False  # the parser cannot go on after an upgrade request

        raw_path, query_string = split_target(target)
        path = raw_path.decode("latin-1") if is_ascii(raw_path) else raw_path.decode("utf-8", "replace")
        if "%" in path:
            path = unquote(path)
        root_path = self.root_path
        template = self._scope_template
        shared = self._settings.scope_template
        if template is None:
            # The connection's first request (a client that does not keep connections alive makes
            # only one): the server's template and the connection's values, no template of its own.
            self._scope_template = shared
            scope = shared.copy()
            scope["server"] = self.server
            scope["client"] = self.client
            scope["scheme"] = self.scheme
        else:
            if template is shared:  # a second request: now the connection's template pays off
                template = self._scope_template = shared.copy()
                template["server"] = self.server
                template["client"] = self.client
                template["scheme"] = self.scheme
            # A copy of the connection's template, then what each request has of its own: copying
            # the keys table and replacing values is cheaper than building a dict of 14 keys.
            scope = template.copy()
        asgi = scope["asgi"]
        scope["asgi"] = asgi.copy()
        scope["http_version"] = http_version
        scope["method"] = method
        scope["path"] = root_path + path if root_path else path
        scope["raw_path"] = self._root_path_raw + raw_path if root_path else raw_path
        scope["query_string"] = query_string
        scope["headers"] = headers
        scope["state"] = self.app_state.copy()
        extensions = HTTP_EXTENSIONS.copy()
        scope["extensions"] = extensions
        if self._tls is not None:
            extensions["tls"] = self._tls.copy()
        if self.trusted_hosts is not None and has_proxy_headers(headers) and self._peer_trusted():
            apply_proxy_headers(scope, self.trusted_hosts)

        app = self.app
        limit = self._limit
        if (
            self._health_path is not None
            and raw_path == self._health_path
            and (method == "GET" or method == "HEAD")
        ):
            app = self._health_app  # answered by the server, never refused by --limit-concurrency
        elif (
            self._metrics_path is not None
            and raw_path == self._metrics_path
            and (method == "GET" or method == "HEAD")
        ):
            app = self._settings.metrics_page
        elif limit >= 0 and (len(self.connections) >= limit or len(self.tasks) >= limit):
            app = service_unavailable
            self.logger.warning("Exceeded concurrency limit.")
            if self._metrics is not None:
                self._metrics.server_response(503)

        cycle = RequestCycle.__new__(RequestCycle)
        cycle._init(self, scope, app, keep_alive, expect_100_continue)
        if self._metrics is not None:
            cycle._method = method  # (for the metrics: a field is cheaper to read than the scope)
        self.cycle = cycle
        self.pipeline.append(cycle)

    def _peer_trusted(self) -> bool:
        if self._proxy_trust == TRUST_UNKNOWN:
            trusted = is_trusted_peer(self.trusted_hosts, self.client, self.server)
            self._proxy_trust = PEER_TRUSTED if trusted else PEER_UNTRUSTED
        return self._proxy_trust == PEER_TRUSTED

    def _on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete or cycle.disconnected:
            return  # nobody will read it: the response is already out
        cycle.body.append(body)
        cycle.body_size += len(body)
        if cycle.body_size > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.wake()

    def _on_message_complete(self) -> None:
        self._parsing = False
        cycle = self.cycle
        if cycle is None:
            return
        self.cycle = None
        cycle.more_body = False
        cycle.wake()

    # Running requests in order ---------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start queued requests while none is answering; then write a pending error, hand an
        upgrade over, or arm the keep-alive deadline once the connection is idle."""
        if self._dispatching or self.transport is None or self._transport_is_closing():
            return
        self._dispatching = True
        self._write_batch = []  # responses answered in this loop leave in one writev
        rounds = 0
        try:
            while True:
                while self.active is None and self.pipeline:
                    cycle = self.pipeline.popleft()
                    self.active = cycle
                    self._run(cycle)
                if self._held is None or self.pipeline or self._reading_stopped:
                    break
                if self._write_batch_size >= HIGH_WATER_LIMIT:
                    self._flush_writes()
                if self.flow.write_paused:
                    break  # the client is not reading its answers: parse more once it does
                if rounds == HELD_ROUNDS_LIMIT:
                    self._resume_held_soon()  # the other connections' turn first
                    break
                rounds += 1
                held = self._held  # the pipeline has room again: parse what was held back
                self._held = None
                self._parse(held)
        finally:
            self._dispatching = False
            self._flush()
        if self._transport_is_closing():
            return
        if self.active is not None:
            if self.pipeline and not (self.active._waits_after_request() and self._read_for_eof()):
                self.flow.pause_reading()  # back-pressure on a pipelining client
            return
        if self._held_resume_due:
            self.flow.pause_reading()  # held bytes are parsed first, at the loop's next turn
            return
        if self._pending_error is not None:
            if self._pending_error:
                self._write(self._pending_error)
            self._close()
        elif self._upgrade is not None:
            self._hand_over_upgrade()
        elif self._eof:
            self._close()
        elif not self._reading_stopped:
            if not self._parsing and (
                self._native_parser is None or not self._native_parser.has_partial_message()
            ):
                # Idle: closed after --timeout-keep-alive without a byte; bytes that are no request
                # yet (empty lines) do not extend the head deadline.
                now = monotonic()
                self.deadline = now + self.timeout_keep_alive
                if self._head_deadline != HEAD_CLOCK_OFF:
                    if self._head_deadline == HEAD_CLOCK_STARTED:
                        self._head_deadline = now + self._timeout_head
                    self.deadline = min(self.deadline, self._head_deadline)
            elif self._timeout_head:
                # Part of the next request is here: its head must be complete by the head deadline.
                if self._head_deadline == HEAD_CLOCK_OFF or self._head_deadline == HEAD_CLOCK_STARTED:
                    self._head_deadline = monotonic() + self._timeout_head
                self.deadline = self._head_deadline
            self.flow.resume_reading()

    def _run(self, cycle: RequestCycle) -> None:
        coro = cycle.run_asgi()
        context = contextvars.Context() if self.reset_contextvars else self._context
        assert context is not None  # set by connection_made
        task = start_task(self.loop, coro, context, self._task_kwargs)
        if not task.done():
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            if cycle._head is not None and not self._head_check_due:
                self._check_head_soon()  # it started its response, then waited

    def _on_response_complete(self, cycle: RequestCycle) -> None:
        self.server_state.total_requests += 1
        if self._metrics is not None:
            self._metrics.request_done(cycle._method, cycle._status, cycle._started)
        if cycle is not self.active:
            return
        self.active = None
        self._head_deadline = HEAD_CLOCK_OFF  # the next head's clock starts with its first byte
        if not cycle.keep_alive:
            if not self._transport_is_closing():
                self.pipeline.clear()
                self._close()
            return
        self._dispatch()  # (which returns at once if the connection is closing, or a dispatch runs)

    def _check_head_soon(self) -> None:
        """A response started and holds its head for the first body chunk: at the end of this loop
        iteration, write the head if no body has come by then."""
        pending = self._pending_heads
        if not pending:
            self.loop.call_soon(_flush_heads, pending)
        pending.append(self)
        self._head_check_due = True

    def _flush_head(self) -> None:
        self._head_check_due = False
        if self.active is not None:
            self.active._flush_head()

    def _write(self, data: bytes) -> None:
        """Write now, or into the batch of the dispatch loop running (flushed when it ends)."""
        if self._metrics is not None:
            self._metrics.sent(len(data))
        batch = self._write_batch
        if batch is None:
            self._transport_write(data)
            return
        batch.append(data)
        self._write_batch_size += len(data)
        if self._write_batch_size >= WRITE_BATCH_LIMIT:
            self._flush()
            self._write_batch = []

    def _writelines(self, parts: list[bytes]) -> None:
        """Large bodies: the head and the body as they are, without copying them together."""
        if self._write_batch is None:
            if self._metrics is not None:
                self._metrics.sent(sum([len(part) for part in parts]))
            self.transport.writelines(parts)
            return
        for part in parts:
            self._write(part)

    def _flush(self) -> None:
        batch = self._write_batch
        self._write_batch = None
        self._write_batch_size = 0
        if batch:
            if len(batch) == 1:
                self._transport_write(batch[0])
            else:
                self.transport.writelines(batch)

    def _sendfile_socket(self) -> int:
        """The socket's descriptor where the kernel's file fast path may write to it (plain TCP on
        uvloop or asyncio's selector loop), else -1. Decided once per connection."""
        if self._file_way == FILE_WAY_UNKNOWN:
            self._file_way = FILE_WAY_GENERAL
            if sendfile_supported():
                way = sendfile_way(self.loop, self.transport)
                if way == DIRECT_SENDFILE or way == LOOP_SENDFILE:
                    self._file_socket = self.transport.get_extra_info("socket").fileno()
                    self._file_way = FILE_WAY_DIRECT
        return self._file_socket if self._file_way == FILE_WAY_DIRECT else -1

    def _flush_writes(self) -> None:
        """What the running dispatch loop batched goes on the transport now (a file must follow it)."""
        if self._write_batch:
            self._flush()
            self._write_batch = []

    def _close(self) -> None:
        self._flush()
        self.transport.close()

    def _on_response_aborted(self, cycle: RequestCycle) -> None:
        if cycle is self.active:
            self.active = None
        self.pipeline.clear()

    # Errors, upgrades, timeouts, shutdown ----------------------------------------------------

    def _stop_reading(self) -> None:
        self._reading_stopped = True
        self.flow.pause_reading()

    def _reject(self, status: int, body: bytes, log_message: str) -> None:
        """A malformed request: answer it with ``status`` after the requests before it, then close."""
        self.logger.warning(log_message)
        if self._metrics is not None:
            self._metrics.server_response(status)
        self._stop_reading()
        broken = self.cycle  # headers were fine but the body was not
        self.cycle = None
        self._parsing = False
        response = simple_response(status, body, self.server_state.default_headers_block)
        if broken is not None:
            broken.disconnected = True
            broken.wake()
            if broken is self.active:
                self.active = None
                if broken.response_started:
                    response = b""  # part of its response is out: closing is all that is left
            elif broken in self.pipeline:
                self.pipeline.remove(broken)
        self._pending_error = response

    def _on_upgrade(self, trailing: bytes) -> None:
        self._stop_reading()
        self._parsing = False
        if self._upgrade is not None:
            self._upgrade += trailing

    def _sniff_h2(self, data: bytes) -> bytes:
        """The first bytes of a plain connection with --http2: the h2c preface hands the connection
        over to HTTP/2 (nothing is left to parse: b""); anything else is HTTP/1.1 (returned whole)."""
        if self._h2_prefix:
            data = self._h2_prefix + data
            self._h2_prefix = b""
        size = len(data)
        if size < H2_PREFACE_SIZE:
            if data == H2_PREFACE[:size]:
                self._h2_prefix = data  # maybe the preface: wait for the rest
                return b""
        elif data.startswith(H2_PREFACE):
            self._hand_over_h2(data)
            return b""
        self._h2_sniff = False
        return data

    def _hand_over_h2(self, data: bytes) -> None:
        # The HTTP/2 protocol of the same build: compiled with compiled, pure with pure.
        if cython.compiled:
            from cyasgi._speedups.h2protocol import H2Protocol
        else:
            from cyasgi.protocols.http2.protocol import H2Protocol  # type: ignore[assignment]

        self._h2_sniff = False
        self._reading_stopped = True
        self.deadline = 0.0
        self.connections.discard(self)
        protocol = H2Protocol(self.config, self.server_state, self.app_state, self.loop)
        self.transport.set_protocol(protocol)  # type: ignore[arg-type]  # (an asyncio.Protocol by its methods)
        protocol.connection_made(self.transport)
        if data:
            protocol.data_received(data)
        self.parser = None
        self._native_parser = None

    def _hand_over_upgrade(self) -> None:
        data = self._upgrade or b""
        self._upgrade = None
        self.connections.discard(self)
        protocol = self.ws_protocol_class(
            config=self.config, server_state=self.server_state, app_state=self.app_state
        )
        protocol.connection_made(self.transport)
        self.transport.set_protocol(protocol)
        self.flow.resume_reading()
        protocol.data_received(data)
        self.parser = None
        self._native_parser = None

    def on_deadline(self) -> None:
        """Called by ``sweep_deadlines`` once ``deadline`` has passed: an idle connection closes; one
        whose request head is still incomplete is answered 408 first."""
        self.deadline = 0.0
        if self.active is None and not self.pipeline and not self._transport_is_closing():
            if self._native_parser.in_head() if self._native_parser is not None else self._in_head:
                self.logger.debug("%sRequest head not complete in time: 408.", self._log_prefix())
                self._write(simple_response(408, b"Request Timeout", self.server_state.default_headers_block))
                if self._metrics is not None:
                    self._metrics.server_response(408)
            self._close()

    def shutdown(self) -> None:
        """Graceful shutdown: from now on every response closes its connection.

        A busy connection closes right after its current response. An idle one may have a request
        on its way (it was just accepted, or a keep-alive client has just sent one): that request
        gets ``SHUTDOWN_GRACE`` seconds to arrive and is answered; without one, the connection closes.
        """
        self.draining = True
        self.pipeline.clear()
        self._held = None
        if self.active is not None:
            self.active.keep_alive = False
        elif not self._parsing:
            self.loop.call_later(SHUTDOWN_GRACE, self._close_if_idle)

    def _close_if_idle(self) -> None:
        if self.active is None and not self._parsing and not self._transport_is_closing():
            self._close()

    def _log_prefix(self) -> str:
        return f"{self.client[0]}:{self.client[1]} - " if self.client else ""


def sweep_deadlines(connections: Any, now: float) -> None:
    """Expire every connection whose deadline has passed (the server calls this each tick)."""
    expired = [conn for conn in connections if 0.0 < getattr(conn, "deadline", 0.0) <= now]
    for conn in expired:
        conn.on_deadline()


# send() is a coroutine function to frameworks that check (it returns awaitables).
if hasattr(inspect, "markcoroutinefunction"):
    inspect.markcoroutinefunction(RequestCycle.send)
RequestCycle.send._is_coroutine = getattr(asyncio.coroutines, "_is_coroutine", None)  # type: ignore[attr-defined]
