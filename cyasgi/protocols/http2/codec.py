"""The HPACK codec selector: the compiled twin (``cyasgi._speedups.hpack``, hpack.py compiled with its
augmenting .pxd) when it is built and allowed, else the pure module it is compiled from.

Nothing else in cyasgi imports a twin directly (tests and perf aside).
"""

from __future__ import annotations

from cyasgi._compat import NO_EXTENSIONS
from cyasgi.protocols.http2.errors import COMPRESSION_ERROR, ENHANCE_YOUR_CALM, HeaderListTooLarge, HPACKError

if not NO_EXTENSIONS:
    try:
        from cyasgi._speedups.hpack import Decoder, Encoder, huffman_decode, huffman_encode
    except ImportError:  # not built (no compiler at install time): the pure twin serves
        IMPLEMENTATION = "pure"
    else:
        IMPLEMENTATION = "compiled"
else:
    IMPLEMENTATION = "pure"

if IMPLEMENTATION == "pure":
    from cyasgi.protocols.http2.hpack import Decoder, Encoder, huffman_decode, huffman_encode  # noqa: F811

#: Module path of the twin in use.
IMPLEMENTATION_MODULE = Decoder.__module__

__all__ = [
    "COMPRESSION_ERROR",
    "ENHANCE_YOUR_CALM",
    "IMPLEMENTATION",
    "IMPLEMENTATION_MODULE",
    "Decoder",
    "Encoder",
    "HPACKError",
    "HeaderListTooLarge",
    "huffman_decode",
    "huffman_encode",
]
