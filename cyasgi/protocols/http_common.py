"""What both HTTP/1.1 twins share: constants, pre-built status lines, validation, exceptions.

Nothing here runs per byte: the twins use these tables and call these helpers on cold paths
(errors, upgrades) or once per server.
"""

from __future__ import annotations

import http
import logging
import re
from typing import Any

#: ASGI HTTP and WebSocket spec version this server implements (send() on a closed connection
#: raises ClientDisconnected, an OSError, as 2.4 asks).
ASGI_SPEC_VERSION = "2.5"

#: Buffered request body above which the connection stops reading until the app calls receive().
HIGH_WATER_LIMIT = 65536

#: Seconds an idle connection stays open once a graceful shutdown starts, for a request already on
#: its way (a just-accepted connection, a keep-alive client that has just sent): it is answered.
SHUTDOWN_GRACE = 0.5

#: Response bodies at or above this size are written beside the head (writelines) instead of
#: being copied into one bytes object with it.
COALESCE_LIMIT = 16384

#: What is written while one dispatch loop runs (pipelined responses answered together, or a
#: response streamed without waiting) leaves in one writev: far fewer syscalls and wake-ups of the
#: client (a 1 MiB response in 64 KiB chunks: about half the server CPU). The batch holds the app's
#: own bytes (no copies); past this many bytes it is sent at once, so the transport's own flow
#: control (pause_writing, drain) bounds memory as before.
WRITE_BATCH_LIMIT = 1048576


class ClientDisconnected(OSError):
    """Raised by ``send()`` once the client is gone (ASGI HTTP spec 2.4)."""


class RequestRejected(Exception):
    """Raised from a parser callback: answer ``status`` with ``body`` and close the connection."""

    def __init__(self, status: int, body: bytes, log_message: str) -> None:
        super().__init__(status, body, log_message)
        self.status = status
        self.body = body
        self.log_message = log_message


#: Fields that frame a message: never allowed in trailers (RFC 9110 6.5.1), where a proxy merging
#: trailers into the header section could be misled.
FRAMING_FIELDS = frozenset((b"content-length", b"transfer-encoding"))


def bad_request() -> RequestRejected:
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


#: ``--http auto`` in the pure twin on CPython is httptools; these are the rules of the native parsers
#: that llhttp (or h11) does not apply, checked in each twin's ``on_headers_complete``.
_HOST = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|\[[vV][0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+\]"
    rb"|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?"
)


# Host values already found valid: a server sees the same few again and again. Bounded, and only
# valid values enter it, so a client sending made-up hosts cannot grow it.
_VALID_HOSTS: dict[bytes, bool] = {}


def is_valid_host(value: bytes) -> bool:
    """``Host = uri-host [ ":" port ]`` (RFC 9110 7.2, RFC 3986 3.2.2); an empty value is valid."""
    if value in _VALID_HOSTS:
        return True
    if _HOST.fullmatch(value) is None:
        return False
    if len(_VALID_HOSTS) < 256:
        _VALID_HOSTS[value] = True
    return True


_ABSOLUTE_FORM = re.compile(rb"[A-Za-z][A-Za-z0-9+\-.]*://")


def is_valid_target(method: str, target: bytes) -> bool:
    """The request-target forms of RFC 9112 3.2: origin-form (``/path?query``) and absolute-form
    (``scheme://...``) for any method but CONNECT, whose target is authority-form (``host:port``)
    and nothing else; asterisk-form (``*``) only for OPTIONS."""
    if method == "CONNECT":
        host, _, port = target.rpartition(b":")
        return bool(host) and port.isdigit() and is_valid_host(host) and (b":" not in host or host[-1:] == b"]")
    if target[:1] == b"/":
        return True
    if target == b"*":
        return method == "OPTIONS"
    return _ABSOLUTE_FORM.match(target) is not None


def check_request_head(
    method: str, target: bytes, http_version: str, headers: list[tuple[bytes, bytes]], max_body_size: int
) -> None:
    """Raise RequestRejected for a head a foreign parser accepted but the native parsers refuse.

    ``headers`` are lower-cased names with values; ``max_body_size`` is -1 for no body limit.
    Same answers, in the same order of precedence, as ``RequestParser._parse_head``.
    """
    if http_version != "1.1" and http_version != "1.0":
        # llhttp reports 0.9 for a request line without a version: malformed, as for the native parsers
        raise bad_request() if http_version.startswith("0.") else version_not_supported()
    if (target[:1] != b"/" or method == "CONNECT") and not is_valid_target(method, target):
        raise bad_request()
    hosts = 0
    content_length = -1
    transfer_encoding = False
    for name, value in headers:
        if name == b"host":
            hosts += 1
            if not is_valid_host(value):
                raise bad_request()
        elif name == b"transfer-encoding":
            if transfer_encoding:
                raise bad_request()
            transfer_encoding = True
            if value.lower() != b"chunked":
                raise transfer_coding_rejection(value)
        elif name == b"content-length":
            if content_length != -1 or not value.isdigit() or len(value) > 18:
                raise bad_request()
            content_length = int(value)
    if transfer_encoding and (content_length != -1 or http_version == "1.0"):
        raise bad_request()
    if hosts > 1 or (hosts == 0 and http_version == "1.1"):
        raise bad_request()
    if 0 <= max_body_size < content_length:
        raise body_too_large()


_parse_error_logger = logging.getLogger("uvicorn.error")


def foreign_parse_error(exc: BaseException, http_version: str) -> RequestRejected:
    """What to answer when httptools or h11 raised ``exc``; ``http_version`` is the parser's.

    A RequestRejected raised from one of our callbacks wins; llhttp refuses versions other than
    0.9, 1.0, 1.1 and 2.0 itself, which the native parsers answer with 505 from 1.2 on.
    """
    context = exc.__context__
    if isinstance(context, RequestRejected):
        return context
    _parse_error_logger.debug("Invalid HTTP request: %s", exc)
    if http_version not in ("1.0", "1.1") and not http_version.startswith("0."):
        return version_not_supported()
    return bad_request()


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


#: ``HTTP/1.1 200 OK\r\n`` for every status from 100 to 599, built once.
STATUS_LINES: dict[int, bytes] = {status: _status_line(status) for status in range(100, 600)}

# RFC 9110 token characters (header names); anything left after deleting these is invalid.
_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Field-value characters: HTAB, SP, VCHAR and obs-text; everything else (CR, LF, NUL...) is refused.
_VALUE_CHARS = bytes([0x09]) + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))


def outside_table(allowed: bytes) -> bytes:
    """A translate() table that changes exactly the bytes not in ``allowed``: ``s.translate(table) != s``
    says ``s`` has one. One pass, where ``translate(None, delete)`` first builds a table on every call."""
    return bytes(c if c in allowed else (c + 1) & 0xFF for c in range(256))


_OUTSIDE_TCHAR = outside_table(_TCHAR)
_OUTSIDE_VALUE_CHARS = outside_table(_VALUE_CHARS)


def is_valid_header_name(name: bytes) -> bool:
    return bool(name) and name.translate(_OUTSIDE_TCHAR) == name


def is_valid_header_value(value: bytes) -> bool:
    return value.translate(_OUTSIDE_VALUE_CHARS) == value


def as_bytes(value: Any, what: str) -> bytes:
    """An ASGI byte string the app gave as bytearray or memoryview, as bytes; anything else (str,
    int, None...) is refused rather than converted (``bytes(5)`` would be five NUL bytes)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"The HTTP response {what} must be bytes, not {type(value).__name__}.")


def encode_headers_block(headers: list[tuple[bytes, bytes]]) -> bytes:
    """``name: value\\r\\n`` lines for the server's default headers (date, server, --header)."""
    return b"".join(b"%s: %s\r\n" % (name, value) for name, value in headers)


def simple_response(status: int, body: bytes, default_headers: bytes, *, close: bool = True) -> bytes:
    """A complete plain-text response the server writes itself (400, 413, 503, 500...)."""
    return b"".join(
        (
            STATUS_LINES[status],
            default_headers,
            b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n" if close else b"\r\n",
            body,
        )
    )


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """``(raw_path, query_string)`` of a request target, without any ``#fragment``."""
    if target[:1] != b"/" and b"://" in target:
        # absolute-form (a proxy's request): keep only the path and query
        target = target.split(b"://", 1)[1]
        slash = target.find(b"/")
        query = target.find(b"?")
        if slash == -1 or (query != -1 and query < slash):
            target = b"/" + target[query:] if query != -1 else b"/"
        else:
            target = target[slash:]
    if b"#" in target:
        target = target.partition(b"#")[0]
    raw_path, _, query_string = target.partition(b"?")
    return raw_path, query_string


def request_head_bytes(method: str, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """Re-serialise a parsed request head, for the protocol a connection is upgraded to."""
    lines = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        lines += [name, b": ", value, b"\r\n"]
    lines.append(b"\r\n")
    return b"".join(lines)


def is_websocket_upgrade(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"upgrade" and value.lower() == b"websocket":
            return True
    return False


_upgrade_logger = logging.getLogger("uvicorn.error")


def warn_unsupported_upgrade(websocket: bool) -> None:
    _upgrade_logger.warning("Unsupported upgrade request.")
    if websocket:
        _upgrade_logger.warning(
            "No supported WebSocket library detected. Please use \"pip install 'cyasgi'\" with "
            "'websockets' installed, or install 'websockets' or 'wsproto' manually."
        )


async def service_unavailable(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The app that answers when --limit-concurrency is exceeded."""
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"19"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"Service Unavailable"})
