# cython: language_level=3
"""The C kernel of the HTTP/1.1 protocol: the pieces the compiled build needs at C level, with a pure
twin of the same names in cyasgi/protocols/http/kernel.py."""

cimport cython
from cpython.contextvars cimport PyContext_Copy
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_CheckExact, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeASCII, PyUnicode_DecodeUTF8
from libc.stdint cimport uint32_t, uint64_t
from cpython.object cimport PyObject_Call
from libc.string cimport memchr, memcpy

from cyasgi._speedups.includes.ascii cimport (
    CR, LF, UPPER_A, UPPER_Z, CASE_BIT, digits_value, fill_field_tables,
)

from posix.fcntl cimport O_CLOEXEC, O_NONBLOCK, O_RDONLY
from posix.fcntl cimport open as c_open
from posix.stat cimport S_ISREG, fstat, struct_stat
from posix.types cimport off_t
from posix.unistd cimport close as c_close

import asyncio
import sys


cdef extern from *:
    """
    #ifdef __linux__
    #include <sys/sendfile.h>
    #include <sys/socket.h>
    /* A file response's head, sent with MSG_MORE: it leaves in the file's first segment. */
    static Py_ssize_t cyasgi_send_more(int fd, const char *data, size_t size) {
        return send(fd, data, size, MSG_MORE | MSG_NOSIGNAL);
    }
    static Py_ssize_t cyasgi_sendfile(int out_fd, int in_fd, off_t *offset, size_t count) {
        return sendfile(out_fd, in_fd, offset, count);
    }
    #define CYASGI_HAVE_SENDFILE 1
    #else
    #include <errno.h>
    static Py_ssize_t cyasgi_send_more(int fd, const char *data, size_t size) { errno = ENOSYS; return -1; }
    static Py_ssize_t cyasgi_sendfile(int out_fd, int in_fd, off_t *offset, size_t count) { errno = ENOSYS; return -1; }
    #define CYASGI_HAVE_SENDFILE 0
    #endif
    """
    const bint CYASGI_HAVE_SENDFILE
    bytes PyUnicode_EncodeFSDefault(object text)
    Py_ssize_t cyasgi_send_more(int fd, const char *data, size_t size) nogil
    Py_ssize_t cyasgi_sendfile(int out_fd, int in_fd, off_t *offset, size_t count) nogil

cdef extern from *:
    """
    #include <sys/socket.h>
    #include <netinet/in.h>
    #include <arpa/inet.h>
    /* The address (host order) and port of an IPv4 socket's own end (peer 0) or its peer's (peer 1);
       0 when that is not an IPv4 address (or the call failed: not connected any more, ...). */
    static int cyasgi_ipv4_name(int fd, int peer, unsigned long *host, unsigned int *port) {
        struct sockaddr_storage address;
        socklen_t size = sizeof(address);
        int failed = peer ? getpeername(fd, (struct sockaddr *) &address, &size)
                          : getsockname(fd, (struct sockaddr *) &address, &size);
        if (failed || address.ss_family != AF_INET || size < sizeof(struct sockaddr_in))
            return 0;
        *host = ntohl(((struct sockaddr_in *) &address)->sin_addr.s_addr);
        *port = ntohs(((struct sockaddr_in *) &address)->sin_port);
        return 1;
    }
    """
    int cyasgi_ipv4_name(int fd, int peer, unsigned long *host, unsigned int *port) nogil

from cyasgi.protocols.http import rules
from cyasgi.protocols.websockets.frames import data_frame_header

cdef object Task = asyncio.Task
cdef object split_target_slowly = rules.split_target
cdef bint HAS_EAGER_TASKS = sys.version_info >= (3, 12)
cdef bint HAS_TASK_CONTEXT = sys.version_info >= (3, 11)


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
    """Done at once, with None. One shared instance."""

    def __next__(self):
        raise StopIteration

    def send(self, value):
        raise StopIteration


@cython.final
cdef class Failed(ReadyAwaitable):
    """Awaiting it raises the error, so the app sees it where it awaits, as with a coroutine."""

    cdef object error

    def __init__(self, error):
        self.error = error

    def __next__(self):
        raise self.error

    def send(self, value):
        raise self.error


cdef Completed COMPLETED = Completed()


cpdef object completed():
    return COMPLETED


cpdef object failed(object error):
    return Failed(error)


cpdef dict task_kwargs(object loop):
    """The keyword arguments of the connection's Tasks, one dict reused for each (the Task's
    initialiser reads it and keeps no reference to it)."""
    if HAS_EAGER_TASKS:
        return {"loop": loop, "eager_start": True, "context": None}
    return {"loop": loop}


cpdef object start_task(object loop, object coro, object context, dict kwargs):
    """Run ``coro`` as a Task in a copy of ``context``: eagerly where Python allows it."""
    if HAS_EAGER_TASKS:
        kwargs["context"] = PyContext_Copy(context)
        return PyObject_Call(Task, (coro,), kwargs)
    if HAS_TASK_CONTEXT:
        return loop.create_task(coro, context=PyContext_Copy(context))
    return context.run(loop.create_task, coro)


# Response fields -----------------------------------------------------------------------------

cdef bint[256] IS_TCHAR
cdef bint[256] IS_VALUE_CHAR
fill_field_tables(IS_TCHAR, IS_VALUE_CHAR)

cdef bytes CONTENT_LENGTH_PREFIX = b"content-length: "
cdef const char *HEX_DIGITS = b"0123456789abcdef"


cpdef bytes header_name(bytes raw):
    """A field name as written: lower-cased, or None when it is not a token."""
    cdef const unsigned char *data = <const unsigned char *> PyBytes_AS_STRING(raw)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(raw), i
    cdef bint upper = False
    cdef bytes lowered
    cdef unsigned char *out
    if size == 0:
        return None
    for i in range(size):
        if not IS_TCHAR[data[i]]:
            return None
        if UPPER_A <= data[i] <= UPPER_Z:
            upper = True
    if not upper:
        return raw
    lowered = PyBytes_FromStringAndSize(NULL, size)
    out = <unsigned char *> PyBytes_AS_STRING(lowered)
    for i in range(size):
        out[i] = data[i] | CASE_BIT if UPPER_A <= data[i] <= UPPER_Z else data[i]
    return lowered


cpdef bint valid_field_value(bytes value) noexcept:
    """HTAB, SP, VCHAR and obs-text only: no CR, LF, NUL or other control byte."""
    cdef const unsigned char *data = <const unsigned char *> PyBytes_AS_STRING(value)
    cdef Py_ssize_t i
    for i in range(PyBytes_GET_SIZE(value)):
        if not IS_VALUE_CHAR[data[i]]:
            return False
    return True


cpdef Py_ssize_t parse_content_length(bytes value) noexcept:
    """``1*DIGIT``, at most 18 digits (rules.parse_content_length); -1 when invalid."""
    return digits_value(<const unsigned char *> PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))


cdef inline Py_ssize_t decimal_digits(Py_ssize_t value) noexcept:
    cdef Py_ssize_t digits = 1
    while value >= 10:
        value //= 10
        digits += 1
    return digits


cdef inline Py_ssize_t hex_digits(Py_ssize_t value) noexcept:
    cdef Py_ssize_t digits = 1
    while value >= 16:
        value >>= 4
        digits += 1
    return digits


cdef inline char *put_bytes(char *out, bytes data) noexcept:
    cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
    memcpy(out, PyBytes_AS_STRING(data), size)
    return out + size


cpdef bytes frame_response(list lines, Py_ssize_t length, bytes head_end, Py_ssize_t chunk_size, bytes body,
                           bytes tail):
    """A response's bytes in one object of the exact size: the held head's ``lines`` (None: written
    already) with a ``content-length`` line when ``length`` >= 0 and ``head_end``; a chunk-size line
    when ``chunk_size`` >= 0; then ``body`` and ``tail``."""
    cdef Py_ssize_t total = PyBytes_GET_SIZE(body) + PyBytes_GET_SIZE(tail)
    cdef Py_ssize_t length_digits = 0, chunk_digits = 0, i
    cdef bytes line, out
    cdef char *p
    if lines is not None:
        for line in lines:
            total += PyBytes_GET_SIZE(line)
        total += PyBytes_GET_SIZE(head_end)
        if length >= 0:
            length_digits = decimal_digits(length)
            total += PyBytes_GET_SIZE(CONTENT_LENGTH_PREFIX) + length_digits + 2
    if chunk_size >= 0:
        chunk_digits = hex_digits(chunk_size)
        total += chunk_digits + 2
    out = PyBytes_FromStringAndSize(NULL, total)
    p = PyBytes_AS_STRING(out)
    if lines is not None:
        for line in lines:
            p = put_bytes(p, line)
        if length >= 0:
            p = put_bytes(p, CONTENT_LENGTH_PREFIX)
            for i in range(length_digits - 1, -1, -1):
                p[i] = <char> (48 + length % 10)
                length //= 10
            p[length_digits] = CR
            p[length_digits + 1] = LF
            p += length_digits + 2
        p = put_bytes(p, head_end)
    if chunk_size >= 0:
        for i in range(chunk_digits - 1, -1, -1):
            p[i] = HEX_DIGITS[chunk_size & 15]
            chunk_size >>= 4
        p[chunk_digits] = CR
        p[chunk_digits + 1] = LF
        p += chunk_digits + 2
    p = put_bytes(p, body)
    p = put_bytes(p, tail)
    if p != PyBytes_AS_STRING(out) + total:  # the size arithmetic above is wrong: fail loudly
        raise SystemError(f"response buffer mis-sized: {p - PyBytes_AS_STRING(out)} != {total}")
    return out


# Requests ------------------------------------------------------------------------------------


cpdef bint is_ascii(bytes data) noexcept:
    """bytes.isascii() without a method call."""
    cdef const unsigned char *chars = <const unsigned char *> PyBytes_AS_STRING(data)
    cdef Py_ssize_t i
    for i in range(PyBytes_GET_SIZE(data)):
        if chars[i] >= 128:
            return False
    return True


cpdef bint has_proxy_headers(list headers):
    """X-Forwarded-For or X-Forwarded-Proto among the request headers (names are lower-case)."""
    cdef bytes name
    cdef Py_ssize_t size
    for name_value in headers:
        name = <bytes> (<tuple> name_value)[0]
        size = PyBytes_GET_SIZE(name)
        if (size == 15 and name == b"x-forwarded-for") or (size == 17 and name == b"x-forwarded-proto"):
            return True
    return False


cpdef tuple split_target(bytes target):
    """``(raw_path, query_string)`` of a request target (rules.split_target), without a Python call
    for the common origin-form target with no fragment."""
    cdef const char *data = PyBytes_AS_STRING(target)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(target)
    cdef const char *question
    if size and data[0] == b'/' and memchr(data, b'#', size) == NULL:
        question = <const char *> memchr(data, b'?', size)
        if question == NULL:
            return target, b""
        return (
            PyBytes_FromStringAndSize(data, question - data),
            PyBytes_FromStringAndSize(question + 1, size - (question - data) - 1),
        )
    return split_target_slowly(target)


# Addresses: those of an IPv4 connection without uvloop's conversion (inet_ntop) ----------------

cdef enum:
    IPV4_TEXT_SIZE = 15  # the longest dotted quad: "255.255.255.255"


cdef str ipv4_text(unsigned long host):
    """``host`` as inet_ntop writes it: "a.b.c.d"."""
    cdef char[IPV4_TEXT_SIZE] text
    cdef Py_ssize_t size = 0
    cdef unsigned int octet
    cdef int shift
    for shift in range(24, -8, -8):
        octet = (host >> shift) & 0xFF
        if octet >= 100:
            text[size] = c'0' + octet // 100
            size += 1
        if octet >= 10:
            text[size] = c'0' + octet // 10 % 10
            size += 1
        text[size] = c'0' + octet % 10
        size += 1
        if shift:
            text[size] = c'.'
            size += 1
    return PyUnicode_DecodeASCII(text, size, NULL)


# The last peer's host and its text: behind a proxy or a load balancer every connection comes from a
# few addresses, so the text is mostly made once.
cdef unsigned long last_peer_host = 0
cdef str last_peer_text = None


cdef str peer_host_text(unsigned long host):
    global last_peer_host, last_peer_text
    if last_peer_text is None or host != last_peer_host:
        last_peer_text = ipv4_text(host)
        last_peer_host = host
    return last_peer_text


cpdef tuple ipv4_addresses(object transport, tuple local=None):
    """``(server, client)``, each ``(host, port)``, of a connection over IPv4, read from its socket:
    what the transport's "sockname" and "peername" say, for less. ``local``: the server's address when
    the caller knows it (a listener bound to one IPv4 address): then it is not read. None when the
    transport has no socket, or it is not IPv4 or not connected any more: the caller asks the transport
    then."""
    cdef unsigned long local_host, peer_host
    cdef unsigned int local_port, peer_port
    cdef int fd
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    fd = sock.fileno()
    if not cyasgi_ipv4_name(fd, 1, &peer_host, &peer_port):
        return None
    if local is None:
        if not cyasgi_ipv4_name(fd, 0, &local_host, &local_port):
            return None
        local = (ipv4_text(local_host), local_port)
    return (local, (peer_host_text(peer_host), peer_port))


# Files: a whole file on a plain TCP socket, without a coroutine --------------------------------


cpdef bint sendfile_supported():
    """The file fast path exists here (Linux: send(2) with MSG_MORE and sendfile(2))."""
    return CYASGI_HAVE_SENDFILE


cpdef object open_file(object path):
    """``(fd, size)`` of a regular file opened for reading (non-blocking, close-on-exec); None when
    ``path`` is not a str naming one (the general path then says what is wrong)."""
    cdef bytes encoded
    cdef struct_stat info
    cdef int fd
    if type(path) is not str:
        return None
    encoded = PyUnicode_EncodeFSDefault(path)
    if memchr(PyBytes_AS_STRING(encoded), 0, PyBytes_GET_SIZE(encoded)) != NULL:
        return None
    fd = c_open(PyBytes_AS_STRING(encoded), O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    if fd < 0:
        return None
    if fstat(fd, &info) != 0 or not S_ISREG(info.st_mode):
        c_close(fd)
        return None
    return fd, info.st_size


cpdef Py_ssize_t send_more(int sock_fd, bytes data):
    """send(2) ``data`` flagged MSG_MORE: the bytes the socket took (-1: none, an error)."""
    return cyasgi_send_more(sock_fd, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))


cpdef Py_ssize_t send_file(int sock_fd, int fd, Py_ssize_t offset, Py_ssize_t end):
    """sendfile(2) from ``offset`` until ``end`` or until the socket takes no more: the offset
    reached (the caller sends the rest the general way, which also meets any error)."""
    cdef off_t position = offset
    cdef Py_ssize_t sent
    while position < end:
        sent = cyasgi_sendfile(sock_fd, fd, &position, <size_t> (end - position))
        if sent <= 0:
            break
    return position


cpdef close_file(int fd):
    c_close(fd)


# WebSocket frames ----------------------------------------------------------------------------------

cdef enum:
    WS_MASK_SIZE = 4      # the masking key of a client frame
    WORD_SIZE = 8         # the XOR runs a 64-bit word at a time
    WS_LENGTH_16 = 126    # the length markers of RFC 6455, 5.2 (frames.LENGTH_16, LENGTH_64)
    WS_LENGTH_64 = 127
    WS_BASE_HEADER = 2
    WS_LENGTH_16_HEADER = 4
    WS_LENGTH_64_HEADER = 10
    WS_LENGTH_16_LIMIT = 65536  # payloads from this size need the 64-bit length


cpdef bytes unmask(object data, Py_ssize_t start, Py_ssize_t end):
    """A client frame's payload ``data[start:end]`` XORed with its masking key, the 4 bytes before
    ``start``, in one new bytes object (the caller has checked ``4 <= start <= end <= len(data)``)."""
    cdef Py_buffer view
    cdef bint viewed = False  # bytes and bytearray are read directly, any other buffer through view
    cdef const unsigned char *source
    cdef Py_ssize_t size = end - start
    cdef Py_ssize_t i = 0
    cdef uint32_t key32
    cdef uint64_t key, word
    cdef unsigned char *out
    cdef bytes payload
    if PyBytes_CheckExact(data):
        source = <const unsigned char *> PyBytes_AS_STRING(data)
    elif PyByteArray_CheckExact(data):
        source = <const unsigned char *> PyByteArray_AS_STRING(data)
    else:
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        viewed = True
        source = <const unsigned char *> view.buf
    try:
        payload = PyBytes_FromStringAndSize(NULL, size)
        out = <unsigned char *> PyBytes_AS_STRING(payload)
        memcpy(&key32, source + start - WS_MASK_SIZE, WS_MASK_SIZE)
        key = (<uint64_t> key32 << 32) | key32  # the key twice: byte order does not matter here
        source += start
        while i + WORD_SIZE <= size:
            memcpy(&word, source + i, WORD_SIZE)
            word ^= key
            memcpy(out + i, &word, WORD_SIZE)
            i += WORD_SIZE
        while i < size:  # i is a multiple of 8 here, so the key restarts at its first byte
            out[i] = source[i] ^ (<const unsigned char *> &key32)[i & 3]
            i += 1
    finally:
        if viewed:
            PyBuffer_Release(&view)
    return payload


cdef inline Py_ssize_t frame_header_size(Py_ssize_t size) noexcept:
    if size < WS_LENGTH_16:
        return WS_BASE_HEADER
    if size < WS_LENGTH_16_LIMIT:
        return WS_LENGTH_16_HEADER
    return WS_LENGTH_64_HEADER


cdef inline void write_frame_header(unsigned char *p, int first_byte, Py_ssize_t size, Py_ssize_t header) noexcept:
    cdef int i
    p[0] = <unsigned char> first_byte
    if header == WS_BASE_HEADER:
        p[1] = <unsigned char> size
    elif header == WS_LENGTH_16_HEADER:
        p[1] = WS_LENGTH_16
        p[2] = <unsigned char> (size >> 8)
        p[3] = <unsigned char> size
    else:  # big-endian, most significant byte first
        p[1] = WS_LENGTH_64
        for i in range(WS_LENGTH_64_HEADER - WS_BASE_HEADER):
            p[WS_LENGTH_64_HEADER - 1 - i] = <unsigned char> ((<uint64_t> size) >> (8 * i))


cpdef str decode_utf8(object data):
    """``data.decode("utf-8")`` for bytes or bytearray (another buffer: ``str(data, "utf-8")``), strict,
    without the method call and the codec's lookup by name."""
    if PyBytes_CheckExact(data):
        return PyUnicode_DecodeUTF8(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), NULL)
    if PyByteArray_CheckExact(data):
        return PyUnicode_DecodeUTF8(PyByteArray_AS_STRING(data), PyByteArray_GET_SIZE(data), NULL)
    return str(data, "utf-8")


cpdef bytes data_frame(int first_byte, object payload):
    """An unmasked (server) frame: the header for ``payload``'s size, then the payload, in one bytes
    (bytes copied once; another bytes-like payload is concatenated to the header)."""
    cdef const char *source
    cdef Py_ssize_t size
    cdef Py_ssize_t header
    cdef bytes out
    cdef unsigned char *p
    if not PyBytes_CheckExact(payload):
        return data_frame_header(first_byte, len(payload)) + payload
    source = PyBytes_AS_STRING(payload)
    size = PyBytes_GET_SIZE(payload)
    header = frame_header_size(size)
    out = PyBytes_FromStringAndSize(NULL, header + size)
    p = <unsigned char *> PyBytes_AS_STRING(out)
    write_frame_header(p, first_byte, size, header)
    memcpy(p + header, source, size)
    return out


cpdef bytes text_frame(int first_byte, str text):
    """``data_frame(first_byte, text.encode("utf-8"))`` without the intermediate bytes (an ASCII str is
    read in place)."""
    cdef Py_ssize_t size
    cdef const char *source = PyUnicode_AsUTF8AndSize(text, &size)
    cdef Py_ssize_t header = frame_header_size(size)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, header + size)
    cdef unsigned char *p = <unsigned char *> PyBytes_AS_STRING(out)
    write_frame_header(p, first_byte, size, header)
    memcpy(p + header, source, size)
    return out
