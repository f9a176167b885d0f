"""``--ws websockets``: kept as a name so uvicorn command lines keep working.

uvicorn's class of this name is built on the ``websockets`` library's legacy asyncio API, which the
library has deprecated (and which uvicorn itself warns about on import). cyasgi serves the same
option with the sans-I/O engine of ``--ws websockets-sansio``: identical behaviour, no deprecation
warning, and ``--ws-max-queue`` applies as it does to every implementation here.
"""

from __future__ import annotations

from cyasgi.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["WebSocketProtocol"]


class WebSocketProtocol(WebSocketsSansIOProtocol):
    engine_name = "websockets"
