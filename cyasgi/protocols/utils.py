"""Address and URL helpers shared by the HTTP and WebSocket protocols and the middleware."""

from __future__ import annotations

import urllib.parse
from typing import Any

from cyasgi.logging import escape_log_text
from cyasgi.protocols.http.errors import ClientDisconnected

__all__ = [
    "ClientDisconnected",
    "get_client_addr",
    "get_local_addr",
    "get_path_with_query_string",
    "get_remote_addr",
    "is_ssl",
]


def get_remote_addr(transport: Any) -> tuple[str, int] | None:
    """``(host, port)`` of the peer, or None for a UNIX socket or an unknown peer."""
    info = transport.get_extra_info("peername")
    if isinstance(info, (list, tuple)) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None


def get_local_addr(transport: Any) -> tuple[str, int | None] | None:
    """``(host, port)`` this server listens on, or ``(path, None)`` for a UNIX socket."""
    info = transport.get_extra_info("sockname")
    if isinstance(info, (list, tuple)) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    if isinstance(info, str):
        return (info, None)
    return None


def is_ssl(transport: Any) -> bool:
    return bool(transport.get_extra_info("sslcontext"))


def get_client_addr(scope: dict[str, Any]) -> str:
    """``host:port`` for the access log. The host can come from X-Forwarded-For (attacker-controlled
    through a trusted proxy): control characters are escaped, whatever formatter prints it."""
    client = scope.get("client")
    if not client:
        return ""
    host, port = client
    text = f"{host}:{port:d}"
    return text if text.isascii() and text.isprintable() else escape_log_text(text)


def get_path_with_query_string(scope: dict[str, Any]) -> str:
    """The request target as logged: the path re-quoted, then ``?query``."""
    path_with_query_string = urllib.parse.quote(scope["path"])
    if scope["query_string"]:
        path_with_query_string = "{}?{}".format(path_with_query_string, scope["query_string"].decode("ascii"))
    return path_with_query_string
