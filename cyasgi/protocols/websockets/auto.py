"""``--ws auto``: the ``websockets`` sans-I/O protocol when that library is installed, else wsproto,
else None (the HTTP protocol then answers upgrade requests as plain HTTP and logs why)."""

from __future__ import annotations

from typing import Any

__all__ = ["AutoWebSocketsProtocol"]

AutoWebSocketsProtocol: type[Any] | None

try:
    from cyasgi.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # websockets missing, or too old for its sans-I/O API
    try:
        from cyasgi.protocols.websockets.wsproto_impl import WSProtocol
    except ImportError:
        AutoWebSocketsProtocol = None
    else:
        AutoWebSocketsProtocol = WSProtocol
else:
    AutoWebSocketsProtocol = WebSocketsSansIOProtocol
