"""WebSocket protocols: one ASGI/I-O layer (``base``) over interchangeable frame engines.

``--ws`` picks the engine: ``websockets-sansio`` (the ``websockets`` library's sans-I/O
``ServerProtocol``), ``wsproto``, ``websockets`` (the same engine as ``websockets-sansio``, kept as a
name for uvicorn compatibility) or ``auto`` (the first one installed). The HTTP/1.1 protocol hands an
upgrade request over to the chosen class; see ``base.WebSocketProtocolBase``.
"""
