"""RFC 6455 framing for the common case, shared by every engine.

The base protocol decodes complete, final, masked text and binary frames without reserved bits
itself, and encodes outgoing data frames itself when no extension was negotiated: that is nearly
every frame of a chatty connection, and the engines' general machinery (generators, event objects,
extension hooks) would cost several times more per message. Every other frame (control frames,
fragments, compressed or malformed frames) goes to the engine, whole and in order.
"""

from __future__ import annotations

import struct

__all__ = ["OP_BINARY", "OP_CLOSE", "OP_CONT", "OP_TEXT", "apply_mask", "data_frame_header"]

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8  # the first control opcode

try:  # the websockets package ships a C implementation
    from websockets.speedups import apply_mask
except ImportError:  # wsproto-only installs, PyPy

    def apply_mask(data: bytes, mask: bytes) -> bytes:  # type: ignore[misc]
        """XOR ``data`` with the 4-byte ``mask`` repeated (one big-integer operation)."""
        size = len(data)
        if not size:
            return b""
        key = (mask * (size // 4 + 1))[:size]
        return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


_pack_short = struct.Struct("!BBH").pack
_pack_long = struct.Struct("!BBQ").pack


def data_frame_header(first_byte: int, size: int) -> bytes:
    """The header of an unmasked (server-to-client) frame with a ``size``-byte payload."""
    if size < 126:
        return bytes((first_byte, size))
    if size < 65536:
        return _pack_short(first_byte, 126, size)
    return _pack_long(first_byte, 127, size)
