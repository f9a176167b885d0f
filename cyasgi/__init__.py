"""cyasgi: an ASGI server for Python, a drop-in for uvicorn with a Cython-compiled hot path."""

from __future__ import annotations

__version__ = "0.1.0"

from typing import Any

from cyasgi.config import Config
from cyasgi.main import main, run
from cyasgi.server import Server


async def serve(app: Any, **kwargs: Any) -> None:
    """Serve ``app`` inside an event loop that is already running: ``await cyasgi.serve(app, port=8000)``.

    Takes ``Config``'s keyword arguments; returns when the server has shut down (SIGINT/SIGTERM
    in the main thread, or ``should_exit`` set on the server).
    """
    server = Server(Config(app, **kwargs))
    await server.serve()


__all__ = ["Config", "Server", "__version__", "main", "run", "serve"]
