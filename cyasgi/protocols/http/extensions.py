"""The response extensions: trailers, early hints, and files (pathsend, zerocopysend)."""

from __future__ import annotations

import asyncio
import asyncio.constants
import errno
import os
import socket
import stat
from typing import Any

from cyasgi.protocols.http.errors import ClientDisconnected
from cyasgi.protocols.http.rules import as_bytes, is_valid_header_name, is_valid_header_value
from cyasgi.protocols.http.wire import FILE_CHUNK_SIZE

# Response extensions: trailers, early hints, files ------------------------------------------------

#: Fields a response may not carry as trailers (RFC 9110 6.5.1): framing, routing, hop-by-hop,
#: authentication, and the response controls and content metadata a recipient needs up front.
FORBIDDEN_TRAILERS = frozenset(
    (
        b"content-length", b"transfer-encoding", b"trailer", b"te", b"host", b"connection",
        b"keep-alive", b"proxy-connection", b"upgrade", b"content-encoding", b"content-type",
        b"content-range", b"cache-control", b"expires", b"date", b"age", b"location",
        b"retry-after", b"vary", b"set-cookie", b"authorization", b"www-authenticate",
        b"proxy-authenticate", b"proxy-authorization", b"expect", b"max-forwards", b"range",
    )
)


def accepts_trailers(headers: list[tuple[bytes, bytes]]) -> bool:
    """The request said ``TE: trailers`` (RFC 9110 10.1.4), in any of its TE fields."""
    for name, value in headers:
        if name == b"te":
            for member in value.lower().split(b","):
                if member.partition(b";")[0].strip(b" \t") == b"trailers":
                    return True
    return False


def trailer_fields(headers: Any) -> list[tuple[bytes, bytes]]:
    """The ``(name, value)`` pairs of an ``http.response.trailers`` message, names lower-cased, checked
    like response headers (tokens, no CR, LF, NUL) and refused for the fields trailers may not carry."""
    fields = []
    for name, value in headers:
        name = as_bytes(name, "trailer name").lower()
        value = as_bytes(value, "trailer value")
        if not is_valid_header_name(name):
            raise RuntimeError("Invalid HTTP trailer name.")
        if not is_valid_header_value(value):
            raise RuntimeError("Invalid HTTP trailer value.")
        if name in FORBIDDEN_TRAILERS:
            raise RuntimeError(f"The field {name.decode('ascii')!r} is not allowed in trailers.")
        fields.append((name, value))
    return fields


def trailer_block(headers: Any) -> bytes:
    """The trailers of an ``http.response.trailers`` message as ``name: value\\r\\n`` lines."""
    return b"".join([b"%s: %s\r\n" % field for field in trailer_fields(headers)])


def early_hint_links(links: Any) -> list[bytes]:
    """The links of an ``http.response.early_hint`` message, checked (one ``link`` field each)."""
    if isinstance(links, (bytes, bytearray, memoryview, str)):
        raise TypeError("The 'links' of http.response.early_hint must be a list of bytes.")
    values = []
    for link in links:
        link = as_bytes(link, "early hint link")
        if not link or not is_valid_header_value(link):
            raise RuntimeError("Invalid link in http.response.early_hint.")
        values.append(link)
    return values


def early_hint_head(links: Any) -> bytes:
    """``103 Early Hints`` with one ``link`` field per link of an ``http.response.early_hint``
    message; empty when there are no links (nothing worth a 103)."""
    values = early_hint_links(links)
    if not values:
        return b""
    return b"HTTP/1.1 103 Early Hints\r\n" + b"".join([b"link: %s\r\n" % link for link in values]) + b"\r\n"


_O_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def open_path(path: Any) -> tuple[int, int]:
    """Open the file of an ``http.response.pathsend`` message: ``(fd, size)``.

    FileNotFoundError, PermissionError... reach the app as they are; anything but a regular file
    is refused (opening does not block on a FIFO: O_NONBLOCK)."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"The 'path' of http.response.pathsend must be a str, not {type(path).__name__}.")
    fd = os.open(path, _O_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RuntimeError(f"http.response.pathsend: {os.fsdecode(path)!r} is not a regular file.")
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def zerocopy_range(file: Any, offset: Any, count: Any) -> tuple[int, int, int, bool]:
    """``(fd, offset, count, advance)`` of an ``http.response.zerocopysend`` message.

    Without ``offset`` the bytes start at the file's position, which then moves past them
    (``advance``); with one, the position is left alone, as sendfile(2) does. ``count`` stops at
    the end of the file."""
    try:
        fd = file if type(file) is int else file.fileno()
    except (AttributeError, OSError, ValueError) as exc:
        raise TypeError("The 'file' of http.response.zerocopysend must be a file with a descriptor.") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise RuntimeError("http.response.zerocopysend: the file is not a regular file.")
    advance = offset is None
    if advance:
        offset = os.lseek(fd, 0, os.SEEK_CUR)
    elif type(offset) is not int or offset < 0:
        raise RuntimeError(f"Invalid offset {offset!r} in http.response.zerocopysend.")
    available = max(info.st_size - offset, 0)
    if count is None:
        count = available
    elif type(count) is not int or count < 0:
        raise RuntimeError(f"Invalid count {count!r} in http.response.zerocopysend.")
    else:
        count = min(count, available)
    return fd, offset, count, advance


class _Descriptor:
    """A descriptor as ``loop.sendfile()`` takes a file. sendfile(2) reads by offset; the position
    is the caller's business, so seeking afterwards does nothing."""

    __slots__ = ("_fd",)
    mode = "rb"

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def seek(self, offset: int, whence: int = 0) -> int:
        return offset


_NATIVE_SENDFILE = getattr(getattr(asyncio.constants, "_SendfileMode", None), "TRY_NATIVE", None)
LOOP_SENDFILE = 1  # the loop's own sendfile (asyncio's selector loop, plain TCP)
DIRECT_SENDFILE = 2  # os.sendfile on the transport's socket (uvloop, which has no loop.sendfile)
COPY_FILE = 3  # read and write (TLS, other loops, no os.sendfile)
_DISCONNECT_ERRNOS = frozenset((errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF, errno.ESHUTDOWN))


def sendfile_way(loop: Any, transport: Any) -> int:
    """How a file goes out on this transport."""
    if transport.get_extra_info("sslcontext") or not hasattr(os, "sendfile"):
        return COPY_FILE
    if _NATIVE_SENDFILE is not None and getattr(transport, "_sendfile_compatible", None) is _NATIVE_SENDFILE:
        return LOOP_SENDFILE
    if type(loop).sendfile is asyncio.AbstractEventLoop.sendfile and type(loop).__module__.startswith("uvloop"):
        sock = transport.get_extra_info("socket")
        if sock is not None and getattr(sock, "type", None) == socket.SOCK_STREAM:
            return DIRECT_SENDFILE
    return COPY_FILE


async def transmit_file(cycle: Any, fd: int, offset: int, count: int) -> None:
    """Write ``count`` bytes of ``fd`` from ``offset`` on the cycle's transport, after whatever the
    transport already holds: sendfile(2) where the transport allows it, else read and write with
    flow control. Anything the protocol batched must be on the transport already.

    The connection cannot carry on after a failure (part of the body may be out): it is aborted,
    and ``ClientDisconnected`` raised when the client was the cause."""
    transport = cycle.transport
    end = offset + count
    try:
        if cycle.disconnected or transport.is_closing():
            raise ClientDisconnected
        way = sendfile_way(cycle.protocol.loop, transport)
        if way == LOOP_SENDFILE:
            try:
                offset += await cycle.protocol.loop.sendfile(transport, _Descriptor(fd), offset, count, fallback=False)
            except asyncio.SendfileNotAvailableError:
                # asyncio says this, with nothing sent, whenever its first os.sendfile fails: a
                # client that reset the connection among other reasons. The copying way sends
                # the rest, or meets the real error.
                offset = await _copy_file(cycle, fd, offset, end)
        elif way == DIRECT_SENDFILE:
            offset = await _sendfile_direct(cycle, fd, offset, end)
        else:
            offset = await _copy_file(cycle, fd, offset, end)
        if offset < end:
            raise RuntimeError(f"The file ended {end - offset} bytes early (it shrank while it was being sent).")
    except ClientDisconnected:
        cycle.disconnected = True
        transport.abort()
        raise
    except OSError as exc:
        transport.abort()
        if cycle.disconnected or isinstance(exc, ConnectionError) or exc.errno in _DISCONNECT_ERRNOS:
            cycle.disconnected = True
            raise ClientDisconnected from exc
        raise
    except BaseException:
        transport.abort()
        raise


async def _copy_file(cycle: Any, fd: int, offset: int, end: int) -> int:
    transport = cycle.transport
    flow = cycle.flow
    while offset < end:
        if cycle.disconnected or transport.is_closing():
            raise ClientDisconnected
        data = os.pread(fd, min(FILE_CHUNK_SIZE, end - offset), offset)
        if not data:
            break
        transport.write(data)
        offset += len(data)
        if flow.write_paused:
            await flow.drain()
        elif offset < end:
            # Let the loop run between chunks even when the transport never pushes back (a TLS
            # transport whose socket is gone drops writes): connection_lost must get a chance.
            await asyncio.sleep(0)
    return offset


async def _sendfile_direct(cycle: Any, fd: int, offset: int, end: int) -> int:
    """sendfile(2) on the socket of a transport whose loop has no ``sendfile`` (uvloop).

    The transport's buffer is emptied first (what it holds must go before the file). While the
    socket is full, ``flow`` is paused and a writer on a duplicate of the socket's descriptor
    resumes it (the loop refuses watchers on a transport's own descriptor); ``connection_lost``
    resumes it too. The transport is checked right before every call, so the descriptor is still
    its own."""
    transport = cycle.transport
    flow = cycle.flow
    loop = cycle.protocol.loop
    if transport.get_write_buffer_size():
        low, high = transport.get_write_buffer_limits()
        transport.set_write_buffer_limits(0, 0)  # pause_writing now, resume_writing once empty
        try:
            await flow.drain()
        finally:
            if not transport.is_closing():
                transport.set_write_buffer_limits(high, low)
    sock_fd = transport.get_extra_info("socket").fileno()
    while offset < end:
        if cycle.disconnected or transport.is_closing():
            raise ClientDisconnected
        try:
            sent = os.sendfile(sock_fd, fd, offset, end - offset)
        except BlockingIOError:
            await _wait_writable(loop, sock_fd, flow)
            continue
        if not sent:
            break
        offset += sent
    return offset


async def _wait_writable(loop: Any, sock_fd: int, flow: Any) -> None:
    watched = os.dup(sock_fd)
    try:
        flow.pause_writing()
        loop.add_writer(watched, flow.resume_writing)
        try:
            await flow.drain()
        finally:
            loop.remove_writer(watched)
    finally:
        os.close(watched)
