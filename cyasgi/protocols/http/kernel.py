"""The protocol's kernel, pure Python: what the compiled build does at C level
(``cyasgi/_speedups/kernel.pyx``, same names and behaviour), written as Python here for PyPy and for
the pure build.

* ``completed()`` and ``failed(error)``: what ``send()`` returns for a message it handled at once; an
  awaitable that is done (or raises ``error`` where the app awaits it).
* ``start_task(loop, coro, context, task_kwargs)``: run a request's app as a Task in a copy of the
  connection's context, eagerly where Python allows it.
* ``monotonic()``: the clock of the deadlines.
* Response fields: ``header_name``, ``valid_field_value``, ``parse_content_length`` (the rules of
  ``rules.py``), and ``frame_response``: a response's bytes in one object.
* Requests: ``is_ascii``, ``has_proxy_headers``, ``split_target``.
* Addresses: ``ipv4_addresses(transport)`` is None here: the protocol asks the transport, which gives
  the same addresses (the compiled kernel reads those of an IPv4 socket itself, for less).
* WebSocket frames: ``unmask`` (a client frame's payload, unmasked), ``decode_utf8`` (a text message's
  payload, checked), ``data_frame`` and ``text_frame``
  (a server frame's header and payload in one bytes object).
* Files: ``sendfile_supported()`` is False here, so the protocol never calls ``open_file``,
  ``send_more``, ``send_file`` or ``close_file`` (the compiled kernel's fast path for a whole file):
  it sends files the general way, which writes the same bytes.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import time
from typing import Any

from cyasgi._compat import HAS_EAGER_TASKS
from cyasgi.protocols.http.rules import (
    is_valid_header_name,
    is_valid_header_value,
    parse_content_length,
    split_target,
)
from cyasgi.protocols.websockets.frames import LENGTH_16, MASK_SIZE, apply_mask, data_frame_header

__all__ = [
    "completed",
    "close_file",
    "data_frame",
    "decode_utf8",
    "failed",
    "frame_response",
    "has_proxy_headers",
    "header_name",
    "ipv4_addresses",
    "is_ascii",
    "monotonic",
    "open_file",
    "send_file",
    "send_more",
    "sendfile_supported",
    "parse_content_length",
    "split_target",
    "start_task",
    "task_kwargs",
    "text_frame",
    "unmask",
    "valid_field_value",
]

monotonic = time.monotonic


async def _done() -> None:
    return None


async def _raise(error: BaseException) -> None:
    raise error


def completed() -> Any:
    """A coroutine that returns None at once (the compiled kernel shares one ready object)."""
    return _done()


def failed(error: BaseException) -> Any:
    """A coroutine that raises ``error`` when awaited."""
    return _raise(error)


def task_kwargs(loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    """The keyword arguments a connection's Tasks are made with (the compiled kernel reuses them)."""
    return {"loop": loop}


if HAS_EAGER_TASKS:

    def _new_task(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[None]:
        return asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg]

else:

    def _new_task(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[None]:
        return loop.create_task(coro)


def start_task(loop: asyncio.AbstractEventLoop, coro: Any, context: contextvars.Context, kwargs: dict[str, Any]) -> Any:
    """Run ``coro`` as a Task in ``context`` (a fresh one with --reset-contextvars)."""
    return context.run(_new_task, loop, coro)


def header_name(raw: bytes) -> bytes | None:
    """A field name as written: lower-cased, or None when it is not a token."""
    return raw.lower() if is_valid_header_name(raw) else None


valid_field_value = is_valid_header_value
is_ascii = bytes.isascii


def has_proxy_headers(headers: list[tuple[bytes, bytes]]) -> bool:
    """X-Forwarded-For or X-Forwarded-Proto among the request headers (names are lower-case)."""
    for name, _ in headers:
        if name == b"x-forwarded-for" or name == b"x-forwarded-proto":
            return True
    return False


def frame_response(
    lines: list[bytes] | None, length: int, head_end: bytes, chunk_size: int, body: bytes, tail: bytes
) -> bytes:
    """A response's bytes in one object: the held head's ``lines`` (None: written already) with a
    ``content-length`` line when ``length`` >= 0 and ``head_end``; a chunk-size line when
    ``chunk_size`` >= 0; then ``body`` and ``tail``."""
    parts = [] if lines is None else lines
    if lines is not None:
        if length >= 0:
            parts.append(b"content-length: %d\r\n" % length)
        parts.append(head_end)
    if chunk_size >= 0:
        parts.append(b"%x\r\n" % chunk_size)
    parts.append(body)
    parts.append(tail)
    return b"".join(parts)


def ipv4_addresses(
    transport: Any, local: tuple[str, int] | None = None
) -> tuple[tuple[str, int], tuple[str, int]] | None:
    return None


#: Payload size from which a frame is unmasked from a memoryview instead of a copied slice.
LARGE_PAYLOAD = 65536


def unmask(data: bytes | bytearray, start: int, end: int) -> bytes:
    """A client frame's payload ``data[start:end]`` XORed with its masking key, the 4 bytes before
    ``start`` (the caller has checked ``4 <= start <= end <= len(data)``)."""
    key = data[start - MASK_SIZE : start]
    if end - start < LARGE_PAYLOAD:
        return apply_mask(data[start:end], key)
    return apply_mask(memoryview(data)[start:end], key)  # a large payload is not copied first


def decode_utf8(data: bytes | bytearray) -> str:
    """``data.decode("utf-8")``, strict (any buffer)."""
    return str(data, "utf-8")


def data_frame(first_byte: int, payload: bytes) -> bytes:
    """An unmasked (server) frame: the header for ``payload``'s size, then the payload, in one bytes."""
    size = len(payload)
    if size < LENGTH_16:  # the common small frame, without a call for its header
        return bytes((first_byte, size)) + payload
    return data_frame_header(first_byte, size) + payload


def text_frame(first_byte: int, text: str) -> bytes:
    """``data_frame(first_byte, text.encode("utf-8"))`` (the compiled kernel skips the intermediate bytes)."""
    return data_frame(first_byte, text.encode("utf-8"))


def sendfile_supported() -> bool:
    return False


def open_file(path: Any) -> tuple[int, int] | None:
    raise NotImplementedError("the pure kernel has no file fast path (sendfile_supported() is False)")


def send_more(sock_fd: int, data: bytes) -> int:
    raise NotImplementedError("the pure kernel has no file fast path (sendfile_supported() is False)")


def send_file(sock_fd: int, fd: int, offset: int, end: int) -> int:
    raise NotImplementedError("the pure kernel has no file fast path (sendfile_supported() is False)")


def close_file(fd: int) -> None:
    os.close(fd)
