# cython: language_level=3
"""The native HTTP/1.1 request parser (RFC 9112) in C, for CPython: it hands each parsed request head
to its RequestSink (the protocol) with one C call. cyasgi/protocols/http/parser.py is the parser
PyPy and the pure build run: the same states, checks and answers, written for a tracing JIT; read
that file for the rules in prose. The two are held together by the differential fuzz
(tests/test_fuzz.py)."""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memchr, memcmp

from cyasgi._speedups.includes.ascii cimport CASE_BIT, HTAB, SP, digits_value, fill_field_tables

from cyasgi.protocols.http.errors import (
    RequestRejected, bad_request, body_too_large, head_too_large, too_many_headers, version_not_supported,
    transfer_coding_rejection,
)
from cyasgi.protocols.http.foreign import ParserUpgrade
from cyasgi.protocols.http.rules import is_valid_target

import logging

cdef object logger = logging.getLogger("uvicorn.error")

cdef bint[256] IS_TCHAR
cdef bint[256] IS_VALUE_CHAR
fill_field_tables(IS_TCHAR, IS_VALUE_CHAR)


cdef inline bint valid_value(const unsigned char *data, Py_ssize_t size):
    cdef Py_ssize_t i
    for i in range(size):
        if not IS_VALUE_CHAR[data[i]]:
            return False
    return True


cdef inline Py_ssize_t parse_content_length(bytes value):
    """Digits only, optional spaces or tabs around (RFC 9110 8.6); -1 when invalid."""
    cdef const unsigned char *data = <const unsigned char *> PyBytes_AS_STRING(value)
    cdef Py_ssize_t start = 0, end = PyBytes_GET_SIZE(value)
    while start < end and (data[start] == SP or data[start] == HTAB):
        start += 1
    while end > start and (data[end - 1] == SP or data[end - 1] == HTAB):
        end -= 1
    return digits_value(data + start, end - start)

cdef Py_ssize_t MAX_CHUNK_LINE = 4096        # a chunk-size line with its extensions
cdef Py_ssize_t MAX_CHUNK_SIZE_DIGITS = 15   # hex digits: stays far below Py_ssize_t's limit

# Header names seen in real traffic, lower-cased once: a request naming one of them in any case
# reuses this object instead of allocating a new name.
cdef list KNOWN_NAMES = [
    b"host", b"user-agent", b"accept", b"accept-encoding", b"accept-language", b"accept-charset",
    b"connection", b"content-length", b"content-type", b"content-encoding", b"cookie", b"referer",
    b"origin", b"authorization", b"cache-control", b"pragma", b"upgrade", b"upgrade-insecure-requests",
    b"transfer-encoding", b"te", b"expect", b"if-none-match", b"if-modified-since", b"range",
    b"keep-alive", b"dnt", b"priority", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
    b"x-real-ip", b"x-request-id", b"forwarded", b"via", b"sec-fetch-dest", b"sec-fetch-mode",
    b"sec-fetch-site", b"sec-fetch-user", b"sec-ch-ua", b"sec-ch-ua-mobile", b"sec-ch-ua-platform",
    b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions", b"sec-websocket-protocol",
]
cdef dict KNOWN_NAME_SET = {name: name for name in KNOWN_NAMES}
cdef bytes NAME_HOST = KNOWN_NAME_SET[b"host"]
cdef bytes NAME_CONTENT_LENGTH = KNOWN_NAME_SET[b"content-length"]
cdef bytes NAME_TRANSFER_ENCODING = KNOWN_NAME_SET[b"transfer-encoding"]
cdef bytes NAME_CONNECTION = KNOWN_NAME_SET[b"connection"]
cdef bytes NAME_UPGRADE = KNOWN_NAME_SET[b"upgrade"]
cdef bytes NAME_EXPECT = KNOWN_NAME_SET[b"expect"]

# A small open-addressing table from a case-insensitive hash of a name to its known object.
cdef unsigned int NAME_TABLE_SIZE = 256
cdef list NAME_TABLE = [None] * NAME_TABLE_SIZE
cdef unsigned int _slot

cdef inline unsigned int name_hash(const unsigned char *data, Py_ssize_t size):
    cdef unsigned int h = 2166136261u
    cdef Py_ssize_t i
    for i in range(size):
        h = (h ^ (data[i] | 32)) * 16777619u  # | 32: ASCII letters hash the same in either case
    return h

for _name in KNOWN_NAMES:
    _slot = name_hash(<const unsigned char *> PyBytes_AS_STRING(_name), PyBytes_GET_SIZE(_name)) % NAME_TABLE_SIZE
    while NAME_TABLE[_slot] is not None:
        _slot = (_slot + 1) % NAME_TABLE_SIZE
    NAME_TABLE[_slot] = _name

# Methods as shared str objects, found without allocating; anything else is decoded.
cdef list KNOWN_METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"]
cdef list KNOWN_METHODS_RAW = [method.encode("ascii") for method in KNOWN_METHODS]


cdef str method_name(const unsigned char *data, Py_ssize_t size):
    cdef Py_ssize_t i
    cdef bytes raw
    for i in range(len(KNOWN_METHODS_RAW)):
        raw = <bytes> KNOWN_METHODS_RAW[i]
        if PyBytes_GET_SIZE(raw) == size and memcmp(PyBytes_AS_STRING(raw), data, size) == 0:
            return <str> KNOWN_METHODS[i]
    return PyBytes_FromStringAndSize(<const char *> data, size).decode("ascii")
cdef str HTTP11 = "1.1"
cdef str HTTP10 = "1.0"


cdef inline bint lower_equals(const unsigned char *data, Py_ssize_t size, bytes lowered):
    """``data`` equals the lower-case ``lowered``, ignoring ASCII case."""
    cdef const unsigned char *other = <const unsigned char *> PyBytes_AS_STRING(lowered)
    cdef Py_ssize_t i
    cdef unsigned char c
    if size != PyBytes_GET_SIZE(lowered):
        return False
    for i in range(size):
        c = data[i]
        if c'A' <= c <= c'Z':
            c += 32
        if c != other[i]:
            return False
    return True


cdef bytes header_name(const unsigned char *data, Py_ssize_t size):
    """The lower-cased name as bytes: a known name's shared object, else a new one."""
    cdef unsigned int slot = name_hash(data, size) % NAME_TABLE_SIZE
    cdef object known = NAME_TABLE[slot]
    cdef bytes name
    cdef unsigned char *out
    cdef Py_ssize_t i
    while known is not None:
        if lower_equals(data, size, <bytes> known):
            return <bytes> known
        slot = (slot + 1) % NAME_TABLE_SIZE
        known = NAME_TABLE[slot]
    name = PyBytes_FromStringAndSize(NULL, size)
    out = <unsigned char *> PyBytes_AS_STRING(name)
    for i in range(size):
        out[i] = data[i] | CASE_BIT if c'A' <= data[i] <= c'Z' else data[i]
    return name


cdef inline bint has_token(const unsigned char *data, Py_ssize_t size, const char *token, Py_ssize_t token_size):
    """A comma-separated list (``Connection``) contains ``token`` (lower-case), ignoring case and OWS."""
    cdef Py_ssize_t i = 0, start, end, j
    cdef bint match
    while i < size:
        while i < size and (data[i] == c' ' or data[i] == c'\t' or data[i] == c','):
            i += 1
        start = i
        while i < size and data[i] != c',':
            i += 1
        end = i
        while end > start and (data[end - 1] == c' ' or data[end - 1] == c'\t'):
            end -= 1
        if end - start == token_size:
            match = True
            for j in range(token_size):
                if (data[start + j] | 32) != <unsigned char> token[j]:
                    match = False
                    break
            if match:
                return True
    return False


# reg-name characters of a Host (RFC 3986 unreserved and sub-delims); hex digits.
cdef bint[256] IS_REG_NAME
cdef bint[256] IS_HEX
for _byte in range(256):
    IS_REG_NAME[_byte] = (
        (c'0' <= _byte <= c'9') or (c'A' <= _byte <= c'Z') or (c'a' <= _byte <= c'z') or _byte in b"-._~!$&'()*+,;="
    )
    IS_HEX[_byte] = (c'0' <= _byte <= c'9') or (c'A' <= _byte <= c'F') or (c'a' <= _byte <= c'f')


cdef bint valid_host(const unsigned char *s, Py_ssize_t n):
    """``uri-host [":" port]`` (RFC 9110 7.2): the C twin of rules.is_valid_host."""
    cdef Py_ssize_t i = 0, start
    if n and s[0] == c'[':  # "[": IP-literal
        i = 1
        if i < n and (s[i] | 32) == 118:  # "v": IPvFuture
            i += 1
            start = i
            while i < n and IS_HEX[s[i]]:
                i += 1
            if i == start or i >= n or s[i] != c'.':
                return False
            i += 1
            start = i
            while i < n and (IS_REG_NAME[s[i]] or s[i] == c':'):
                i += 1
        else:
            start = i
            while i < n and (IS_HEX[s[i]] or s[i] == c':' or s[i] == c'.'):
                i += 1
        if i == start or i >= n or s[i] != c']':
            return False
        i += 1
    else:
        while i < n:
            if IS_REG_NAME[s[i]]:
                i += 1
            elif s[i] == 37 and i + 2 < n and IS_HEX[s[i + 1]] and IS_HEX[s[i + 2]]:
                i += 3
            else:
                break
    if i < n:
        if s[i] != c':':
            return False
        i += 1
        while i < n:
            if not c'0' <= s[i] <= c'9':
                return False
            i += 1
    return True


cdef bint valid_chunk_extensions(const unsigned char *s, Py_ssize_t n):
    """``*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )`` (RFC 9112 7.1.1)."""
    cdef Py_ssize_t i = 0, j, start
    cdef unsigned char c
    while i < n:
        while i < n and (s[i] == c' ' or s[i] == c'\t'):
            i += 1
        if i >= n or s[i] != c';':  # ";"
            return False
        i += 1
        while i < n and (s[i] == c' ' or s[i] == c'\t'):
            i += 1
        start = i
        while i < n and IS_TCHAR[s[i]]:
            i += 1
        if i == start:
            return False
        j = i
        while j < n and (s[j] == c' ' or s[j] == c'\t'):
            j += 1
        if j >= n or s[j] != 61:  # no "=": the next extension (or the end) follows
            continue
        i = j + 1
        while i < n and (s[i] == c' ' or s[i] == c'\t'):
            i += 1
        if i < n and s[i] == 34:  # quoted-string
            i += 1
            while True:
                if i >= n:
                    return False
                c = s[i]
                if c == 34:
                    i += 1
                    break
                if c == 92:  # quoted-pair
                    if i + 1 >= n or not (s[i + 1] == c'\t' or c' ' <= s[i + 1] <= c'~' or s[i + 1] >= 128):
                        return False
                    i += 2
                elif c == c'\t' or c == c' ' or c == c'!' or c'#' <= c <= c'[' or c']' <= c <= c'~' or c >= 128:
                    i += 1
                else:
                    return False
        else:
            start = i
            while i < n and IS_TCHAR[s[i]]:
                i += 1
            if i == start:
                return False
    return True


cdef object transfer_encoding_problem(const unsigned char *data, Py_ssize_t size):
    """A Transfer-Encoding value other than ``chunked``: 501 when its final coding is chunked, else 400."""
    if lower_equals(data, size, b"chunked"):
        return None
    return transfer_coding_rejection(PyBytes_FromStringAndSize(<const char *> data, size))


cdef RequestParser new_request_parser(RequestSink protocol, Py_ssize_t max_head_size, Py_ssize_t max_headers,
                                      Py_ssize_t max_body_size):
    """``RequestParser(protocol, ...)`` without the type call and its boxed arguments: a connection
    that makes one request makes one parser."""
    cdef RequestParser parser = RequestParser.__new__(RequestParser)
    parser._setup(protocol, max_head_size, max_headers, max_body_size)
    return parser


@cython.final
cdef class RequestParser:
    """Parses a stream of HTTP/1.1 requests; hands each to the protocol as it completes.

    ``feed_data(data)`` raises RequestRejected (a status and a body to answer with) on a
    malformed request, after which the parser is done, and ParserUpgrade(offset) when a request
    switches protocols (``offset``: where the new protocol's bytes start in ``data``).
    """

    def __init__(self, RequestSink protocol, Py_ssize_t max_head_size=65536, Py_ssize_t max_headers=100,
                 Py_ssize_t max_body_size=-1):
        self._setup(protocol, max_head_size, max_headers, max_body_size)

    cdef _setup(self, RequestSink protocol, Py_ssize_t max_head_size, Py_ssize_t max_headers,
                Py_ssize_t max_body_size):
        self.protocol = protocol
        self.state = STATE_HEAD
        self.buffer = b""
        self.scanned = 0
        self.remaining = 0
        self.body_size = 0
        self.trailer_size = 0
        self.max_head_size = max_head_size
        self.max_headers = max_headers
        self.max_body_size = max_body_size
        self.method = ""
        self.http_version = HTTP11
        self.keep_alive = True
        self.upgrade = False

    cpdef bint has_partial_message(self):
        """Bytes of an unfinished request are held (a head, a body or trailers still to come)."""
        return self.state != STATE_HEAD or PyBytes_GET_SIZE(self.buffer) > 0

    cpdef bint in_head(self):
        """Bytes of an unfinished request head are held."""
        return self.state == STATE_HEAD and PyBytes_GET_SIZE(self.buffer) > 0

    def get_method(self):
        return self.method.encode("ascii")

    def get_http_version(self):
        return self.http_version

    def should_keep_alive(self):
        return self.keep_alive

    def should_upgrade(self):
        return self.upgrade

    def feed_data(self, data):
        """Parse all of ``data`` (httptools' interface)."""
        self._start(data if type(data) is bytes else bytes(data), False)

    cdef object feed(self, bytes chunk):
        """Parse ``chunk`` for the protocol: no further head is parsed while its pipeline is full,
        and the bytes from there are returned (None once everything was parsed)."""
        return self._start(chunk, True)

    cdef object _start(self, bytes chunk, bint hold):
        cdef Py_ssize_t prefix = PyBytes_GET_SIZE(self.buffer)
        if self.state == STATE_FAILED:
            raise bad_request("data after a malformed request")
        if self.state == STATE_UPGRADED:
            return None
        if prefix:
            chunk = self.buffer + chunk
            self.buffer = b""
        try:
            return self._feed(chunk, prefix, hold)
        except RequestRejected:
            self.state = STATE_FAILED
            raise

    cdef object _feed(self, bytes data, Py_ssize_t prefix, bint hold):
        cdef const unsigned char *base = <const unsigned char *> PyBytes_AS_STRING(data)
        cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
        cdef Py_ssize_t pos = 0, take, end
        cdef RequestSink protocol = self.protocol
        while pos < size or self.state == STATE_UPGRADED:
            if self.state == STATE_HEAD:
                # Empty lines before a request are skipped (RFC 9112 2.2); a head never starts with CR.
                while size - pos >= 2 and base[pos] == c'\r' and base[pos + 1] == c'\n':
                    pos += 2
                if pos == size:
                    return None
                if hold and protocol._pipeline_full():
                    return data[pos:] if pos else data
                end = self._find_head_end(base, size, pos, prefix)
                if end < 0:
                    self.buffer = data[pos:] if pos else data
                    return None
                pos = self._parse_head(data, base, pos, end)
            elif self.state == STATE_BODY or self.state == STATE_CHUNK_DATA:
                take = min(self.remaining, size - pos)
                protocol._on_body(data if take == size else PyBytes_FromStringAndSize(<const char *> base + pos, take))
                pos += take
                self.remaining -= take
                if self.remaining == 0:
                    if self.state == STATE_BODY:
                        self._message_complete()
                    else:
                        self.state = STATE_CHUNK_END
            elif self.state == STATE_CHUNK_END:
                if size - pos < 2:
                    if base[pos] != c'\r':
                        raise bad_request("chunk data not followed by CRLF")
                    self.buffer = data[pos:]
                    return None
                if base[pos] != c'\r' or base[pos + 1] != c'\n':
                    raise bad_request("chunk data not followed by CRLF")
                pos += 2
                self.state = STATE_CHUNK_SIZE
            elif self.state == STATE_CHUNK_SIZE:
                end = self._find_line_end(base, size, pos, MAX_CHUNK_LINE, "chunk-size line")
                if end < 0:
                    self.buffer = data[pos:]
                    return None
                self._parse_chunk_size(base + pos, end - pos)
                pos = end + 2
            elif self.state == STATE_TRAILERS:
                end = self._find_line_end(base, size, pos, self.max_head_size - self.trailer_size, "trailer section")
                if end < 0:
                    self.buffer = data[pos:]
                    return None
                if end == pos:  # the empty line: the message is complete
                    pos += 2
                    self._message_complete()
                else:
                    self.trailer_size += end - pos + 2
                    self._check_field_line(base + pos, end - pos)
                    pos = end + 2
            if self.state == STATE_UPGRADED:
                # The bytes after the upgrade request belong to the new protocol.
                raise ParserUpgrade(max(pos - prefix, 0))
        return None

    cdef Py_ssize_t _find_line_end(self, const unsigned char *base, Py_ssize_t size, Py_ssize_t pos,
                                   Py_ssize_t limit, str what) except -2:
        """Offset of the CRLF ending the line at ``pos``, or -1 when it has not arrived yet."""
        cdef const unsigned char *lf = <const unsigned char *> memchr(base + pos, 10, size - pos)
        cdef Py_ssize_t end
        if lf == NULL:
            if size - pos > limit:
                raise bad_request(what + " too long")
            return -1
        end = lf - base - 1
        if end < pos or base[end] != c'\r':
            raise bad_request("bare LF in " + what)
        if end - pos > limit:
            raise bad_request(what + " too long")
        return end

    cdef Py_ssize_t _find_head_end(self, const unsigned char *base, Py_ssize_t size, Py_ssize_t pos,
                                   Py_ssize_t prefix) except -2:
        """Offset of the CRLFCRLF ending the head that starts at ``pos``, or -1 when incomplete.

        A bare LF is refused as soon as it is seen rather than after the head-size limit.
        """
        cdef Py_ssize_t i, start
        cdef const unsigned char *lf
        start = max(pos, self.scanned - 3) if pos == 0 else pos
        i = start
        while True:
            lf = <const unsigned char *> memchr(base + i, 10, size - i)
            if lf == NULL:
                break
            i = lf - base
            if i == pos or base[i - 1] != c'\r':
                raise bad_request("bare LF in the request head")
            if i - pos >= 3 and base[i - 2] == c'\n' and base[i - 3] == c'\r':
                if i + 1 - pos > self.max_head_size:
                    raise head_too_large()
                self.scanned = 0
                return i - 3
            i += 1
        if size - pos > self.max_head_size:
            raise head_too_large()
        self.scanned = size - pos
        return -1

    cdef Py_ssize_t _parse_head(self, bytes data, const unsigned char *base, Py_ssize_t pos, Py_ssize_t end) except -1:
        """Parse the head in ``base[pos:end]`` (end: its final CRLFCRLF); return the offset after it."""
        cdef Py_ssize_t line_end, i, sp1, sp2, name_end, value_start, value_end, size, count = 0
        cdef const unsigned char *lf
        cdef bytes target, name, value
        cdef str method, version
        cdef list headers = []
        cdef Py_ssize_t content_length = -1, host_count = 0
        cdef bint chunked = False, close = False, keep_alive_token = False, upgrade_token = False
        cdef bint has_upgrade_header = False, expect_100 = False, has_transfer_encoding = False, connect
        cdef object problem = None  # the first field whose meaning is wrong, raised once all are well-formed
        cdef RequestSink protocol = self.protocol

        # request-line = method SP request-target SP HTTP-version CRLF
        lf = <const unsigned char *> memchr(base + pos, 10, end + 2 - pos)
        line_end = lf - base - 1
        sp1 = pos
        while sp1 < line_end and IS_TCHAR[base[sp1]]:
            sp1 += 1
        if sp1 == pos or sp1 >= line_end or base[sp1] != c' ':
            raise bad_request("malformed method")
        sp2 = sp1 + 1
        while sp2 < line_end and 0x21 <= base[sp2] <= 0x7E:
            sp2 += 1
        if sp2 == sp1 + 1 or sp2 >= line_end or base[sp2] != c' ':
            raise bad_request("malformed request target")
        i = sp2 + 1
        if (line_end - i != 8 or memcmp(base + i, b"HTTP/", 5) != 0 or not c'0' <= base[i + 5] <= c'9'
                or base[i + 6] != c'.' or not c'0' <= base[i + 7] <= c'9'):
            raise bad_request("malformed HTTP version")
        if base[i + 5] == c'0':
            raise bad_request("HTTP/0.x")  # no such version on the wire: HTTP/0.9 requests have none
        if base[i + 5] != c'1' or (base[i + 7] != c'1' and base[i + 7] != c'0'):
            raise version_not_supported()
        version = HTTP11 if base[i + 7] == c'1' else HTTP10
        method = method_name(base + pos, sp1 - pos)
        target = PyBytes_FromStringAndSize(<const char *> base + sp1 + 1, sp2 - sp1 - 1)
        connect = method == "CONNECT"
        if (base[sp1 + 1] != c'/' or connect) and not is_valid_target(method, target):
            raise bad_request("request-target of the wrong form")

        # field-line = field-name ":" OWS field-value OWS CRLF
        i = line_end + 2
        while i < end + 2:
            lf = <const unsigned char *> memchr(base + i, 10, end + 2 - i)
            line_end = lf - base - 1
            if base[i] == c' ' or base[i] == c'\t':
                raise bad_request("obsolete line folding")
            name_end = i
            while name_end < line_end and IS_TCHAR[base[name_end]]:
                name_end += 1
            if name_end == i or name_end >= line_end or base[name_end] != c':':
                raise bad_request("malformed header name")
            value_start = name_end + 1
            while value_start < line_end and (base[value_start] == c' ' or base[value_start] == c'\t'):
                value_start += 1
            value_end = line_end
            while value_end > value_start and (base[value_end - 1] == c' ' or base[value_end - 1] == c'\t'):
                value_end -= 1
            if not valid_value(base + value_start, value_end - value_start):
                raise bad_request("invalid character in a header value")
            count += 1
            if count > self.max_headers:
                raise too_many_headers()
            name = header_name(base + i, name_end - i)
            value = PyBytes_FromStringAndSize(<const char *> base + value_start, value_end - value_start)
            headers.append((name, value))
            size = value_end - value_start
            if problem is not None:
                pass
            elif name is NAME_HOST:
                host_count += 1
                if not valid_host(base + value_start, size):
                    problem = bad_request("invalid Host")
            elif name is NAME_CONTENT_LENGTH:
                if content_length != -1:
                    problem = bad_request("duplicate Content-Length")
                else:
                    content_length = parse_content_length(value)
                    if content_length < 0:
                        problem = bad_request("invalid Content-Length")
            elif name is NAME_TRANSFER_ENCODING:
                if has_transfer_encoding:
                    # a second field: any coding after "chunked" leaves the framing unknown
                    problem = bad_request("Transfer-Encoding after chunked")
                else:
                    has_transfer_encoding = True
                    problem = transfer_encoding_problem(base + value_start, size)
                    chunked = problem is None
            elif name is NAME_CONNECTION:
                if has_token(base + value_start, size, b"close", 5):
                    close = True
                if has_token(base + value_start, size, b"keep-alive", 10):
                    keep_alive_token = True
                if has_token(base + value_start, size, b"upgrade", 7):
                    upgrade_token = True
            elif name is NAME_UPGRADE:
                has_upgrade_header = True
            elif name is NAME_EXPECT:
                if lower_equals(base + value_start, size, b"100-continue"):
                    expect_100 = True
            i = line_end + 2

        # Framing and host rules (RFC 9112 3.2, 6.1, 6.3).
        if problem is not None:
            raise problem
        if has_transfer_encoding and content_length != -1:
            raise bad_request("both Transfer-Encoding and Content-Length")
        if has_transfer_encoding and version is HTTP10:
            raise bad_request("Transfer-Encoding in an HTTP/1.0 request")
        if host_count > 1 or (host_count == 0 and version is HTTP11):
            raise bad_request("missing or duplicate Host")
        if connect:
            # RFC 9110 9.3.6: a CONNECT request has no content; what follows its head is the tunnel's.
            content_length = -1
            chunked = False
        if 0 <= self.max_body_size < content_length:
            raise body_too_large()

        self.method = method
        self.http_version = version
        if version is HTTP11:
            self.keep_alive = not close
        else:
            self.keep_alive = keep_alive_token and not close
        self.upgrade = (upgrade_token and has_upgrade_header) or connect
        protocol._queued_head_bytes += end + 4 - pos
        protocol._on_request(method, target, version, headers, self.keep_alive, self.upgrade, expect_100)

        if chunked:
            self.state = STATE_CHUNK_SIZE
            self.body_size = 0
        elif content_length > 0:
            self.state = STATE_BODY
            self.remaining = content_length
        else:
            self._message_complete()
        return end + 4

    cdef _parse_chunk_size(self, const unsigned char *line, Py_ssize_t size):
        # chunk-size [ chunk-ext ]: 1*HEXDIG, at most MAX_CHUNK_SIZE_DIGITS after leading zeros
        cdef Py_ssize_t i = 0, value = 0, significant = 0
        cdef unsigned char c
        while i < size:
            c = line[i]
            if c'0' <= c <= c'9':
                value = value * 16 + (c - 48)
            elif c'a' <= (c | CASE_BIT) <= c'f':
                value = value * 16 + ((c | CASE_BIT) - 87)
            else:
                break
            i += 1
            if value:
                significant += 1
                if significant > MAX_CHUNK_SIZE_DIGITS:
                    raise bad_request("chunk size too large")
        if i == 0:
            raise bad_request("invalid chunk size")
        if i < size and not valid_chunk_extensions(line + i, size - i):
            raise bad_request("invalid chunk extension")
        if value == 0:
            self.state = STATE_TRAILERS
            self.trailer_size = 0
        else:
            self.body_size += value
            if 0 <= self.max_body_size < self.body_size:
                raise body_too_large()
            self.state = STATE_CHUNK_DATA
            self.remaining = value

    cdef _check_field_line(self, const unsigned char *line, Py_ssize_t size):
        cdef Py_ssize_t i = 0
        if line[0] == c' ' or line[0] == c'\t':
            raise bad_request("obsolete line folding in trailers")
        while i < size and IS_TCHAR[line[i]]:
            i += 1
        if i == 0 or i >= size or line[i] != c':':
            raise bad_request("malformed trailer field")
        if not valid_value(line + i + 1, size - i - 1):
            raise bad_request("invalid character in a trailer field")
        if lower_equals(line, i, b"content-length") or lower_equals(line, i, b"transfer-encoding"):
            raise bad_request("framing field in trailers")  # RFC 9110 6.5.1

    cdef _message_complete(self):
        self.state = STATE_UPGRADED if self.upgrade else STATE_HEAD
        self.remaining = 0
        self.protocol._on_message_complete()


cdef class RequestSink:
    """What the parser hands requests to: the protocol derives from it and overrides these."""

    cdef _on_request(self, str method, bytes target, str http_version, list headers, bint keep_alive,
                     bint upgrade, bint expect_100_continue):
        pass

    cdef _on_body(self, bytes body):
        pass

    cdef _on_message_complete(self):
        pass

    cdef bint _pipeline_full(self):
        return False
