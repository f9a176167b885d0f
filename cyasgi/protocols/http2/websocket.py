"""WebSockets over HTTP/2 (RFC 8441): an extended CONNECT stream carries one WebSocket connection.

The WebSocket protocol of ``--ws`` (``websockets.base.WebSocketProtocolBase`` and its engines) is written
for a TCP transport and an HTTP/1.1 handshake. It runs unchanged over a stream:

* ``StreamTransport`` is the asyncio transport it is given: what it writes goes out as DATA frames on
  the stream within the client's flow-control windows (``pause_writing`` past ``HIGH_WATER`` octets
  waiting), what the client sends on the stream is read into it (``pause_reading`` holds the stream's
  window), ``close()`` ends the stream and ``abort()`` resets it.
* The handshake is translated at the edges. The request becomes the HTTP/1.1 upgrade the engine
  validates (``upgrade_request_head``: the stream's fields, the path, and the three fields HTTP/2 has no
  place for); the head the protocol writes back becomes a HEADERS frame: ``101`` is ``200`` and the
  fields of the HTTP/1.1 upgrade go, a refusal or a denial response keeps its status and its body
  goes as DATA (``H2WebSocketMixin`` writes that body unchunked).
* The scope is the one the protocol builds, with ``http_version "2"`` and the stream's own fields.

Pure Python in both builds, like the WebSocket protocol it carries; the HTTP/2 protocol (protocol.py)
opens one per ``CONNECT`` with ``:protocol websocket`` and feeds it the stream's events.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cyasgi.protocols.http2.engine import CONNECTION_SPECIFIC, asgi_headers
from cyasgi.protocols.http2.errors import CANCEL, NO_ERROR, StreamClosedError
from cyasgi.protocols.websockets.base import WebSocketProtocolBase

__all__ = ["HIGH_WATER", "H2WebSocketMixin", "StreamTransport", "upgrade_request_head", "websocket_over_h2"]

#: Octets waiting for window above which the WebSocket protocol is told to pause writing.
HIGH_WATER = 65536
#: ... and below which it may write again.
LOW_WATER = HIGH_WATER // 4

#: The key of the HTTP/1.1 upgrade the engine validates (16 octets, base64): HTTP/2 has no key, and the
#: ``sec-websocket-accept`` computed from it is dropped from the answer.
HANDSHAKE_KEY = b"AAAAAAAAAAAAAAAAAAAAAA=="
UPGRADE_FIELDS = b"upgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: " + HANDSHAKE_KEY + b"\r\n\r\n"

#: Fields of the HTTP/1.1 answer that HTTP/2 has no place for.
DROPPED_FIELDS = CONNECTION_SPECIFIC | {b"sec-websocket-accept"}

#: Request fields that are not passed on to the engine: the host is the ``:authority``, the key is ours.
REPLACED_FIELDS = frozenset((b"host", b"sec-websocket-key"))


def upgrade_request_head(headers: list) -> bytes:
    """The HTTP/1.1 upgrade request that says what the extended CONNECT ``headers`` say."""
    path = b"/"
    authority = b""
    lines = []
    for name, value in headers:
        if name[:1] == b":":
            if name == b":path":
                path = value
            elif name == b":authority":
                authority = value
        elif name not in REPLACED_FIELDS:
            lines.append(b"%s: %s\r\n" % (name, value))
    return b"GET %s HTTP/1.1\r\nhost: %s\r\n%s%s" % (path, authority, b"".join(lines), UPGRADE_FIELDS)


def response_fields(head: bytes) -> tuple[int, list]:
    """The status and the HTTP/2 fields of an HTTP/1.1 response head (without its blank line) that the
    WebSocket protocol wrote: ``101`` becomes ``200``, names are lower-cased, upgrade fields go."""
    lines = head.split(b"\r\n")
    status = int(lines[0][9:12])
    fields = [(b":status", b"200" if status == 101 else lines[0][9:12])]
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name not in DROPPED_FIELDS:
            fields.append((name, value.strip()))
    return status, fields


class StreamTransport(asyncio.Transport):
    """One HTTP/2 stream as the asyncio transport of a WebSocket protocol (see the module docstring)."""

    def __init__(self, h2: Any, stream_id: int) -> None:
        super().__init__()
        self._h2 = h2  # the H2Protocol
        self._conn = h2.conn
        self.stream_id = stream_id
        self._protocol: Any = None
        self._head = b""  # the HTTP/1.1 response head being written, until its blank line
        self._head_sent = False
        self._out: list = []  # octets waiting for the client's window
        self._out_size = 0
        self._end_due = False  # close(): END_STREAM once the octets waiting went
        self._closing = False
        self._lost = False
        self._writing_paused = False  # the protocol was told to pause writing
        self._reading_paused = False
        self._held: list = []  # octets read while reading is paused
        self._held_credit = 0  # their flow-controlled size
        self._held_end = False  # the client's END_STREAM came after them

    # The HTTP/2 protocol's side ------------------------------------------------------------------------

    def open(self, protocol: Any, headers: list, head: bytes) -> None:
        """Start ``protocol`` (an ``H2WebSocketMixin``) on the stream whose request is ``headers``;
        ``head`` is their ``upgrade_request_head``."""
        self._protocol = protocol
        protocol.stream_headers = headers
        protocol.connection_made(self)
        protocol.data_received(head)

    @property
    def has_output(self) -> bool:
        return self._out_size > 0

    def data_received(self, data: bytes, credit: int, end_stream: bool) -> None:
        """The client sent ``data`` (``credit`` flow-controlled octets) on the stream."""
        if self._lost or self._closing:
            self._acknowledge(credit)  # nobody reads it any more
            return
        if self._reading_paused:
            if data:
                self._held.append(data)
            self._held_credit += credit
            self._held_end = self._held_end or end_stream
            return
        if data:
            self._protocol.data_received(data)
        self._acknowledge(credit)
        if end_stream:
            self._eof()

    def window_opened(self) -> None:
        """The client's windows grew (or the connection's transport drained): send what waits."""
        if self._out_size and not self._lost:
            data = b"".join(self._out)
            self._out = []
            self._out_size = 0
            self._send(data)
        if self._end_due and not self._out_size:
            self._end()
        if self._writing_paused and self._out_size <= LOW_WATER and not self._lost:
            self._writing_paused = False
            self._protocol.resume_writing()

    def on_reset(self) -> None:
        """The stream is gone (RST_STREAM either way, a connection error, the connection lost)."""
        if not self._lost:
            self._out = []
            self._out_size = 0
            self._finish()

    # asyncio.Transport -------------------------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._h2.transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def write(self, data: Any) -> None:
        if self._closing or self._lost:
            return
        data = bytes(data)
        if not self._head_sent:
            head = self._head + data
            end = head.find(b"\r\n\r\n")
            if end == -1:
                self._head = head
                return
            self._head = b""
            self._head_sent = True
            self._send_head(head[:end])
            data = head[end + 4 :]
            if not data:
                return
        self._send(data)
        if self._out_size > HIGH_WATER and not self._writing_paused and not self._lost:
            self._writing_paused = True
            self._protocol.pause_writing()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self._out_size

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        if not self._reading_paused:
            return
        self._reading_paused = False
        held = self._held
        credit = self._held_credit
        end = self._held_end
        self._held = []
        self._held_credit = 0
        self._held_end = False
        if held or credit or end:
            self.data_received(b"".join(held), credit, end)

    def is_reading(self) -> bool:
        return not self._reading_paused

    def close(self) -> None:
        """End the stream once what waits has gone; the protocol hears ``connection_lost`` then."""
        if self._closing or self._lost:
            return
        self._closing = True
        if not self._head_sent:  # nothing was answered: the stream cannot end with a response
            self._reset(CANCEL)
            return
        if self._out_size:
            self._end_due = True
        else:
            self._end()

    def abort(self) -> None:
        if self._lost:
            return
        self._closing = True
        self._reset(CANCEL)

    # Internals ------------------------------------------------------------------------------------------

    def _send_head(self, head: bytes) -> None:
        _, fields = response_fields(head)
        try:
            self._conn.send_headers(self.stream_id, fields, False)
        except StreamClosedError:
            self.on_reset()
            return
        self._h2.flush_soon()

    def _send(self, data: bytes) -> None:
        """Send ``data`` as far as the windows allow; the rest waits for ``window_opened``."""
        if self._out_size or self._h2.write_paused:
            self._out.append(data)
            self._out_size += len(data)
            return
        try:
            taken = self._conn.send_data(self.stream_id, data, False)
        except StreamClosedError:
            self.on_reset()
            return
        if taken < len(data):
            self._out.append(data[taken:])
            self._out_size += len(data) - taken
        if taken:
            self._h2.flush_soon()

    def _end(self) -> None:
        """Our END_STREAM. The client's side, if still open, is not wanted any more (RFC 9113 §8.1)."""
        self._end_due = False
        conn = self._conn
        try:
            conn.end_stream(self.stream_id)
        except StreamClosedError:
            pass
        else:
            if conn.stream_state(self.stream_id) != "closed":
                conn.reset_stream(self.stream_id, NO_ERROR)
            self._h2.flush_soon()
        self._finish()

    def _reset(self, code: int) -> None:
        self._out = []
        self._out_size = 0
        self._conn.reset_stream(self.stream_id, code)
        self._h2.flush_soon()
        self._finish()

    def _eof(self) -> None:
        """The client ended its side: as a TCP EOF, the protocol's ``eof_received`` decides."""
        if self._protocol.eof_received():
            return  # (our protocols never keep a half-closed connection open)
        self.close()

    def _acknowledge(self, credit: int) -> None:
        if credit and not self._h2.closed:
            self._conn.acknowledge_received(self.stream_id, credit)
            self._h2.flush_soon()

    def _finish(self) -> None:
        """The stream is over for the protocol: ``connection_lost`` (once), and the HTTP/2 protocol forgets it."""
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._held = []
        self._h2.websocket_done(self)
        self._h2.loop.call_soon(self._protocol.connection_lost, None)


class H2WebSocketMixin:
    """What a ``--ws`` protocol class needs to run over an HTTP/2 stream (see ``websocket_over_h2``)."""

    stream_headers: list = []  # the extended CONNECT's fields (set by StreamTransport.open)

    def _build_scope(self, head: bytes) -> dict[str, Any]:
        scope = super()._build_scope(head)  # type: ignore[misc]
        scope["http_version"] = "2"
        scope["headers"] = asgi_headers(self.stream_headers)
        return scope

    def _finish_response_head(self, body_size: int, more_body: bool) -> bytes:
        # A denial response's body goes as DATA frames: no HTTP/1.1 framing.
        head = self._response_head  # type: ignore[has-type]
        self._response_head = None
        self._response_chunked = False
        return head + b"\r\n"


_classes: dict = {}


def websocket_over_h2(protocol_class: Any) -> Any:
    """The ``--ws`` protocol class made to run over an HTTP/2 stream, or None when there is none (``--ws
    none``, no WebSocket library) or it is not built on ``WebSocketProtocolBase`` (a custom class)."""
    if not isinstance(protocol_class, type) or not issubclass(protocol_class, WebSocketProtocolBase):
        return None
    over_h2 = _classes.get(protocol_class)
    if over_h2 is None:
        over_h2 = _classes[protocol_class] = type(
            "H2" + protocol_class.__name__, (H2WebSocketMixin, protocol_class), {}
        )
    return over_h2
