"""The answers the server gives itself, as ASGI apps: 503 past --limit-concurrency, --health-path."""

from __future__ import annotations

from typing import Any


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


# Operable shutdown: --health-path ----------------------------------------------------------------


class HealthCheck:
    """The ``--health-path`` answer, given by the server itself (the app is never called).

    200 ``ok`` while the server serves; 503 with ``connection: close`` from the moment shutdown
    begins (``server_state.shutting_down``: the signal, then the ``--shutdown-delay`` and the
    drain). Like the supervisor's health ping, it is answered by the event loop, so a loop blocked
    by synchronous code fails the probe too.
    """

    __slots__ = ("server_state",)

    def __init__(self, server_state: Any) -> None:
        self.server_state = server_state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.server_state.shutting_down:
            status, body, extra = 503, b"shutting down\n", [(b"connection", b"close")]
        else:
            status, body, extra = 200, b"ok\n", []
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            (b"cache-control", b"no-store"),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def encode_health_path(path: str | None, option: str = "--health-path") -> bytes | None:
    """``--health-path`` (or ``option``) as the raw request path it matches (query strings are ignored)."""
    if path is None or path == "":
        return None
    if not path.startswith("/") or not path.isascii() or not path.isprintable() or " " in path or "?" in path:
        raise ValueError(f"{option} must be a path such as /healthz (ASCII, no spaces or '?'), not {path!r}.")
    return path.encode("ascii")
