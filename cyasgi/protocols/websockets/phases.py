"""The phases of a WebSocket connection (``WebSocketProtocolBase._phase``), in order; the ``base``
module's docstring says what each one means."""

from __future__ import annotations

__all__ = ["CLOSED", "CLOSING", "CONNECTING", "HANDSHAKE", "OPEN", "RESPONSE"]

HANDSHAKE, CONNECTING, OPEN, CLOSING, RESPONSE, CLOSED = range(6)
