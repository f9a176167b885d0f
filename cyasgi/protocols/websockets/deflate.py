"""permessage-deflate (RFC 7692) on the common paths, without the engine's frame machinery.

The ``websockets`` engine negotiates the extension and still decodes every frame the reader does not
take (control frames, fragmented or oversized compressed messages, errors). What the reader does take,
the whole compressed message, is inflated here, and every outgoing data message is compressed here,
with the parameters the engine's extension negotiated:

* ``MessageInflater``: the peer's messages. With context takeover its decompressor is the engine's own
  (one LZ77 window for every message, whichever side inflates it); without, a fresh one per message.
* ``MessageDeflater``: our messages, as the engine would write them (the same settings, the same bytes).
"""

from __future__ import annotations

import zlib
from typing import Any

from cyasgi.protocols.websockets.frames import data_frame_header

__all__ = ["MessageDeflater", "MessageInflater", "RSV1", "deflate_pair"]

#: The frame header bit that marks a compressed message (RFC 7692, 6).
RSV1 = 0x40
#: An empty stored block: the end of every sync-flushed message, which the sender drops and the
#: receiver appends back before inflating (RFC 7692, 7.2.1 and 7.2.2).
EMPTY_STORED_BLOCK = b"\x00\x00\xff\xff"
TAIL_SIZE = len(EMPTY_STORED_BLOCK)


class MessageInflater:
    """Inflates whole compressed messages from the peer, never past ``max_size`` bytes."""

    def __init__(self, window_bits: int, shared_decompressor: Any = None) -> None:
        self._window_bits = window_bits
        # Context takeover: the engine's decompressor, shared so that a message the engine inflates
        # (a fragmented one) and one inflated here continue the same stream. None: one per message.
        self._shared = shared_decompressor

    def inflate(self, payload: bytes, max_size: int) -> bytes | None:
        """The message, or None when it inflates past ``max_size`` (inflating stops one byte past it,
        so a deflate bomb never expands in memory). Raises ``zlib.error`` for corrupt data."""
        decompressor = self._shared
        if decompressor is None:
            decompressor = zlib.decompressobj(wbits=-self._window_bits)
        message = decompressor.decompress(payload + EMPTY_STORED_BLOCK, max_size + 1)
        if len(message) > max_size:
            return None
        return message


class MessageDeflater:
    """Compresses our messages into whole frames (FIN and RSV1 set)."""

    def __init__(self, window_bits: int, no_context_takeover: bool, settings: dict[str, Any]) -> None:
        self._window_bits = window_bits
        self._settings = settings
        self._no_context_takeover = no_context_takeover
        self._compressor: Any = None if no_context_takeover else self._new_compressor()

    def _new_compressor(self) -> Any:
        return zlib.compressobj(wbits=-self._window_bits, **self._settings)

    def frame(self, first_byte: int, data: bytes) -> bytes:
        """One unmasked frame of ``data`` compressed; ``first_byte`` is FIN and the opcode."""
        compressor = self._new_compressor() if self._no_context_takeover else self._compressor
        body = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        size = len(body) - TAIL_SIZE  # the sync flush's empty stored block is not sent
        return b"".join((data_frame_header(first_byte | RSV1, size), memoryview(body)[:size]))


def deflate_pair(extension: Any) -> tuple[MessageInflater, MessageDeflater] | None:
    """The inflater and deflater of the engine's negotiated permessage-deflate ``extension``; None when
    it does not say its parameters as expected (everything then stays with the engine)."""
    try:
        remote_bits = extension.remote_max_window_bits
        remote_no_takeover = extension.remote_no_context_takeover
        local_bits = extension.local_max_window_bits
        local_no_takeover = extension.local_no_context_takeover
        settings = dict(extension.compress_settings or {})
    except AttributeError:
        return None
    shared = None
    if not remote_no_takeover:
        shared = getattr(extension, "decoder", None)
        if shared is None:
            return None
    return MessageInflater(remote_bits, shared), MessageDeflater(local_bits, local_no_takeover, settings)
