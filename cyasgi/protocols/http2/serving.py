"""The HTTP/2 protocol selector: the compiled twin (``cyasgi._speedups.h2protocol``, protocol.py compiled
with its augmenting .pxd) when it is built and allowed, else the pure module it is compiled from.

The HTTP/1.1 protocol hands a connection over to ``H2Protocol`` (h2c preface, or ALPN ``h2``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cyasgi._compat import extension_built

if TYPE_CHECKING:  # one API for type checkers: the source both builds come from
    from cyasgi.protocols.http2 import protocol
elif extension_built("cyasgi._speedups.h2protocol"):
    from cyasgi._speedups import h2protocol as protocol
else:  # not built, PyPy, or CYASGI_NO_EXTENSIONS=1
    from cyasgi.protocols.http2 import protocol

H2Protocol = protocol.H2Protocol
StreamCycle = protocol.StreamCycle
PREFACE: bytes = protocol.PREFACE
#: True when the compiled twin is in use.
COMPILED: bool = protocol.COMPILED
IMPLEMENTATION = "compiled" if COMPILED else "pure"
#: Module path of the twin in use.
IMPLEMENTATION_MODULE: str = protocol.__name__

__all__ = ["COMPILED", "IMPLEMENTATION", "IMPLEMENTATION_MODULE", "PREFACE", "H2Protocol", "StreamCycle"]
