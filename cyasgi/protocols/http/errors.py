"""The errors of the HTTP/1.1 protocol: a client gone, and a request refused with its status."""

from __future__ import annotations

import logging


class ClientDisconnected(OSError):
    """Raised by ``send()`` once the client is gone (ASGI HTTP spec 2.4)."""


class RequestRejected(Exception):
    """Raised from a parser callback: answer ``status`` with ``body`` and close the connection."""

    def __init__(self, status: int, body: bytes, log_message: str) -> None:
        super().__init__(status, body, log_message)
        self.status = status
        self.body = body
        self.log_message = log_message


_bad_request_logger = logging.getLogger("uvicorn.error")


def bad_request(detail: str = "") -> RequestRejected:
    """400 for a malformed request; ``detail`` (what was wrong) is logged at debug level only,
    never sent to the client."""
    if detail:
        _bad_request_logger.debug("Invalid HTTP request: %s", detail)
    return RequestRejected(400, b"Invalid HTTP request received.", "Invalid HTTP request received.")


def head_too_large() -> RequestRejected:
    return RequestRejected(431, b"Request Header Fields Too Large", "Request head too large.")


def too_many_headers() -> RequestRejected:
    return RequestRejected(431, b"Request Header Fields Too Large", "Too many request headers.")


def body_too_large() -> RequestRejected:
    return RequestRejected(413, b"Content Too Large", "Request body too large.")


def version_not_supported() -> RequestRejected:
    return RequestRejected(505, b"HTTP Version Not Supported", "Unsupported HTTP version.")


def transfer_coding_rejection(value: bytes) -> RequestRejected:
    """For a Transfer-Encoding other than exactly ``chunked`` (RFC 9112 6.1, 6.3, 7.1): 501 when
    other codings precede a final chunked (codings this server does not implement); else 400: the
    final coding is not chunked (the body length is unknown), chunked is applied twice, or the
    list is malformed."""
    codings = [coding.strip(b" \t") for coding in value.lower().split(b",")]
    if len(codings) > 1 and codings[-1] == b"chunked" and all(codings[:-1]) and b"chunked" not in codings[:-1]:
        return RequestRejected(501, b"Not Implemented", "Unsupported transfer coding.")
    return bad_request()
