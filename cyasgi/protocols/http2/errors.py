"""HPACK exceptions, defined once in plain Python so both twins raise the very same classes."""

from __future__ import annotations

#: RFC 9113 §7 error codes the HTTP/2 layer answers a decoding failure with.
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB


class HPACKError(Exception):
    """A header block could not be decoded (RFC 7541): a connection error of type COMPRESSION_ERROR.

    The decoder's dynamic table is no longer in step with the peer's encoder after this, so the
    connection cannot go on.
    """

    error_code = COMPRESSION_ERROR


class HeaderListTooLarge(HPACKError):
    """The decoded header list is larger than the decoder's ``max_header_list_size``
    (sum of len(name) + len(value) + 32 per field, RFC 9113 §6.5.2).

    Raised only after the whole block was decoded, so the dynamic table *is* still in step: the
    layer may refuse the one stream (431 or RST_STREAM) and keep the connection, or send
    GOAWAY(ENHANCE_YOUR_CALM). The fields past the limit were not kept (an HPACK bomb costs no memory).
    """

    error_code = ENHANCE_YOUR_CALM
