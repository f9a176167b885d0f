"""Drive a request parser alone and record what it hands over, for parser tests and the fuzzers.

The native parsers hand each request to ``HttpProtocol`` with C calls (the compiled one accepts
nothing else), so the recorder is a real protocol of the twin whose requests are never run: every
parsed request stays in ``protocol.pipeline`` with its scope and body. httptools is recorded
through its callbacks into the same shape.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from cyasgi.protocols.http.errors import RequestRejected
from cyasgi.protocols.http.foreign import OWN_PARSER, PARSER_UPGRADES, httptools
from cyasgi.protocols.http.rules import split_target
from tests.utils import MockTransport, make_config, make_state


@dataclass
class Parsed:
    """One request as a parser delivered it."""

    method: str
    raw_path: bytes
    query_string: bytes
    http_version: str
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    body: bytes = b""
    complete: bool = False


@dataclass
class Outcome:
    """Everything a parser made of a byte stream: requests, then how it stopped (if it did)."""

    requests: list[Parsed] = field(default_factory=list)
    rejected: int = 0  # the status of a refused request, 0 when none was refused
    upgrade_offset: int = -1  # where the bytes of the new protocol start, in the whole stream
    partial: bool = False  # the stream ended inside a request (its verdict is not in yet)

    def accepted(self) -> bool:
        return self.rejected == 0


async def _never_called(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
    raise AssertionError("the parser harness never runs requests")


class NativeParser:
    """A twin's own parser (``twin``: the protocol module) behind a protocol that only records."""

    def __init__(self, twin: Any, loop: asyncio.AbstractEventLoop, **limits: Any) -> None:
        config = make_config(_never_called, twin, ws="none", **limits)
        config.load()
        config.http_parser_factory = OWN_PARSER
        self.protocol = twin.HttpProtocol(config=config, server_state=make_state(), app_state={}, _loop=loop)
        self.protocol.connection_made(MockTransport())
        self.parser = self.protocol.parser
        self.fed = 0
        self.outcome = Outcome()

    def feed(self, chunk: bytes) -> bool:
        """Feed one chunk; False once the parser is done (refused or upgraded)."""
        if not self.outcome.accepted() or self.outcome.upgrade_offset >= 0:
            return False
        try:
            self.parser.feed_data(chunk)
        except RequestRejected as exc:
            self.outcome.rejected = exc.status
        except PARSER_UPGRADES as exc:
            self.outcome.upgrade_offset = self.fed + exc.args[0]
        self.fed += len(chunk)
        return self.outcome.accepted() and self.outcome.upgrade_offset < 0

    def result(self) -> Outcome:
        self.outcome.requests = [
            Parsed(
                method=cycle.scope["method"],
                raw_path=cycle.scope["raw_path"],
                query_string=cycle.scope["query_string"],
                http_version=cycle.scope["http_version"],
                headers=list(cycle.scope["headers"]),
                keep_alive=cycle.keep_alive,
                body=b"".join(cycle.body),
                complete=not cycle.more_body,
            )
            for cycle in self.protocol.pipeline
        ]
        self.outcome.partial = (
            self.outcome.accepted() and self.outcome.upgrade_offset < 0 and self.parser.has_partial_message()
        )
        return self.outcome


class RawHttptools:
    """httptools itself, without the protocol's checks: names lower-cased, values without OWS."""

    def __init__(self) -> None:
        assert httptools is not None
        self.parser = httptools.HttpRequestParser(self)
        self.fed = 0
        self.outcome = Outcome()
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._in_head = False

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._in_head = True

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:
            self._headers.append((name.lower(), value.strip(b" \t")))

    def on_headers_complete(self) -> None:
        self._in_head = False
        raw_path, query = split_target(self._url)
        version = self.parser.get_http_version()
        self.outcome.requests.append(
            Parsed(
                self.parser.get_method().decode("ascii"),
                raw_path,
                query,
                version,
                self._headers,
                self.parser.should_keep_alive(),
            )
        )

    def on_body(self, body: bytes) -> None:
        self.outcome.requests[-1].body += body

    def on_message_complete(self) -> None:
        self.outcome.requests[-1].complete = True

    def feed(self, chunk: bytes) -> bool:
        if not self.outcome.accepted() or self.outcome.upgrade_offset >= 0:
            return False
        try:
            self.parser.feed_data(chunk)
        except httptools.HttpParserUpgrade as exc:
            self.outcome.upgrade_offset = self.fed + exc.args[0]
        except httptools.HttpParserError:
            self.outcome.rejected = 400
        self.fed += len(chunk)
        return self.outcome.accepted() and self.outcome.upgrade_offset < 0

    def result(self) -> Outcome:
        begun = self._in_head or bool(self.outcome.requests and not self.outcome.requests[-1].complete)
        self.outcome.partial = self.outcome.accepted() and self.outcome.upgrade_offset < 0 and begun
        return self.outcome


def parse(parser: Any, chunks: list[bytes]) -> Outcome:
    for chunk in chunks:
        if not parser.feed(chunk):
            break
    return parser.result()


def quiet_parsers() -> None:
    """The parsers log a debug line per refusal and a warning per unsupported upgrade: keep fuzz
    runs from flooding the captured log."""
    logging.getLogger("uvicorn.error").setLevel(logging.ERROR)
