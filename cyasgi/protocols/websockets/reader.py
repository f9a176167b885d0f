"""The per-message path of an open connection: ``FrameReader``, a mixin of
``base.WebSocketProtocolBase``, with the app's ``receive()`` and ``send()`` of the common messages.

It splits the bytes read into frames, decodes the common ones itself (whole or fragmented masked
text and binary frames, uncompressed, within ``max_size``: unmasked, assembled, checked as UTF-8;
and, when the engine set up ``_inflater``, whole compressed messages: unmasked and inflated by
``deflate.MessageInflater``), queues the messages for the app (``_message``) and hands every other
frame to the engine, whole and in order, or as a run of frames in one call. The app takes them with
``receive()``; its ``send()`` of a text or binary message on an open connection is framed and written
here too. Every other message
(the handshake's, close, the denial response), the waits for the write buffer and the flow control
are the protocol's (base.py), which these call back.

One source, two builds: CPython runs this file compiled as ``cyasgi._speedups.wsreader`` (a link to
it) with ``cyasgi/_speedups/wsreader.pxd`` (a C class with typed fields, the frame loop reading the
headers through a C pointer); the pure build runs it as Python. ``twin.py`` picks one.
"""

from __future__ import annotations

import codecs
import zlib
from typing import TYPE_CHECKING, Any

try:
    import cython
except ImportError:  # no Cython where this runs: the pure build
    from cyasgi import _cython_shim as cython

if not cython.compiled:  # the compiled build takes them from the C kernel (wsreader.pxd)
    from cyasgi.protocols.http.kernel import data_frame, decode_utf8, text_frame, unmask

from cyasgi.protocols.websockets.deflate import RSV1
from cyasgi.protocols.websockets.frames import (
    BASE_HEADER_SIZE,
    CLOSE_INVALID_DATA,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_BIG,
    FIN,
    FIN_BINARY,
    FIN_TEXT,
    LENGTH_16,
    LENGTH_16_HEADER_SIZE,
    LENGTH_64_HEADER_SIZE,
    LENGTH_BITS,
    MASK_BIT,
    MASK_SIZE,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_TEXT,
    OPCODE_BITS,
    RSV_BITS,
    data_frame_header,
)
from cyasgi.protocols.websockets.phases import CLOSING, CONNECTING, HANDSHAKE, OPEN

__all__ = ["COMPILED", "COPY_LIMIT", "FrameReader"]

#: True in the compiled build (cyasgi._speedups.wsreader), False where this file runs as Python.
COMPILED = cython.compiled

#: A 64-bit length is read up to this (far above any ``max_size``): it then fits a C integer, and a
#: frame that long goes to the engine, which refuses it, in both builds alike.
LENGTH_64_CAP = 1 << 62

#: Payload size from which an outgoing frame is written as header and payload (``writelines``)
#: instead of one joined copy.
COPY_LIMIT = 16384

_RECEIVE = "websocket.receive"
_SEND = "websocket.send"
_utf8_decoder = codecs.getincrementaldecoder("utf-8")


class FrameReader:
    """Frame splitting and decoding, over the state fields it owns (``_reset_reader``).

    ``data_received`` gives ``_frames_received(data)`` every read while the connection is open or
    closing (the handshake's reads go back to the protocol: ``_head_received``, ``_hold``), and the
    protocol calls ``_held_frames_resumed()`` once the app has caught up with a full queue. The reader
    queues each decoded message itself (``_message``: the fields of the receive queue live here,
    the protocol sets them up), and calls back: ``_update_reading`` once the queue is full,
    ``_engine_feed`` with the frames it does not decode,
    ``_engine_fail`` for a frame it refuses, ``_engine_drop_message`` when a close frame interrupts
    a message the engine assembles. Any callback may end the connection (``_phase`` leaves
    open/closing): the reader then stops at once. Engines deliver the text messages they decode
    themselves through ``_text_received`` too, so every text message is checked the same way.

    ``receive()`` pops the queue (``_unpause_queue`` once it has drained enough), ``send()`` writes
    a ``websocket.send`` of an open connection (``_drain`` first while the transport is paused,
    ``_engine_text``/``_engine_binary`` when an extension was negotiated) and hands every other
    message to ``_send_other``.
    """

    # Set by the protocol: the limits, its phase, the receive queue's and the writing's state
    # (compiled: C fields).
    max_size: int
    max_queue: int
    _resume_level: int
    _phase: int
    _paused_for_queue: bool
    _write_paused: bool
    _paused_for_writes: bool
    _plain_send: bool
    _lost: bool
    _metrics: Any
    _queue: Any
    _waiter: Any
    _disconnect: Any
    loop: Any
    transport: Any

    def _reset_reader(self) -> None:
        self._buffer = bytearray()  # the start of an incomplete frame
        self._need = 0  # bytes ``_buffer`` must reach before parsing is worth retrying
        self._engine_rest = 0  # bytes of a frame handed to the engine unfinished, still to come
        self._fragmented = False  # a fragmented message the engine assembles is in progress
        # A fragmented message assembled here (uncompressed): its payload so far, and for text the
        # decoder that checks each fragment as it arrives (invalid UTF-8 fails at once, 1007).
        self._assembly: bytearray | None = None
        self._assembly_utf8: Any = None
        # permessage-deflate's whole compressed messages are inflated here when the engine set this
        # (deflate.MessageInflater); None: every compressed frame goes to the engine.
        self._inflater: Any = None

    if TYPE_CHECKING:  # the callbacks, which the protocol implements

        def _update_reading(self) -> None: ...

        def _check_write_limit(self) -> None: ...

        def _head_received(self, data: bytes) -> None: ...

        def _hold(self, data: bytes) -> None: ...

        def _engine_feed(self, data: bytes | bytearray) -> None: ...

        def _engine_fail(self, code: int, reason: str) -> None: ...

        def _engine_drop_message(self) -> None: ...

        def _engine_text(self, text: str) -> bytes: ...

        def _engine_binary(self, data: bytes) -> bytes: ...

        def _unpause_queue(self) -> None: ...

        async def _drain(self) -> None: ...

        def _send_other(self, message: dict[str, Any]) -> None: ...

    # The app's side -------------------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        """ASGI ``receive``: the next queued message, or the disconnect once nothing more comes."""
        queue = self._queue
        while not queue:
            if self._disconnect is not None:
                return dict(self._disconnect)
            waiter = self._waiter = self.loop.create_future()
            await waiter  # (a cancelled waiter is left behind: it is done, and nothing wakes it)
        message = queue.popleft()
        if self._paused_for_queue and len(queue) <= self._resume_level:
            self._unpause_queue()
        return message

    async def send(self, message: dict[str, Any]) -> None:
        """ASGI ``send``: a text or binary message of an open connection is written here."""
        if self._write_paused and not self._lost:
            await self._drain()
        if message["type"] != _SEND or self._phase != OPEN:
            self._send_other(message)
            return
        if self._metrics is not None:
            self._metrics.websocket_message_out()
        text = message.get("text")
        if text is not None:
            if self._plain_send:
                self._write_text(text)
            else:
                self.transport.write(self._engine_text(text))
            return
        data = message.get("bytes")
        if data is None:
            raise RuntimeError("A 'websocket.send' message needs 'bytes' or 'text'.")
        if self._plain_send:
            self._write_data(FIN_BINARY, data)
        else:
            self.transport.write(self._engine_binary(data))

    def _write_data(self, first_byte: int, payload: bytes) -> None:
        """One unmasked data frame (FIN set) without extensions."""
        if len(payload) < COPY_LIMIT:
            self.transport.write(data_frame(first_byte, payload))
        else:  # no copy of a large payload just to prepend a few bytes
            self.transport.writelines((data_frame_header(first_byte, len(payload)), payload))

    def _write_text(self, text: str) -> None:
        """One unmasked text frame (FIN set) without extensions."""
        if len(text) < COPY_LIMIT:
            self.transport.write(text_frame(FIN_TEXT, text))
        else:
            self._write_data(FIN_TEXT, text.encode("utf-8"))

    # Frames in --------------------------------------------------------------------------------------

    def _message(self, message: dict[str, Any]) -> None:
        """A complete message from the peer (from here, or from the engine): queued for the app."""
        if self._phase != OPEN:
            return  # after our close frame, data is discarded until the peer's close arrives
        if self._metrics is not None:
            self._metrics.websocket_message_in()
        queue = self._queue
        queue.append(message)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if len(queue) >= self.max_queue and not self._paused_for_queue:
            self._paused_for_queue = True
            self._update_reading()

    def data_received(self, data: bytes) -> None:
        """asyncio.Protocol's: every read, by phase (here so the common one stays in the compiled build)."""
        phase = self._phase
        if phase == OPEN or phase == CLOSING:
            self._frames_received(data)
            if self._write_paused and not self._paused_for_writes:
                self._check_write_limit()
        elif phase == HANDSHAKE:
            self._head_received(data)
        elif phase == CONNECTING:
            self._hold(data)
        # RESPONSE / CLOSED: the client has nothing more to say that we would read.

    def _held_frames_resumed(self) -> None:
        """Parse what a full queue held back (``_frames_received`` stopped in the middle of a read)."""
        if self._buffer and not self._need and (self._phase == OPEN or self._phase == CLOSING):
            data = self._buffer
            self._buffer = bytearray()
            self._frames_received(data)

    def _frames_received(self, data: bytes | bytearray) -> None:
        """A read: split into frames (after what was left of the previous read, once that is worth a
        try); the plain data frames are decoded here, the rest handed to the engine."""
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._need:
                return
            data = buffer  # parsed where it is: no copy of what may be one large frame
            self._buffer = bytearray()
        rest = self._engine_rest
        if rest:
            # The rest of a frame the engine was given unfinished: its payload is the engine's too
            # (never read as frame headers here).
            if len(data) <= rest:
                self._engine_rest = rest - len(data)
                self._engine_feed(data)
                return
            self._engine_rest = 0
            self._engine_feed(data[:rest])
            if self._phase != OPEN and self._phase != CLOSING:
                return
            data = data[rest:]
        if type(data) is not bytes and type(data) is not bytearray:
            data = bytes(data)  # another buffer (a memoryview...): the compiled build reads bytes only
        size = len(data)
        # Compiled: a C pointer to the bytes read (wsreader.pxd; ``data`` keeps them alive, and nothing
        # resizes them while this runs: a bytearray here is no longer ``_buffer``); here the object.
        view = data
        pos = 0
        engine_from = -1  # start of a run of frames for the engine
        max_size = self.max_size
        assembly = self._assembly  # changes in this loop only through _fragment_received
        self._need = 0
        while True:
            start = pos + BASE_HEADER_SIZE
            if start > size:
                break
            first = view[pos]
            second = view[pos + 1]
            length = second & LENGTH_BITS
            if length >= LENGTH_16:  # one of the two markers of a longer length
                if length == LENGTH_16:
                    if size - pos < LENGTH_16_HEADER_SIZE:
                        break
                    length = (view[start] << 8) | view[start + 1]
                    start = pos + LENGTH_16_HEADER_SIZE
                else:  # LENGTH_64
                    if size - pos < LENGTH_64_HEADER_SIZE:
                        break
                    length = min(int.from_bytes(data[start : pos + LENGTH_64_HEADER_SIZE], "big"), LENGTH_64_CAP)
                    start = pos + LENGTH_64_HEADER_SIZE
            masked = second & MASK_BIT
            if masked:
                start += MASK_SIZE
            end = start + length
            opcode = first & OPCODE_BITS
            if assembly is not None and opcode < OP_CLOSE:
                # Inside a message assembled here only a continuation may come (control frames go
                # to the engine, which knows of no message in progress); refused from the header.
                code = 0
                if opcode != OP_CONT:
                    code, reason = CLOSE_PROTOCOL_ERROR, "expected a continuation frame"
                elif masked and not first & RSV_BITS and len(assembly) + length > max_size:
                    code, reason = CLOSE_TOO_BIG, "message too big"
                if code:
                    if engine_from >= 0:
                        self._engine_feed(data[engine_from:pos])
                        if self._phase != OPEN and self._phase != CLOSING:
                            return
                    self._engine_fail(code, reason)
                    return
            if end > size:
                if length > max_size or not masked:
                    # The engine refuses it from the header alone (wsproto from its first bytes
                    # past the limit): no reason to wait for the payload, which follows it there.
                    self._engine_rest = end - size
                    self._engine_feed(data[pos if engine_from < 0 else engine_from :])
                    return
                self._need = end - pos
                break
            if (
                masked
                and not first & RSV_BITS
                and (
                    (
                        (opcode == OP_TEXT or opcode == OP_BINARY)
                        and length <= max_size
                        and not self._fragmented
                    )
                    or (opcode == OP_CONT and assembly is not None)
                )
            ):
                if engine_from >= 0:
                    self._engine_feed(data[engine_from:pos])
                    engine_from = -1
                    if self._phase != OPEN and self._phase != CLOSING:
                        return
                payload = unmask(data, start, end)
                if assembly is None and first & FIN:  # a whole message
                    if opcode == OP_TEXT:
                        if not self._text_received(payload):
                            return
                    else:
                        self._message({"type": _RECEIVE, "bytes": payload})
                else:
                    if not self._fragment_received(opcode, first & FIN, payload):
                        return
                    assembly = self._assembly
                if self._paused_for_queue:
                    # The queue is full: the rest of this read waits, unparsed, for the app.
                    pos = end
                    break
            elif (
                (first & (FIN | RSV_BITS)) == (FIN | RSV1)
                and masked
                and (opcode == OP_TEXT or opcode == OP_BINARY)
                and length <= max_size
                and self._inflater is not None
                and not self._fragmented
            ):
                # A whole compressed message (permessage-deflate), inflated here.
                if engine_from >= 0:
                    self._engine_feed(data[engine_from:pos])
                    engine_from = -1
                    if self._phase != OPEN and self._phase != CLOSING:
                        return
                taken = self._compressed_received(opcode, unmask(data, start, end))
                if taken < 0:
                    engine_from = pos  # data that does not inflate: the engine answers it
                elif not taken:
                    return
                elif self._paused_for_queue:
                    pos = end
                    break
            else:
                if opcode == OP_TEXT or opcode == OP_BINARY:
                    self._fragmented = not first & FIN
                elif opcode == OP_CONT and first & FIN:
                    self._fragmented = False
                elif opcode == OP_CLOSE and self._fragmented:
                    # A close frame may interrupt a fragmented message (RFC 6455, 5.4 and 5.5.1):
                    # the engine forgets the message, so the close is a clean one.
                    if engine_from >= 0:
                        self._engine_feed(data[engine_from:pos])
                        engine_from = -1
                        if self._phase != OPEN and self._phase != CLOSING:
                            return
                    self._fragmented = False
                    self._engine_drop_message()
                if engine_from < 0:
                    engine_from = pos
            pos = end
        if engine_from >= 0:
            self._engine_feed(data[engine_from:pos])
        if pos < size and (self._phase == OPEN or self._phase == CLOSING):
            self._buffer = bytearray(data[pos:])

    def _text_received(self, payload: bytes | bytearray) -> bool:
        """A complete text message; False when it is not UTF-8 (the connection then fails, 1007)."""
        try:
            # Compiled: the kernel's C decoder, without a method call (here the method is the fastest).
            text = decode_utf8(payload) if cython.compiled else payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._engine_fail(CLOSE_INVALID_DATA, f"invalid UTF-8 at position {exc.start}")
            return False
        self._message({"type": _RECEIVE, "text": text})
        return True

    def _compressed_received(self, opcode: int, payload: bytes) -> int:
        """A whole compressed message, unmasked: 1 once queued, 0 once the connection failed (too big
        inflated, 1009, or not UTF-8), -1 when it does not inflate (the engine then refuses it itself)."""
        try:
            message = self._inflater.inflate(payload, self.max_size)
        except zlib.error:
            return -1
        if message is None:
            self._engine_fail(CLOSE_TOO_BIG, "message too big")
            return 0
        if opcode == OP_TEXT:
            return 1 if self._text_received(message) else 0
        self._message({"type": _RECEIVE, "bytes": message})
        return 1

    def _fragment_received(self, opcode: int, fin: int, payload: bytes) -> bool:
        """A fragment of an uncompressed message, which is assembled here: in one bytearray, so its
        memory is its size whatever the fragmenting. False once the connection failed."""
        assembly = self._assembly
        decoder = self._assembly_utf8
        if assembly is None:  # the first fragment (never the last: that is a plain message)
            assembly = self._assembly = bytearray(payload)
            decoder = self._assembly_utf8 = _utf8_decoder() if opcode == OP_TEXT else None
        elif fin:
            self._drop_assembly()
            if decoder is not None:
                assembly += payload
                return self._text_received(assembly)  # all of it, an unfinished last character too
            # Joined straight into the message: the bytearray does not grow (and copy) first.
            self._message({"type": _RECEIVE, "bytes": b"".join((assembly, payload))})
            return True
        else:
            assembly += payload
        if decoder is not None:
            try:
                decoder.decode(payload)  # invalid UTF-8 fails at its fragment; the text is not kept
            except UnicodeDecodeError as exc:
                self._engine_fail(CLOSE_INVALID_DATA, f"invalid UTF-8 ({exc.reason})")
                return False
        return True

    def _drop_assembly(self) -> None:
        self._assembly = None
        self._assembly_utf8 = None
