"""The access log line: uvicorn's message and arguments, and cyasgi's extra record attributes."""

from __future__ import annotations

from typing import Any

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
