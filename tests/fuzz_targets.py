"""What the fuzzers check, shared by tests/http1/test_fuzz.py (hypothesis, part of ``make test``) and
tests/fuzz_http.py (``make fuzz``: atheris when it installs, else hypothesis with many examples).

* ``twins_agree``: the compiled and the pure native parser make the same of any byte stream, cut
  anywhere: the same requests, headers, bodies, rejection status and upgrade offset.
* ``agrees_with_httptools``: where httptools and the native parser both accept a stream they
  deliver the same requests; where only one accepts, a known divergence (``DIVERGENCES``)
  explains it.
* ``serve``: a byte stream through ``HttpProtocol.data_received`` of a twin: no exception escapes,
  nothing hangs, and the application only sees well-formed requests.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Callable

from cyasgi.protocols.http.foreign import httptools
from cyasgi.protocols.http.rules import (
    is_valid_header_name,
    is_valid_header_value,
    is_valid_host,
    is_valid_target,
)
from tests.parser_harness import NativeParser, Outcome, Parsed, RawHttptools, parse
from tests.utils import make_protocol

#: Where raw httptools (llhttp, no protocol checks) and the native parsers part ways. The ones
#: marked "closed" are checked again on the httptools path by the protocol
#: (rules.check_request_head, the head limits), so the server answers the same.
DIVERGENCES = {
    # httptools accepts, the native parsers refuse
    "request_line_spaces": "RFC 9112 3: one SP between method, target and version; llhttp takes any run of "
    "spaces (not closed: its callbacks do not show them)",
    "host": "RFC 9112 3.2: exactly one valid Host in HTTP/1.1, at most one in 1.0 (closed)",
    "version": "RFC 9110 15.6.6 / RFC 9112 2.3: llhttp accepts HTTP/0.9 and HTTP/2.0 request lines "
    "(closed: 400 and 505)",
    "transfer_encoding": "RFC 9112 6.1: Transfer-Encoding in HTTP/1.0, or codings before chunked (closed: 400, 501)",
    "target_form": "RFC 9112 3.2: authority-form only for CONNECT (and CONNECT only with it), '*' only for "
    "OPTIONS; llhttp takes anything after CONNECT and '*...' for any method (closed)",
    "content_length_digits": "a Content-Length over 18 digits (1e18 bytes): refused as unparsable, RFC 9112 6.3 (5); "
    "llhttp takes up to 2^64-1 (not closed; no such body can arrive)",
    "chunk_size_digits": "a chunk size over 15 significant hex digits (2^60 bytes) is refused, RFC 9112 7.1; llhttp "
    "takes up to 2^64-1 (not closed; no such chunk can arrive)",
    "chunk_line_length": "a chunk-size line over 4 KiB (extensions) is refused; llhttp has no limit (not closed)",
    "head_limits": "the head over --limit-request-head-size or --limit-request-headers: 431; llhttp has no "
    "limit (closed)",
    "trailer_size": "trailers over --limit-request-head-size: 400; llhttp has no limit (closed)",
    "bare_lf_between_requests": "RFC 9112 2.2: only CRLF empty lines before a request are skipped; llhttp also "
    "skips a bare LF or CR there (not closed; harmless: no request is misread)",
    # the native parsers accept, httptools refuses
    "method": "RFC 9110 9.1: a method is any token, case-sensitive; llhttp knows a fixed list (not closed)",
    "scheme": "RFC 3986 3.1: a scheme may hold digits, '+', '-', '.'; llhttp takes letters only (not closed)",
    "chunk_extension_bws": "RFC 9112 7.1.1: BWS around ';' and '=' in chunk extensions; llhttp refuses it (not closed)",
    "transfer_encoding_tab": "RFC 9112 5: trailing OWS is not part of a value; llhttp refuses a tab after "
    "'chunked' (not closed)",
    "upgrade_with_body": "RFC 9110 7.8 (and RFC 7540 3.2 for h2c): an upgrade request's content is read under "
    "HTTP/1.1 before the switch; httptools skips it, so on that path an application answering an unsupported "
    "upgrade sees no body (not closed: httptools decides it inside its callback)",
    "close_beats_keep_alive": "an HTTP/1.0 request naming both close and keep-alive in Connection is closed "
    "(RFC 9112 9.3: close is final); llhttp keeps it alive (not closed; the safer reading is ours)",
    "data_after_close": "after a request with Connection: close, llhttp refuses further bytes; the native parsers "
    "read them, and the protocol closes after that response without serving them (same answer)",
}

# llhttp's request methods (llhttp/src/llhttp/constants.ts, the HTTP ones).
LLHTTP_METHODS = {
    "DELETE", "GET", "HEAD", "POST", "PUT", "CONNECT", "OPTIONS", "TRACE", "COPY", "LOCK", "MKCOL", "MOVE",
    "PROPFIND", "PROPPATCH", "SEARCH", "UNLOCK", "BIND", "REBIND", "UNBIND", "ACL", "REPORT", "MKACTIVITY",
    "CHECKOUT", "MERGE", "M-SEARCH", "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE", "PATCH", "PURGE", "MKCALENDAR",
    "LINK", "UNLINK", "SOURCE", "QUERY",
}

# A request line whose parts are parted by something else than one SP (or that ends in whitespace).
_SPACES_IN_REQUEST_LINE = re.compile(
    rb"(?:^|\n)[^\s:]*(?: [ \t]+|\t[ \t]*)\S*[ \t]+HTTP/|(?:^|\n)[^\s:]+[ \t]+\S*(?: [ \t]+|\t[ \t]*)HTTP/"
    rb"|(?:^|\n)[^\s:]+[ \t]+\S*[ \t]+HTTP/[0-9.]+[ \t]"
)
_CHUNK_BWS = re.compile(rb"\n[0-9A-Fa-f]+[^\r\n]*(?:[ \t];|;[ \t]|[ \t]=|=[ \t])")
_LONG_CHUNK_LINE = re.compile(rb"\n[0-9A-Fa-f]+;[^\n]{4000}")
# The last chunk followed by a field line: a trailer section.
_TRAILER_FIELDS = re.compile(rb"\n0[^\r\n]*\r\n[^\r\n]+\r\n")
# An absolute-form target whose scheme (RFC 3986 3.1) holds something else than letters. The parsed
# raw_path no longer shows it: split_target keeps only the path.
_SCHEME_NOT_LETTERS = re.compile(rb"(?:^|\n)[^\s:]+ [A-Za-z][A-Za-z0-9+\-.]*[0-9+\-.][A-Za-z0-9+\-.]*://")


def new_loop() -> asyncio.AbstractEventLoop:
    return asyncio.new_event_loop()


def twins_agree(compiled: Any, pure: Any, loop: asyncio.AbstractEventLoop, chunks: list[bytes]) -> Outcome:
    """Assert the compiled and the pure native parser agree on ``chunks``, fed whole and cut
    (``compiled`` None: the pure one alone, whole and cut)."""
    data = b"".join(chunks)
    expected = parse(NativeParser(pure, loop), [data])
    assert parse(NativeParser(pure, loop), chunks) == expected, "pure: the cut changes the outcome"
    if compiled is not None:
        assert parse(NativeParser(compiled, loop), [data]) == expected, "compiled != pure (whole)"
        assert parse(NativeParser(compiled, loop), chunks) == expected, "compiled: the cut changes the outcome"
    return expected


def _is_upgrade(request: Parsed) -> bool:
    tokens = b",".join(value for name, value in request.headers if name == b"connection").lower()
    has_upgrade = any(name == b"upgrade" for name, _ in request.headers)
    return b"upgrade" in tokens and has_upgrade


def _host_problem(request: Parsed) -> bool:
    hosts = [value for name, value in request.headers if name == b"host"]
    if len(hosts) > 1 or (request.http_version == "1.1" and not hosts):
        return True
    return any(not is_valid_host(host) for host in hosts)


def _te_problem(request: Parsed) -> bool:
    codings = [value for name, value in request.headers if name == b"transfer-encoding"]
    return bool(codings) and (request.http_version == "1.0" or [c.lower() for c in codings] != [b"chunked"])


def _cl_digits(request: Parsed) -> bool:
    return any(name == b"content-length" and len(value) > 18 for name, value in request.headers)


# A run of CR and LF bytes right before something that looks like a request line.
_LINE_END_RUNS = re.compile(rb"[\r\n]+(?=[!#$%&'*+\-.^_`|~0-9A-Za-z]+ )")


def explain(
    data: bytes, ours: Outcome, theirs: Outcome, reparse: Callable[[bytes], Outcome] | None = None
) -> str | None:
    """The DIVERGENCES entry behind ``ours`` (native) and ``theirs`` (raw httptools) differing."""
    index = 0
    while index < min(len(ours.requests), len(theirs.requests)) and ours.requests[index] == theirs.requests[index]:
        index += 1
    if index < len(ours.requests) and _is_upgrade(ours.requests[index]) and any(
        name in (b"content-length", b"transfer-encoding") for name, _ in ours.requests[index].headers
    ):
        return "upgrade_with_body"
    earlier = ours.requests[index - 1] if index else None
    if earlier is not None and not earlier.keep_alive and earlier.complete:
        return "data_after_close"
    if _SPACES_IN_REQUEST_LINE.search(data):
        return "request_line_spaces"
    if ours.rejected and index < len(theirs.requests):
        request = theirs.requests[index]
        if request.http_version not in ("1.0", "1.1"):
            return "version"
        target = request.raw_path + (b"?" + request.query_string if request.query_string else b"")
        if not is_valid_target(request.method, target):
            return "target_form"
        if _host_problem(request):
            return "host"
        if _te_problem(request):
            return "transfer_encoding"
        if _cl_digits(request):
            return "content_length_digits"
        if len(request.headers) > 100 or len(data) > 60_000:
            if index < len(ours.requests) and _TRAILER_FIELDS.search(data):
                return "trailer_size"  # the native parser took the head: the trailers went over the limit
            return "head_limits"
    if ours.rejected and _LONG_CHUNK_LINE.search(data):
        return "chunk_line_length"
    if ours.rejected and re.search(rb"\n0*[1-9A-Fa-f][0-9A-Fa-f]{15}", data):
        return "chunk_size_digits"
    if ours.rejected and len(data) > 60_000 and _TRAILER_FIELDS.search(data):
        return "trailer_size"
    if ours.rejected and theirs.accepted() and not theirs.partial and theirs.requests == ours.requests:
        # the same requests, then bytes llhttp skipped (CR, LF) and the native parser refused
        return "bare_lf_between_requests"
    if ours.rejected and reparse is not None:
        # Without some stray CR and LF bytes before a request line (which llhttp skips), do we agree?
        def heads(outcome: Outcome) -> list[tuple[Any, ...]]:  # keep-alive aside: upgrades change it
            return [(r.method, r.raw_path, r.query_string, r.headers, r.body) for r in outcome.requests if r.complete]

        for run in _LINE_END_RUNS.finditer(data):
            for cut in range(run.start(), run.end()):
                cleaned = data[:cut] + data[run.end() :]
                again = reparse(cleaned)
                if (again.accepted() or theirs.rejected) and heads(again) == heads(theirs):
                    return "bare_lf_between_requests"  # and, if refused, both refuse the same request
                if again != ours and explain(cleaned, again, theirs) is not None:
                    return "bare_lf_between_requests"  # and another divergence behind it
    if theirs.rejected and index < len(ours.requests):
        request = ours.requests[index]
        if request.method not in LLHTTP_METHODS:
            return "method"
        if _SCHEME_NOT_LETTERS.search(data):
            return "scheme"
        if any(name == b"transfer-encoding" for name, _ in request.headers) and b"chunked\t" in data.lower():
            return "transfer_encoding_tab"
        if _CHUNK_BWS.search(data):
            return "chunk_extension_bws"
    return None


def agrees_with_httptools(pure: Any, loop: asyncio.AbstractEventLoop, chunks: list[bytes]) -> str | None:
    """Assert the pure native parser and raw httptools agree; return the divergence met, if any."""
    assert httptools is not None
    data = b"".join(chunks)
    ours = parse(NativeParser(pure, loop), chunks)
    theirs = parse(RawHttptools(), chunks)
    met = None
    for mine, other in zip(ours.requests, theirs.requests):
        if mine.method == "CONNECT" or any(name == b"upgrade" for name, _ in mine.headers):
            # an upgrade: its keep-alive is the protocol's business (no WebSocket protocol here)
            other.keep_alive = mine.keep_alive
        tokens = b",".join(value for name, value in mine.headers if name == b"connection").lower()
        if mine.http_version == "1.0" and b"close" in tokens and other.keep_alive and not mine.keep_alive:
            other.keep_alive = False
            met = "close_beats_keep_alive"
    if ours == theirs:
        return met
    if (ours.partial and theirs.rejected) or (theirs.partial and ours.rejected):
        return None  # one has not seen the end of that request yet: no verdict to compare
    complete_ours = [r for r in ours.requests if r.complete]
    complete_theirs = [r for r in theirs.requests if r.complete]
    if ours.accepted() and theirs.accepted() and ours.upgrade_offset == theirs.upgrade_offset:
        # both accept: every request both delivered completely must be the same
        assert complete_ours == complete_theirs
        return None
    if ours.rejected and theirs.rejected and complete_ours == complete_theirs:
        return None  # the same requests, then both refuse the same one (the status is the protocol's)
    reason = explain(data, ours, theirs, lambda cleaned: parse(NativeParser(pure, loop), [cleaned]))
    assert reason is not None, f"unexplained divergence from httptools:\n ours={ours}\n theirs={theirs}"
    return reason


# Serving arbitrary bytes -----------------------------------------------------------------------


class CheckingApp:
    """Checks every scope it is given is well-formed, reads the body, answers with a digest of it all."""

    def __init__(self) -> None:
        self.scopes = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes += 1
        assert scope["type"] == "http"
        assert scope["http_version"] in ("1.0", "1.1")
        assert re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", scope["method"]), scope["method"]
        hosts = [value for name, value in scope["headers"] if name == b"host"]
        assert len(hosts) <= 1 and (hosts or scope["http_version"] == "1.0"), scope["headers"]
        assert all(is_valid_host(host) for host in hosts)
        for name, value in scope["headers"]:
            assert is_valid_header_name(name) and name == name.lower(), name
            assert is_valid_header_value(value) and value == value.strip(b" \t"), value
        assert all(0x21 <= byte < 0x7F for byte in scope["raw_path"] + scope["query_string"])
        names = [name for name, _ in scope["headers"]]
        assert names.count(b"content-length") + names.count(b"transfer-encoding") <= 1, names
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message["body"]
            if not message["more_body"]:
                break
        digest = repr((scope["method"], scope["raw_path"], scope["query_string"], scope["headers"], body))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-seen", b"%d" % self.scopes)]})
        await send({"type": "http.response.body", "body": digest.encode()})


async def serve(twin: Any, parser: str, chunks: list[bytes]) -> tuple[bytes, bool]:
    """Feed ``chunks`` to a connection; return what it wrote and whether it closed. Every check
    of CheckingApp holds (its failures surface as an error logged and a 500, asserted absent)."""
    app = CheckingApp()
    errors: list[BaseException] = []

    async def checked(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await app(scope, receive, send)
        except AssertionError as exc:
            errors.append(exc)
            raise

    protocol, transport = make_protocol(twin, checked, parser=parser, ws="none", limit_request_head_size=8192)
    for chunk in chunks:
        protocol.data_received(chunk)  # must never raise
        await asyncio.sleep(0)
    for _ in range(50):  # every request that can be answered is, within a bounded number of turns
        if not protocol.server_state.tasks:
            break
        await asyncio.sleep(0)
    written, closed = bytes(transport.buffer), transport.closed
    transport.close()
    protocol.connection_lost(None)
    for _ in range(50):  # and nothing outlives the connection
        if not protocol.server_state.tasks:
            break
        await asyncio.sleep(0)
    assert not protocol.server_state.tasks, "a request task outlived its connection"
    assert not errors, errors
    assert b"HTTP/1.1 500 " not in written
    return written, closed
