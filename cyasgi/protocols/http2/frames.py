"""HTTP/2 framing (RFC 9113 §4 and §6), sans-I/O: the server's frame reader and the frame writers.

One source, two builds: this module is what PyPy and ``CYASGI_NO_EXTENSIONS=1`` run, and the same text
is compiled by Cython as ``cyasgi._speedups.frames`` with the augmenting ``cyasgi/_speedups/frames.pxd``
(C classes, typed fields and locals). Use it through ``cyasgi.protocols.http2.framing``.

``FrameReader.feed(data)`` returns the complete frames in ``data`` (plus what was kept from earlier
calls) as ``Frame`` objects and keeps the incomplete rest. Every check a frame header allows is made
from its 9 octets, before a payload is waited for: a length above our SETTINGS_MAX_FRAME_SIZE is a
connection error at once, so a declared 16 MiB payload is never buffered. A header block (HEADERS plus
CONTINUATION frames) is assembled here and handed out as one HEADERS frame with END_HEADERS set, within
``max_header_block_size`` octets and ``max_continuation_frames`` frames (ENHANCE_YOUR_CALM past either).

A connection error raises ``H2ConnectionError`` (the reader is dead after it: every later ``feed``
raises it again). A stream error does not raise: the frame is delivered with ``frame.error`` set to an
``H2StreamError``, so a HEADERS block is still decoded and HPACK stays in step.

The reader is the server's: a PUSH_PROMISE is a connection error (a client cannot push). Frames of
unknown types are dropped, except inside a header block, where they are a PROTOCOL_ERROR. The frame
types, flags and fields the parser tests are written as numbers in the hot functions (the compiled
build compares C integers): the named constants below say what they are.
"""

from __future__ import annotations

import struct

try:
    import cython
except ImportError:  # no Cython where this runs: the pure build, as with PyPy
    from cyasgi import _cython_shim as cython

from cyasgi.protocols.http2.errors import (
    CANCEL,
    COMPRESSION_ERROR,
    CONNECT_ERROR,
    ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    HTTP_1_1_REQUIRED,
    INADEQUATE_SECURITY,
    INTERNAL_ERROR,
    NO_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    SETTINGS_TIMEOUT,
    STREAM_CLOSED,
    H2ConnectionError,
    H2StreamError,
)

__all__ = [
    "COMPILED",
    "Frame",
    "FrameReader",
    "H2ConnectionError",
    "H2StreamError",
    "data_frames",
    "goaway_frame",
    "headers_frames",
    "ping_frame",
    "rst_stream_frame",
    "settings_frame",
    "window_update_frame",
    "SETTINGS_ACK_FRAME",
    "CONNECTION_PREFACE",
]

#: True in the compiled build.
COMPILED: bool = cython.compiled

# Frame types (RFC 9113 §6).
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# Flags.
FLAG_END_STREAM = 0x1  # DATA, HEADERS
FLAG_ACK = 0x1  # SETTINGS, PING
FLAG_END_HEADERS = 0x4  # HEADERS, PUSH_PROMISE, CONTINUATION
FLAG_PADDED = 0x8  # DATA, HEADERS, PUSH_PROMISE
FLAG_PRIORITY = 0x20  # HEADERS

# SETTINGS parameters (RFC 9113 §6.5.2, RFC 8441 §3).
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6
SETTINGS_ENABLE_CONNECT_PROTOCOL = 0x8
SETTINGS_NO_RFC7540_PRIORITIES = 0x9

# Sizes and bounds.
FRAME_HEADER_SIZE = 9
DEFAULT_MAX_FRAME_SIZE = 16384  # the initial SETTINGS_MAX_FRAME_SIZE, also its smallest value
MAX_FRAME_SIZE_LIMIT = 2**24 - 1  # the largest SETTINGS_MAX_FRAME_SIZE
MAX_WINDOW_SIZE = 2**31 - 1  # flow-control windows, SETTINGS_INITIAL_WINDOW_SIZE, increments
DEFAULT_INITIAL_WINDOW_SIZE = 65535
DEFAULT_HEADER_TABLE_SIZE = 4096
MAX_STREAM_ID = 2**31 - 1
#: The default bound on a header block: a 64 KiB header list, plus slack for its encoding.
DEFAULT_MAX_HEADER_BLOCK_SIZE = 65536 + 16384
#: The default bound on CONTINUATION frames per header block (h2 allows 64, zttp 16).
DEFAULT_MAX_CONTINUATION_FRAMES = 32

#: What a client sends first (RFC 9113 §3.4), before its SETTINGS frame.
CONNECTION_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

ERROR_CODES = (
    NO_ERROR,
    PROTOCOL_ERROR,
    INTERNAL_ERROR,
    FLOW_CONTROL_ERROR,
    SETTINGS_TIMEOUT,
    STREAM_CLOSED,
    FRAME_SIZE_ERROR,
    REFUSED_STREAM,
    CANCEL,
    COMPRESSION_ERROR,
    CONNECT_ERROR,
    ENHANCE_YOUR_CALM,
    INADEQUATE_SECURITY,
    HTTP_1_1_REQUIRED,
)

_TYPE_NAMES = (
    "DATA",
    "HEADERS",
    "PRIORITY",
    "RST_STREAM",
    "SETTINGS",
    "PUSH_PROMISE",
    "PING",
    "GOAWAY",
    "WINDOW_UPDATE",
    "CONTINUATION",
)

# Length (24 bits as 16 + 8), type, flags, stream id: struct.pack then one concatenation measured
# cheaper than int.to_bytes (x1.6) or pack_into a bytearray (x3) on CPython 3.11.
_pack_header = struct.Struct(">HBBBL").pack
_pack_u32 = struct.Struct(">L").pack
_pack_u32_u32 = struct.Struct(">LL").pack
_pack_setting = struct.Struct(">HL").pack


def type_name(frame_type: int) -> str:
    """``"HEADERS"``... or ``"UNKNOWN(0xN)"``."""
    if 0 <= frame_type < len(_TYPE_NAMES):
        return _TYPE_NAMES[frame_type]
    return f"UNKNOWN(0x{frame_type:x})"


class Frame:
    """One frame as received. ``payload`` is the frame's content with padding and the priority fields
    removed: DATA's data, HEADERS' whole header block, PING's 8 octets, GOAWAY's debug data.
    ``length`` is the payload length on the wire (padding included: what DATA costs in flow control).

    Decoded fields, by type: ``settings`` (SETTINGS: ``[(identifier, value), ...]`` in order, known
    identifiers only, values checked), ``error_code`` (RST_STREAM, GOAWAY), ``last_stream_id``
    (GOAWAY), ``increment`` (WINDOW_UPDATE), ``depends_on``, ``weight`` (1-256), ``exclusive``
    (PRIORITY, HEADERS with the PRIORITY flag; RFC 9113 deprecates them: parsed, for callers to ignore).
    ``error`` is None, or the ``H2StreamError`` this frame causes (to be answered with RST_STREAM).
    """

    def __init__(self, type: int, flags: int = 0, stream_id: int = 0, payload: bytes = b"") -> None:
        self.type = type
        self.flags = flags
        self.stream_id = stream_id
        self.length = len(payload)
        self.payload = payload
        self.error: H2StreamError | None = None
        self.settings: list | None = None
        self.error_code = 0
        self.last_stream_id = 0
        self.increment = 0
        self.depends_on = 0
        self.weight = 16
        self.exclusive = False

    def __repr__(self) -> str:
        extra = ""
        if self.settings is not None:
            extra = f" settings={self.settings!r}"
        if self.error is not None:
            extra += f" error={self.error!r}"
        return (
            f"<Frame {type_name(self.type)} flags=0x{self.flags:x} stream={self.stream_id} "
            f"length={self.length} payload={self.payload[:32]!r}{extra}>"
        )


def _new_frame(frame_type, flags, stream_id, length, payload):
    frame = Frame.__new__(Frame)
    frame.type = frame_type
    frame.flags = flags
    frame.stream_id = stream_id
    frame.length = length
    frame.payload = payload
    frame.weight = 16
    if not cython.compiled:  # a C class starts with zeros and Nones
        frame.error = None
        frame.settings = None
        frame.error_code = 0
        frame.last_stream_id = 0
        frame.increment = 0
        frame.depends_on = 0
        frame.exclusive = False
    return frame


def _u32(buf, i):
    """The big-endian 32-bit number at ``buf[i:i + 4]``."""
    b0 = buf[i]
    b1 = buf[i + 1]
    b2 = buf[i + 2]
    b3 = buf[i + 3]
    return (b0 << 24) | (b1 << 16) | (b2 << 8) | b3


if not cython.compiled:  # the compiled build copies the octets without a slice object (frames.pxd)

    def _octets(buf, start, end):
        """``buf[start:end]``, within a complete frame."""
        return buf[start:end]


class FrameReader:
    """Turns the bytes a client sends into frames (see the module docstring).

    ``max_frame_size`` is our SETTINGS_MAX_FRAME_SIZE (raise it only once the peer acknowledged it);
    ``expect_preface``: the connection preface must come first, then a SETTINGS frame.
    """

    def __init__(
        self,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_header_block_size: int = DEFAULT_MAX_HEADER_BLOCK_SIZE,
        max_continuation_frames: int = DEFAULT_MAX_CONTINUATION_FRAMES,
        expect_preface: bool = False,
    ) -> None:
        if not DEFAULT_MAX_FRAME_SIZE <= max_frame_size <= MAX_FRAME_SIZE_LIMIT:
            raise ValueError(f"max_frame_size must be within [16384, 2**24 - 1], not {max_frame_size}")
        #: Our SETTINGS_MAX_FRAME_SIZE: a longer frame is a FRAME_SIZE_ERROR.
        self.max_frame_size = max_frame_size
        #: The most octets a header block (HEADERS + CONTINUATION fragments) may hold.
        self.max_header_block_size = max_header_block_size
        #: The most CONTINUATION frames a header block may take.
        self.max_continuation_frames = max_continuation_frames
        self._pending = bytearray()  # the start of an incomplete frame (or preface)
        self._need = len(CONNECTION_PREFACE) if expect_preface else FRAME_HEADER_SIZE  # what completes it
        self._preface = expect_preface  # the preface is still to come
        self._settings_first = expect_preface  # the next frame must be a SETTINGS frame (not an ACK)
        self._block_frame: Frame | None = None  # the HEADERS frame whose block is open
        self._block_parts: list = []  # its fragments so far
        self._block_stream = 0  # its stream (0: no block open)
        self._block_size = 0  # the fragments' total size
        self._continuations = 0  # CONTINUATION frames received for it
        self._error: H2ConnectionError | None = None  # the connection error raised, raised again

    @property
    def buffered(self) -> int:
        """Octets kept from earlier ``feed`` calls (an incomplete frame)."""
        return len(self._pending)

    @property
    def header_block_open(self) -> bool:
        """A HEADERS frame came without END_HEADERS and its CONTINUATION frames are awaited."""
        return self._block_stream != 0

    def feed(self, data) -> list:
        """Parse ``data`` (after what was kept): the complete frames, in order. Raises ``H2ConnectionError``."""
        if self._error is not None:
            raise self._error
        pending = self._pending
        if pending:
            pending += data
            if len(pending) < self._need and not self._preface:
                return []
            buf = bytes(pending)
            self._pending = bytearray()
        else:
            buf = data if type(data) is bytes else bytes(data)
        frames: list[Frame] = []
        end = len(buf)
        pos = 0
        if self._preface:
            pos = len(CONNECTION_PREFACE)
            if buf[:pos] != CONNECTION_PREFACE[:end]:
                raise self._fail(PROTOCOL_ERROR, "invalid connection preface")
            if end < pos:
                self._pending = bytearray(buf)
                return frames
            self._preface = False
        max_frame_size = self.max_frame_size
        while True:
            avail = end - pos
            if avail < 9:
                need = 9
                break
            length = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
            frame_type = buf[pos + 3]
            flags = buf[pos + 4]
            stream_id = ((buf[pos + 5] & 0x7F) << 24) | (buf[pos + 6] << 16) | (buf[pos + 7] << 8) | buf[pos + 8]
            if self._settings_first and (frame_type != 0x4 or flags & 0x1):
                # Checked before the length: whatever follows the preface, if it is not SETTINGS the
                # preface is invalid (RFC 9113 §3.4), e.g. an HTTP/1.1 request read as a frame header.
                raise self._fail(PROTOCOL_ERROR, f"{type_name(frame_type)} frame before the client's SETTINGS")
            if length > max_frame_size:
                raise self._fail(
                    FRAME_SIZE_ERROR,
                    f"{type_name(frame_type)} frame of {length} octets exceeds "
                    f"SETTINGS_MAX_FRAME_SIZE {max_frame_size}",
                )
            self._check_header(length, frame_type, flags, stream_id)
            if avail - 9 < length:
                need = 9 + length
                break
            pos += 9
            frame = self._frame(buf, pos, length, frame_type, flags, stream_id)
            pos += length
            if frame is not None:
                frames.append(frame)
        if pos < end:
            self._pending = bytearray(buf[pos:])
        self._need = need
        return frames

    def _fail(self, code, message):
        """The connection error to raise; the reader keeps raising it."""
        error = H2ConnectionError(code, message)
        self._error = error
        self._pending = bytearray()
        self._block_frame = None
        self._block_parts = []
        return error

    def _check_header(self, length, frame_type, flags, stream_id):
        """What the 9-octet header of a frame of at most SETTINGS_MAX_FRAME_SIZE octets tells."""
        if self._block_stream:
            if frame_type != 0x9 or stream_id != self._block_stream:  # CONTINUATION
                raise self._fail(
                    PROTOCOL_ERROR,
                    f"{type_name(frame_type)} frame on stream {stream_id} inside the header block "
                    f"of stream {self._block_stream}",
                )
            if self._continuations >= self.max_continuation_frames:
                raise self._fail(ENHANCE_YOUR_CALM, f"more than {self.max_continuation_frames} CONTINUATION frames")
            if self._block_size + length > self.max_header_block_size:
                raise self._fail(
                    ENHANCE_YOUR_CALM, f"header block larger than {self.max_header_block_size} octets"
                )
            return 0
        if self._settings_first and (frame_type != 0x4 or flags & 0x1):  # SETTINGS, ACK
            raise self._fail(PROTOCOL_ERROR, f"{type_name(frame_type)} frame before the client's SETTINGS")
        if frame_type == 0x0:  # DATA
            if stream_id == 0:
                raise self._fail(PROTOCOL_ERROR, "DATA frame on stream 0")
            if flags & 0x8 and length < 1:  # PADDED
                raise self._fail(FRAME_SIZE_ERROR, "padded DATA frame too short for its pad length")
        elif frame_type == 0x1:  # HEADERS
            if stream_id == 0:
                raise self._fail(PROTOCOL_ERROR, "HEADERS frame on stream 0")
            if length < (1 if flags & 0x8 else 0) + (5 if flags & 0x20 else 0):  # PADDED, PRIORITY
                raise self._fail(FRAME_SIZE_ERROR, "HEADERS frame too short for its pad length and priority")
        elif frame_type == 0x2:  # PRIORITY (a length other than 5 is a stream error: §6.3)
            if stream_id == 0:
                raise self._fail(PROTOCOL_ERROR, "PRIORITY frame on stream 0")
        elif frame_type == 0x3:  # RST_STREAM
            if stream_id == 0:
                raise self._fail(PROTOCOL_ERROR, "RST_STREAM frame on stream 0")
            if length != 4:
                raise self._fail(FRAME_SIZE_ERROR, f"RST_STREAM frame of {length} octets (not 4)")
        elif frame_type == 0x4:  # SETTINGS
            if stream_id != 0:
                raise self._fail(PROTOCOL_ERROR, f"SETTINGS frame on stream {stream_id}")
            if flags & 0x1 and length:  # ACK
                raise self._fail(FRAME_SIZE_ERROR, "SETTINGS acknowledgement with a payload")
            if length % 6:
                raise self._fail(FRAME_SIZE_ERROR, f"SETTINGS frame of {length} octets (not a multiple of 6)")
        elif frame_type == 0x5:  # PUSH_PROMISE
            raise self._fail(PROTOCOL_ERROR, "PUSH_PROMISE frame from a client")
        elif frame_type == 0x6:  # PING
            if stream_id != 0:
                raise self._fail(PROTOCOL_ERROR, f"PING frame on stream {stream_id}")
            if length != 8:
                raise self._fail(FRAME_SIZE_ERROR, f"PING frame of {length} octets (not 8)")
        elif frame_type == 0x7:  # GOAWAY
            if stream_id != 0:
                raise self._fail(PROTOCOL_ERROR, f"GOAWAY frame on stream {stream_id}")
            if length < 8:
                raise self._fail(FRAME_SIZE_ERROR, f"GOAWAY frame of {length} octets (less than 8)")
        elif frame_type == 0x8:  # WINDOW_UPDATE
            if length != 4:
                raise self._fail(FRAME_SIZE_ERROR, f"WINDOW_UPDATE frame of {length} octets (not 4)")
        elif frame_type == 0x9:  # CONTINUATION
            raise self._fail(PROTOCOL_ERROR, f"CONTINUATION frame on stream {stream_id} without a header block")
        return 0

    def _frame(self, buf, start, length, frame_type, flags, stream_id):
        """The frame whose payload is ``buf[start:start + length]`` (its header passed the checks), or
        None: a frame of unknown type, a header block not complete yet."""
        end = start + length
        if frame_type <= 0x1:  # DATA, HEADERS
            if flags & 0x8:  # PADDED
                pad = buf[start]
                start += 1
                if pad > end - start - (5 if frame_type == 0x1 and flags & 0x20 else 0):
                    raise self._fail(
                        PROTOCOL_ERROR, f"{type_name(frame_type)} frame padding longer than its payload"
                    )
                end -= pad
            if frame_type == 0x0:
                return _new_frame(0x0, flags, stream_id, length, _octets(buf, start, end))
            depends_on = 0
            weight = 16
            exclusive = False
            if flags & 0x20:  # PRIORITY
                depends_on = _u32(buf, start)
                exclusive = depends_on > 0x7FFFFFFF
                depends_on &= 0x7FFFFFFF
                weight = buf[start + 4] + 1
                start += 5
            if end - start > self.max_header_block_size:
                raise self._fail(ENHANCE_YOUR_CALM, f"header block larger than {self.max_header_block_size} octets")
            frame = _new_frame(0x1, flags, stream_id, length, _octets(buf, start, end))
            frame.depends_on = depends_on
            frame.weight = weight
            frame.exclusive = exclusive
            if depends_on == stream_id:
                frame.error = H2StreamError(stream_id, PROTOCOL_ERROR, "stream depends on itself")
            if flags & 0x4:  # END_HEADERS
                return frame
            self._block_frame = frame
            self._block_parts = [frame.payload]
            self._block_stream = stream_id
            self._block_size = end - start
            self._continuations = 0
            return None
        if frame_type == 0x9:  # CONTINUATION (its stream and the bounds were checked)
            self._block_parts.append(buf[start:end])
            self._block_size += length
            self._continuations += 1
            if not flags & 0x4:  # END_HEADERS
                return None
            frame = self._block_frame
            frame.payload = b"".join(self._block_parts)
            frame.flags |= 0x4
            self._block_frame = None
            self._block_parts = []
            self._block_stream = 0
            return frame
        if frame_type == 0x8:  # WINDOW_UPDATE
            increment = _u32(buf, start) & 0x7FFFFFFF
            frame = _new_frame(0x8, flags, stream_id, length, b"")
            frame.increment = increment
            if increment == 0:
                if stream_id == 0:
                    raise self._fail(PROTOCOL_ERROR, "WINDOW_UPDATE with an increment of 0 on the connection")
                frame.error = H2StreamError(stream_id, PROTOCOL_ERROR, "WINDOW_UPDATE with an increment of 0")
            return frame
        if frame_type == 0x4:  # SETTINGS
            frame = _new_frame(0x4, flags, stream_id, length, b"")
            self._settings_first = False
            if not flags & 0x1:  # ACK
                frame.settings = self._settings(buf, start, end)
            return frame
        if frame_type == 0x3:  # RST_STREAM
            frame = _new_frame(0x3, flags, stream_id, length, b"")
            frame.error_code = _u32(buf, start)
            return frame
        if frame_type == 0x6:  # PING
            return _new_frame(0x6, flags, stream_id, length, buf[start:end])
        if frame_type == 0x7:  # GOAWAY
            frame = _new_frame(0x7, flags, stream_id, length, buf[start + 8 : end])
            frame.last_stream_id = _u32(buf, start) & 0x7FFFFFFF
            frame.error_code = _u32(buf, start + 4)
            return frame
        if frame_type == 0x2:  # PRIORITY
            frame = _new_frame(0x2, flags, stream_id, length, b"")
            if length != 5:
                frame.error = H2StreamError(stream_id, FRAME_SIZE_ERROR, f"PRIORITY frame of {length} octets (not 5)")
                return frame
            depends_on = _u32(buf, start)
            frame.exclusive = depends_on > 0x7FFFFFFF
            frame.depends_on = depends_on & 0x7FFFFFFF
            frame.weight = buf[start + 4] + 1
            if frame.depends_on == stream_id:
                frame.error = H2StreamError(stream_id, PROTOCOL_ERROR, "stream depends on itself")
            return frame
        return None  # an unknown type: ignored (RFC 9113 §4.1)

    def _settings(self, buf, start, end):
        """The known parameters of a SETTINGS payload, in order, their values checked (§6.5.2)."""
        settings = []
        while start < end:
            identifier = (buf[start] << 8) | buf[start + 1]
            value = _u32(buf, start + 2)
            start += 6
            if identifier == 0x4:  # INITIAL_WINDOW_SIZE
                if value > 0x7FFFFFFF:
                    raise self._fail(FLOW_CONTROL_ERROR, f"SETTINGS_INITIAL_WINDOW_SIZE {value} exceeds 2**31 - 1")
            elif identifier == 0x5:  # MAX_FRAME_SIZE
                if value < 16384 or value > 0xFFFFFF:
                    raise self._fail(PROTOCOL_ERROR, f"SETTINGS_MAX_FRAME_SIZE {value} outside [16384, 2**24 - 1]")
            elif identifier == 0x2 or identifier == 0x8 or identifier == 0x9:  # ENABLE_PUSH, CONNECT, PRIORITIES
                if value > 1:
                    raise self._fail(PROTOCOL_ERROR, f"SETTINGS parameter 0x{identifier:x} set to {value} (not 0 or 1)")
            elif identifier == 0 or identifier == 0x7 or identifier > 0x9:
                continue  # unknown: ignored
            settings.append((identifier, value))
        return settings


# ---------------------------------------------------------------------------------------------------
# Writers: each returns the exact bytes of its frame(s).


if not cython.compiled:  # the compiled build writes the octets in place (frames.pxd)

    def _header(length, frame_type, flags, stream_id):
        return _pack_header(length >> 8, length & 0xFF, frame_type, flags, stream_id)

    def _frame_bytes(length, frame_type, flags, stream_id, payload):
        """One frame: its header, then ``payload`` (``length`` octets)."""
        return _pack_header(length >> 8, length & 0xFF, frame_type, flags, stream_id) + payload

    def _frame_of_parts(frame_type, flags, stream_id, parts, max_frame_size):
        """One frame whose payload is ``parts`` joined, or None when that is over ``max_frame_size``."""
        payload = b"".join(parts)
        length = len(payload)
        if length > max_frame_size:
            return None
        return _pack_header(length >> 8, length & 0xFF, frame_type, flags, stream_id) + payload


#: A SETTINGS frame with the ACK flag.
SETTINGS_ACK_FRAME: bytes = _header(0, 0x4, 0x1, 0)


def settings_frame(settings) -> bytes:
    """A SETTINGS frame of ``settings``: ``(identifier, value)`` pairs (or a dict)."""
    if isinstance(settings, dict):
        settings = list(settings.items())
    parts = [_header(6 * len(settings), 0x4, 0, 0)]
    for identifier, value in settings:
        parts.append(_pack_setting(identifier, value))
    return b"".join(parts)


def ping_frame(opaque: bytes, ack: bool = False) -> bytes:
    """A PING frame (with ACK: the answer to a PING, carrying its 8 octets)."""
    if len(opaque) != 8:
        raise ValueError("PING carries exactly 8 octets")
    return _header(8, 0x6, 0x1 if ack else 0, 0) + opaque


def goaway_frame(last_stream_id: int, error_code: int, debug: bytes = b"") -> bytes:
    """A GOAWAY frame: the last stream processed, the error code, optional debug data."""
    return _header(8 + len(debug), 0x7, 0, 0) + _pack_u32_u32(last_stream_id, error_code) + debug


def rst_stream_frame(stream_id: int, error_code: int) -> bytes:
    """A RST_STREAM frame."""
    return _header(4, 0x3, 0, stream_id) + _pack_u32(error_code)


def window_update_frame(stream_id: int, increment: int) -> bytes:
    """A WINDOW_UPDATE frame (stream 0: the connection's window)."""
    if increment < 1 or increment > 0x7FFFFFFF:
        raise ValueError(f"window increment {increment} outside [1, 2**31 - 1]")
    return _header(4, 0x8, 0, stream_id) + _pack_u32(increment)


def headers_frames(
    stream_id: int, block, end_stream: bool = False, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
) -> bytes:
    """A HEADERS frame carrying ``block`` (bytes, or the list of its parts as ``Encoder.encode_parts``
    returns), followed by CONTINUATION frames when ``block`` is larger than ``max_frame_size`` (the
    peer's SETTINGS_MAX_FRAME_SIZE). END_STREAM goes on the HEADERS frame, END_HEADERS on the last frame."""
    flags = 0x1 if end_stream else 0
    if type(block) is list:
        frame = _frame_of_parts(0x1, flags | 0x4, stream_id, block, max_frame_size)
        if frame is not None:
            return frame
        block = b"".join(block)  # CONTINUATION frames follow
    size = len(block)
    if size <= max_frame_size:
        return _frame_bytes(size, 0x1, flags | 0x4, stream_id, block)
    view = memoryview(block)
    parts = [_header(max_frame_size, 0x1, flags, stream_id), view[:max_frame_size]]
    pos = max_frame_size
    while pos < size:
        chunk = min(size - pos, max_frame_size)
        parts.append(_header(chunk, 0x9, 0x4 if pos + chunk == size else 0, stream_id))
        parts.append(view[pos : pos + chunk])
        pos += chunk
    return b"".join(parts)


def data_frames(
    stream_id: int, data: bytes, end_stream: bool = False, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
) -> bytes:
    """DATA frames carrying ``data``, none larger than ``max_frame_size``; END_STREAM on the last.
    Flow control is the caller's: ``data`` must fit the windows."""
    size = len(data)
    if size <= max_frame_size:
        return _frame_bytes(size, 0x0, 0x1 if end_stream else 0, stream_id, data)
    view = memoryview(data)
    parts = []
    pos = 0
    while pos < size:
        chunk = min(size - pos, max_frame_size)
        last = pos + chunk == size
        parts.append(_header(chunk, 0x0, 0x1 if last and end_stream else 0, stream_id))
        parts.append(view[pos : pos + chunk])
        pos += chunk
    return b"".join(parts)
