"""The access log line: uvicorn's message and arguments, and cyasgi's extra record attributes."""

from __future__ import annotations

from typing import Any

from cyasgi.protocols.utils import get_client_addr, get_path_with_query_string

# Access log ------------------------------------------------------------------------------------

#: uvicorn's message: ``record.args`` is ``(client_addr, method, path_with_query, http_version, status)``.
ACCESS_LOG_MESSAGE = '%s - "%s %s HTTP/%s" %d'


def access_log_extra(scope: dict[str, Any], duration: float, bytes_sent: int, aborted: bool) -> dict[str, Any]:
    """The record attributes an access line carries besides uvicorn's args (docs/logging.md)."""
    request_id = None
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            request_id = value.decode("latin-1")
            break
    return {"duration": duration, "bytes_sent": bytes_sent, "request_id": request_id, "aborted": aborted}


def log_access(
    access_logger: Any, scope: dict[str, Any], status: int, duration: float, bytes_sent: int, aborted: bool
) -> None:
    """The access line of a response complete (or aborted): uvicorn's record, plus ``duration``,
    ``bytes_sent``, ``request_id`` and ``aborted`` attributes. Both HTTP protocols write it."""
    access_logger.info(
        ACCESS_LOG_MESSAGE,
        get_client_addr(scope),
        scope["method"],
        get_path_with_query_string(scope),
        scope["http_version"],
        status,
        extra=access_log_extra(scope, duration, bytes_sent, aborted),
    )
