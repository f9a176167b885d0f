"""cyasgi's own HTTP/1.1 request parser (RFC 9112), pure Python; twin of _speedups/http_parser.pxi.

Strict where laxness lets requests be smuggled or misread, and nowhere else:

* lines end in CRLF (a bare LF or CR is refused); empty lines before a request are skipped;
* request-line: ``token SP target SP HTTP/d.d``, one space each, the target visible ASCII only and
  of a form RFC 9112 3.2 allows for the method (authority-form only for CONNECT, ``*`` only for OPTIONS);
  HTTP/1.0 and 1.1 are served, 1.2 to 9.9 get 505; 0.x (and an HTTP/0.9 line, without a version) 400;
* header fields: a token name, a colon with no space before it, a value of visible characters,
  spaces and tabs (CTLs refused), no obsolete line folding;
* framing (RFC 9112 6): one Content-Length made of digits; Transfer-Encoding only as the single
  coding ``chunked`` (another coding before it: 501; anything after it, or a second field: 400);
  never both; none in HTTP/1.0; chunk sizes in hex, extensions per RFC 9112 7.1.1; trailers checked
  like headers (no Content-Length or Transfer-Encoding among them), then dropped;
* Host: exactly one in HTTP/1.1, at most one in HTTP/1.0, its value ``uri-host [":" port]``;
* limits: the head (request line + fields) at most ``max_head_size`` bytes and
  ``max_headers`` fields, else 431; the body at most ``max_body_size`` bytes (-1: no limit), else
  413 before a byte past the limit is handed over (at the head for a Content-Length, at the
  chunk-size line for a chunk).

A malformed request raises RequestRejected (status and body to answer); the parser is then done.
A request that switches protocols (``Upgrade`` named in ``Connection``, or CONNECT) raises
ParserUpgrade(offset) once complete: ``data[offset:]`` belongs to the new protocol.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from cyasgi.protocols.http.errors import (
    RequestRejected,
    bad_request,
    body_too_large,
    head_too_large,
    too_many_headers,
    transfer_coding_rejection,
    version_not_supported,
)
from cyasgi.protocols.http.foreign import ParserUpgrade
from cyasgi.protocols.http.rules import (
    FIELD_VALUE_CHARS,
    FRAMING_FIELDS,
    TCHAR,
    is_valid_host,
    is_valid_target,
    outside_table,
    parse_content_length,
)

__all__ = ["RequestParser", "new_request_parser"]

logger = logging.getLogger("uvicorn.error")

MAX_CHUNK_LINE = 4096
MAX_CHUNK_SIZE_DIGITS = 15

# States
HEAD, BODY, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILERS, UPGRADED, FAILED = range(8)

_TARGET_CHARS = bytes(range(0x21, 0x7F))
_HEX = b"0123456789abcdefABCDEF"
_OWS = b" \t"

# The head is split with bytes methods and checked with translate() tables that change exactly the
# bytes outside a set (see outside_table): one pass in C each on CPython, and on PyPy several times
# cheaper than regular expressions (perf/microbench.py).
_OUTSIDE_TCHAR = outside_table(TCHAR)
_OUTSIDE_TARGET_CHARS = outside_table(_TARGET_CHARS)
_OUTSIDE_FIELD_LINES = outside_table(FIELD_VALUE_CHARS + b"\r\n")  # field lines with their CRLFs, at once
_VERSIONS = {b"HTTP/1.1": "1.1", b"HTTP/1.0": "1.0"}
# Only for a head already found bad: which field line fails decides between 431 and 400.
_TCHAR_CLASS = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_FIELD_LINES = re.compile(rb"(?:" + _TCHAR_CLASS + rb"+:[\t\x20-\x7e\x80-\xff]*\r\n)*")
# chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ), a value being a token or
# a quoted-string (RFC 9112 7.1.1, RFC 9110 5.6.4).
_CHUNK_EXTENSIONS = re.compile(
    rb"(?:[ \t]*;[ \t]*" + _TCHAR_CLASS + rb"+(?:[ \t]*=[ \t]*(?:" + _TCHAR_CLASS
    + rb'+|"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"))?)*'
)
_SPECIAL_FIELDS = frozenset((b"host", b"content-length", b"transfer-encoding", b"connection", b"upgrade", b"expect"))

_KNOWN_METHODS = {
    m.encode("ascii"): m
    for m in ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE")
}


def _tokens(value: bytes) -> set[bytes]:
    return {token.strip(_OWS).lower() for token in value.split(b",")}


class RequestSink:
    """What the parser hands requests to: the protocol derives from it and defines these. (In the
    compiled build it is a C class, and these are C calls.)"""

    _queued_head_bytes: int  # head bytes of the requests parsed since the pipeline was empty

    def _on_request(
        self,
        method: str,
        target: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        upgrade: bool,
        expect_100_continue: bool,
    ) -> None:
        raise NotImplementedError

    def _on_body(self, body: bytes) -> None:
        raise NotImplementedError

    def _on_message_complete(self) -> None:
        raise NotImplementedError

    def _pipeline_full(self) -> bool:
        return False


class RequestParser:
    """Parses a stream of HTTP/1.1 requests; hands each to the protocol as it completes."""

    def __init__(
        self, protocol: Any, max_head_size: int = 65536, max_headers: int = 100, max_body_size: int = -1
    ) -> None:
        self.protocol = protocol
        self.state = HEAD
        self.buffer = b""  # bytes of an incomplete head, chunk line or trailer section
        self.scanned = 0  # how far the buffered head was already checked for its end
        self.remaining = 0  # body or chunk bytes still to come
        self.body_size = 0  # chunk bytes of the current request announced so far
        self.trailer_size = 0
        self.max_head_size = max_head_size
        self.max_headers = max_headers
        self.max_body_size = max_body_size
        self.method = ""
        self.http_version = "1.1"
        self.keep_alive = True
        self.upgrade = False

    def has_partial_message(self) -> bool:
        """Bytes of an unfinished request are held (a head, a body or trailers still to come)."""
        return self.state != HEAD or bool(self.buffer)

    def in_head(self) -> bool:
        """Bytes of an unfinished request head are held."""
        return self.state == HEAD and bool(self.buffer)

    # httptools-style accessors for the last request head
    def get_method(self) -> bytes:
        return self.method.encode("ascii")

    def get_http_version(self) -> str:
        return self.http_version

    def should_keep_alive(self) -> bool:
        return self.keep_alive

    def should_upgrade(self) -> bool:
        return self.upgrade

    def feed_data(self, data: bytes) -> None:
        """Parse all of ``data`` (httptools' interface)."""
        self._start(data, False)

    def feed(self, data: bytes) -> bytes | None:
        """Parse ``data`` for the protocol: no further head is parsed while its pipeline is full,
        and the bytes from there are returned (None once everything was parsed)."""
        return self._start(data, True)

    def _start(self, data: bytes, hold: bool) -> bytes | None:
        if self.state == FAILED:
            raise bad_request("data after a malformed request")
        if self.state == UPGRADED:
            return None
        data = bytes(data)
        prefix = len(self.buffer)
        if prefix:
            data = self.buffer + data
            self.buffer = b""
        try:
            return self._feed(data, prefix, hold)
        except RequestRejected:
            self.state = FAILED
            raise

    def _feed(self, data: bytes, prefix: int, hold: bool) -> bytes | None:
        size = len(data)
        pos = 0
        protocol = self.protocol
        while pos < size or self.state == UPGRADED:
            state = self.state
            if state == HEAD:
                # Empty lines before a request are skipped (RFC 9112 2.2); a head never starts with CR.
                while size - pos >= 2 and data[pos] == 13 and data[pos + 1] == 10:
                    pos += 2
                if pos == size:
                    return None
                if hold and protocol._pipeline_full():
                    return data[pos:] if pos else data
                end = self._find_head_end(data, pos)
                if end < 0:
                    self.buffer = data[pos:]
                    return None
                pos = self._parse_head(data, pos, end)
            elif state == BODY or state == CHUNK_DATA:
                take = min(self.remaining, size - pos)
                protocol._on_body(data if take == size else data[pos : pos + take])
                pos += take
                self.remaining -= take
                if self.remaining == 0:
                    if state == BODY:
                        self._message_complete()
                    else:
                        self.state = CHUNK_END
            elif state == CHUNK_END:
                if size - pos < 2:
                    if data[pos] != 13:
                        raise bad_request("chunk data not followed by CRLF")
                    self.buffer = data[pos:]
                    return None
                if data[pos : pos + 2] != b"\r\n":
                    raise bad_request("chunk data not followed by CRLF")
                pos += 2
                self.state = CHUNK_SIZE
            elif state == CHUNK_SIZE:
                end = self._find_line_end(data, pos, MAX_CHUNK_LINE, "chunk-size line")
                if end < 0:
                    self.buffer = data[pos:]
                    return None
                self._parse_chunk_size(data[pos:end])
                pos = end + 2
            elif state == TRAILERS:
                end = self._find_line_end(
                    data, pos, self.max_head_size - self.trailer_size, "trailer section"
                )
                if end < 0:
                    self.buffer = data[pos:]
                    return None
                if end == pos:  # the empty line: the message is complete
                    pos += 2
                    self._message_complete()
                else:
                    self.trailer_size += end - pos + 2
                    self._check_field_line(data[pos:end])
                    pos = end + 2
            if self.state == UPGRADED:
                # The bytes after the upgrade request belong to the new protocol.
                raise ParserUpgrade(max(pos - prefix, 0))
        return None

    @staticmethod
    def _find_line_end(data: bytes, pos: int, limit: int, what: str) -> int:
        """Offset of the CRLF ending the line at ``pos``, or -1 when it has not arrived yet."""
        lf = data.find(b"\n", pos)
        if lf < 0:
            if len(data) - pos > limit:
                raise bad_request(what + " too long")
            return -1
        end = lf - 1
        if end < pos or data[end] != 13:
            raise bad_request("bare LF in " + what)
        if end - pos > limit:
            raise bad_request(what + " too long")
        return end

    def _find_head_end(self, data: bytes, pos: int) -> int:
        """Offset of the CRLFCRLF ending the head that starts at ``pos``, or -1 when incomplete.

        A bare LF is refused as soon as it is seen rather than after the head-size limit.
        """
        size = len(data)
        start = max(pos, self.scanned - 3) if pos == 0 else pos
        end = data.find(b"\r\n\r\n", start)
        stop = size if end < 0 else end + 4
        # Every LF must follow a CR: as many LFs as CRLFs in what is newly seen.
        if (
            data.count(b"\n", start, stop) != data.count(b"\r\n", max(start - 1, pos), stop)
            or data[pos : pos + 1] == b"\n"
        ):
            raise bad_request("bare LF in the request head")
        if end < 0:
            if size - pos > self.max_head_size:
                raise head_too_large()
            self.scanned = size - pos
            return -1
        if end + 4 - pos > self.max_head_size:
            raise head_too_large()
        self.scanned = 0
        return end

    def _field_error(self, data: bytes, fields_start: int, end: int) -> RequestRejected:
        """The rejection for field lines found bad: fields are checked in order, so too many valid
        ones before the bad line is a 431, else a 400."""
        match = _FIELD_LINES.match(data, fields_start, end + 2)
        assert match is not None  # the pattern matches the empty string
        valid_end = match.end()
        if data.count(b"\r\n", fields_start, valid_end) > self.max_headers:
            return too_many_headers()
        return bad_request("malformed header field")

    def _parse_head(self, data: bytes, pos: int, end: int) -> int:
        """Parse the head in ``data[pos:end]`` (end: its final CRLFCRLF); return the offset after it."""
        head = data[pos:end]
        lines = head.split(b"\r\n")
        # request-line = method SP request-target SP HTTP-version
        request_line = lines[0].split(b" ")
        if len(request_line) != 3:
            raise bad_request("malformed request line")
        method_raw, target, version_raw = request_line
        method = _KNOWN_METHODS.get(method_raw)
        if method is None:
            if not method_raw or method_raw.translate(_OUTSIDE_TCHAR) != method_raw:
                raise bad_request("malformed request line")
            method = method_raw.decode("ascii")
        if not target or target.translate(_OUTSIDE_TARGET_CHARS) != target:
            raise bad_request("malformed request line")
        version = _VERSIONS.get(version_raw)
        if version is None:
            # HTTP/d.d with other digits is understood, and refused
            if (
                len(version_raw) == 8
                and version_raw[:5] == b"HTTP/"
                and version_raw[6] == 0x2E
                and version_raw[5:8:2].isdigit()
            ):
                if version_raw[5] == 0x30:
                    raise bad_request("HTTP/0.x")  # no such version on the wire: HTTP/0.9 requests have none
                raise version_not_supported()
            raise bad_request("malformed request line")
        if (target[0] != 47 or method == "CONNECT") and not is_valid_target(method, target):
            raise bad_request("request-target of the wrong form")

        # field-line = field-name ":" OWS field-value OWS CRLF
        headers: list[tuple[bytes, bytes]] = []
        if len(lines) > 1:
            # Every byte is a field-value byte or part of a CRLF, and every CR begins one (a bare LF
            # was refused by _find_head_end); then each name is a token. (The request line, checked
            # above, passes this too.)
            if head.translate(_OUTSIDE_FIELD_LINES) != head or head.count(b"\r") != len(lines) - 1:
                raise self._field_error(data, pos + len(lines[0]) + 2, end)
            names: list[bytes] = []
            for index in range(1, len(lines)):
                line = lines[index]
                colon = line.find(b":")
                if colon < 1:
                    raise self._field_error(data, pos + len(lines[0]) + 2, end)
                name = line[:colon]
                names.append(name)
                headers.append((name.lower(), line[colon + 1 :].strip(_OWS)))
            names_joined = b"".join(names)
            if names_joined.translate(_OUTSIDE_TCHAR) != names_joined:
                raise self._field_error(data, pos + len(lines[0]) + 2, end)
            if len(headers) > self.max_headers:
                raise too_many_headers()
        content_length = -1
        hosts = 0
        chunked = has_transfer_encoding = False
        connection: set[bytes] = set()
        has_upgrade_header = expect_100 = False
        for name, value in headers:
            if name not in _SPECIAL_FIELDS:
                continue
            if name == b"host":
                hosts += 1
                if not is_valid_host(value):
                    raise bad_request("invalid Host")
            elif name == b"content-length":
                if content_length != -1:
                    raise bad_request("duplicate Content-Length")
                content_length = parse_content_length(value)
                if content_length < 0:
                    raise bad_request("invalid Content-Length")
            elif name == b"transfer-encoding":
                if has_transfer_encoding:
                    # a second field: any coding after "chunked" leaves the framing unknown
                    raise bad_request("Transfer-Encoding after chunked")
                has_transfer_encoding = True
                if value.lower() != b"chunked":
                    raise transfer_coding_rejection(value)
                chunked = True
            elif name == b"connection":
                connection |= _tokens(value)
            elif name == b"upgrade":
                has_upgrade_header = True
            elif value.lower() == b"100-continue":  # expect
                expect_100 = True

        # Framing and host rules (RFC 9112 3.2, 6.1, 6.3).
        if has_transfer_encoding and content_length != -1:
            raise bad_request("both Transfer-Encoding and Content-Length")
        if has_transfer_encoding and version == "1.0":
            raise bad_request("Transfer-Encoding in an HTTP/1.0 request")
        if hosts > 1 or (hosts == 0 and version == "1.1"):
            raise bad_request("missing or duplicate Host")
        if method == "CONNECT":
            # RFC 9110 9.3.6: a CONNECT request has no content; what follows its head is the tunnel's.
            content_length = -1
            chunked = False
        if 0 <= self.max_body_size < content_length:
            raise body_too_large()

        self.method = method
        self.http_version = version
        close = b"close" in connection
        self.keep_alive = not close if version == "1.1" else (b"keep-alive" in connection and not close)
        self.upgrade = (b"upgrade" in connection and has_upgrade_header) or method == "CONNECT"
        self.protocol._queued_head_bytes += end + 4 - pos
        self.protocol._on_request(method, target, version, headers, self.keep_alive, self.upgrade, expect_100)

        if chunked:
            self.state = CHUNK_SIZE
            self.body_size = 0
        elif content_length > 0:
            self.state = BODY
            self.remaining = content_length
        else:
            self._message_complete()
        return end + 4

    def _parse_chunk_size(self, line: bytes) -> None:
        # chunk-size [ chunk-ext ]: 1*HEXDIG, at most MAX_CHUNK_SIZE_DIGITS after leading zeros
        digits = significant = 0
        while digits < len(line) and line[digits] in _HEX:
            if significant or line[digits] != 48:
                significant += 1
                if significant > MAX_CHUNK_SIZE_DIGITS:
                    raise bad_request("chunk size too large")
            digits += 1
        if digits == 0:
            raise bad_request("invalid chunk size")
        if digits < len(line) and _CHUNK_EXTENSIONS.fullmatch(line, digits) is None:
            raise bad_request("invalid chunk extension")
        value = int(line[:digits], 16)
        if value == 0:
            self.state = TRAILERS
            self.trailer_size = 0
        else:
            self.body_size += value
            if 0 <= self.max_body_size < self.body_size:
                raise body_too_large()
            self.state = CHUNK_DATA
            self.remaining = value

    @staticmethod
    def _check_field_line(line: bytes) -> None:
        if line[:1] in (b" ", b"\t"):
            raise bad_request("obsolete line folding in trailers")
        name, colon, value = line.partition(b":")
        if not colon or not name or name.translate(None, TCHAR):
            raise bad_request("malformed trailer field")
        if value.translate(None, FIELD_VALUE_CHARS):
            raise bad_request("invalid character in a trailer field")
        if name.lower() in FRAMING_FIELDS:
            raise bad_request("framing field in trailers")  # RFC 9110 6.5.1

    def _message_complete(self) -> None:
        self.state = UPGRADED if self.upgrade else HEAD
        self.remaining = 0
        self.protocol._on_message_complete()


#: ``RequestParser(protocol, max_head_size, max_headers, max_body_size)``: the name the protocol calls,
#: which the compiled parser implements without a Python call.
new_request_parser = RequestParser
