"""The ASGI and I/O side of a WebSocket connection, shared by every ``--ws`` implementation.

``WebSocketProtocolBase`` does everything that is not RFC 6455 framing: the scope, the app task, the
``send`` state machine (``_send_other``), the denial-response extension, flow control both ways, keepalive
pings, the closing handshake and its timeout, graceful shutdown and the log lines. A subclass plugs
in a frame *engine* (a sans-I/O library) by implementing the ``_engine_*`` methods; it never touches
the app or the transport state. The common incoming frames are decoded and queued without the engine
by the ``reader.FrameReader`` base (compiled where it is built: see ``twin``; names from ``frames``),
which also has the app's ``receive()`` and its ``send()`` of text and bytes on an open connection;
the denial response is framed with the HTTP/1.1 helpers of ``cyasgi.protocols.http.wire``.

Life of a connection (``_phase``):

* ``HANDSHAKE``: the HTTP protocol has handed over the request head; once it is complete the engine
  validates it (an invalid handshake is answered here, the app never runs) and the app starts.
* ``CONNECTING``: the app decides. Bytes the client sent after its request are held, unparsed, until
  the handshake is answered: frame parsing depends on the extensions the answer settles.
* ``OPEN``: messages flow. Incoming messages wait in a queue of at most ``--ws-max-queue`` entries;
  when it is full the transport stops reading. ``send()`` waits while the transport's write buffer is
  above its high-water mark.
* ``CLOSING``: a close frame went out; the peer's reply (or ``CLOSE_TIMEOUT``) ends the connection.
* ``RESPONSE``: the app answers with a plain HTTP response (``websocket.http.response``).
* ``CLOSED``: nothing more is written; the transport is closing or gone.

Timers are one ``deadline`` (``time.monotonic()`` seconds, the clock ``sweep_deadlines`` uses) that the
server's tick checks; ``on_deadline`` sends the next keepalive ping, fails a peer that did not answer
one, or drops a peer that never finished closing.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
from collections import deque
from typing import Any
from urllib.parse import quote, unquote

from cyasgi.logging import TRACE_LOG_LEVEL
from cyasgi.metrics import recorder_for
from cyasgi.protocols.http.errors import ClientDisconnected
from cyasgi.protocols.http.rules import is_valid_header_name, is_valid_header_value, split_target
from cyasgi.protocols.http.wire import (
    ASGI_SPEC_VERSION,
    STATUS_LINES,
    encode_headers_block,
    frame_body,
    framing_field,
    simple_response,
)
from cyasgi.protocols.tls import tls_extension
from cyasgi.protocols.utils import get_local_addr, get_remote_addr, is_ssl
from cyasgi.protocols.websockets.frames import (
    CLOSE_ABNORMAL,
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    CLOSE_SERVICE_RESTART,
    MAX_CLOSE_REASON,
    PRIVATE_CLOSE_CODES,
    SENDABLE_CLOSE_CODES,
)
from cyasgi.protocols.websockets.phases import CLOSED, CLOSING, CONNECTING, HANDSHAKE, OPEN, RESPONSE
from cyasgi.protocols.websockets.twin import FrameReader

__all__ = ["CLOSE_TIMEOUT", "WebSocketProtocolBase"]

logger = logging.getLogger("uvicorn.error")


#: Seconds to wait for the peer's close frame (or EOF) after ours, before dropping the connection.
CLOSE_TIMEOUT = 10.0
#: The same wait during server shutdown, when the server is waiting on every connection.
SHUTDOWN_CLOSE_TIMEOUT = 3.0
#: Largest request head accepted from the HTTP protocol (it has already enforced its own limit).
MAX_HEAD_SIZE = 65536
#: Bytes held unparsed while the app decides on the handshake; above this the transport pauses.
PENDING_LIMIT = 65536
#: Write-buffer size above which the connection stops reading: only automatic replies (pongs, close
#: echoes) grow the buffer while the app is paused, and a peer that pings without reading is cut off.
WRITE_HARD_LIMIT = 1 << 20

_DISCONNECT = "websocket.disconnect"
# Printable ASCII left alone in logged query strings; anything else is %-escaped.
_LOG_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"\\')


def _from_disconnect(exc: BaseException) -> bool:
    """``exc`` is our ClientDisconnected, or a framework's exception raised while handling it."""
    chain: BaseException | None = exc
    for _ in range(8):
        if chain is None:
            return False
        if isinstance(chain, ClientDisconnected):
            return True
        chain = chain.__cause__ or chain.__context__
    return False


def log_target(scope: dict[str, Any]) -> str:
    """The request target as it appears in log lines: path re-quoted, query escaped."""
    target = quote(scope["path"])
    query = scope["query_string"]
    if query:
        target += "?" + quote(query, safe=_LOG_SAFE)
    return target


def checked_headers(message: dict[str, Any], message_type: str) -> list[tuple[bytes, bytes]]:
    """The app's ``headers``, names lower-cased; RuntimeError on a name or value that could split
    the response (CR, LF, NUL, ...)."""
    headers = []
    for name, value in message.get("headers") or ():
        name = bytes(name).lower()
        value = bytes(value)
        if not is_valid_header_name(name) or not is_valid_header_value(value):
            raise RuntimeError(f"Invalid HTTP header in '{message_type}'.")
        headers.append((name, value))
    return headers


def client_label(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else ""


class WebSocketProtocolBase(FrameReader, asyncio.Protocol):
    """One WebSocket connection, after the HTTP protocol handed it over (see the module docstring)."""

    #: Name shown in logs and docs; subclasses set it.
    engine_name = "base"

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop if _loop is not None else asyncio.get_running_loop()
        self.logger = logger
        self.root_path: str = config.root_path
        self.asgi_version = config.asgi_version
        self.app_state = app_state
        self.server_state = server_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self._metrics = recorder_for(server_state)

        self.max_size: int = int(config.ws_max_size)  # a C integer in the compiled reader
        self.max_queue: int = max(1, int(config.ws_max_queue))
        self._resume_level = self.max_queue // 4
        interval = config.ws_ping_interval
        timeout = config.ws_ping_timeout
        self.ping_interval: float | None = interval if interval and interval > 0 else None
        self.ping_timeout: float | None = timeout if timeout and timeout > 0 else None
        self.per_message_deflate: bool = config.ws_per_message_deflate
        self.close_timeout = CLOSE_TIMEOUT

        # Connection.
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "ws"
        self._tls: dict[str, Any] | None = None  # the ASGI tls extension of a TLS connection
        self.scope: dict[str, Any] = {}
        self.deadline = 0.0  # time.monotonic() of the next timer below; 0.0: none
        self._phase = HANDSHAKE
        self._head = b""  # the request head, while it is incomplete
        self._pending: list[bytes] = []  # bytes after the head, held until the handshake is answered
        self._pending_size = 0
        self._reset_reader()  # frames: see reader.FrameReader
        self._plain_send = False  # no extension negotiated: data frames are encoded here
        self._lost = False  # connection_lost() has run
        self._opened = False  # the 101 went out (for the "connection closed" line)
        # The app ended the conversation itself (close, refusal, complete denial response): a later
        # send() is its own mistake (RuntimeError), not a vanished client (ClientDisconnected).
        self._closed_by_app = False

        # Incoming messages for the app, and the receive() waiting for one.
        self._queue: deque[dict[str, Any]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._disconnect: dict[str, Any] | None = None  # queued once; repeated to later receive() calls

        # Flow control: why reading is paused, and send()s waiting for the write buffer to drain.
        self._paused_for_queue = False
        self._paused_for_writes = False
        self._paused_for_pending = False
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []

        # Timers (time.monotonic(); 0.0: not armed). They feed ``deadline``.
        self._ping_at = 0.0
        self._pong_due = 0.0
        self._close_due = 0.0
        self._ping_payload: bytes | None = None
        self._ping_sent_at = 0.0
        self._shutdown_timer: asyncio.TimerHandle | None = None

        # Denial response (websocket.http.response.*).
        self._response_head: bytes | None = None  # not written yet (no framing header, no blank line)
        self._response_bodyless = False  # 1xx, 204, 304: no body, no framing header
        self._response_chunked = False
        self._response_length = -1
        self._response_sent = 0

    # Engine interface: the subclass implements these --------------------------------------------

    def _engine_handshake(self, head: bytes) -> bytes | None:
        """Validate the request head and negotiate extensions. None when it is a valid WebSocket
        handshake, else the complete HTTP response that refuses it."""
        raise NotImplementedError

    def _engine_accept(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The ``101 Switching Protocols`` response with ``headers`` added; the engine is now open.
        Sets ``_plain_send`` when no extension was negotiated."""
        raise NotImplementedError

    def _engine_feed(self, data: bytes) -> None:
        """Parse whole frames. For each event call ``_message``, ``_pong``, ``_peer_close`` or
        ``_engine_fail``; write the engine's own replies (pongs, close echoes) with ``transport.write``."""
        raise NotImplementedError

    def _engine_fail(self, code: int, reason: str) -> None:
        """Fail the connection: write a close frame with ``code``, then call ``_fail_received``."""
        raise NotImplementedError

    def _engine_text(self, text: str) -> bytes:
        raise NotImplementedError

    def _engine_binary(self, data: bytes) -> bytes:
        raise NotImplementedError

    def _engine_close(self, code: int, reason: str) -> bytes:
        """A close frame; the engine is now closing (it discards data frames that follow)."""
        raise NotImplementedError

    def _engine_ping(self, payload: bytes) -> bytes:
        raise NotImplementedError

    def _engine_drop_message(self) -> None:
        """A close frame interrupts a fragmented message the engine was assembling (it comes next in
        ``_engine_feed``): forget the message, so the close is answered as a clean one."""

    # asyncio.Protocol ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)
        self.transport = transport  # type: ignore[assignment]
        self.server = get_local_addr(transport)
        self.client = get_remote_addr(transport)
        self.scheme = "wss" if is_ssl(transport) else "ws"
        if self.scheme == "wss":
            self._tls = tls_extension(transport, getattr(self.config, "ssl_server_cert", None))
        if self.logger.isEnabledFor(TRACE_LOG_LEVEL):
            # The HTTP protocol calls this as it hands the connection over (the request head comes
            # next): uvicorn's two lines, in its order, without a log call in the HTTP twins.
            prefix = self._prefix()
            self.logger.log(TRACE_LOG_LEVEL, "%sUpgrading to WebSocket", prefix)
            self.logger.log(TRACE_LOG_LEVEL, "%sWebSocket connection made", prefix)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self._lost = True
        self.deadline = 0.0
        self._ping_at = self._pong_due = self._close_due = 0.0
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
            self._shutdown_timer = None
        if self._phase != CLOSED:
            self._phase = CLOSED
        self._queue_disconnect(CLOSE_ABNORMAL, "")
        self._release_drain_waiters()
        self._pending = []
        self._reset_reader()
        if self._opened:
            self.logger.info("connection closed")
        if self.logger.isEnabledFor(TRACE_LOG_LEVEL):
            self.logger.log(TRACE_LOG_LEVEL, "%sWebSocket connection lost", self._prefix())

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost() follows

    def pause_writing(self) -> None:
        self._write_paused = True

    # data_received(): the reader's (compiled with it), which hands the handshake phases back to the
    # methods below.

    def resume_writing(self) -> None:
        self._write_paused = False
        self._release_drain_waiters()
        if self._paused_for_writes:
            self._paused_for_writes = False
            self._update_reading()

    # The opening handshake ------------------------------------------------------------------------

    def _head_received(self, data: bytes) -> None:
        head = self._head + data
        end = head.find(b"\r\n\r\n")
        if end == -1:
            if len(head) > MAX_HEAD_SIZE:
                self._phase = CLOSED
                self.transport.close()
            else:
                self._head = head
            return
        self._head = b""
        rest = head[end + 4 :]
        head = head[: end + 4]
        refusal = self._engine_handshake(head)
        if refusal is not None:
            self._phase = CLOSED
            self.logger.info("connection rejected (%s)", refusal.split(b"\r\n", 1)[0][9:].decode("latin-1"))
            self.transport.write(refusal)
            self._close_transport()
            return
        self.scope = self._build_scope(head)
        self._phase = CONNECTING
        if rest:
            self._hold(rest)
        self._queue.append({"type": "websocket.connect"})
        self._start_app()

    def _build_scope(self, head: bytes) -> dict[str, Any]:
        lines = head[:-4].split(b"\r\n")
        target = lines[0].split(b" ")[1]
        headers = []
        subprotocols: list[str] = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip()
            headers.append((name, value))
            if name == b"sec-websocket-protocol":
                for token in value.decode("latin-1").split(","):
                    token = token.strip()
                    if token:
                        subprotocols.append(token)
        raw_path, query_string = split_target(target)
        path = raw_path.decode("latin-1") if raw_path.isascii() else raw_path.decode("utf-8", "replace")
        if "%" in path:
            path = unquote(path)
        root_path = self.root_path
        extensions: dict[str, Any] = {"websocket.http.response": {}}
        if self._tls is not None:
            extensions["tls"] = self._tls.copy()
        return {
            "type": "websocket",
            "asgi": {"version": self.asgi_version, "spec_version": ASGI_SPEC_VERSION},
            "http_version": "1.1",
            "scheme": self.scheme,
            "server": self.server,
            "client": self.client,
            "root_path": root_path,
            "path": root_path + path,
            "raw_path": root_path.encode("utf-8") + raw_path if root_path else raw_path,
            "query_string": query_string,
            "headers": headers,
            "subprotocols": subprotocols,
            "state": self.app_state.copy(),
            "extensions": extensions,
        }

    def _hold(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size > PENDING_LIMIT and not self._paused_for_pending:
            self._paused_for_pending = True
            self._update_reading()

    def _start_app(self) -> None:
        context = contextvars.Context() if self.config.reset_contextvars else contextvars.copy_context()
        task = context.run(self.loop.create_task, self.run_asgi())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # The app ----------------------------------------------------------------------------------------

    async def run_asgi(self) -> None:
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            self._drop()
            raise
        except BaseException as exc:
            if self._phase == CLOSED and _from_disconnect(exc):
                self.logger.debug("Client disconnected while the application was sending.")
            else:
                self.logger.error("Exception in ASGI application\n", exc_info=exc)
            self._app_failed()
            if not isinstance(exc, Exception):
                raise
        else:
            if result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
            self._app_returned()

    def _app_failed(self) -> None:
        phase = self._phase
        if phase == CONNECTING:
            self._refuse(500, b"Internal Server Error")
        elif phase == OPEN:
            self._start_close(CLOSE_INTERNAL_ERROR, "")
        elif phase == RESPONSE:
            self._drop()

    def _app_returned(self) -> None:
        phase = self._phase
        if phase == CONNECTING:
            self.logger.error("ASGI callable returned without completing handshake.")
            self._refuse(500, b"Internal Server Error")
        elif phase == OPEN:
            self._start_close(CLOSE_NORMAL, "")
        elif phase == RESPONSE:
            self.logger.error("ASGI callable returned without completing response.")
            self._drop()

    # receive() and send(): the reader's (compiled with it), which hands every message but a
    # websocket.send of an open connection to this method.

    def _send_other(self, message: dict[str, Any]) -> None:
        """The app's ``send()`` of any message but a ``websocket.send`` on an open connection."""
        message_type = message["type"]
        phase = self._phase
        if phase == OPEN:
            if message_type == "websocket.close":
                code = message.get("code")
                reason = message.get("reason") or ""
                self._start_close(CLOSE_NORMAL if code is None else code, reason, by_app=True)
            else:
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{message_type}'."
                )
        elif phase == CONNECTING:
            if message_type == "websocket.accept":
                self._accept(message)
            elif message_type == "websocket.close":
                self.logger.info('%s - "WebSocket %s" 403', client_label(self.client), log_target(self.scope))
                self._refuse(403, b"", by_app=True)
            elif message_type == "websocket.http.response.start":
                self._start_response(message)
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' or "
                    f"'websocket.http.response.start', but got '{message_type}'."
                )
        elif phase == RESPONSE:
            if message_type != "websocket.http.response.body":
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.http.response.body', but got '{message_type}'."
                )
            self._response_body(message.get("body", b""), message.get("more_body", False))
        elif self._closed_by_app:
            raise RuntimeError(f"Unexpected ASGI message '{message_type}', after sending 'websocket.close'.")
        else:
            raise ClientDisconnected

    # Accepting, refusing, answering with HTTP ------------------------------------------------------

    def _accept(self, message: dict[str, Any]) -> None:
        headers = list(self.server_state.default_headers)
        headers += checked_headers(message, "websocket.accept")
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and (
            not isinstance(subprotocol, str)
            or not is_valid_header_value(subprotocol.encode("latin-1", "replace"))
        ):
            raise RuntimeError("Invalid subprotocol in 'websocket.accept'.")
        self.logger.info('%s - "WebSocket %s" [accepted]', client_label(self.client), log_target(self.scope))
        self.transport.write(self._engine_accept(subprotocol, headers))
        self._phase = OPEN
        self._opened = True
        self.logger.info("connection open")
        if self.ping_interval is not None:
            self._ping_at = time.monotonic() + self.ping_interval
            self._update_deadline()
        pending = self._pending
        self._pending = []
        self._pending_size = 0
        if self._paused_for_pending:
            self._paused_for_pending = False
            self._update_reading()
        if pending:
            self.data_received(b"".join(pending))

    def _refuse(self, status: int, body: bytes, by_app: bool = False) -> None:
        """Answer the handshake with a plain HTTP error and close (app closed early, or failed)."""
        self._phase = CLOSED
        self._closed_by_app = by_app
        self._queue_disconnect(CLOSE_ABNORMAL, "")
        self.transport.write(simple_response(status, body, self.server_state.default_headers_block))
        self._close_transport()

    def _start_response(self, message: dict[str, Any]) -> None:
        status = message.get("status")
        if type(status) is not int or not 100 <= status <= 599:
            raise RuntimeError(f"Invalid HTTP status code {status!r} in response.")
        headers = []
        length = -1
        has_type = False
        for name, value in checked_headers(message, "websocket.http.response.start"):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise RuntimeError("Invalid Content-Length header value in response.") from None
            elif name in (b"transfer-encoding", b"connection"):
                continue  # framing and connection handling are the server's
            elif name == b"content-type":
                has_type = True
            headers.append((name, value))
        if not has_type:
            headers.append((b"content-type", b"text/plain; charset=utf-8"))
        self._response_head = b"".join(
            (STATUS_LINES[status], self.server_state.default_headers_block, encode_headers_block(headers))
        )
        self._response_length = length
        self._response_bodyless = status in (204, 304) or status < 200
        self._phase = RESPONSE
        self.logger.info('%s - "WebSocket %s" %d', client_label(self.client), log_target(self.scope), status)
        # The head goes out with the first body part, in one write; an app that waits before that
        # part still gets its head to the client at the loop's next turn, not only once it sends.
        self.loop.call_soon(self._flush_response_head)

    def _finish_response_head(self, body_size: int, more_body: bool) -> bytes:
        """The head with the framing the first body part decides, and the blank line."""
        head = self._response_head
        self._response_head = None
        if self._response_length == -1 and not self._response_bodyless:
            chunked = self._response_chunked = bool(more_body)
            head += framing_field(chunked, body_size)  # type: ignore[operator]
        return head + b"connection: close\r\n\r\n"  # type: ignore[operator]

    def _flush_response_head(self) -> None:
        if self._response_head is not None and self._phase == RESPONSE and not self._lost:
            # No body part yet, so its length is unknown: chunked, unless the app gave a length.
            self.transport.write(self._finish_response_head(0, True))

    def _response_body(self, body: bytes, more_body: bool) -> None:
        out = []
        if self._response_head is not None:
            out.append(self._finish_response_head(len(body), more_body))
        # A body for a status that has none (1xx, 204, 304) is dropped, as on the HTTP path.
        if not self._response_bodyless:
            if body and not self._response_chunked:
                self._response_sent += len(body)
                if self._response_length != -1 and self._response_sent > self._response_length:
                    raise RuntimeError("Response content longer than Content-Length")
            part = frame_body(body, self._response_chunked, not more_body)
            if part:
                out.append(part)
        if out:
            self.transport.write(b"".join(out))
        if not more_body:
            self._phase = CLOSED
            self._closed_by_app = True
            self._queue_disconnect(CLOSE_ABNORMAL, "")
            if self._response_sent < self._response_length and not self._response_bodyless:
                self.transport.abort()
                raise RuntimeError("Response content shorter than Content-Length")
            self._close_transport()

    # Messages in (``_message``, which queues one, is the reader's) ---------------------------------------

    def _queue_disconnect(self, code: int, reason: str) -> None:
        if self._disconnect is not None:
            return
        message = {"type": _DISCONNECT, "code": code, "reason": reason}
        self._disconnect = message
        self._queue.append(dict(message))
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self._paused_for_queue:
            self._paused_for_queue = False
            self._update_reading()

    def _pong(self, payload: bytes) -> None:
        if self._ping_payload is not None and payload == self._ping_payload:
            self._ping_payload = None
            self._pong_due = 0.0
            if self.ping_interval is not None:
                self._ping_at = self._ping_sent_at + self.ping_interval
            self._update_deadline()

    def _peer_close(self, code: int, reason: str) -> None:
        """The peer's close frame arrived; the engine has written its echo if one was due."""
        self._queue_disconnect(code, reason)
        self._phase = CLOSED
        self._drop_assembly()  # an unfinished message is dropped with the connection
        self._close_transport()  # the server closes the TCP connection first (RFC 6455, 7.1.1)

    def _fail_received(self, code: int, reason: str) -> None:
        """The peer broke the protocol; the engine has written the close frame with ``code``."""
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("%sWebSocket protocol error (%d): %r", self._prefix(), code, reason[:200])
        self._queue_disconnect(code, reason)
        self._phase = CLOSED
        self._drop_assembly()
        self._close_transport()

    # Closing ----------------------------------------------------------------------------------------------

    def _start_close(self, code: int, reason: str, by_app: bool = False) -> None:
        """Send our close frame and wait (bounded) for the peer's."""
        if type(code) is not int or not (code in SENDABLE_CLOSE_CODES or code in PRIVATE_CLOSE_CODES):
            raise RuntimeError(f"Invalid WebSocket close code {code!r}.")
        if len(reason.encode("utf-8")) > MAX_CLOSE_REASON:
            raise RuntimeError("WebSocket close reason is longer than 123 bytes.")
        self._closed_by_app = by_app
        self._queue_disconnect(code, reason)
        self._phase = CLOSING
        self._ping_at = self._pong_due = 0.0
        if not self.transport.is_closing():
            self.transport.write(self._engine_close(code, reason))
        # Read on whatever the queue holds: the peer's close frame must get through.
        self._unpause_queue()
        self._close_due = time.monotonic() + self.close_timeout
        self._update_deadline()

    def _close_transport(self) -> None:
        """Close after the write buffer drains; a peer that never reads is dropped after the close timeout."""
        self._ping_at = self._pong_due = 0.0
        if not self._lost:
            self.transport.close()
            self._close_due = time.monotonic() + self.close_timeout
        self._update_deadline()

    def _drop(self) -> None:
        """End the connection at once, without a closing handshake."""
        self._phase = CLOSED
        if self.transport is not None and not self._lost:
            self.transport.abort()

    def shutdown(self) -> None:
        """Graceful server shutdown: close 1012 (or refuse a pending handshake with 503); the app
        sees the disconnect and finishes within the server's graceful timeout."""
        phase = self._phase
        if phase == HANDSHAKE:
            self._phase = CLOSED
            self.transport.close()
        elif phase == CONNECTING:
            self._refuse(503, b"Service Unavailable")
        elif phase == OPEN:
            self._start_close(CLOSE_SERVICE_RESTART, "")
        if self._phase in (CLOSING, CLOSED) and not self._lost and self._shutdown_timer is None:
            # The server's tick has stopped, so ``deadline`` no longer fires: bound the closing
            # handshake (or a peer that does not read our last bytes) with a timer of our own.
            self._shutdown_timer = self.loop.call_later(SHUTDOWN_CLOSE_TIMEOUT, self._drop)

    # Timers -----------------------------------------------------------------------------------------------

    def _update_deadline(self) -> None:
        deadline = 0.0
        for at in (self._ping_at, self._pong_due, self._close_due):
            if at and (not deadline or at < deadline):
                deadline = at
        self.deadline = deadline

    def on_deadline(self) -> None:
        """Called by the server's tick once ``deadline`` has passed."""
        now = time.monotonic()
        if self._close_due and now >= self._close_due:
            self._close_due = 0.0
            self._drop()
        if self._phase == OPEN:
            if self._pong_due and now >= self._pong_due:
                if self._paused_for_queue and not self._paused_for_writes:
                    # The pong may be sitting unread behind messages the app has not taken yet.
                    self._pong_due = now + (self.ping_timeout or 0.0)
                else:
                    self._keepalive_failed()
            elif self._ping_at and now >= self._ping_at and self._ping_payload is None:
                self._send_ping(now)
        self._update_deadline()

    def _send_ping(self, now: float) -> None:
        payload = random.getrandbits(32).to_bytes(4, "big")
        self._ping_sent_at = now
        if self.ping_timeout is not None:
            self._ping_payload = payload
            self._pong_due = now + self.ping_timeout
            self._ping_at = 0.0
        else:
            self._ping_at = now + (self.ping_interval or 0.0)
        self.transport.write(self._engine_ping(payload))

    def _keepalive_failed(self) -> None:
        if self.logger.isEnabledFor(TRACE_LOG_LEVEL):
            self.logger.log(TRACE_LOG_LEVEL, "%sWebSocket keepalive ping timeout", self._prefix())
        self._ping_payload = None
        self._pong_due = self._ping_at = 0.0
        self._queue_disconnect(CLOSE_INTERNAL_ERROR, "keepalive ping timeout")
        self._phase = CLOSED
        if not self.transport.is_closing():
            self.transport.write(self._engine_close(CLOSE_INTERNAL_ERROR, "keepalive ping timeout"))
        self._close_transport()

    # Flow control -------------------------------------------------------------------------------------------

    def _update_reading(self) -> None:
        if self.transport is None or self._lost:
            return
        pause = self._paused_for_queue or self._paused_for_writes or self._paused_for_pending
        if pause != self._reading_paused:
            self._reading_paused = pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def _unpause_queue(self) -> None:
        """The app caught up (or is closing): read again, starting with the bytes held back."""
        self._paused_for_queue = False
        self._update_reading()
        self._held_frames_resumed()

    def _check_write_limit(self) -> None:
        if self.transport.get_write_buffer_size() > WRITE_HARD_LIMIT:
            self._paused_for_writes = True
            self._update_reading()

    async def _drain(self) -> None:
        while self._write_paused and not self._lost:
            waiter = self.loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def _release_drain_waiters(self) -> None:
        waiters = self._drain_waiters
        if waiters:
            self._drain_waiters = []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    # Helpers ------------------------------------------------------------------------------------------------

    def _prefix(self) -> str:
        return client_label(self.client) + " - " if self.client else ""
