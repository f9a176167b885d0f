"""The HTTP/2 server connection (RFC 9113 §5, §6.9, §8), sans-I/O: no sockets, no asyncio, no ASGI.

One source, two builds: this module is what PyPy and ``CYASGI_NO_EXTENSIONS=1`` run, and the same text
is compiled by Cython as ``cyasgi._speedups.connection`` with the augmenting
``cyasgi/_speedups/connection.pxd``. Use it through ``cyasgi.protocols.http2.engine``.

``H2Connection.receive(data)`` feeds what the client sent and returns the events it caused; what the
server must write (SETTINGS ACK, PING ACK, RST_STREAM, WINDOW_UPDATE, GOAWAY, responses) accumulates
until ``data_to_send()`` takes it. After a connection error the GOAWAY is queued, a
``ConnectionTerminated`` event (``remote`` False) is returned, and everything received later is
ignored: the caller writes what is queued and closes the TCP connection.

Flow control of received DATA is the application's: the windows open again only as the application
calls ``acknowledge_received(stream_id, n)``, so a client cannot push more than a window ahead of a
reader that does not read. Data the application never sees (on a stream reset or refused) is
released by the connection itself.
"""

from __future__ import annotations

try:
    import cython
except ImportError:  # no Cython where this runs: the pure build, as with PyPy
    from cyasgi import _cython_shim as cython

from cyasgi.protocols.http2.codec import HeaderListTooLarge, HPACKError
from cyasgi.protocols.http2.errors import (
    CANCEL,
    ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR,
    NO_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    STREAM_CLOSED,
    H2ConnectionError,
    StreamClosedError,
)
from cyasgi.protocols.http2.framing import (
    SETTINGS_ACK_FRAME,
    goaway_frame,
    ping_frame,
    rst_stream_frame,
    settings_frame,
    window_update_frame,
)

if not cython.compiled:  # the compiled build cimports them from the compiled twins (connection.pxd): C calls
    from cyasgi.protocols.http2.codec import Decoder, Encoder
    from cyasgi.protocols.http2.framing import FrameReader, data_frames, headers_frames

__all__ = [
    "COMPILED",
    "ConnectionTerminated",
    "DataReceived",
    "H2Connection",
    "H2Stream",
    "HeadersTooLarge",
    "PingAckReceived",
    "PingReceived",
    "RemoteSettingsChanged",
    "RequestReceived",
    "SettingsAcknowledged",
    "StreamReset",
    "TrailersReceived",
    "WindowUpdated",
    "asgi_headers",
    "validate_request_headers",
]

#: True in the compiled build.
COMPILED: bool = cython.compiled

MAX_WINDOW_SIZE = 2**31 - 1
DEFAULT_WINDOW_SIZE = 65535
# Stream states (RFC 9113 §5.1) a server's stream can be in while it is kept; idle and closed
# streams are not kept (a closed stream is one with an id at most the highest seen, not in the table).
OPEN = 1
HALF_CLOSED_REMOTE = 2  # the client sent END_STREAM
HALF_CLOSED_LOCAL = 3  # we sent END_STREAM
# How many streams we reset are remembered, so frames the client sent before it saw the RST_STREAM
# are ignored (§5.1 closed) instead of being answered with STREAM_CLOSED.
RESET_MEMORY = 128
# A PING we send during a graceful shutdown: its ACK means the client saw the first GOAWAY.
SHUTDOWN_PING = b"cyasgi\x00\x01"

#: ``:``, the first octet of a pseudo-header's name.
COLON = 0x3A

#: Fields HTTP/2 forbids in a message (RFC 9113 §8.2.2): a malformed request, dropped from a response.
CONNECTION_SPECIFIC: frozenset = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)


# ---------------------------------------------------------------------------------------------------
# Events


class Event:
    """Base of the events ``receive()`` returns: plain records, compared by type and fields."""

    __slots__ = ()
    _fields = ()  # type: tuple[str, ...]  # not an annotation: a class attribute of the compiled C classes

    def fields(self) -> tuple:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        return type(other).__name__ == type(self).__name__ and other.fields() == self.fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.fields()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({inner})"


class RequestReceived(Event):
    """A valid request head opened ``stream_id``; ``headers`` as sent (pseudo-headers first, cookie
    crumbs separate: ``asgi_headers()`` builds the ASGI list); ``end_stream``: no body follows."""

    __slots__ = ("stream_id", "headers", "end_stream")
    _fields = ("stream_id", "headers", "end_stream")

    def __init__(self, stream_id: int, headers: list, end_stream: bool) -> None:
        self.stream_id = stream_id
        self.headers = headers
        self.end_stream = end_stream


class DataReceived(Event):
    """Body octets for ``stream_id``. ``flow_controlled_length`` (padding included) is what to pass to
    ``acknowledge_received`` once the application consumed them."""

    __slots__ = ("stream_id", "data", "flow_controlled_length", "end_stream")
    _fields = ("stream_id", "data", "flow_controlled_length", "end_stream")

    def __init__(self, stream_id: int, data: bytes, flow_controlled_length: int, end_stream: bool) -> None:
        self.stream_id = stream_id
        self.data = data
        self.flow_controlled_length = flow_controlled_length
        self.end_stream = end_stream


class TrailersReceived(Event):
    """Request trailers ended ``stream_id``'s body (the fields are checked, then offered for those who want them)."""

    __slots__ = ("stream_id", "headers")
    _fields = ("stream_id", "headers")

    def __init__(self, stream_id: int, headers: list) -> None:
        self.stream_id = stream_id
        self.headers = headers


class HeadersTooLarge(Event):
    """The request head of ``stream_id`` was larger than our SETTINGS_MAX_HEADER_LIST_SIZE. The stream
    was kept but its request is not delivered: answer it (a 431 with ``end_stream``, after which the
    client's rest of the request is refused with RST_STREAM(NO_ERROR)) or ``reset_stream`` it."""

    __slots__ = ("stream_id", "end_stream")
    _fields = ("stream_id", "end_stream")

    def __init__(self, stream_id: int, end_stream: bool) -> None:
        self.stream_id = stream_id
        self.end_stream = end_stream


class StreamReset(Event):
    """A stream the application knows of was reset: by the client (``remote``) or by us because the
    client broke a rule on it (a stream error)."""

    __slots__ = ("stream_id", "error_code", "remote")
    _fields = ("stream_id", "error_code", "remote")

    def __init__(self, stream_id: int, error_code: int, remote: bool) -> None:
        self.stream_id = stream_id
        self.error_code = error_code
        self.remote = remote


class WindowUpdated(Event):
    """The client opened a send window: ``stream_id`` 0 is the connection's."""

    __slots__ = ("stream_id", "increment")
    _fields = ("stream_id", "increment")

    def __init__(self, stream_id: int, increment: int) -> None:
        self.stream_id = stream_id
        self.increment = increment


class RemoteSettingsChanged(Event):
    """The client's SETTINGS, applied and acknowledged: ``[(identifier, value), ...]``."""

    __slots__ = ("settings",)
    _fields = ("settings",)

    def __init__(self, settings: list) -> None:
        self.settings = settings


class SettingsAcknowledged(Event):
    """The client acknowledged our SETTINGS (they are in force from now on)."""

    __slots__ = ()


class PingReceived(Event):
    """The client sent a PING (already answered)."""

    __slots__ = ("data",)
    _fields = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class PingAckReceived(Event):
    """The client answered one of our PINGs."""

    __slots__ = ("data",)
    _fields = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class ConnectionTerminated(Event):
    """GOAWAY: received from the client (``remote``: streams up to ``last_stream_id`` go on, no new one
    will come), or sent by us after a connection error (the connection is dead: write what is queued
    and close; ``message`` says why)."""

    __slots__ = ("error_code", "last_stream_id", "remote", "message")
    _fields = ("error_code", "last_stream_id", "remote", "message")

    def __init__(self, error_code: int, last_stream_id: int, remote: bool, message: str = "") -> None:
        self.error_code = error_code
        self.last_stream_id = last_stream_id
        self.remote = remote
        self.message = message


def _request_received(stream_id, headers, end_stream):
    """``RequestReceived(...)`` without the call through the type (a C class in the compiled build)."""
    event = RequestReceived.__new__(RequestReceived)
    event.stream_id = stream_id
    event.headers = headers
    event.end_stream = end_stream
    return event


def _data_received(stream_id, data, flow_controlled_length, end_stream):
    """``DataReceived(...)`` without the call through the type."""
    event = DataReceived.__new__(DataReceived)
    event.stream_id = stream_id
    event.data = data
    event.flow_controlled_length = flow_controlled_length
    event.end_stream = end_stream
    return event


# ---------------------------------------------------------------------------------------------------
# Request heads


def validate_request_headers(headers, extended_connect: bool = False) -> str | None:
    """Why a decoded request head is malformed (RFC 9113 §8.2, §8.3), or None. The character rules
    (uppercase names, CR/LF/NUL in values...) are the decoder's ``fields_valid``. ``extended_connect``:
    we advertised SETTINGS_ENABLE_CONNECT_PROTOCOL, so a CONNECT may carry ``:protocol`` (RFC 8441 §4)."""
    method = None
    scheme = None
    path = None
    authority = None
    protocol = None
    seen = 0  # the pseudo-headers met, one bit each
    regular = False
    content_length = None
    for name, value in headers:
        if len(name) and name[0] == COLON:
            if regular:
                return f"pseudo-header {name!r} after a regular field"
            if name == b":method":
                bit = 1
                method = value
            elif name == b":path":
                bit = 2
                path = value
            elif name == b":scheme":
                bit = 4
                scheme = value
            elif name == b":authority":
                bit = 8
                authority = value
            elif name == b":protocol" and extended_connect:
                bit = 16
                protocol = value
            else:
                return f"unknown pseudo-header {name!r}"
            if seen & bit:
                return f"duplicate pseudo-header {name!r}"
            seen |= bit
            continue
        regular = True
        if name in CONNECTION_SPECIFIC:
            return f"connection-specific field {name!r}"
        if name == b"te":
            if value != b"trailers":
                return "te other than 'trailers'"
        elif name == b"content-length":
            if not value.isdigit():
                return "invalid content-length"
            if content_length is not None and content_length != value:
                return "conflicting content-length"
            content_length = value
    if method is None:
        return "missing :method"
    if protocol is not None:
        if method != b"CONNECT":
            return ":protocol without CONNECT"
        if scheme is None or path is None or authority is None:
            return "extended CONNECT without :scheme, :path or :authority"
        if not protocol:
            return "empty :protocol"
        return None
    if method == b"CONNECT":
        if scheme is not None or path is not None:
            return "CONNECT with :scheme or :path"
        if authority is None:
            return "CONNECT without :authority"
        return None
    if scheme is None:
        return "missing :scheme"
    if path is None:
        return "missing :path"
    if not path:
        return "empty :path"
    return None


def validate_trailers(headers) -> str | None:
    """Why request trailers are malformed (a pseudo-header or connection-specific field), or None."""
    for name, _ in headers:
        if len(name) and name[0] == COLON:
            return f"pseudo-header {name!r} in trailers"
        if name in CONNECTION_SPECIFIC:
            return f"connection-specific field {name!r} in trailers"
    return None


def asgi_headers(headers) -> list:
    """The ASGI header list of a request head: pseudo-headers removed, ``:authority`` first as ``host``
    (replacing any ``host`` field), cookie crumbs joined with ``"; "`` where the first one was."""
    out: list = []
    authority = None
    has_host = False
    cookies = None
    cookie_at = -1
    for field in headers:
        name, value = field
        if type(field) is not tuple:
            field = (name, value)
        if len(name) and name[0] == COLON:
            if name == b":authority":
                authority = value
            continue
        if name == b"cookie":
            if cookies is None:
                cookies = [value]
                cookie_at = len(out)
                out.append(field)
            else:
                cookies.append(value)
            continue
        if name == b"host":
            has_host = True
        out.append(field)  # the decoder's tuple itself: no new one
    if cookies is not None and len(cookies) > 1:
        out[cookie_at] = (b"cookie", b"; ".join(cookies))
    if authority is not None:
        if has_host:
            out = [field for field in out if field[0] != b"host"]
        out.insert(0, (b"host", authority))
    return out


def _content_length(headers) -> int:
    for field in headers:
        name = field[0]  # the value only for the one field wanted
        if name == b"content-length":
            return int(field[1])
    return -1


# ---------------------------------------------------------------------------------------------------
# The connection


class H2Stream:
    """What the connection keeps of one stream while it is open or half-closed."""

    def __init__(self, stream_id: int, send_window: int, recv_window: int) -> None:
        self.stream_id = stream_id
        self.state = OPEN
        self.send_window = send_window  # what we may still send (the client's window)
        self.recv_window = recv_window  # what the client may still send
        self.recv_unacked = 0  # consumed by the application, not yet given back by WINDOW_UPDATE
        self.content_length = -1  # the request's content-length, -1: none
        self.received = 0  # body octets received
        self.announced = False  # RequestReceived was returned for it
        self.refused = False  # HeadersTooLarge: nothing of it goes to the application
        self.response_started = False  # we sent its response head


def _new_stream(stream_id, send_window, recv_window):
    """``H2Stream(stream_id, send_window, recv_window)`` without the call through the type."""
    stream = H2Stream.__new__(H2Stream)
    stream.stream_id = stream_id
    stream.state = OPEN
    stream.send_window = send_window
    stream.recv_window = recv_window
    stream.content_length = -1
    if not cython.compiled:  # a C class starts with zeros
        stream.recv_unacked = 0
        stream.received = 0
        stream.announced = False
        stream.refused = False
        stream.response_started = False
    return stream


class H2Connection:
    """The server side of one HTTP/2 connection (see the module docstring).

    Our SETTINGS: ``max_concurrent_streams``, ``initial_window_size`` (each stream's receive window),
    ``max_frame_size``, ``max_header_list_size``, ENABLE_PUSH 0, and ENABLE_CONNECT_PROTOCOL 1 with
    ``enable_connect_protocol`` (RFC 8441: WebSockets over a stream). ``connection_window_size`` is the
    connection's receive window (a WINDOW_UPDATE on stream 0 raises it from 65535 at the start).

    Abuse budgets (past one: GOAWAY(ENHANCE_YOUR_CALM)): ``max_rapid_resets`` streams the client reset
    before we started their response (one forgiven per response started); ``max_empty_data_frames``
    DATA frames with no data and no END_STREAM over the connection; ``max_control_frames`` SETTINGS,
    PING, PRIORITY and WINDOW_UPDATE frames received since the caller last took ``data_to_send()``;
    ``max_stream_errors`` streams we had to reset for breaking a rule.
    """

    def __init__(
        self,
        max_concurrent_streams: int = 100,
        initial_window_size: int = DEFAULT_WINDOW_SIZE,
        max_frame_size: int = 16384,
        max_header_list_size: int = 65536,
        connection_window_size: int = DEFAULT_WINDOW_SIZE,
        max_rapid_resets: int = 100,
        max_empty_data_frames: int = 100,
        max_control_frames: int = 1000,
        max_stream_errors: int = 1000,
        enable_connect_protocol: bool = False,
    ) -> None:
        if not 0 <= initial_window_size <= MAX_WINDOW_SIZE:
            raise ValueError("initial_window_size must be within [0, 2**31 - 1]")
        if not DEFAULT_WINDOW_SIZE <= connection_window_size <= MAX_WINDOW_SIZE:
            raise ValueError("connection_window_size must be within [65535, 2**31 - 1]")
        self.max_concurrent_streams = max_concurrent_streams
        self.initial_window_size = initial_window_size
        self.max_frame_size = max_frame_size
        self.max_header_list_size = max_header_list_size
        self.connection_window_size = connection_window_size
        self.max_rapid_resets = max_rapid_resets
        self.max_empty_data_frames = max_empty_data_frames
        self.max_control_frames = max_control_frames
        self.max_stream_errors = max_stream_errors
        self.enable_connect_protocol = enable_connect_protocol
        self._reader = FrameReader(expect_preface=True)  # max_frame_size 16384 until our SETTINGS are acked
        self._decoder = Decoder(max_header_list_size=max_header_list_size)
        self._encoder = Encoder()
        self._out: list = []
        self._streams: dict = {}
        self._reset_ids: dict = {}  # ids of the streams we reset lately (ordered: oldest first)
        self._highest_stream = 0  # the highest client stream id seen
        self._last_processed = 0  # the highest stream id whose request we took
        self._settings_acked = False
        self._peer_max_frame_size = 16384
        self._peer_initial_window = DEFAULT_WINDOW_SIZE
        self._send_window = DEFAULT_WINDOW_SIZE  # the connection's window for what we send
        self._recv_window = connection_window_size  # what the client may still send on the connection
        self._recv_unacked = 0  # consumed, not yet given back
        self._rapid_resets = 0
        self._empty_data_frames = 0
        self._control_frames = 0
        self._stream_errors = 0
        self._goaway_sent = False
        self._goaway_last = MAX_WINDOW_SIZE  # streams above it are ignored once GOAWAY was sent
        self._shutting_down = False
        self._remote_goaway = False
        self._closed = False
        self._events: list = []
        # The stream last opened or sent on, while it is in the table: a response's HEADERS and DATA
        # find it without a lookup.
        self._recent: H2Stream | None = None

    # -- introspection --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """A connection error ended this connection (or ``close_connection`` was called)."""
        return self._closed

    @property
    def open_streams(self) -> int:
        """Streams open or half-closed."""
        return len(self._streams)

    @property
    def last_stream_id(self) -> int:
        """The highest client stream id whose request was taken (what a GOAWAY announces)."""
        return self._last_processed

    def stream_state(self, stream_id: int) -> str:
        """``"open"``, ``"half-closed (remote)"``, ``"half-closed (local)"``, ``"idle"`` or ``"closed"``."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            return ("open", "half-closed (remote)", "half-closed (local)")[stream.state - 1]
        return "idle" if stream_id > self._highest_stream else "closed"

    # -- output ---------------------------------------------------------------------------------

    def initiate(self) -> bytes:
        """Our SETTINGS (and the connection window's WINDOW_UPDATE when it is above 65535): what the
        server writes first. Returns everything queued."""
        self._out.append(
            settings_frame(
                [
                    (0x3, self.max_concurrent_streams),
                    (0x4, self.initial_window_size),
                    (0x5, self.max_frame_size),
                    (0x6, self.max_header_list_size),
                    (0x2, 0),
                ]
                + ([(0x8, 1)] if self.enable_connect_protocol else [])
            )
        )
        if self.connection_window_size > DEFAULT_WINDOW_SIZE:
            self._out.append(window_update_frame(0, self.connection_window_size - DEFAULT_WINDOW_SIZE))
        return self.data_to_send()

    def data_to_send(self) -> bytes:
        """Everything queued for the client since the last call (and a new control-frame budget)."""
        self._control_frames = 0
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out = []
        return data

    # -- input ----------------------------------------------------------------------------------

    def receive(self, data) -> list:
        """Process what the client sent: the events it caused, in order."""
        if self._closed:
            return []
        events: list = []
        self._events = events
        try:
            for frame in self._reader.feed(data):
                self._frame(frame)
        except H2ConnectionError as error:
            self._connection_error(error.error_code, error.message)
        except HPACKError as error:
            self._connection_error(error.error_code, f"header block: {error}")
        self._events = []
        return events

    def _connection_error(self, code: int, message: str) -> None:
        self._out.append(goaway_frame(self._last_processed, code, message.encode("utf-8", "replace")[:256]))
        self._goaway_sent = True
        self._closed = True
        self._events.append(ConnectionTerminated(code, self._last_processed, False, message))

    def _frame(self, frame) -> None:
        frame_type = frame.type
        if frame_type == 0x0:
            self._data(frame)
        elif frame_type == 0x1:
            self._headers(frame)
        elif frame_type == 0x3:
            self._rst_stream(frame)
        elif frame_type == 0x4:
            self._settings(frame)
        elif frame_type == 0x6:
            self._ping(frame)
        elif frame_type == 0x7:
            self._remote_goaway = True
            self._events.append(ConnectionTerminated(frame.error_code, frame.last_stream_id, True))
        elif frame_type == 0x8:
            self._window_update(frame)
        elif frame_type == 0x2:  # PRIORITY: deprecated (RFC 9113 §5.3.2), ignored once checked
            self._control()
            if frame.error is not None:
                self._stream_error(frame.error.stream_id, frame.error.error_code, frame.error.message)

    def _control(self) -> None:
        self._control_frames += 1
        if self._control_frames > self.max_control_frames:
            raise H2ConnectionError(
                ENHANCE_YOUR_CALM, f"more than {self.max_control_frames} control frames in one batch"
            )

    def _settings(self, frame) -> None:
        if frame.flags & 0x1:  # ACK
            if not self._settings_acked:
                self._settings_acked = True
                self._reader.max_frame_size = self.max_frame_size
                delta = self.initial_window_size - DEFAULT_WINDOW_SIZE
                if delta:
                    for stream in self._streams.values():
                        stream.recv_window += delta
            self._events.append(SettingsAcknowledged())
            return
        self._control()
        for identifier, value in frame.settings:
            if identifier == 0x1:  # HEADER_TABLE_SIZE
                self._encoder.set_max_table_size(value)
            elif identifier == 0x4:  # INITIAL_WINDOW_SIZE
                delta = value - self._peer_initial_window
                self._peer_initial_window = value
                for stream in self._streams.values():
                    stream.send_window += delta
                    if stream.send_window > MAX_WINDOW_SIZE:
                        raise H2ConnectionError(
                            FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream's window"
                        )
            elif identifier == 0x5:  # MAX_FRAME_SIZE
                self._peer_max_frame_size = value
        self._out.append(SETTINGS_ACK_FRAME)
        self._events.append(RemoteSettingsChanged(frame.settings))

    def _ping(self, frame) -> None:
        if frame.flags & 0x1:  # ACK
            if self._shutting_down and frame.payload == SHUTDOWN_PING:
                self._shutting_down = False
                self._send_goaway(NO_ERROR, self._last_processed)
            self._events.append(PingAckReceived(frame.payload))
            return
        self._control()
        self._out.append(ping_frame(frame.payload, True))
        self._events.append(PingReceived(frame.payload))

    def _window_update(self, frame) -> None:
        self._control()  # a flood of them costs the server work too (no answer, but a lookup each)
        stream_id = frame.stream_id
        increment = frame.increment
        if stream_id == 0:
            self._send_window += increment
            if self._send_window > MAX_WINDOW_SIZE:
                raise H2ConnectionError(FLOW_CONTROL_ERROR, "WINDOW_UPDATE overflows the connection window")
            self._events.append(WindowUpdated(0, increment))
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            if stream_id > self._highest_stream:
                raise H2ConnectionError(PROTOCOL_ERROR, f"WINDOW_UPDATE on idle stream {stream_id}")
            return  # closed: may cross our END_STREAM or RST_STREAM
        if frame.error is not None:
            self._stream_error(stream_id, frame.error.error_code, frame.error.message)
            return
        stream.send_window += increment
        if stream.send_window > MAX_WINDOW_SIZE:
            self._stream_error(stream_id, FLOW_CONTROL_ERROR, "WINDOW_UPDATE overflows the stream window")
            return
        self._events.append(WindowUpdated(stream_id, increment))

    def _rst_stream(self, frame) -> None:
        stream_id = frame.stream_id
        stream = self._streams.get(stream_id)
        if stream is None:
            if stream_id > self._highest_stream:
                raise H2ConnectionError(PROTOCOL_ERROR, f"RST_STREAM on idle stream {stream_id}")
            return
        self._remove(stream)
        self._release(stream.recv_unacked)
        if not stream.response_started:
            self._rapid_resets += 1
            if self._rapid_resets > self.max_rapid_resets:
                raise H2ConnectionError(
                    ENHANCE_YOUR_CALM,
                    f"more than {self.max_rapid_resets} streams reset before their response",
                )
        if stream.announced or stream.refused:
            self._events.append(StreamReset(stream_id, frame.error_code, True))

    def _headers(self, frame) -> None:
        stream_id = frame.stream_id
        end_stream = (frame.flags & 0x1) != 0
        too_large = False
        # Decode first, whatever happens to the stream: the HPACK tables must stay in step.
        try:
            headers = self._decoder.decode(frame.payload)
        except HeaderListTooLarge:
            headers = []
            too_large = True
        fields_valid = self._decoder.fields_valid
        stream = self._streams.get(stream_id)
        if stream is not None:  # trailers
            if stream.state == HALF_CLOSED_REMOTE:
                self._stream_error(stream_id, STREAM_CLOSED, "HEADERS after END_STREAM")
                return
            if frame.error is not None:
                self._stream_error(stream_id, frame.error.error_code, frame.error.message)
                return
            if not end_stream:
                self._stream_error(stream_id, PROTOCOL_ERROR, "trailers without END_STREAM")
                return
            problem = "malformed field in trailers" if not fields_valid else validate_trailers(headers)
            if too_large:
                problem = "trailers too large"
            if problem is not None:
                self._stream_error(stream_id, PROTOCOL_ERROR, problem)
                return
            self._remote_end(stream)
            if stream.announced:
                self._events.append(TrailersReceived(stream_id, headers))
            return
        if stream_id <= self._highest_stream:
            if stream_id in self._reset_ids:
                return  # we reset it: ignored (§5.1)
            raise H2ConnectionError(
                PROTOCOL_ERROR,
                f"HEADERS on stream {stream_id}: not above the highest stream {self._highest_stream}",
            )
        if not stream_id & 1:
            raise H2ConnectionError(PROTOCOL_ERROR, f"HEADERS on stream {stream_id}: not a client stream")
        self._highest_stream = stream_id
        if self._goaway_sent and stream_id > self._goaway_last:
            return  # after our GOAWAY: not processed (§6.8)
        if frame.error is not None:
            self._stream_error(stream_id, frame.error.error_code, frame.error.message)
            return
        if len(self._streams) >= self.max_concurrent_streams:
            self._reset(stream_id, REFUSED_STREAM)
            return
        self._last_processed = stream_id
        # Until the client acknowledged our SETTINGS it may use the default window; the difference
        # is applied to every stream when the ACK comes.
        stream = _new_stream(
            stream_id,
            self._peer_initial_window,
            self.initial_window_size if self._settings_acked else DEFAULT_WINDOW_SIZE,
        )
        self._streams[stream_id] = stream
        self._recent = stream
        if too_large:
            stream.refused = True
            if end_stream:
                stream.state = HALF_CLOSED_REMOTE
            self._events.append(HeadersTooLarge(stream_id, end_stream))
            return
        if not fields_valid:
            problem = "malformed field"
        else:
            problem = validate_request_headers(headers, self.enable_connect_protocol)
        if problem is not None:
            self._stream_error(stream_id, PROTOCOL_ERROR, problem)
            return
        stream.content_length = _content_length(headers)
        if end_stream:
            stream.state = HALF_CLOSED_REMOTE
            if stream.content_length > 0:
                self._stream_error(stream_id, PROTOCOL_ERROR, "content-length without a body")
                return
        stream.announced = True
        self._events.append(_request_received(stream_id, headers, end_stream))

    def _data(self, frame) -> None:
        stream_id = frame.stream_id
        length = frame.length
        end_stream = (frame.flags & 0x1) != 0
        if length > self._recv_window:
            raise H2ConnectionError(FLOW_CONTROL_ERROR, "DATA beyond the connection window")
        self._recv_window -= length
        if length == 0 and not end_stream:
            self._empty_data_frames += 1
            if self._empty_data_frames > self.max_empty_data_frames:
                raise H2ConnectionError(
                    ENHANCE_YOUR_CALM, f"more than {self.max_empty_data_frames} empty DATA frames"
                )
        stream = self._streams.get(stream_id)
        if stream is None:
            if stream_id > self._highest_stream:
                raise H2ConnectionError(PROTOCOL_ERROR, f"DATA on idle stream {stream_id}")
            self._release(length)
            if stream_id not in self._reset_ids and not (self._goaway_sent and stream_id > self._goaway_last):
                self._stream_error(stream_id, STREAM_CLOSED, "DATA on a closed stream")
            return
        if stream.state == HALF_CLOSED_REMOTE:
            self._release(length)
            self._stream_error(stream_id, STREAM_CLOSED, "DATA after END_STREAM")
            return
        if length > stream.recv_window:
            self._release(length)
            self._stream_error(stream_id, FLOW_CONTROL_ERROR, "DATA beyond the stream window")
            return
        stream.recv_window -= length
        data = frame.payload
        if stream.refused:
            self._release(length)
            if end_stream:
                self._remote_end(stream)
            return
        stream.received += len(data)
        if stream.content_length >= 0:
            if stream.received > stream.content_length or (
                end_stream and stream.received != stream.content_length
            ):
                self._release(length)
                self._stream_error(stream_id, PROTOCOL_ERROR, "body length differs from content-length")
                return
        if end_stream:
            self._remote_end(stream)
        self._events.append(_data_received(stream_id, data, length, end_stream))

    def _remove(self, stream) -> None:
        """``stream`` leaves the table: closed."""
        del self._streams[stream.stream_id]
        if stream is self._recent:
            self._recent = None

    def _remote_end(self, stream) -> None:
        """The client ended its side of ``stream`` (the application still gets what ended it)."""
        if stream.state == HALF_CLOSED_LOCAL:
            self._remove(stream)
            self._release(stream.recv_unacked)
        else:
            stream.state = HALF_CLOSED_REMOTE

    def _stream_error(self, stream_id: int, code: int, message: str) -> None:
        """The client broke a rule on ``stream_id`` (RFC 9113 §5.4.2): RST_STREAM, the stream closed."""
        self._stream_errors += 1
        if self._stream_errors > self.max_stream_errors:
            raise H2ConnectionError(ENHANCE_YOUR_CALM, f"more than {self.max_stream_errors} stream errors")
        stream = self._streams.get(stream_id)
        self._reset(stream_id, code)
        if stream is not None and stream.announced:
            self._events.append(StreamReset(stream_id, code, False))

    def _reset(self, stream_id: int, code: int) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            if stream is self._recent:
                self._recent = None
            self._release(stream.recv_unacked)
        self._out.append(rst_stream_frame(stream_id, code))
        reset_ids = self._reset_ids
        reset_ids[stream_id] = True
        if len(reset_ids) > RESET_MEMORY:
            del reset_ids[next(iter(reset_ids))]

    def _release(self, n: int) -> None:
        """``n`` received octets are consumed (connection window only): WINDOW_UPDATE past half the window."""
        if n <= 0:
            return
        self._recv_unacked += n
        if self._recv_unacked >= self.connection_window_size // 2 and not self._closed:
            self._out.append(window_update_frame(0, self._recv_unacked))
            self._recv_window += self._recv_unacked
            self._recv_unacked = 0

    # -- the application's side -----------------------------------------------------------------

    def acknowledge_received(self, stream_id: int, n: int) -> None:
        """The application consumed ``n`` flow-controlled octets of ``stream_id`` (``DataReceived.
        flow_controlled_length``): the windows open again (a WINDOW_UPDATE once half a window is due)."""
        if n <= 0 or self._closed:
            return
        stream = self._streams.get(stream_id)
        self._release(n)
        if stream is None or stream.state == HALF_CLOSED_REMOTE:
            return  # nothing more comes on it
        stream.recv_unacked += n
        if stream.recv_unacked >= max(1, self.initial_window_size // 2):
            self._out.append(window_update_frame(stream_id, stream.recv_unacked))
            stream.recv_window += stream.recv_unacked
            stream.recv_unacked = 0

    def _sendable(self, stream_id: int):
        if self._closed:
            raise StreamClosedError(stream_id, "the connection is closed")
        stream = self._recent
        if stream is None or stream.stream_id != stream_id:
            stream = self._streams.get(stream_id)
            if stream is None:
                raise StreamClosedError(stream_id, f"stream {stream_id} is not open for sending")
            self._recent = stream
        if stream.state == HALF_CLOSED_LOCAL:
            raise StreamClosedError(stream_id, f"stream {stream_id} is not open for sending")
        return stream

    def send_headers(self, stream_id: int, headers, end_stream: bool = False) -> None:
        """A response head (or trailers, with ``end_stream``): ``[(name, value), ...]`` lowercase bytes."""
        stream = self._sendable(stream_id)
        self._out.append(
            headers_frames(stream_id, self._encoder.encode_parts(headers), end_stream, self._peer_max_frame_size)
        )
        if not stream.response_started:
            stream.response_started = True
            if self._rapid_resets > 0:
                self._rapid_resets -= 1
        if end_stream:
            self._local_end(stream)

    def send_data(self, stream_id: int, data, end_stream: bool = False) -> int:
        """Send as much of ``data`` as both windows allow: the octets taken (END_STREAM only if all were).
        The caller sends the rest after a ``WindowUpdated`` (or a settings change)."""
        stream = self._sendable(stream_id)
        size = len(data)
        n = min(size, self._send_window, stream.send_window)
        if n < 0:
            n = 0
        if n == 0 and size:
            return 0
        last = end_stream and n == size
        self._out.append(
            data_frames(stream_id, data[:n] if n < size else data, last, self._peer_max_frame_size)
        )
        self._send_window -= n
        stream.send_window -= n
        if last:
            self._local_end(stream)
        return n

    def end_stream(self, stream_id: int) -> None:
        """End our side of ``stream_id`` (an empty DATA frame with END_STREAM)."""
        stream = self._sendable(stream_id)
        self._out.append(data_frames(stream_id, b"", True))
        self._local_end(stream)

    def _local_end(self, stream) -> None:
        stream_id = stream.stream_id
        if stream.state == HALF_CLOSED_REMOTE:
            self._remove(stream)
            self._release(stream.recv_unacked)
        elif stream.refused:  # answered before the request ended: the rest is not wanted (§8.1)
            self._reset(stream_id, NO_ERROR)
        else:
            stream.state = HALF_CLOSED_LOCAL

    def reset_stream(self, stream_id: int, error_code: int = CANCEL) -> None:
        """RST_STREAM: the stream ends at once (no event)."""
        if self._closed or stream_id not in self._streams:
            return
        self._reset(stream_id, error_code)

    def local_flow_window(self, stream_id: int) -> int:
        """How much ``send_data`` could send on ``stream_id`` now."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return 0
        return max(0, min(self._send_window, stream.send_window))

    def ping(self, opaque: bytes) -> None:
        """Send a PING (its answer comes back as ``PingAckReceived``)."""
        self._out.append(ping_frame(opaque))

    def _send_goaway(self, code: int, last_stream_id: int) -> None:
        self._out.append(goaway_frame(last_stream_id, code))
        self._goaway_sent = True
        self._goaway_last = min(self._goaway_last, last_stream_id)

    def close_connection(self, error_code: int = NO_ERROR, last_stream_id: int | None = None) -> None:
        """GOAWAY: no stream above ``last_stream_id`` (default: the last one processed) will be; the
        connection is closed for input. Streams at or below it may still be answered."""
        if self._closed:
            return
        self._send_goaway(error_code, self._last_processed if last_stream_id is None else last_stream_id)
        if error_code != NO_ERROR:
            self._closed = True

    def graceful_shutdown(self) -> None:
        """Start a graceful shutdown (RFC 9113 §6.8): GOAWAY(2^31-1, NO_ERROR) and a PING; when the PING's
        ACK shows the client saw it, the final GOAWAY(last processed stream) is queued by ``receive``.
        The caller closes once ``open_streams`` is 0."""
        if self._closed or self._goaway_sent:
            return
        self._send_goaway(NO_ERROR, MAX_WINDOW_SIZE)
        self._shutting_down = True
        self._out.append(ping_frame(SHUTDOWN_PING))
