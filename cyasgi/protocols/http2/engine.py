"""The HTTP/2 connection selector: the compiled twin (``cyasgi._speedups.connection``, connection.py
compiled with its augmenting .pxd) when it is built and allowed, else the pure module it is compiled from.

Nothing else in cyasgi imports a twin directly (tests and perf aside).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cyasgi._compat import extension_built
from cyasgi.protocols.http2.errors import StreamClosedError

if TYPE_CHECKING:  # one API for type checkers: the source both builds come from
    from cyasgi.protocols.http2 import connection
elif extension_built("cyasgi._speedups.connection"):
    from cyasgi._speedups import connection
else:  # not built, PyPy, or CYASGI_NO_EXTENSIONS=1
    from cyasgi.protocols.http2 import connection

H2Connection = connection.H2Connection
CONNECTION_SPECIFIC = connection.CONNECTION_SPECIFIC
RequestReceived = connection.RequestReceived
DataReceived = connection.DataReceived
TrailersReceived = connection.TrailersReceived
HeadersTooLarge = connection.HeadersTooLarge
StreamReset = connection.StreamReset
WindowUpdated = connection.WindowUpdated
RemoteSettingsChanged = connection.RemoteSettingsChanged
SettingsAcknowledged = connection.SettingsAcknowledged
PingReceived = connection.PingReceived
PingAckReceived = connection.PingAckReceived
ConnectionTerminated = connection.ConnectionTerminated
asgi_headers = connection.asgi_headers
#: True when the compiled twin is in use.
COMPILED: bool = connection.COMPILED
IMPLEMENTATION = "compiled" if COMPILED else "pure"
#: Module path of the twin in use.
IMPLEMENTATION_MODULE: str = connection.__name__

__all__ = [
    "COMPILED",
    "CONNECTION_SPECIFIC",
    "IMPLEMENTATION",
    "IMPLEMENTATION_MODULE",
    "ConnectionTerminated",
    "DataReceived",
    "H2Connection",
    "HeadersTooLarge",
    "PingAckReceived",
    "PingReceived",
    "RemoteSettingsChanged",
    "RequestReceived",
    "SettingsAcknowledged",
    "StreamClosedError",
    "StreamReset",
    "TrailersReceived",
    "WindowUpdated",
    "asgi_headers",
]
