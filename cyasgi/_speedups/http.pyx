# cython: language_level=3
"""The compiled HTTP/1.1 protocol: the twin of cyasgi/protocols/http/protocol.py.

Same classes (HttpProtocol, RequestCycle, FlowControl), signatures, attributes, exceptions and
behaviour as the pure twin; the pure file explains the design. What differs is only how: C
fields instead of attributes, C loops for header validation and lower-casing, a pre-built table
of status lines, and the head of a response assembled in one bytearray.
"""

import asyncio
import inspect
import contextvars
import logging
import os
import sys
from collections import deque

cimport cython
from cpython.contextvars cimport PyContext_Copy
from cpython.dict cimport PyDict_Copy
from cpython.object cimport PyObject_Call
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memchr, memcmp, memcpy
from posix.fcntl cimport O_CLOEXEC, O_NONBLOCK, O_RDONLY, open as c_open
from posix.stat cimport S_ISREG, fstat, struct_stat
from posix.types cimport off_t
from posix.unistd cimport close as c_close
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from cyasgi.logging import TRACE_LOG_LEVEL
from cyasgi.middleware.proxy_headers import apply_proxy_headers, is_trusted_peer
from cyasgi.protocols.http.access import ACCESS_LOG_MESSAGE, access_log_extra
from cyasgi.protocols.http.errors import (
    ClientDisconnected,
    RequestRejected,
    bad_request as _bad_request,
    body_too_large,
    head_too_large,
    too_many_headers,
    transfer_coding_rejection,
    version_not_supported,
)
from cyasgi.protocols.http.extensions import (
    accepts_trailers,
    early_hint_head,
    open_path,
    sendfile_way,
    trailer_block,
    transmit_file,
    zerocopy_range,
)
from cyasgi.protocols.http.foreign import foreign_parse_error
from cyasgi.protocols.http.rules import (
    FRAMING_FIELDS,
    as_bytes,
    check_request_head,
    is_valid_target,
    split_target,
)
from cyasgi.protocols.http.server_apps import HealthCheck, service_unavailable
from cyasgi.protocols.http.upgrade import (
    is_websocket_upgrade,
    request_head_bytes,
    warn_unsupported_upgrade,
)
from cyasgi.protocols.http.wire import (
    ASGI_SPEC_VERSION,
    COALESCE_LIMIT,
    FOREIGN_FEED_STEP,
    HIGH_WATER_LIMIT,
    HTTP_EXTENSIONS,
    HELD_ROUNDS_LIMIT,
    PIPELINE_HEAD_LIMIT,
    PIPELINE_LIMIT,
    WRITE_BATCH_LIMIT,
    SHUTDOWN_GRACE,
    STATUS_LINES,
    simple_response,
)
from cyasgi.protocols.tls import tls_extension
from cyasgi.protocols.http.extensions import _DIRECT_SENDFILE, _LOOP_SENDFILE
from cyasgi.protocols.http.foreign import OWN_PARSER, PARSER_ERRORS, PARSER_UPGRADES, ParserUpgrade
from cyasgi.protocols.utils import get_client_addr, get_local_addr, get_path_with_query_string, get_remote_addr, is_ssl
from urllib.parse import unquote

cdef extern from *:
    """
    #include <errno.h>
    #ifdef __linux__
    #include <sys/sendfile.h>
    #include <sys/socket.h>
    /* The head of a file response, sent with MSG_MORE: it leaves in the file's first segment. */
    static Py_ssize_t cyasgi_send_more(int fd, const char *data, size_t size) {
        return send(fd, data, size, MSG_MORE | MSG_NOSIGNAL);
    }
    static Py_ssize_t cyasgi_sendfile(int out_fd, int in_fd, off_t *offset, size_t count) {
        return sendfile(out_fd, in_fd, offset, count);
    }
    #define CYASGI_HAVE_SENDFILE 1
    #else
    static Py_ssize_t cyasgi_send_more(int fd, const char *data, size_t size) { errno = ENOSYS; return -1; }
    static Py_ssize_t cyasgi_sendfile(int out_fd, int in_fd, off_t *offset, size_t count) { errno = ENOSYS; return -1; }
    #define CYASGI_HAVE_SENDFILE 0
    #endif
    """
    const bint CYASGI_HAVE_SENDFILE
    bytes PyUnicode_EncodeFSDefault(object text)
    Py_ssize_t cyasgi_send_more(int fd, const char *data, size_t size) nogil
    Py_ssize_t cyasgi_sendfile(int out_fd, int in_fd, off_t *offset, size_t count) nogil

__all__ = ["FlowControl", "HttpProtocol", "RequestCycle", "sweep_deadlines"]

# Python callables the hot path uses, bound once (uvloop's habit).
cdef object logger = logging.getLogger("uvicorn.error")
cdef object access_logger = logging.getLogger("uvicorn.access")
cdef object aio_Task = asyncio.Task
cdef object aio_CancelledError = asyncio.CancelledError
cdef object aio_get_running_loop = asyncio.get_running_loop
cdef object cv_copy_context = contextvars.copy_context
cdef object cv_Context = contextvars.Context
cdef bint HAS_EAGER_TASKS = sys.version_info >= (3, 12)
cdef bint HAS_TASK_CONTEXT = sys.version_info >= (3, 11)
cdef object PARSER_ERRORS_ = PARSER_ERRORS
cdef object PARSER_UPGRADES_ = PARSER_UPGRADES

cdef Py_ssize_t HIGH_WATER = HIGH_WATER_LIMIT
cdef Py_ssize_t PIPELINE_DEPTH = PIPELINE_LIMIT
cdef Py_ssize_t PIPELINE_HEAD_BYTES = PIPELINE_HEAD_LIMIT
cdef Py_ssize_t FEED_STEP = FOREIGN_FEED_STEP
cdef int HELD_ROUNDS = HELD_ROUNDS_LIMIT
cdef Py_ssize_t COALESCE = COALESCE_LIMIT
cdef Py_ssize_t COALESCE_MAX = WRITE_BATCH_LIMIT
cdef bytes CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
cdef bytes LAST_CHUNK = b"0\r\n\r\n"
cdef bytes CRLF = b"\r\n"
cdef bytes CONTENT_LENGTH_PREFIX = b"content-length: "
cdef bytes CHUNKED_LINE = b"transfer-encoding: chunked\r\n"
cdef bytes CLOSE_LINE = b"connection: close\r\n"
cdef bytes KEEP_ALIVE_LINE = b"connection: keep-alive\r\n"
cdef dict EXTENSIONS = HTTP_EXTENSIONS
cdef const char *HEX_DIGITS = b"0123456789abcdef"

# STATUS_LINES as a list indexed by status code (None below 100).
cdef list STATUS_LINE_TABLE = [STATUS_LINES.get(status) for status in range(600)]

# Byte classes (RFC 9110): token characters for header names; field-value characters
# (HTAB, SP, VCHAR, obs-text) for header values.
cdef bint[256] IS_TCHAR
cdef bint[256] IS_VALUE_CHAR
cdef int _byte
for _byte in range(256):
    IS_TCHAR[_byte] = (
        (48 <= _byte <= 57) or (65 <= _byte <= 90) or (97 <= _byte <= 122)
        or _byte in b"!#$%&'*+-.^_`|~"
    )
    IS_VALUE_CHAR[_byte] = _byte == 9 or (32 <= _byte <= 126) or _byte >= 128

# Request header names lower-cased once per distinct spelling ("Host" -> b"host"); bounded so a
# client sending random names cannot grow it.
cdef dict LOWER_NAMES = {}
cdef Py_ssize_t LOWER_NAMES_MAX = 512


cdef inline bytes lower_name(bytes name):
    cdef bytes lowered = LOWER_NAMES.get(name)
    if lowered is not None:
        return lowered
    cdef Py_ssize_t size = PyBytes_GET_SIZE(name)
    cdef const unsigned char *src = <const unsigned char *> PyBytes_AS_STRING(name)
    cdef Py_ssize_t i
    cdef bint has_upper = False
    for i in range(size):
        if 65 <= src[i] <= 90:
            has_upper = True
            break
    if has_upper:
        lowered = PyBytes_FromStringAndSize(NULL, size)
        dst = <unsigned char *> PyBytes_AS_STRING(lowered)
        for i in range(size):
            dst[i] = src[i] + 32 if 65 <= src[i] <= 90 else src[i]
    else:
        lowered = name
    if size <= 64 and len(LOWER_NAMES) < LOWER_NAMES_MAX:
        LOWER_NAMES[name] = lowered
    return lowered


cdef inline bint valid_value(const unsigned char *data, Py_ssize_t size):
    cdef Py_ssize_t i
    for i in range(size):
        if not IS_VALUE_CHAR[data[i]]:
            return False
    return True


cdef inline Py_ssize_t parse_content_length(bytes value):
    """Digits only (optional spaces or tabs around); -1 when invalid."""
    cdef const unsigned char *data = <const unsigned char *> PyBytes_AS_STRING(value)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(value)
    cdef Py_ssize_t start = 0, end = size, i, result = 0
    while start < end and (data[start] == 32 or data[start] == 9):
        start += 1
    while end > start and (data[end - 1] == 32 or data[end - 1] == 9):
        end -= 1
    if start == end or end - start > 18:
        return -1
    for i in range(start, end):
        if not 48 <= data[i] <= 57:
            return -1
        result = result * 10 + (data[i] - 48)
    return result


cdef inline Py_ssize_t decimal_digits(Py_ssize_t value):
    cdef Py_ssize_t digits = 1
    while value >= 10:
        value //= 10
        digits += 1
    return digits


cdef inline Py_ssize_t hex_digits(Py_ssize_t value):
    cdef Py_ssize_t digits = 1
    while value >= 16:
        value >>= 4
        digits += 1
    return digits


cdef inline char *put_decimal(char *out, Py_ssize_t value, Py_ssize_t digits):
    cdef Py_ssize_t i
    for i in range(digits - 1, -1, -1):
        out[i] = <char> (48 + value % 10)
        value //= 10
    return out + digits


cdef inline char *put_hex(char *out, Py_ssize_t value, Py_ssize_t digits):
    cdef Py_ssize_t i
    for i in range(digits - 1, -1, -1):
        out[i] = HEX_DIGITS[value & 15]
        value >>= 4
    return out + digits


cdef inline char *put_bytes(char *out, bytes data):
    cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
    memcpy(out, PyBytes_AS_STRING(data), size)
    return out + size


cdef inline double monotonic():
    """time.monotonic() without the call: the clock deadlines and sweep_deadlines() share."""
    cdef timespec now
    clock_gettime(CLOCK_MONOTONIC, &now)
    return now.tv_sec + now.tv_nsec * 1e-9


cdef inline bint is_ascii(bytes data):
    """bytes.isascii() without a method call."""
    cdef const unsigned char *chars = <const unsigned char *> PyBytes_AS_STRING(data)
    cdef Py_ssize_t i
    for i in range(PyBytes_GET_SIZE(data)):
        if chars[i] >= 128:
            return False
    return True


cdef inline bint has_proxy_headers(list headers):
    """X-Forwarded-For or X-Forwarded-Proto among the request headers (names are lower-case)."""
    cdef bytes name
    cdef Py_ssize_t size
    for name_value in headers:
        name = <bytes> (<tuple> name_value)[0]
        size = PyBytes_GET_SIZE(name)
        if (size == 15 and name == b"x-forwarded-for") or (size == 17 and name == b"x-forwarded-proto"):
            return True
    return False


def flush_heads(list connections):
    """Called once per loop iteration in which responses started: writes the heads still held."""
    cdef list waiting = connections[:]
    cdef HttpProtocol connection
    del connections[:]
    for connection in waiting:
        connection._flush_head()


cdef bint caused_by_disconnect(object exc):
    cdef int seen = 0
    while exc is not None and seen < 16:
        if isinstance(exc, ClientDisconnected):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


cdef object start_task(object loop, object coro, object context, dict task_kwargs):
    """Run ``coro`` as a Task in a copy of ``context``: eagerly where Python allows it.

    ``task_kwargs`` is the connection's {"loop", "eager_start", "context"} dict, reused: the
    Task's initialiser reads it and keeps no reference to it.
    """
    if HAS_EAGER_TASKS:
        task_kwargs["context"] = PyContext_Copy(context)
        return PyObject_Call(aio_Task, (coro,), task_kwargs)
    if HAS_TASK_CONTEXT:
        return loop.create_task(coro, context=PyContext_Copy(context))
    return context.run(loop.create_task, coro)


cdef class ReadyAwaitable:
    """An awaitable that never suspends, speaking the coroutine protocol (__await__, send, throw,
    close) so asyncio.iscoroutine() accepts it and a Task can run it. Subclasses say how it ends."""

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def throw(self, typ, val=None, tb=None):
        if val is None:
            raise typ
        raise val

    def close(self):
        pass


@cython.final
cdef class Completed(ReadyAwaitable):
    """What send() returns when it had nothing to wait for: done at once, with None. One shared instance."""

    def __next__(self):
        raise StopIteration

    def send(self, value):
        raise StopIteration


cdef Completed COMPLETED = Completed()


@cython.final
cdef class Failed(ReadyAwaitable):
    """What send() returns when the message was refused: awaiting it raises the error, so the
    app sees it where it awaits, as with a coroutine."""

    cdef object error

    def __init__(self, error):
        self.error = error

    def __next__(self):
        raise self.error

    def send(self, value):
        raise self.error


@cython.final
cdef class FlowControl:
    def __init__(self, transport):
        self._transport = transport
        self.read_paused = False
        self.write_paused = False
        self._drain_waiters = None

    async def drain(self):
        """Wait until the transport accepts writes again (or the connection is lost)."""
        while self.write_paused:
            waiter = aio_get_running_loop().create_future()
            if self._drain_waiters is None:
                self._drain_waiters = []
            self._drain_waiters.append(waiter)
            try:
                await waiter
            finally:
                if self._drain_waiters is not None and waiter in self._drain_waiters:
                    self._drain_waiters.remove(waiter)

    cpdef pause_reading(self):
        if not self.read_paused:
            self.read_paused = True
            self._transport.pause_reading()

    cpdef resume_reading(self):
        if self.read_paused:
            self.read_paused = False
            self._transport.resume_reading()

    cpdef pause_writing(self):
        self.write_paused = True

    cpdef resume_writing(self):
        self.write_paused = False
        waiters = self._drain_waiters
        if waiters:
            self._drain_waiters = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


@cython.final
@cython.freelist(16)
cdef class RequestCycle:
    """One request: its scope, its body as it arrives, and the response the app sends."""

    def __init__(self, HttpProtocol protocol, dict scope, app, bint keep_alive, bint expect_100_continue):
        self._init(protocol, scope, app, keep_alive, expect_100_continue)

    cdef _init(self, HttpProtocol protocol, dict scope, object app, bint keep_alive, bint expect_100_continue):
        self.scope = scope
        self.protocol = protocol
        self.app = app
        self.transport = protocol.transport
        self.flow = protocol.flow
        self.keep_alive = keep_alive
        self.waiting_for_100_continue = expect_100_continue
        self.body = []
        self.body_size = 0
        self.more_body = True
        self._end_delivered = False
        self._disconnect_delivered = False
        self._waiter = None
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self._head_request = scope["method"] == "HEAD"
        self._bodyless = self._head_request
        self._head_parts = None
        self._head_size = 0
        self._app_connection_header = False
        self._status = 0
        self._chunked = False
        self._content_length = -1
        self._bytes_sent = 0
        self._started = monotonic() if protocol.access_log else 0.0
        self._trailers = 0
        self._awaiting_trailers = False
        self._trailer_lines = b""

    # Waking receive() ------------------------------------------------------------------------

    cdef bint _waits_after_request(self):
        """Its app waits in receive() with the whole request delivered."""
        return self._waiter is not None and self._end_delivered

    cpdef wake(self):
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # ASGI ------------------------------------------------------------------------------------

    async def run_asgi(self):
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except aio_CancelledError:
            self._abort()
            raise
        except BaseException as exc:
            if (self.disconnected or self.transport.is_closing()) and caused_by_disconnect(exc):
                logger.debug("Client disconnected while the application was sending the response.")
            else:
                logger.error("Exception in ASGI application\n", exc_info=exc)
            if self._can_replace_response():
                self._send_500()
            else:
                self._abort()
        else:
            if result is not None:
                logger.error("ASGI callable should return None, but returned '%s'.", result)
                self._abort()
            elif self.disconnected:
                if not self.response_complete and self.response_started and self.protocol.access_log:
                    self._log_access(True)  # the client left mid-response and the app returned quietly
            elif self._disconnect_delivered:
                self._abort()  # told the client closed its end, the app stopped: nothing is owed
            elif not self.response_started:
                logger.error("ASGI callable returned without starting response.")
                self._send_500()
            elif self._head_parts is not None:
                logger.error("ASGI callable returned without completing response.")
                self._send_500()
            elif not self.response_complete:
                logger.error("ASGI callable returned without completing response.")
                self._abort()

    async def receive(self):
        cdef list chunks
        if self.waiting_for_100_continue:
            self.waiting_for_100_continue = False
            if not self.response_started and not self.transport.is_closing():
                self.protocol._write(CONTINUE)
        while True:
            if self.disconnected or self.response_complete:
                return {"type": "http.disconnect"}
            if self.body or (not self.more_body and not self._end_delivered):
                break
            if self.more_body:
                self.flow.resume_reading()
            elif self.protocol._eof:
                # The whole request is in and the client has closed its end: it is gone, or waits
                # half-closed for the answer (which is still written). Either way nothing more comes.
                self._disconnect_delivered = True
                return {"type": "http.disconnect"}
            else:
                self.protocol._read_for_eof()
            self._waiter = self.protocol.loop.create_future()
            await self._waiter
        chunks = self.body
        if len(chunks) == 1:
            body = chunks[0]
        else:
            body = b"".join(chunks)
        self.body = []
        self.body_size = 0
        if not self.more_body:
            self._end_delivered = True
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    def send(self, message):
        # The common case waits for nothing: do the work now and return an awaitable that is
        # already done, instead of a coroutine object per message.
        if self.flow.write_paused and not self.disconnected:
            return self._send_after_drain(message)
        try:
            pending = self._send(message)
        except BaseException as error:
            return Failed(error)
        if pending is not None:
            return pending  # a file: a coroutine that sends it
        return COMPLETED

    async def _send_after_drain(self, message):
        await self.flow.drain()
        pending = self._send(message)
        if pending is not None:
            await pending

    cdef _send(self, message):
        """Handle one message; None, or a coroutine still to await (files)."""
        cdef dict m = message if type(message) is dict else dict(message)
        if self.disconnected:
            raise ClientDisconnected
        message_type = m.get("type")
        if not self.response_started:
            if message_type != "http.response.start":
                if message_type == "http.response.early_hint":
                    self._send_early_hint(m.get("links", ()))
                    return None
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{message_type}'.")
            self._start_response(m.get("status"), m.get("headers", ()), m.get("trailers", False))
        elif not self.response_complete:
            if message_type == "http.response.body" and not self._awaiting_trailers:
                self._send_body(m.get("body", b""), m.get("more_body", False))
            else:
                return self._send_extension(message_type, m)
        else:
            raise RuntimeError(f"Unexpected ASGI message '{message_type}' sent, after response already completed.")
        return None

    cdef _send_extension(self, object message_type, dict message):
        """The response messages of the ASGI extensions, after the start (not the hot path)."""
        if self._awaiting_trailers:
            if message_type != "http.response.trailers":
                raise RuntimeError(f"Expected ASGI message 'http.response.trailers', but got '{message_type}'.")
            self._send_trailers(message.get("headers", ()), message.get("more_trailers", False))
            return None
        if message_type == "http.response.pathsend":
            pending = self._send_path_now(message.get("path"))
            if pending is not False:
                return pending
        if message_type == "http.response.pathsend" or message_type == "http.response.zerocopysend":
            return self._send_file_message(message_type, message)
        raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{message_type}'.")

    async def _send_file_message(self, message_type, dict message):
        if message_type == "http.response.pathsend":
            fd, size = open_path(message.get("path"))
            try:
                await self._send_file(fd, 0, size, False)
            finally:
                os.close(fd)
        else:
            fd, offset, count, advance = zerocopy_range(message.get("file"), message.get("offset"), message.get("count"))
            await self._send_file(fd, offset, count, message.get("more_body", False))
            if advance:
                os.lseek(fd, offset + count, os.SEEK_SET)

    cdef object _send_path_now(self, object path):
        """pathsend without a coroutine in the common case: a whole regular file on a plain TCP
        socket whose transport holds nothing, answered by one send(2) of the head with MSG_MORE and
        sendfile(2). On loopback, a head sent as a packet of its own costs about as much CPU as
        the rest of a 64 KiB response; with MSG_MORE it leaves in the file's first segment.

        False: this case does not apply and nothing was done (``_send_file_message`` then opens
        the file again and raises what the app should see). None: the response is out. Else a
        coroutine sending the rest once the socket takes more."""
        cdef HttpProtocol protocol = self.protocol
        cdef struct_stat info
        cdef off_t offset = 0
        cdef Py_ssize_t size, sent, length
        cdef int fd, sock_fd
        cdef bytes encoded, pending
        cdef list batch
        if (not CYASGI_HAVE_SENDFILE or type(path) is not str or self._head_parts is None
                or self._bodyless or self._trailers == 1 or self.disconnected):
            return False
        sock_fd = protocol._sendfile_socket()
        if sock_fd < 0 or protocol._transport_is_closing() or self.transport.get_write_buffer_size():
            return False
        encoded = PyUnicode_EncodeFSDefault(path)
        if memchr(PyBytes_AS_STRING(encoded), 0, PyBytes_GET_SIZE(encoded)) != NULL:
            return False
        fd = c_open(PyBytes_AS_STRING(encoded), O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        if fd < 0:
            return False
        if fstat(fd, &info) != 0 or not S_ISREG(info.st_mode):
            c_close(fd)
            return False
        size = info.st_size
        if self._content_length != -1 and self._content_length != size:
            c_close(fd)
            return False  # the slow path says which way the lengths disagree
        pending = self._file_head(size, False)
        self._bytes_sent += size
        batch = protocol._write_batch
        if batch:  # earlier pipelined responses of this dispatch loop go first
            batch.append(pending)
            pending = b"".join(batch)
            protocol._write_batch = []
            protocol._write_batch_size = 0
        if not size:
            c_close(fd)
            protocol._write(pending)
            self._end_body()
            return None
        length = PyBytes_GET_SIZE(pending)
        sent = cyasgi_send_more(sock_fd, PyBytes_AS_STRING(pending), length)
        if sent != length:
            # The socket took part of it, or failed: the transport sends the rest (or meets the
            # error), and transmit_file waits until the transport is empty before the file.
            protocol._transport_write(pending[sent:] if sent > 0 else pending)
            return self._send_file_rest(fd, 0, size)
        while offset < size:
            sent = cyasgi_sendfile(sock_fd, fd, &offset, <size_t>(size - offset))
            if sent <= 0:
                break  # full (EAGAIN), failed or shrunk: transmit_file waits, raises or reports it
        if offset < size:
            return self._send_file_rest(fd, offset, size)
        c_close(fd)
        self._end_body()
        return None

    async def _send_file_rest(self, int fd, Py_ssize_t offset, Py_ssize_t end):
        try:
            await transmit_file(self, fd, offset, end - offset)
        finally:
            os.close(fd)
        self._end_body()

    # Response framing -------------------------------------------------------------------------

    cdef _start_response(self, object status, object headers, object trailers):
        cdef int code
        cdef int trailers_mode = 0
        cdef list parts
        cdef bytes raw_name, name, value, line, block
        cdef const unsigned char *data
        cdef Py_ssize_t size, i, length, head_size
        cdef Py_ssize_t content_length = -1
        cdef bint keep_alive = self.keep_alive
        cdef bint connection_header = False
        cdef bint upper

        # Everything is checked before anything is recorded, so a bad start still gets a 500.
        if type(status) is not int or not 100 <= status <= 599:
            raise RuntimeError(f"Invalid HTTP status code {status!r} in response.")
        code = status
        if trailers:
            trailers_mode = self._trailers_mode(code)
        line = <bytes> STATUS_LINE_TABLE[code]
        block = self.protocol.server_state.default_headers_block
        # [status line, default headers, name, value, name, value...]; ": " and CRLF are added
        # when the head is assembled, so its exact size is known here.
        parts = [line, block]
        head_size = PyBytes_GET_SIZE(line) + PyBytes_GET_SIZE(block)
        for name_value in headers:
            raw_name_obj, value_obj = name_value
            raw_name = raw_name_obj if type(raw_name_obj) is bytes else as_bytes(raw_name_obj, "header name")
            value = value_obj if type(value_obj) is bytes else as_bytes(value_obj, "header value")
            # Validate the name as a token and lower-case it in one pass.
            data = <const unsigned char *> PyBytes_AS_STRING(raw_name)
            size = PyBytes_GET_SIZE(raw_name)
            if size == 0:
                raise RuntimeError("Invalid HTTP header name.")
            upper = False
            for i in range(size):
                if not IS_TCHAR[data[i]]:
                    raise RuntimeError("Invalid HTTP header name.")
                if 65 <= data[i] <= 90:
                    upper = True
            name = raw_name.lower() if upper else raw_name
            if not valid_value(<const unsigned char *> PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value)):
                raise RuntimeError("Invalid HTTP header value.")
            if size == 14 and name == b"content-length":
                length = parse_content_length(value)
                if length < 0 or (content_length != -1 and length != content_length):
                    raise RuntimeError("Invalid Content-Length header value in response.")
                content_length = length
                if trailers_mode == 1:
                    continue  # the body is chunked to carry the trailers; the length is still checked
            elif size == 17 and name == b"transfer-encoding":
                continue  # the server frames the body itself (ASGI: servers ignore it)
            elif size == 10 and name == b"connection":
                connection_header = True
                if b"close" in value.lower():
                    keep_alive = False
            parts.append(name)
            parts.append(value)
            head_size += size + PyBytes_GET_SIZE(value) + 4

        self.response_started = True
        self.keep_alive = keep_alive
        self._app_connection_header = connection_header
        self._status = code
        self._content_length = content_length
        if trailers_mode:
            self._trailers = trailers_mode
        if code == 204 or code == 304 or code < 200:
            self._bodyless = True
        self._head_parts = parts
        self._head_size = head_size
        if not self.protocol._head_check_due and not self.protocol._dispatching:
            self.protocol._check_head_soon()  # (an app started eagerly by _dispatch is checked by _run)

    cdef int _trailers_mode(self, int status) except -1:
        """For a start with ``trailers``: 1 when they can be written (an HTTP/1.1 response with a
        body, to a request that said ``TE: trailers``), which makes the body chunked; else 2: the
        response is framed as usual and the trailers are dropped."""
        if self._bodyless or status == 204 or status == 304 or status < 200 or self.scope["http_version"] != "1.1":
            return 2
        return 1 if accepts_trailers(self.scope["headers"]) else 2

    cdef _log_access(self, bint aborted):
        """The access line, once the response is complete (or aborted): uvicorn's record, plus
        ``duration``, ``bytes_sent``, ``request_id`` and ``aborted`` attributes."""
        scope = self.scope
        self.protocol.access_logger.info(
            ACCESS_LOG_MESSAGE,
            get_client_addr(scope),
            scope["method"],
            get_path_with_query_string(scope),
            scope["http_version"],
            self._status,
            extra=access_log_extra(scope, monotonic() - self._started, self._bytes_sent, aborted),
        )

    cdef _flush_head(self):
        """No body message followed the start within a loop iteration (an event stream before its
        first event, a slow computation): the head goes out now, framed for a body still to come,
        so the client is not left without a status."""
        if self._head_parts is not None and not self.disconnected and not self.transport.is_closing():
            self.protocol._write(self._file_head(0, True))

    cdef _send_body(self, object body_obj, bint more_body):
        cdef bytes body = body_obj if type(body_obj) is bytes else as_bytes(body_obj, "body")
        cdef Py_ssize_t size = PyBytes_GET_SIZE(body)
        cdef list parts = self._head_parts
        cdef bytes framing = b""
        cdef bytes connection = b""
        cdef bytes out
        cdef char *p
        cdef Py_ssize_t i, total, length_value = -1, length_digits = 0, chunk_digits = 0
        cdef bint http10, inline_body, last_chunk

        if more_body and self.transport.is_closing():
            # The client is gone and connection_lost is not delivered yet; an app streaming in a
            # loop that never waits would otherwise never see it (asyncio drops writes silently).
            raise ClientDisconnected
        if 0 <= self._content_length < self._bytes_sent + size and not self._bodyless:
            # Refused before anything is written: a head still held can become a 500.
            raise RuntimeError("Response content longer than Content-Length")
        if parts is not None:
            # The first body chunk decides the framing header.
            self._head_parts = None
            http10 = self.scope["http_version"] == "1.0"
            if not self._bodyless and (self._content_length == -1 or self._trailers == 1):
                if not more_body and self._trailers != 1:
                    length_value = size
                elif http10:
                    self.keep_alive = False  # an HTTP/1.0 body of unknown length ends at close
                else:
                    self._chunked = True
                    framing = CHUNKED_LINE
            if self._app_connection_header:
                pass  # the app said what it wanted; never a second connection header
            elif not self.keep_alive:
                connection = CLOSE_LINE
            elif http10:
                connection = KEEP_ALIVE_LINE

        if self._bodyless:
            body = b""  # HEAD, 204, 304, 1xx: whatever the app sent is not written
            size = 0
        else:
            self._bytes_sent += size

        # One buffer: [head + framing + CRLF] + [chunk size line] + body (when small) + [chunk end].
        last_chunk = self._chunked and not more_body and self._trailers != 1
        inline_body = size < COALESCE
        total = 0
        if parts is not None:
            total = self._head_size + PyBytes_GET_SIZE(framing) + PyBytes_GET_SIZE(connection) + 2
            if length_value >= 0:
                length_digits = decimal_digits(length_value)
                total += 16 + length_digits + 2
        if self._chunked and size:
            chunk_digits = hex_digits(size)
            total += chunk_digits + 2
            if inline_body:
                total += size + 2
        elif inline_body:
            total += size
        if last_chunk and (inline_body or not size):
            total += 5

        if total:
            out = PyBytes_FromStringAndSize(NULL, total)
            p = PyBytes_AS_STRING(out)
            if parts is not None:
                p = put_bytes(p, <bytes> parts[0])
                p = put_bytes(p, <bytes> parts[1])
                for i in range(2, len(parts), 2):
                    p = put_bytes(p, <bytes> parts[i])
                    p[0] = 58  # ":"
                    p[1] = 32  # " "
                    p = put_bytes(p + 2, <bytes> parts[i + 1])
                    p[0] = 13
                    p[1] = 10
                    p += 2
                if length_value >= 0:
                    p = put_bytes(p, CONTENT_LENGTH_PREFIX)
                    p = put_decimal(p, length_value, length_digits)
                    p[0] = 13
                    p[1] = 10
                    p += 2
                p = put_bytes(p, framing)
                p = put_bytes(p, connection)
                p[0] = 13
                p[1] = 10
                p += 2
            if self._chunked and size:
                p = put_hex(p, size, chunk_digits)
                p[0] = 13
                p[1] = 10
                p += 2
                if inline_body:
                    p = put_bytes(p, body)
                    p[0] = 13
                    p[1] = 10
                    p += 2
            elif inline_body:
                p = put_bytes(p, body)
            if last_chunk and (inline_body or not size):
                p = put_bytes(p, LAST_CHUNK)
            if p != PyBytes_AS_STRING(out) + total:  # the size arithmetic above is wrong: fail loudly
                raise SystemError(f"response buffer mis-sized: {p - PyBytes_AS_STRING(out)} != {total}")
            if inline_body or not size:
                self.protocol._write(out)
            elif self._chunked:
                self.protocol._writelines((out, body, CRLF + LAST_CHUNK if last_chunk else CRLF))
            else:
                self.protocol._writelines((out, body))
        elif size:
            self.protocol._write(body)

        if not more_body:
            self._end_body()

    cdef _end_body(self):
        if self._bytes_sent < self._content_length and not self._bodyless:
            raise RuntimeError("Response content shorter than Content-Length")
        if self._trailers:
            self._awaiting_trailers = True
            return
        self._complete()

    cdef _complete(self):
        """The response is on the wire (its last body chunk, or its trailers)."""
        self.response_complete = True
        self.wake()
        if self.protocol.access_log:
            self._log_access(False)
        self.protocol._on_response_complete(self)

    async def _send_file(self, int fd, Py_ssize_t offset, Py_ssize_t count, bint more_body):
        """A body chunk of ``count`` bytes of a file (pathsend, zerocopysend): framed as
        ``_send_body`` frames one, its bytes sent by ``transmit_file`` once everything before them
        is on the transport."""
        cdef bytes head = b""
        if 0 <= self._content_length < self._bytes_sent + count and not self._bodyless:
            raise RuntimeError("Response content longer than Content-Length")
        if self._head_parts is not None:
            head = self._file_head(count, more_body)
        if self._bodyless:
            count = 0
        else:
            self._bytes_sent += count
        if self._chunked and count:
            head += b"%x\r\n" % count
        if head:
            self.protocol._write(head)
        if count:
            self.protocol._flush_writes()
            await transmit_file(self, fd, offset, count)
        tail = CRLF if self._chunked and count else b""
        if self._chunked and not more_body and self._trailers != 1:
            tail += LAST_CHUNK
        if tail:
            self.protocol._write(tail)
        if not more_body:
            self._end_body()

    cdef bytes _file_head(self, Py_ssize_t size, bint more_body):
        """The head, framed for a body chunk of ``size`` bytes that is not in memory."""
        cdef list parts = self._head_parts
        cdef list lines = [parts[0], parts[1]]
        cdef Py_ssize_t i
        self._head_parts = None
        for i in range(2, len(parts), 2):
            lines.append(b"%s: %s\r\n" % (parts[i], parts[i + 1]))
        http10 = self.scope["http_version"] == "1.0"
        if not self._bodyless and (self._content_length == -1 or self._trailers == 1):
            if not more_body and self._trailers != 1:
                lines.append(b"content-length: %d\r\n" % size)
            elif http10:
                self.keep_alive = False  # an HTTP/1.0 body of unknown length ends at close
            else:
                self._chunked = True
                lines.append(CHUNKED_LINE)
        if self._app_connection_header:
            pass  # the app said what it wanted; never a second connection header
        elif not self.keep_alive:
            lines.append(CLOSE_LINE)
        elif http10:
            lines.append(KEEP_ALIVE_LINE)
        lines.append(CRLF)
        return b"".join(lines)

    cdef _send_trailers(self, object headers, object more_trailers):
        block = trailer_block(headers)  # checked even when dropped: the same app errors everywhere
        if self._trailers == 1:
            self._trailer_lines += block
        if not more_trailers:
            if self._trailers == 1:
                self.protocol._write(b"0\r\n" + self._trailer_lines + CRLF)
            self._complete()

    cdef _send_early_hint(self, object links):
        head = early_hint_head(links)  # checked even for HTTP/1.0, which never gets it
        if head and self.scope["http_version"] == "1.1" and not self.transport.is_closing():
            self.protocol._write(head)

    cdef bint _can_replace_response(self):
        """Nothing of the response is on the wire yet (its head waits for the first body chunk)."""
        return not self.disconnected and (not self.response_started or self._head_parts is not None)

    cdef _send_500(self):
        self._trailers = 0  # replacing a response that announced trailers
        self._start_response(
            500,
            [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"21"),
                (b"connection", b"close"),
            ],
            False,
        )
        self._send_body(b"Internal Server Error", False)

    cdef _abort(self):
        """The response cannot be completed: close the connection so the client sees it end."""
        if not self.response_complete:
            self.keep_alive = False
            if self.response_started and self.protocol.access_log:
                self._log_access(True)
            self.protocol._close()
            self.protocol._on_response_aborted(self)


cdef class HttpProtocol:
    def __init__(self, config, server_state, app_state, _loop=None):
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.http_app
        self.trusted_hosts = config.proxy_trusted_hosts  # None: proxy headers off
        self.loop = _loop if _loop is not None else aio_get_running_loop()
        self.logger = logger
        self.access_logger = access_logger
        self.access_log = access_logger.hasHandlers()
        self._limit_head = config.limit_request_head_size
        self._limit_headers = config.limit_request_headers
        self._limit_body = -1 if config.limit_request_body_size is None else config.limit_request_body_size
        self._limit_requests = config.limit_keep_alive_requests or 0
        self._timeout_head = config.timeout_header_read or 0.0
        parser_factory = config.http_parser_factory
        if parser_factory is None or parser_factory is OWN_PARSER:
            self._native_parser = RequestParser(self, self._limit_head, self._limit_headers, self._limit_body)
            self.parser = self._native_parser
        else:
            self._native_parser = None
            self.parser = parser_factory(self)
        self.ws_protocol_class = config.ws_protocol_class
        self.root_path = config.root_path
        self._root_path_raw = config.root_path.encode("utf-8")
        self.limit_concurrency = config.limit_concurrency
        self._limit = -1 if config.limit_concurrency is None else config.limit_concurrency
        self.timeout_keep_alive = config.timeout_keep_alive
        self.reset_contextvars = config.reset_contextvars
        self.asgi_version = config.asgi_version
        self.app_state = app_state
        self._health_path = config.health_path_raw
        self._health_app = None if self._health_path is None else HealthCheck(server_state)

        self.server_state = server_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        pending_heads = getattr(server_state, "pending_heads", None)
        self._pending_heads = [] if pending_heads is None else pending_heads
        self._head_check_due = False

        self.transport = None
        self.flow = None
        self.server = None
        self.client = None
        self.scheme = "http"
        self._task_kwargs = None
        self.deadline = 0.0
        self._head_deadline = 0.0
        self._requests = 0
        self.draining = False
        self._context = None
        self._proxy_trusted = False
        self._tls = None
        self._transport_write = None
        self._transport_is_closing = None
        self._write_batch = None
        self._write_batch_size = 0
        self._reading_stopped = False
        self._eof = False
        self._pending_error = None
        self._upgrade = None
        self._held = None
        self._queued_head_bytes = 0

        self.url = b""
        self.headers = []
        self.expect_100_continue = False
        self._parsing = False
        self._in_head = False
        self._head_size = 0
        self._trailer_size = 0
        self._body_received = 0
        self._progress = False
        self._backlog = 0
        self.cycle = None
        self.active = None
        self.pipeline = deque()
        self._dispatching = False
        self._held_resume_due = False

    # asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport):
        self.connections.add(self)
        self.transport = transport
        self._transport_write = transport.write
        self._transport_is_closing = transport.is_closing
        self.flow = FlowControl(transport)
        self.server = get_local_addr(transport)
        self.client = get_remote_addr(transport)
        self.scheme = "https" if is_ssl(transport) else "http"
        if self.scheme == "https":
            self._tls = tls_extension(transport, self.config.ssl_server_cert)
        self._context = cv_copy_context()
        self._task_kwargs = {"loop": self.loop, "eager_start": True, "context": None}
        self._proxy_trusted = self.trusted_hosts is not None and is_trusted_peer(
            self.trusted_hosts, self.client, self.server
        )
        if self._timeout_head:
            self._head_deadline = self.deadline = monotonic() + self._timeout_head
        if self.logger.isEnabledFor(TRACE_LOG_LEVEL):
            self.logger.log(TRACE_LOG_LEVEL, "%sHTTP connection made", self._log_prefix())

    def connection_lost(self, exc):
        cdef RequestCycle cycle
        self.connections.discard(self)
        if self.logger.isEnabledFor(TRACE_LOG_LEVEL):
            self.logger.log(TRACE_LOG_LEVEL, "%sHTTP connection lost", self._log_prefix())
        self.deadline = 0.0
        for cycle in (self.active, self.cycle):
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.wake()
        self.active = None
        self.cycle = None
        self.pipeline.clear()
        if self.flow is not None:
            self.flow.resume_writing()  # senders waiting to drain wake up and see the disconnect
        self.parser = None  # break the parser <-> protocol reference cycle now
        self._native_parser = None

    def eof_received(self):
        # The client closed its end. An app waiting in receive() after the whole request learns it
        # at once (http.disconnect); responses are still written, so a client that only half-closed
        # after its requests gets them all.
        self._eof = True
        if self.cycle is not None and self.cycle.more_body:
            self._abandon(self.cycle)
        elif self.active is not None:
            self.active.wake()
        if self.transport.is_closing() or self.scheme != "http":
            return None  # (TLS transports cannot stay half-open)
        return True if self.active is not None or self.pipeline or self._held is not None else None

    def data_received(self, data):
        if self._reading_stopped:
            return
        if self._held is not None:
            # Read while earlier bytes wait for room (reading resumed to watch for EOF, or a
            # transport's buffered data): kept after them, up to a bound.
            self._held += data
            if PyBytes_GET_SIZE(self._held) >= PIPELINE_HEAD_BYTES:
                self.flow.pause_reading()
            return
        self.deadline = 0.0
        if self._head_deadline == 0.0 and self._timeout_head:
            self._head_deadline = -1.0  # the first byte since the last response: the head clock runs
        self._parse(data)
        self._dispatch()

    cdef _parse(self, object data):
        """Hand ``data`` to the parser; what comes after a full pipeline is held, unparsed."""
        cdef RequestCycle cycle
        if type(data) is not bytes:
            data = bytes(data)
        try:
            if self._native_parser is not None:
                self._held = self._native_parser.feed(<bytes> data)
            else:
                self._feed_foreign(<bytes> data)
        except RequestRejected as exc:
            self._reject(exc.status, exc.body, exc.log_message)
        except PARSER_ERRORS_ as exc:
            rejection = foreign_parse_error(exc, self.parser.get_http_version())
            self._reject(rejection.status, rejection.body, rejection.log_message)
        except PARSER_UPGRADES_ as exc:
            self._on_upgrade(data[exc.args[0]:] if exc.args else b"")
        cycle = self.cycle
        if self._eof and cycle is not None and cycle.more_body:
            self._abandon(cycle)  # held bytes parsed after the client closed its end

    cdef _abandon(self, RequestCycle cycle):
        """The client closed its end inside this request's body, which can never complete: the
        request is dropped, and the requests before it are still answered."""
        cycle.disconnected = True
        cycle.wake()
        self.cycle = None
        if cycle is self.active:
            self._close()  # its app is told; nothing before it is left to answer
        elif cycle in self.pipeline:
            self.pipeline.remove(cycle)

    cdef _feed_foreign(self, bytes data):
        """httptools and h11 parse all they are given: feed them a step at a time, so they stop at
        a full pipeline as the native parsers do."""
        cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
        cdef Py_ssize_t pos = 0, step = FEED_STEP, queued
        cdef bytes chunk
        while pos < size:
            if self._pipeline_full():
                self._held = data[pos:]
                return
            chunk = data if pos == 0 and size <= step else data[pos:pos + step]
            queued = len(self.pipeline)
            try:
                self.parser.feed_data(chunk)
            except PARSER_UPGRADES_ as exc:
                raise ParserUpgrade(pos + exc.args[0] if exc.args else size) from None
            if self._progress:
                self._progress = False
                self._backlog = 0
            else:
                self._bound_backlog(PyBytes_GET_SIZE(chunk))
            pos += PyBytes_GET_SIZE(chunk)
            step = FEED_STEP if len(self.pipeline) != queued else step * 2

    cdef bint _read_for_eof(self):
        """The app waits in receive() after its whole request (a long-poll): read on even with
        requests queued behind it, so the client closing its end is seen; what arrives is parsed or
        held as usual, and held bytes are not let grow past a bound. True if reading goes on."""
        if self._reading_stopped or (self._held is not None and PyBytes_GET_SIZE(self._held) >= PIPELINE_HEAD_BYTES):
            return False
        self.flow.resume_reading()
        return True

    cdef bint _pipeline_full(self):
        """Enough parsed requests wait for their turn: parse no further until they are answered."""
        cdef Py_ssize_t waiting = len(self.pipeline)
        if not waiting:
            self._queued_head_bytes = 0
            return False
        return waiting >= PIPELINE_DEPTH or self._queued_head_bytes >= PIPELINE_HEAD_BYTES

    def pause_writing(self):
        self.flow.pause_writing()

    cdef _resume_held_soon(self):
        self._held_resume_due = True
        self.loop.call_soon(self._resume_held)

    def _resume_held(self) -> None:
        self._held_resume_due = False
        if self.transport is None or self._transport_is_closing():
            return
        if self.active is None and not self.pipeline:
            self._dispatch()  # (else the answer in progress resumes them when it completes)

    def resume_writing(self):
        self.flow.resume_writing()
        if self._held is not None and self.active is None and not self.pipeline:
            self._dispatch()  # parsing stopped while the client read nothing; it reads again

    # Parser callbacks (httptools and h11; the native parser calls the _on_* methods directly) --

    def on_message_begin(self):
        self._parsing = True
        self._progress = True
        self._in_head = True
        self._head_size = 0
        self.url = b""
        self.headers = []
        self.expect_100_continue = False

    def on_url(self, bytes url):
        self._progress = True
        if self.url:
            self.url += url
        else:
            self.url = url
        if PyBytes_GET_SIZE(self.url) > self._limit_head:
            raise head_too_large()

    def on_header(self, bytes name, bytes value):
        cdef Py_ssize_t size = PyBytes_GET_SIZE(value)
        cdef const char *data = PyBytes_AS_STRING(value)
        self._progress = True
        if not self._in_head:
            # A trailer field: bounded and checked like the native parsers', never a request header.
            self._trailer_size += PyBytes_GET_SIZE(name) + size + 4
            if self._trailer_size > self._limit_head or name.lower() in FRAMING_FIELDS:
                raise _bad_request()
            return
        if len(self.headers) >= self._limit_headers:
            raise too_many_headers()
        name = lower_name(name)
        if size and (data[size - 1] == 32 or data[size - 1] == 9):
            value = value.rstrip(b" \t")  # llhttp keeps trailing whitespace; it is not part of the value
        if PyBytes_GET_SIZE(name) == 6 and name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self._head_size += PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value) + 4
        self.headers.append((name, value))

    def on_headers_complete(self):
        parser = self.parser
        self._in_head = False
        self._trailer_size = 0
        self._body_received = 0
        method = parser.get_method()
        # The request line and fields as written with single spaces, and the final CRLF.
        head_size = self._head_size + len(method) + PyBytes_GET_SIZE(self.url) + 14
        if head_size > self._limit_head:
            raise head_too_large()
        self._queued_head_bytes += head_size
        http_version = parser.get_http_version()
        method_name = method.decode("ascii")
        check_request_head(method_name, self.url, http_version, self.headers, self._limit_body)
        self._on_request(
            method_name,
            self.url,
            http_version,
            self.headers,
            parser.should_keep_alive(),
            parser.should_upgrade(),
            self.expect_100_continue,
        )

    def on_body(self, bytes body):
        self._progress = True
        if self._limit_body >= 0:
            self._body_received += PyBytes_GET_SIZE(body)
            if self._body_received > self._limit_body:
                raise body_too_large()
        self._on_body(body)

    def on_message_complete(self):
        self._progress = True
        self._on_message_complete()

    cdef _bound_backlog(self, Py_ssize_t size):
        """Bound what httptools / h11 buffer without handing anything over (a header growing
        forever, a trailer): after ``--limit-request-head-size`` such bytes, 431 (or 400)."""
        self._backlog += size
        if self._backlog > self._limit_head:
            raise head_too_large() if self._in_head else _bad_request()

    cdef _on_request(self, str method, bytes target, str http_version, list headers, bint keep_alive,
                     bint upgrade, bint expect_100_continue):
        """A complete request head: queue its request cycle (or remember the upgrade)."""
        cdef RequestCycle cycle
        cdef bytes raw_path, query_string
        cdef const char *data = PyBytes_AS_STRING(target)
        cdef Py_ssize_t size = PyBytes_GET_SIZE(target)
        cdef const char *question
        cdef str path
        self._parsing = True
        if self.draining:
            keep_alive = False  # shutting down: this response closes the connection
        if self._limit_requests:
            self._requests += 1
            if self._requests >= self._limit_requests:
                keep_alive = False  # --limit-keep-alive-requests: the last one on this connection
        if upgrade:
            websocket = is_websocket_upgrade(headers)
            if websocket and self.ws_protocol_class is not None:
                # Handed to the WebSocket protocol once earlier requests are answered.
                self._upgrade = request_head_bytes(method, target, headers)
                return
            warn_unsupported_upgrade(websocket)
            keep_alive = False  # the parser cannot go on after an upgrade request

        if size and data[0] == 47 and memchr(data, 35, size) == NULL:  # starts with "/", no "#"
            question = <const char *> memchr(data, 63, size)  # "?"
            if question == NULL:
                raw_path = target
                query_string = b""
            else:
                raw_path = PyBytes_FromStringAndSize(data, question - data)
                query_string = PyBytes_FromStringAndSize(question + 1, size - (question - data) - 1)
        else:
            raw_path, query_string = split_target(target)
        if is_ascii(raw_path):
            path = raw_path.decode("latin-1")
        else:
            path = raw_path.decode("utf-8", "replace")
        if "%" in path:
            path = unquote(path)
        root_path = self.root_path
        if self._scope_template is None:
            self._scope_template = self._new_scope_template()
        # A copy of the connection's template, then what each request has of its own: copying
        # the keys table and replacing values is cheaper than inserting 14 keys into a new dict.
        scope = PyDict_Copy(self._scope_template)
        scope["asgi"] = PyDict_Copy(self._scope_template["asgi"])
        scope["http_version"] = http_version
        scope["method"] = method
        scope["path"] = root_path + path if root_path else path
        scope["raw_path"] = self._root_path_raw + raw_path if root_path else raw_path
        scope["query_string"] = query_string
        scope["headers"] = headers
        scope["state"] = PyDict_Copy(self.app_state)
        scope["extensions"] = PyDict_Copy(EXTENSIONS)
        if self._tls is not None:
            scope["extensions"]["tls"] = self._tls.copy()
        if self._proxy_trusted and has_proxy_headers(headers):
            apply_proxy_headers(scope, self.trusted_hosts)

        app = self.app
        if self._health_path is not None and raw_path == self._health_path and (method == "GET" or method == "HEAD"):
            app = self._health_app  # answered by the server, never refused by --limit-concurrency
        elif self._limit >= 0 and (len(self.connections) >= self._limit or len(self.tasks) >= self._limit):
            app = service_unavailable
            self.logger.warning("Exceeded concurrency limit.")

        cycle = RequestCycle.__new__(RequestCycle)
        cycle._init(self, scope, app, keep_alive, expect_100_continue)
        self.cycle = cycle
        self.pipeline.append(cycle)

    cdef dict _new_scope_template(self):
        """The scope's keys in their order, with the values the connection's requests share."""
        return {
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": ASGI_SPEC_VERSION},
            "http_version": None,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": None,
            "root_path": self.root_path,
            "path": None,
            "raw_path": None,
            "query_string": None,
            "headers": None,
            "state": None,
            "extensions": None,
        }

    cdef _on_body(self, bytes body):
        cdef RequestCycle cycle = self.cycle
        if cycle is None or cycle.response_complete or cycle.disconnected:
            return  # nobody will read it: the response is already out
        cycle.body.append(body)
        cycle.body_size += PyBytes_GET_SIZE(body)
        if cycle.body_size > HIGH_WATER:
            self.flow.pause_reading()
        cycle.wake()

    cdef _on_message_complete(self):
        cdef RequestCycle cycle = self.cycle
        self._parsing = False
        if cycle is None:
            return
        self.cycle = None
        cycle.more_body = False
        cycle.wake()

    # Running requests in order ---------------------------------------------------------------

    cdef _dispatch(self):
        """Start queued requests while none is answering; then write a pending error, hand an
        upgrade over, or arm the keep-alive deadline once the connection is idle."""
        cdef RequestCycle cycle
        if self._dispatching or self.transport is None or self._transport_is_closing():
            return
        self._dispatching = True
        self._write_batch = []  # responses answered in this loop leave in one writev
        cdef int rounds = 0
        try:
            while True:
                while self.active is None and self.pipeline:
                    cycle = self.pipeline.popleft()
                    self.active = cycle
                    self._run(cycle)
                if self._held is None or self.pipeline or self._reading_stopped:
                    break
                if self._write_batch_size >= HIGH_WATER:
                    self._flush_writes()
                if self.flow.write_paused:
                    break  # the client is not reading its answers: parse more once it does
                if rounds == HELD_ROUNDS:
                    self._resume_held_soon()  # the other connections' turn first
                    break
                rounds += 1
                held = self._held  # the pipeline has room again: parse what was held back
                self._held = None
                self._parse(held)
        finally:
            self._dispatching = False
            self._flush()
        if self._transport_is_closing():
            return
        if self.active is not None:
            if self.pipeline and not (self.active._waits_after_request() and self._read_for_eof()):
                self.flow.pause_reading()  # back-pressure on a pipelining client
            return
        if self._held_resume_due:
            self.flow.pause_reading()  # held bytes are parsed first, at the loop's next turn
            return
        if self._pending_error is not None:
            if self._pending_error:
                self._write(self._pending_error)
            self._close()
        elif self._upgrade is not None:
            self._hand_over_upgrade()
        elif self._eof:
            self._close()
        elif not self._reading_stopped:
            if not self._parsing and (self._native_parser is None or not self._native_parser.has_partial_message()):
                # Idle: closed after --timeout-keep-alive without a byte; bytes that are no request
                # yet (empty lines) do not extend the head deadline.
                now = monotonic()
                self.deadline = now + self.timeout_keep_alive
                if self._head_deadline != 0.0:
                    if self._head_deadline < 0.0:
                        self._head_deadline = now + self._timeout_head
                    self.deadline = min(self.deadline, self._head_deadline)
            elif self._timeout_head:
                # Part of the next request is here: its head must be complete by the head deadline.
                if self._head_deadline <= 0.0:
                    self._head_deadline = monotonic() + self._timeout_head
                self.deadline = self._head_deadline
            self.flow.resume_reading()

    cdef _run(self, RequestCycle cycle):
        coro = cycle.run_asgi()
        context = cv_Context() if self.reset_contextvars else self._context
        task = start_task(self.loop, coro, context, self._task_kwargs)
        if not task.done():
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            if cycle._head_parts is not None and not self._head_check_due:
                self._check_head_soon()  # it started its response, then waited

    cdef _on_response_complete(self, RequestCycle cycle):
        self.server_state.total_requests += 1
        if cycle is not self.active:
            return
        self.active = None
        self._head_deadline = 0.0  # the next head's clock starts with its first byte
        if self._transport_is_closing():
            return
        if not cycle.keep_alive:
            self.pipeline.clear()
            self._close()
            return
        self._dispatch()

    cdef _check_head_soon(self):
        """A response started and holds its head for the first body chunk: at the end of this loop
        iteration, write the head if no body has come by then."""
        cdef list pending = self._pending_heads
        if not pending:
            self.loop.call_soon(flush_heads, pending)
        pending.append(self)
        self._head_check_due = True

    cdef _flush_head(self):
        self._head_check_due = False
        if self.active is not None:
            self.active._flush_head()

    cdef _write(self, object data):
        """Write now, or into the batch of the dispatch loop running (flushed when it ends)."""
        if self._write_batch is None:
            self._transport_write(data)
            return
        self._write_batch.append(data)
        self._write_batch_size += len(data)
        if self._write_batch_size >= COALESCE_MAX:
            self._flush()
            self._write_batch = []

    cdef _writelines(self, tuple parts):
        """Large bodies: the head and the body as they are, without copying them together."""
        if self._write_batch is None:
            self.transport.writelines(parts)
            return
        for part in parts:
            self._write(part)

    cdef _flush(self):
        cdef list batch = self._write_batch
        self._write_batch = None
        self._write_batch_size = 0
        if batch:
            if len(batch) == 1:
                self._transport_write(batch[0])
            else:
                self.transport.writelines(batch)

    cdef int _sendfile_socket(self):
        """The socket's descriptor where sendfile(2) may write to it directly (plain TCP on
        uvloop or asyncio's selector loop), else -1. Decided once per connection."""
        if self._file_way == 0:
            way = sendfile_way(self.loop, self.transport)
            if way == _DIRECT_SENDFILE or way == _LOOP_SENDFILE:
                self._file_socket = self.transport.get_extra_info("socket").fileno()
                self._file_way = 1
            else:
                self._file_way = -1
        return self._file_socket if self._file_way == 1 else -1

    cdef _flush_writes(self):
        """What the running dispatch loop batched goes on the transport now (a file must follow it)."""
        if self._write_batch:
            self._flush()
            self._write_batch = []

    cdef _close(self):
        self._flush()
        self.transport.close()

    cdef _on_response_aborted(self, RequestCycle cycle):
        if cycle is self.active:
            self.active = None
        self.pipeline.clear()

    # Errors, upgrades, timeouts, shutdown ----------------------------------------------------

    cdef _stop_reading(self):
        self._reading_stopped = True
        self.flow.pause_reading()

    cdef _reject(self, int status, bytes body, str log_message):
        """A malformed request: answer it with ``status`` after the requests before it, then close."""
        cdef RequestCycle broken
        self.logger.warning(log_message)
        self._stop_reading()
        broken = self.cycle  # headers were fine but the body was not
        self.cycle = None
        self._parsing = False
        response = simple_response(status, body, self.server_state.default_headers_block)
        if broken is not None:
            broken.disconnected = True
            broken.wake()
            if broken is self.active:
                self.active = None
                if broken.response_started:
                    response = b""  # part of its response is out: closing is all that is left
            elif broken in self.pipeline:
                self.pipeline.remove(broken)
        self._pending_error = response

    cdef _on_upgrade(self, bytes trailing):
        self._stop_reading()
        self._parsing = False
        if self._upgrade is not None:
            self._upgrade += trailing

    cdef _hand_over_upgrade(self):
        data = self._upgrade or b""
        self._upgrade = None
        self.connections.discard(self)
        protocol = self.ws_protocol_class(config=self.config, server_state=self.server_state, app_state=self.app_state)
        protocol.connection_made(self.transport)
        self.transport.set_protocol(protocol)
        self.flow.resume_reading()
        protocol.data_received(data)
        self.parser = None
        self._native_parser = None

    def on_deadline(self):
        """Called by ``sweep_deadlines`` once ``deadline`` has passed: an idle connection closes; one
        whose request head is still incomplete is answered 408 first."""
        self.deadline = 0.0
        if self.active is None and not self.pipeline and not self.transport.is_closing():
            if self._native_parser.in_head() if self._native_parser is not None else self._in_head:
                self.logger.debug("%sRequest head not complete in time: 408.", self._log_prefix())
                self._write(simple_response(408, b"Request Timeout", self.server_state.default_headers_block))
            self._close()

    def shutdown(self):
        """Graceful shutdown: from now on every response closes its connection.

        A busy connection closes right after its current response. An idle one may have a request
        on its way (it was just accepted, or a keep-alive client has just sent one): that request
        gets ``SHUTDOWN_GRACE`` seconds to arrive and is answered; without one, the connection closes.
        """
        self.draining = True
        self.pipeline.clear()
        self._held = None
        if self.active is not None:
            self.active.keep_alive = False
        elif not self._parsing:
            self.loop.call_later(SHUTDOWN_GRACE, self._close_if_idle)

    def _close_if_idle(self):
        if self.active is None and not self._parsing and not self.transport.is_closing():
            self._close()

    cdef str _log_prefix(self):
        return "%s:%d - " % self.client if self.client else ""


def sweep_deadlines(connections, double now):
    """Expire every connection whose deadline has passed (the server calls this each tick)."""
    cdef list expired = []
    cdef double deadline
    for conn in connections:
        if type(conn) is HttpProtocol:
            deadline = (<HttpProtocol> conn).deadline
        else:
            deadline = getattr(conn, "deadline", 0.0)
        if 0.0 < deadline <= now:
            expired.append(conn)
    for conn in expired:
        conn.on_deadline()


include "http_parser.pxi"


# send() is a coroutine function in every way that matters (it returns an awaitable that speaks the
# coroutine protocol): say so to inspect and asyncio, as the pure twin's `async def send` does.
if hasattr(inspect, "markcoroutinefunction"):
    inspect.markcoroutinefunction(RequestCycle.send)
RequestCycle.send._is_coroutine = getattr(asyncio.coroutines, "_is_coroutine", None)
