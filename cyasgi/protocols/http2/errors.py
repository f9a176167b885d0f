"""HTTP/2 exceptions and error codes, defined once in plain Python so both twins raise the very same classes."""

from __future__ import annotations

#: RFC 9113 §7 error codes the HTTP/2 layer answers a decoding failure with.
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB


class HPACKError(Exception):
    """A header block could not be decoded (RFC 7541): a connection error of type COMPRESSION_ERROR.

    The decoder's dynamic table is no longer in step with the peer's encoder after this, so the
    connection cannot go on.
    """

    error_code = COMPRESSION_ERROR


class HeaderListTooLarge(HPACKError):
    """The decoded header list is larger than the decoder's ``max_header_list_size``
    (sum of len(name) + len(value) + 32 per field, RFC 9113 §6.5.2).

    Raised only after the whole block was decoded, so the dynamic table *is* still in step: the
    layer may refuse the one stream (431 or RST_STREAM) and keep the connection, or send
    GOAWAY(ENHANCE_YOUR_CALM). The fields past the limit were not kept (an HPACK bomb costs no memory).
    """

    error_code = ENHANCE_YOUR_CALM


class HPACKBomb(HPACKError):
    """The decoded header list passed ``HPACK_BOMB_FACTOR`` times the decoder's ``max_header_list_size``:
    a small block expanding into a huge list is an attack, not an oversized request. Raised while
    decoding (the rest of the block is not decoded): a connection error ENHANCE_YOUR_CALM."""

    error_code = ENHANCE_YOUR_CALM


#: How far past the header-list limit a block may decode before it counts as an HPACK bomb (below it,
#: the request is refused with 431 and the connection lives).
HPACK_BOMB_FACTOR = 16


# RFC 9113 §7: every error code, for RST_STREAM and GOAWAY.
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
SETTINGS_TIMEOUT = 0x4
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
CONNECT_ERROR = 0xA
INADEQUATE_SECURITY = 0xC
HTTP_1_1_REQUIRED = 0xD


class H2ConnectionError(Exception):
    """A connection error (RFC 9113 §5.4.1): send GOAWAY with ``error_code`` (and ``message`` as its
    debug data, if wanted), then close the TCP connection. Nothing read after it is trusted."""

    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(error_code, message)
        self.error_code = error_code
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} (error code 0x{self.error_code:x})"


class H2StreamError(Exception):
    """A stream error (RFC 9113 §5.4.2): send RST_STREAM(``stream_id``, ``error_code``); the
    connection goes on. The frame reader does not raise it: it sets it on the frame (``frame.error``),
    which is still delivered (a HEADERS frame's block must still be decoded to keep HPACK in step)."""

    def __init__(self, stream_id: int, error_code: int, message: str) -> None:
        super().__init__(stream_id, error_code, message)
        self.stream_id = stream_id
        self.error_code = error_code
        self.message = message

    def __str__(self) -> str:
        return f"stream {self.stream_id}: {self.message} (error code 0x{self.error_code:x})"


class StreamClosedError(Exception):
    """The application tried to send on a stream that is not open for sending (closed, reset, ended
    by us, or the connection is closed). Not a protocol error: nothing is sent."""

    def __init__(self, stream_id: int, message: str) -> None:
        super().__init__(stream_id, message)
        self.stream_id = stream_id
        self.message = message

    def __str__(self) -> str:
        return self.message
