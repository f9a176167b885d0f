"""What goes on the wire: the server's constants, the pre-built status lines, and the responses
the server writes itself."""

from __future__ import annotations

import http
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


#: Pipelining: once this many requests wait behind the one being answered, or their heads add up
#: to PIPELINE_HEAD_LIMIT bytes, the rest of what was read is held unparsed (and reading paused)
#: until they are answered, so a client that pipelines without reading its responses costs a
#: bounded amount of memory rather than a request object per 30 bytes it sends.
PIPELINE_LIMIT = 16
PIPELINE_HEAD_LIMIT = 65536

#: Held bytes parsed in one go (each round a pipeline's worth) before the connection yields to the
#: event loop: a pipelining client whose requests are answered at once (eager tasks) cannot keep
#: the loop from other connections.
HELD_ROUNDS_LIMIT = 4

#: httptools and h11 parse all they are given: the protocol feeds them this much at a time, so a
#: full pipeline stops them too (larger steps through a body, which queues nothing).
FOREIGN_FEED_STEP = 4096


#: The ASGI extensions both twins implement, announced in every HTTP scope. Each request gets a copy
#: of this dict (the empty parameter dicts inside are shared: nothing writes to them).
HTTP_EXTENSIONS: dict[str, dict[str, Any]] = {
    "http.response.pathsend": {},
    "http.response.zerocopysend": {},
    "http.response.trailers": {},
    "http.response.early_hint": {},
}


def http_scope_template(
    asgi_version: str, http_version: Any, server: Any, client: Any, scheme: str, root_path: str
) -> dict[str, Any]:
    """An ``http`` scope's keys in their order, with the values a connection's requests share (the
    others are None until a request fills its copy)."""
    return {
        "type": "http",
        "asgi": {"version": asgi_version, "spec_version": ASGI_SPEC_VERSION},
        "http_version": http_version,
        "server": server,
        "client": client,
        "scheme": scheme,
        "method": None,
        "root_path": root_path,
        "path": None,
        "raw_path": None,
        "query_string": None,
        "headers": None,
        "state": None,
        "extensions": None,
    }


#: Bytes read and written per step when a file cannot go out with sendfile(2) (TLS, loops without
#: it): the transport's flow control is honoured between steps, so memory stays bounded.
FILE_CHUNK_SIZE = 262144


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


#: ``HTTP/1.1 200 OK\r\n`` for every status from 100 to 599, built once.
STATUS_LINES: dict[int, bytes] = {status: _status_line(status) for status in range(100, 600)}


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


# Pieces of a response the protocol writes itself.
CRLF = b"\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"
CHUNKED_LINE = b"transfer-encoding: chunked\r\n"
CLOSE_LINE = b"connection: close\r\n"
KEEP_ALIVE_LINE = b"connection: keep-alive\r\n"


def framing_field(chunked: bool, length: int) -> bytes:
    """The head field that frames a response body: chunked, or a ``content-length`` of ``length``."""
    return CHUNKED_LINE if chunked else b"content-length: %d\r\n" % length


def frame_body(body: bytes, chunked: bool, last: bool) -> bytes:
    """A part of a response body as it goes on the wire: as it is, or as one chunk (none for an
    empty part, which would end the body) followed, after the ``last`` part, by the last chunk."""
    if not chunked:
        return body
    chunk = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
    return chunk + LAST_CHUNK if last else chunk
