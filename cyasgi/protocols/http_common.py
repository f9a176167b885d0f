"""What both HTTP/1.1 twins share: constants, pre-built status lines, validation, exceptions.

Nothing here runs per byte: the twins use these tables and call these helpers on cold paths
(errors, upgrades) or once per server.
"""

from __future__ import annotations

import http
import logging
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
