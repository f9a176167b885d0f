"""The HPACK codec selector: the compiled twin (``cyasgi._speedups.hpack``, hpack.py compiled with its
augmenting .pxd) when it is built and allowed, else the pure module it is compiled from.

Nothing else in cyasgi imports a twin directly (tests and perf aside).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cyasgi._compat import extension_built
from cyasgi.protocols.http2.errors import COMPRESSION_ERROR, ENHANCE_YOUR_CALM, HeaderListTooLarge, HPACKError

if TYPE_CHECKING:  # one API for type checkers: the source both builds come from
    from cyasgi.protocols.http2.hpack import Decoder, Encoder, huffman_decode, huffman_encode

    IMPLEMENTATION: str
elif extension_built("cyasgi._speedups.hpack"):
    from cyasgi._speedups.hpack import Decoder, Encoder, huffman_decode, huffman_encode

    IMPLEMENTATION = "compiled"
else:  # not built, PyPy, or CYASGI_NO_EXTENSIONS=1
    from cyasgi.protocols.http2.hpack import Decoder, Encoder, huffman_decode, huffman_encode

    IMPLEMENTATION = "pure"

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
