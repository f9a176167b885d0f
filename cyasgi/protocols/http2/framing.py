"""The HTTP/2 frame layer selector: the compiled twin (``cyasgi._speedups.frames``, frames.py compiled
with its augmenting .pxd) when it is built and allowed, else the pure module it is compiled from.

Nothing else in cyasgi imports a twin directly (tests and perf aside).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cyasgi._compat import extension_built
from cyasgi.protocols.http2.errors import H2ConnectionError, H2StreamError

if TYPE_CHECKING:  # one API for type checkers: the source both builds come from
    from cyasgi.protocols.http2 import frames
elif extension_built("cyasgi._speedups.frames"):
    from cyasgi._speedups import frames
else:  # not built, PyPy, or CYASGI_NO_EXTENSIONS=1
    from cyasgi.protocols.http2 import frames

Frame = frames.Frame
FrameReader = frames.FrameReader
settings_frame = frames.settings_frame
ping_frame = frames.ping_frame
goaway_frame = frames.goaway_frame
rst_stream_frame = frames.rst_stream_frame
window_update_frame = frames.window_update_frame
headers_frames = frames.headers_frames
data_frames = frames.data_frames
SETTINGS_ACK_FRAME: bytes = frames.SETTINGS_ACK_FRAME
#: True when the compiled twin is in use (``cython.compiled`` as the module itself reports it).
COMPILED: bool = frames.COMPILED
IMPLEMENTATION = "compiled" if COMPILED else "pure"
#: Module path of the twin in use.
IMPLEMENTATION_MODULE: str = frames.__name__

__all__ = [
    "COMPILED",
    "IMPLEMENTATION",
    "IMPLEMENTATION_MODULE",
    "SETTINGS_ACK_FRAME",
    "Frame",
    "FrameReader",
    "H2ConnectionError",
    "H2StreamError",
    "data_frames",
    "goaway_frame",
    "headers_frames",
    "ping_frame",
    "rst_stream_frame",
    "settings_frame",
    "window_update_frame",
]
