"""Request parsers the HTTP/1.1 twins can drive.

Every parser has httptools' interface: ``Parser(protocol)`` calls ``protocol.on_message_begin()``,
``on_url(bytes)``, ``on_header(name, value)``, ``on_headers_complete()``, ``on_body(bytes)`` and
``on_message_complete()`` from ``feed_data(data)``, and answers ``get_method()``,
``get_http_version()``, ``should_keep_alive()`` and ``should_upgrade()``. ``feed_data`` raises a
``PARSER_ERRORS`` exception on a malformed request (the parser is then unusable) and a
``PARSER_UPGRADES`` exception, whose ``args[0]`` is the offset of the first byte after the request,
when the request asks to switch protocols.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any, Callable

from cyasgi.protocols.http.errors import RequestRejected, bad_request, head_too_large, version_not_supported
from cyasgi.protocols.http.rules import is_valid_header_value

try:
    import httptools
except ImportError:  # pragma: no cover - PyPy builds without a compiler
    httptools = None  # type: ignore[assignment]


class ParserError(Exception):
    """A malformed request, from a parser other than httptools."""


class ParserUpgrade(Exception):
    """The request asks to switch protocols; ``args[0]`` is the offset of the data after it."""


if httptools is not None:
    PARSER_ERRORS: tuple[type[BaseException], ...] = (httptools.HttpParserError, ParserError)
    PARSER_UPGRADES: tuple[type[BaseException], ...] = (httptools.HttpParserUpgrade, ParserUpgrade)
else:  # pragma: no cover
    PARSER_ERRORS = (ParserError,)
    PARSER_UPGRADES = (ParserUpgrade,)


#: The package each ``--http`` parser name needs; checked at start-up, so a missing one is a clear error
#: there rather than a failure on every connection. (httptools is a dependency on CPython only: on PyPy
#: the pure twin's own parser is faster, and httptools would need PyPy's headers and a C compiler.)
PARSER_PACKAGES = {"httptools": "httptools", "h11": "h11"}


def missing_parser_package(http: str) -> str | None:
    """The package ``--http NAME`` needs when it is not installed, else None."""
    package = PARSER_PACKAGES.get(http)
    if package is None or importlib.util.find_spec(package) is not None:
        return None
    return package


def httptools_parser_factory(protocol: Any) -> Any:
    if httptools is None:  # pragma: no cover
        raise ImportError("httptools is not installed: use --http h11 or install httptools")
    return httptools.HttpRequestParser(protocol)


#: ``--http cyasgi``: a marker the protocols read as "my own strict parser" (each twin has one).
OWN_PARSER = "own parser"


class H11Parser:
    """h11 behind httptools' interface, for ``--http h11`` (pure Python, e.g. without a compiler).

    h11 is a full connection state machine; here it only parses. After each request we answer
    h11's own server side with an empty response so it accepts the next pipelined request; the
    real response is written by the protocol.
    """

    def __init__(self, protocol: Any, max_incomplete_event_size: int | None = None):
        import h11

        self._h11 = h11
        self._protocol = protocol
        kwargs = {} if max_incomplete_event_size is None else {"max_incomplete_event_size": max_incomplete_event_size}
        self._conn = h11.Connection(h11.SERVER, **kwargs)
        self._method = b""
        self._version = "1.1"
        self._keep_alive = True
        self._upgrade = False
        self._begun = False  # on_message_begin was called for the request h11 is reading
        self._failed: Exception | None = None

    @classmethod
    def factory(cls, config: Any) -> Callable[[Any], H11Parser]:
        # h11 buffers an incomplete head up to this size (431 beyond): --limit-request-head-size
        # unless --h11-max-incomplete-event-size says otherwise.
        size = config.h11_max_incomplete_event_size
        if size is None:
            size = config.limit_request_head_size

        def make(protocol: Any) -> H11Parser:
            return cls(protocol, size)

        return make

    def get_method(self) -> bytes:
        return self._method

    def get_http_version(self) -> str:
        return self._version

    def should_keep_alive(self) -> bool:
        return self._keep_alive

    def should_upgrade(self) -> bool:
        return self._upgrade

    def feed_data(self, data: bytes) -> None:
        h11 = self._h11
        if self._failed is not None:
            raise ParserError(str(self._failed))
        conn = self._conn
        conn.receive_data(bytes(data))
        protocol = self._protocol
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._failed = exc
                if exc.error_status_hint == 431:
                    raise head_too_large() from None
                raise ParserError(str(exc)) from None
            if event is h11.NEED_DATA:
                if not self._begun and conn.their_state is h11.IDLE and conn.trailing_data[0]:
                    # The first bytes of a head (h11 reports the request only once it is complete).
                    self._begun = True
                    protocol.on_message_begin()
                return
            if event is h11.PAUSED:
                if conn.their_state is h11.MIGHT_SWITCH_PROTOCOL or self._upgrade:
                    trailing, _closed = conn.trailing_data
                    # Offset of the data after the request within *this* chunk.
                    raise ParserUpgrade(max(len(data) - len(trailing), 0))
                self._finish_cycle()
                continue
            if isinstance(event, h11.Request):
                self._method = event.method
                self._version = event.http_version.decode("ascii")
                self._keep_alive = True
                self._upgrade = False
                if not self._begun:
                    protocol.on_message_begin()
                self._begun = False
                protocol.on_url(event.target)
                for name, value in event.headers.raw_items():
                    if not is_valid_header_value(value):
                        # h11 lets controls other than NUL, CR and LF through; the native parsers do not.
                        self._failed = ParserError("invalid character in a header value")
                        raise self._failed
                    lname = name.lower()
                    if lname == b"connection":
                        tokens = {token.strip().lower() for token in value.split(b",")}
                        if b"close" in tokens:
                            self._keep_alive = False
                        if b"upgrade" in tokens:
                            self._upgrade = True
                    protocol.on_header(name, value)
                if self._version == "1.0":
                    self._keep_alive = False  # h11 has no HTTP/1.0 keep-alive
                if event.method == b"CONNECT":
                    self._upgrade = True
                if self._upgrade and not any(name.lower() == b"upgrade" for name, _ in event.headers.raw_items()):
                    self._upgrade = event.method == b"CONNECT"
                protocol.on_headers_complete()
                if event.method == b"CONNECT":
                    # RFC 9110 9.3.6: no content, whatever Content-Length says; the tunnel starts here.
                    protocol.on_message_complete()
                    trailing, _closed = conn.trailing_data
                    raise ParserUpgrade(max(len(data) - len(trailing), 0))
            elif isinstance(event, h11.Data):
                protocol.on_body(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                for name, value in event.headers.raw_items():  # trailers: the protocol bounds them
                    if not is_valid_header_value(value):
                        self._failed = ParserError("invalid character in a trailer field")
                        raise self._failed
                    protocol.on_header(name, value)
                protocol.on_message_complete()
                if self._upgrade:
                    continue  # h11 now pauses; the PAUSED branch reports the upgrade
                self._finish_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return

    def _finish_cycle(self) -> None:
        h11 = self._h11
        conn = self._conn
        if conn.our_state is h11.SEND_RESPONSE:
            conn.send(h11.Response(status_code=200, headers=[(b"content-length", b"0")]))
            conn.send(h11.EndOfMessage())
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
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
