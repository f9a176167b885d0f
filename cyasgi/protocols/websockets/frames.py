"""RFC 6455 framing for the common case, shared by every engine.

The base protocol decodes complete, final, masked text and binary frames without reserved bits
itself (``reader.FrameReader``), and encodes outgoing data frames itself when no extension was
negotiated: that is nearly every frame of a chatty connection, and the engines' general machinery
(generators, event objects, extension hooks) would cost several times more per message. Every
other frame (control frames, fragments, compressed or malformed frames) goes to the engine, whole
and in order.

The names below are plain module constants, not enums: the frame loop reads them per frame.
"""

from __future__ import annotations

import struct

__all__ = [
    "BASE_HEADER_SIZE",
    "CLOSE_ABNORMAL",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_INVALID_DATA",
    "CLOSE_NORMAL",
    "CLOSE_NO_STATUS",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_SERVICE_RESTART",
    "CLOSE_TOO_BIG",
    "FIN",
    "FIN_BINARY",
    "FIN_TEXT",
    "LENGTH_16",
    "LENGTH_16_HEADER_SIZE",
    "LENGTH_64",
    "LENGTH_64_HEADER_SIZE",
    "LENGTH_BITS",
    "MASK_BIT",
    "MASK_SIZE",
    "MAX_CLOSE_REASON",
    "OPCODE_BITS",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_TEXT",
    "PRIVATE_CLOSE_CODES",
    "RSV_BITS",
    "SENDABLE_CLOSE_CODES",
    "apply_mask",
    "data_frame_header",
]

# Opcodes (RFC 6455, 5.2).
OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8  # the first control opcode

# The first header byte: FIN, RSV1-3, opcode.
FIN = 0x80
RSV_BITS = 0x70
OPCODE_BITS = 0x0F
FIN_TEXT = FIN | OP_TEXT  # the first byte of a whole, uncompressed text message
FIN_BINARY = FIN | OP_BINARY

# The second header byte: MASK, then a 7-bit payload length or one of two markers for a longer one.
MASK_BIT = 0x80
LENGTH_BITS = 0x7F
LENGTH_16 = 126  # a 16-bit length follows
LENGTH_64 = 127  # a 64-bit length follows
BASE_HEADER_SIZE = 2
LENGTH_16_HEADER_SIZE = BASE_HEADER_SIZE + 2
LENGTH_64_HEADER_SIZE = BASE_HEADER_SIZE + 8
MASK_SIZE = 4  # the masking key after the length, in every client frame

# Close codes this package sends or reports (RFC 6455, 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_NO_STATUS = 1005  # reported to the app for a close frame without a code, never sent
CLOSE_ABNORMAL = 1006  # reported to the app only, never sent: the connection ended without a close
CLOSE_INVALID_DATA = 1007  # a text message that is not UTF-8
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012
#: Codes an app may close with: the protocol's own, from 1000 (1001-1014 are defined or reserved
#: there, 1015 and above unassigned), and the registered and private ones.
SENDABLE_CLOSE_CODES = range(CLOSE_NORMAL, 1015)
PRIVATE_CLOSE_CODES = range(3000, 5000)
#: A close frame's reason, in UTF-8 bytes: a control frame's 125-byte payload less the 2-byte code.
MAX_CLOSE_REASON = 123

_LENGTH_16_LIMIT = 1 << 16  # payloads from this size need the 64-bit length

try:  # the websockets package ships a C implementation
    from websockets.speedups import apply_mask
except ImportError:  # wsproto-only installs, PyPy

    def apply_mask(data: bytes, mask: bytes) -> bytes:  # type: ignore[misc]
        """XOR ``data`` with the 4-byte ``mask`` repeated (one big-integer operation)."""
        size = len(data)
        if not size:
            return b""
        key = (mask * (size // MASK_SIZE + 1))[:size]
        return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


_pack_short = struct.Struct("!BBH").pack
_pack_long = struct.Struct("!BBQ").pack


def data_frame_header(first_byte: int, size: int) -> bytes:
    """The header of an unmasked (server-to-client) frame with a ``size``-byte payload."""
    if size < LENGTH_16:
        return bytes((first_byte, size))
    if size < _LENGTH_16_LIMIT:
        return _pack_short(first_byte, LENGTH_16, size)
    return _pack_long(first_byte, LENGTH_64, size)
