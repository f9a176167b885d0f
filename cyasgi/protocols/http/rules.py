"""The rules a request and a response must follow (RFC 9110, 9112): characters of field names and
values, hosts, request targets, and what a foreign parser lets through that the native ones refuse."""

from __future__ import annotations

import re
from typing import Any

from cyasgi.protocols.http.errors import (
    bad_request,
    body_too_large,
    transfer_coding_rejection,
    version_not_supported,
)

#: Fields that frame a message: never allowed in trailers (RFC 9110 6.5.1), where a proxy merging
#: trailers into the header section could be misled.
FRAMING_FIELDS = frozenset((b"content-length", b"transfer-encoding"))


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


def header_pair(field: Any) -> tuple[Any, Any]:
    """A response header the app gave as something other than a 2-tuple: a (name, value) list is
    taken; anything else is refused with the same error in both builds."""
    if isinstance(field, (list, tuple)) and len(field) == 2:
        return field[0], field[1]
    raise TypeError(f"HTTP response headers must be (name, value) pairs, not {field!r}.")


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
