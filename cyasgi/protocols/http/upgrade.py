"""Handing a connection over to another protocol (WebSocket): the request re-serialised, and the
warning when nothing can take it."""

from __future__ import annotations

import logging


def request_head_bytes(method: str, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """Re-serialise a parsed request head, for the protocol a connection is upgraded to."""
    lines = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        lines += [name, b": ", value, b"\r\n"]
    lines.append(b"\r\n")
    return b"".join(lines)


def is_h2c_upgrade(headers: list[tuple[bytes, bytes]]) -> bool:
    """An ``Upgrade: h2c`` request (RFC 7540's cleartext upgrade, removed by RFC 9113)."""
    for name, value in headers:
        if name == b"upgrade" and value.strip().lower() == b"h2c":
            return True
    return False


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
