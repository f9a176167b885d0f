"""What both HTTP/1.1 twins share: constants, pre-built status lines, validation, exceptions.

Nothing here runs per byte: the twins use these tables and call these helpers on cold paths
(errors, upgrades) or once per server.
"""

from __future__ import annotations

import asyncio
import errno
import http
import logging
import os
import re
import ssl
import socket
import stat
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

#: Bytes read and written per step when a file cannot go out with sendfile(2) (TLS, loops without
#: it): the transport's flow control is honoured between steps, so memory stays bounded.
FILE_CHUNK_SIZE = 262144


class ClientDisconnected(OSError):
    """Raised by ``send()`` once the client is gone (ASGI HTTP spec 2.4)."""


class RequestRejected(Exception):
    """Raised from a parser callback: answer ``status`` with ``body`` and close the connection."""

    def __init__(self, status: int, body: bytes, log_message: str) -> None:
        super().__init__(status, body, log_message)
        self.status = status
        self.body = body
        self.log_message = log_message


#: Fields that frame a message: never allowed in trailers (RFC 9110 6.5.1), where a proxy merging
#: trailers into the header section could be misled.
FRAMING_FIELDS = frozenset((b"content-length", b"transfer-encoding"))


_bad_request_logger = logging.getLogger("uvicorn.error")


def bad_request(detail: str = "") -> RequestRejected:
    """400 for a malformed request; ``detail`` (what was wrong) is logged at debug level only,
    never sent to the client."""
    if detail:
        _bad_request_logger.debug("Invalid HTTP request: %s", detail)
    return RequestRejected(400, b"Invalid HTTP request received.", "Invalid HTTP request received.")


#: Digits a content-length may have: 10**18 bytes is past any body that can arrive (RFC 9112 6.3 (5)
#: lets a recipient refuse a length it cannot parse), and the value stays within a signed 64-bit int.
MAX_CONTENT_LENGTH_DIGITS = 18


def parse_content_length(value: bytes) -> int:
    """The length of a ``Content-Length`` value, or -1 when it is not one.

    ``Content-Length = 1*DIGIT`` (RFC 9110 8.6): ASCII digits only, up to 18 of them; no sign, no
    ``_``, no OWS (a field value has none around it, RFC 9110 5.5: the request parsers strip it, and
    a response value from the app is written as it is), no list (``5, 5``). The one rule for
    request and response, so that no two places read a length differently."""
    if not value.isdigit() or len(value) > MAX_CONTENT_LENGTH_DIGITS:  # bytes.isdigit(): ASCII only, non-empty
        return -1
    return int(value)


def head_too_large() -> RequestRejected:
    return RequestRejected(431, b"Request Header Fields Too Large", "Request head too large.")


def too_many_headers() -> RequestRejected:
    return RequestRejected(431, b"Request Header Fields Too Large", "Too many request headers.")


def body_too_large() -> RequestRejected:
    return RequestRejected(413, b"Content Too Large", "Request body too large.")


def version_not_supported() -> RequestRejected:
    return RequestRejected(505, b"HTTP Version Not Supported", "Unsupported HTTP version.")


def transfer_coding_rejection(value: bytes) -> RequestRejected:
    """For a Transfer-Encoding other than exactly ``chunked`` (RFC 9112 6.1, 6.3, 7.1): 501 when
    other codings precede a final chunked (codings this server does not implement); else 400: the
    final coding is not chunked (the body length is unknown), chunked is applied twice, or the
    list is malformed."""
    codings = [coding.strip(b" \t") for coding in value.lower().split(b",")]
    if len(codings) > 1 and codings[-1] == b"chunked" and all(codings[:-1]) and b"chunked" not in codings[:-1]:
        return RequestRejected(501, b"Not Implemented", "Unsupported transfer coding.")
    return bad_request()


#: ``--http auto`` in the pure twin on CPython is httptools; these are the rules of the native parsers
#: that llhttp (or h11) does not apply, checked in each twin's ``on_headers_complete``.
_HOST = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|\[[vV][0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+\]"
    rb"|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?"
)


# Host values already found valid: a server sees the same few again and again. Bounded, and only
# valid values enter it, so a client sending made-up hosts cannot grow it.
_VALID_HOSTS: dict[bytes, bool] = {}


def is_valid_host(value: bytes) -> bool:
    """``Host = uri-host [ ":" port ]`` (RFC 9110 7.2, RFC 3986 3.2.2); an empty value is valid."""
    if value in _VALID_HOSTS:
        return True
    if _HOST.fullmatch(value) is None:
        return False
    if len(_VALID_HOSTS) < 256:
        _VALID_HOSTS[value] = True
    return True


_ABSOLUTE_FORM = re.compile(rb"[A-Za-z][A-Za-z0-9+\-.]*://")


def is_valid_target(method: str, target: bytes) -> bool:
    """The request-target forms of RFC 9112 3.2: origin-form (``/path?query``) and absolute-form
    (``scheme://...``) for any method but CONNECT, whose target is authority-form (``host:port``)
    and nothing else; asterisk-form (``*``) only for OPTIONS."""
    if method == "CONNECT":
        host, _, port = target.rpartition(b":")
        return bool(host) and port.isdigit() and is_valid_host(host) and (b":" not in host or host[-1:] == b"]")
    if target[:1] == b"/":
        return True
    if target == b"*":
        return method == "OPTIONS"
    return _ABSOLUTE_FORM.match(target) is not None


def check_request_head(
    method: str, target: bytes, http_version: str, headers: list[tuple[bytes, bytes]], max_body_size: int
) -> None:
    """Raise RequestRejected for a head a foreign parser accepted but the native parsers refuse.

    ``headers`` are lower-cased names with values; ``max_body_size`` is -1 for no body limit.
    Same answers, in the same order of precedence, as ``RequestParser._parse_head``.
    """
    if http_version != "1.1" and http_version != "1.0":
        # llhttp reports 0.9 for a request line without a version: malformed, as for the native parsers
        raise bad_request() if http_version.startswith("0.") else version_not_supported()
    if (target[:1] != b"/" or method == "CONNECT") and not is_valid_target(method, target):
        raise bad_request()
    hosts = 0
    content_length = -1
    transfer_encoding = False
    for name, value in headers:
        if name == b"host":
            hosts += 1
            if not is_valid_host(value):
                raise bad_request()
        elif name == b"transfer-encoding":
            if transfer_encoding:
                raise bad_request()
            transfer_encoding = True
            if value.lower() != b"chunked":
                raise transfer_coding_rejection(value)
        elif name == b"content-length":
            if content_length != -1:
                raise bad_request("more than one Content-Length")
            content_length = parse_content_length(value)
            if content_length == -1:
                raise bad_request("invalid Content-Length")
    if transfer_encoding and (content_length != -1 or http_version == "1.0"):
        raise bad_request()
    if hosts > 1 or (hosts == 0 and http_version == "1.1"):
        raise bad_request()
    if 0 <= max_body_size < content_length:
        raise body_too_large()


_parse_error_logger = logging.getLogger("uvicorn.error")


def foreign_parse_error(exc: BaseException, http_version: str) -> RequestRejected:
    """What to answer when httptools or h11 raised ``exc``; ``http_version`` is the parser's.

    A RequestRejected raised from one of our callbacks wins; llhttp refuses versions other than
    0.9, 1.0, 1.1 and 2.0 itself, which the native parsers answer with 505 from 1.2 on.
    """
    context = exc.__context__
    if isinstance(context, RequestRejected):
        return context
    _parse_error_logger.debug("Invalid HTTP request: %s", exc)
    if http_version not in ("1.0", "1.1") and not http_version.startswith("0."):
        return version_not_supported()
    return bad_request()


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


#: ``HTTP/1.1 200 OK\r\n`` for every status from 100 to 599, built once.
STATUS_LINES: dict[int, bytes] = {status: _status_line(status) for status in range(100, 600)}

#: RFC 9110 5.6.2 token characters (field names, methods, transfer codings): the one definition.
TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: Characters a field value may hold (RFC 9110 5.5): HTAB, SP, VCHAR and obs-text; CR, LF, NUL and
#: the other controls are refused (RFC 9110 5.5 lets a recipient refuse them; a sender must not send them).
FIELD_VALUE_CHARS = bytes([0x09]) + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))


def outside_table(allowed: bytes) -> bytes:
    """A translate() table that changes exactly the bytes not in ``allowed``: ``s.translate(table) != s``
    says ``s`` has one. One pass, where ``translate(None, delete)`` first builds a table on every call."""
    return bytes(c if c in allowed else (c + 1) & 0xFF for c in range(256))


_OUTSIDE_TCHAR = outside_table(TCHAR)
_OUTSIDE_VALUE_CHARS = outside_table(FIELD_VALUE_CHARS)


def is_valid_header_name(name: bytes) -> bool:
    return bool(name) and name.translate(_OUTSIDE_TCHAR) == name


def is_valid_header_value(value: bytes) -> bool:
    return value.translate(_OUTSIDE_VALUE_CHARS) == value


def as_bytes(value: Any, what: str) -> bytes:
    """An ASGI byte string the app gave as bytearray or memoryview, as bytes; anything else (str,
    int, None...) is refused rather than converted (``bytes(5)`` would be five NUL bytes)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"The HTTP response {what} must be bytes, not {type(value).__name__}.")


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


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """``(raw_path, query_string)`` of a request target, without any ``#fragment``."""
    if target[:1] != b"/" and b"://" in target:
        # absolute-form (a proxy's request): keep only the path and query
        target = target.split(b"://", 1)[1]
        slash = target.find(b"/")
        query = target.find(b"?")
        if slash == -1 or (query != -1 and query < slash):
            target = b"/" + target[query:] if query != -1 else b"/"
        else:
            target = target[slash:]
    if b"#" in target:
        target = target.partition(b"#")[0]
    raw_path, _, query_string = target.partition(b"?")
    return raw_path, query_string


def request_head_bytes(method: str, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """Re-serialise a parsed request head, for the protocol a connection is upgraded to."""
    lines = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        lines += [name, b": ", value, b"\r\n"]
    lines.append(b"\r\n")
    return b"".join(lines)


def is_websocket_upgrade(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"upgrade" and value.lower() == b"websocket":
            return True
    return False


_upgrade_logger = logging.getLogger("uvicorn.error")


def warn_unsupported_upgrade(websocket: bool) -> None:
    _upgrade_logger.warning("Unsupported upgrade request.")
    if websocket:
        _upgrade_logger.warning(
            "No supported WebSocket library detected. Please use \"pip install 'cyasgi'\" with "
            "'websockets' installed, or install 'websockets' or 'wsproto' manually."
        )


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


def encode_health_path(path: str | None) -> bytes | None:
    """``--health-path`` as the raw request path it matches (query strings are ignored)."""
    if path is None or path == "":
        return None
    if not path.startswith("/") or not path.isascii() or not path.isprintable() or " " in path or "?" in path:
        raise ValueError(f"--health-path must be a path such as /healthz (ASCII, no spaces or '?'), not {path!r}.")
    return path.encode("ascii")


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


# The ASGI TLS extension (scope["extensions"]["tls"]), computed once per connection ----------------

#: ssl.SSLObject.version() -> the protocol version number of the TLS specifications.
_TLS_VERSIONS = {"SSLv3": 0x0300, "TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}

#: OpenSSL cipher names -> IANA cipher suite numbers (-1: unknown), learnt from SSLContext.get_ciphers().
_CIPHER_SUITES: dict[str, int] = {}

#: RFC 4514 short names of the attribute types Python's getpeercert() spells out.
_RDN_SHORT_NAMES = {
    "commonName": "CN",
    "countryName": "C",
    "domainComponent": "DC",
    "localityName": "L",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "stateOrProvinceName": "ST",
    "streetAddress": "STREET",
    "userId": "UID",
}


def cipher_suite_number(ssl_object: Any) -> int | None:
    """The negotiated cipher as its 16-bit IANA number (0x1301 for TLS_AES_128_GCM_SHA256)."""
    cipher = ssl_object.cipher()
    if not cipher:
        return None
    name = cipher[0]
    number = _CIPHER_SUITES.get(name)
    if number is None:
        context = getattr(ssl_object, "context", None)
        if context is not None:
            for entry in context.get_ciphers():
                _CIPHER_SUITES[entry["name"]] = entry["id"] & 0xFFFF
        number = _CIPHER_SUITES.setdefault(name, -1)
    return None if number < 0 else number


def _rfc4514_value(value: str) -> str:
    escaped = []
    last = len(value) - 1
    for index, char in enumerate(value):
        if char in '"+,;<>\\' or (char == "#" and index == 0) or (char == " " and index in (0, last)):
            escaped.append("\\" + char)
        elif char == "\x00":
            escaped.append("\\00")
        else:
            escaped.append(char)
    return "".join(escaped)


def rfc4514_name(subject: Any) -> str:
    """A subject as ``getpeercert()`` gives it (RDNs, most significant first) as an RFC 4514
    string, which lists the RDNs the other way round: ``CN=alice,O=Example,C=FR``."""
    return ",".join(
        "+".join(f"{_RDN_SHORT_NAMES.get(key, key)}={_rfc4514_value(value)}" for key, value in rdn)
        for rdn in reversed(subject)
    )


def _as_pem(cert: Any) -> str:
    """A certificate of ``get_verified_chain()``: DER bytes (ssl.SSLObject), or an _ssl.Certificate."""
    if isinstance(cert, (bytes, bytearray)):
        return ssl.DER_cert_to_PEM_cert(bytes(cert))
    pem = cert.public_bytes(ssl.ENCODING_PEM)
    return pem.decode("ascii") if isinstance(pem, bytes) else pem


def tls_extension(transport: Any, server_cert: str | None) -> dict[str, Any] | None:
    """The ``tls`` scope extension of a connection, or None when it is not over TLS.

    Read once per connection, after the handshake (asyncio and uvloop call ``connection_made``
    then). ``client_cert_chain`` is the client's certificate first, then its verified chain up to
    the trusted CA on Python 3.13+ (``get_verified_chain``), the certificate alone before.
    ``client_cert_error`` is always None: a certificate that fails verification fails the handshake.
    """
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    chain: list[str] = []
    name = None
    der = ssl_object.getpeercert(binary_form=True)
    if der:
        get_verified_chain = getattr(ssl_object, "get_verified_chain", None)
        if get_verified_chain is not None:
            try:
                chain = [_as_pem(cert) for cert in get_verified_chain()]
            except (ssl.SSLError, ValueError):
                chain = []
        if not chain:
            chain = [ssl.DER_cert_to_PEM_cert(der)]
        peer = ssl_object.getpeercert()
        if peer and peer.get("subject"):
            name = rfc4514_name(peer["subject"])
    return {
        "server_cert": server_cert,
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": cipher_suite_number(ssl_object),
    }


def first_certificate_pem(certfile: Any) -> str | None:
    """The server's own certificate for ``server_cert``: the first one in ``--ssl-certfile``,
    re-encoded as canonical PEM. None when it cannot be read (the TLS set-up reports that)."""
    try:
        with open(certfile, encoding="ascii", errors="replace") as file:
            text = file.read()
    except OSError:
        return None
    begin = text.find("-----BEGIN CERTIFICATE-----")
    end_marker = "-----END CERTIFICATE-----"
    end = text.find(end_marker, begin)
    if begin < 0 or end < 0:
        return None
    try:
        return ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(text[begin : end + len(end_marker)]))
    except ValueError:
        return None
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


def trailer_block(headers: Any) -> bytes:
    """``name: value\\r\\n`` lines of an ``http.response.trailers`` message, checked like response
    headers (tokens, no CR, LF, NUL) and refused for the fields trailers may not carry."""
    lines = []
    for name, value in headers:
        name = as_bytes(name, "trailer name").lower()
        value = as_bytes(value, "trailer value")
        if not is_valid_header_name(name):
            raise RuntimeError("Invalid HTTP trailer name.")
        if not is_valid_header_value(value):
            raise RuntimeError("Invalid HTTP trailer value.")
        if name in FORBIDDEN_TRAILERS:
            raise RuntimeError(f"The field {name.decode('ascii')!r} is not allowed in trailers.")
        lines.append(b"%s: %s\r\n" % (name, value))
    return b"".join(lines)


def early_hint_head(links: Any) -> bytes:
    """``103 Early Hints`` with one ``link`` field per link of an ``http.response.early_hint``
    message; empty when there are no links (nothing worth a 103)."""
    if isinstance(links, (bytes, bytearray, memoryview, str)):
        raise TypeError("The 'links' of http.response.early_hint must be a list of bytes.")
    lines = []
    for link in links:
        link = as_bytes(link, "early hint link")
        if not link or not is_valid_header_value(link):
            raise RuntimeError("Invalid link in http.response.early_hint.")
        lines.append(b"link: %s\r\n" % link)
    if not lines:
        return b""
    return b"HTTP/1.1 103 Early Hints\r\n" + b"".join(lines) + b"\r\n"


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
_LOOP_SENDFILE = 1  # the loop's own sendfile (asyncio's selector loop, plain TCP)
_DIRECT_SENDFILE = 2  # os.sendfile on the transport's socket (uvloop, which has no loop.sendfile)
_COPY = 3  # read and write (TLS, other loops, no os.sendfile)
_DISCONNECT_ERRNOS = frozenset((errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF, errno.ESHUTDOWN))


def sendfile_way(loop: Any, transport: Any) -> int:
    """How a file goes out on this transport."""
    if transport.get_extra_info("sslcontext") or not hasattr(os, "sendfile"):
        return _COPY
    if _NATIVE_SENDFILE is not None and getattr(transport, "_sendfile_compatible", None) is _NATIVE_SENDFILE:
        return _LOOP_SENDFILE
    if type(loop).sendfile is asyncio.AbstractEventLoop.sendfile and type(loop).__module__.startswith("uvloop"):
        sock = transport.get_extra_info("socket")
        if sock is not None and getattr(sock, "type", None) == socket.SOCK_STREAM:
            return _DIRECT_SENDFILE
    return _COPY


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
        if way == _LOOP_SENDFILE:
            try:
                offset += await cycle.protocol.loop.sendfile(transport, _Descriptor(fd), offset, count, fallback=False)
            except asyncio.SendfileNotAvailableError:
                # asyncio says this, with nothing sent, whenever its first os.sendfile fails: a
                # client that reset the connection among other reasons. The copying way sends
                # the rest, or meets the real error.
                offset = await _copy_file(cycle, fd, offset, end)
        elif way == _DIRECT_SENDFILE:
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
