"""The WebSocket frame reader's build: the compiled one when it is built and allowed, else the pure one
(each frames what it sends with its own kernel's encoders).

Nothing else in cyasgi imports a build of ``reader.FrameReader`` directly (tests and perf aside):
``base.WebSocketProtocolBase`` derives from the one named here, and every engine from that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cyasgi._compat import extension_built

__all__ = ["IMPLEMENTATION", "IMPLEMENTATION_MODULE", "TWIN_MODULES", "FrameReader"]

if TYPE_CHECKING:  # one API for type checkers: the source both builds come from
    from cyasgi.protocols.websockets.reader import FrameReader

    IMPLEMENTATION: str
elif extension_built("cyasgi._speedups.wsreader"):
    from cyasgi._speedups.wsreader import FrameReader

    IMPLEMENTATION = "compiled"
else:  # not built (no compiler at install time, PyPy) or CYASGI_NO_EXTENSIONS=1
    from cyasgi.protocols.websockets.reader import FrameReader

    IMPLEMENTATION = "pure"

#: Module path of the build in use.
IMPLEMENTATION_MODULE = FrameReader.__module__

TWIN_MODULES = {"cyasgi._speedups.wsreader": "compiled", "cyasgi.protocols.websockets.reader": "pure"}
