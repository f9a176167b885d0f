"""Differential and robustness fuzzing with hypothesis (tests/fuzz_targets.py says what is checked).

A short, bounded run is part of ``make test``; ``make fuzz`` runs the same properties much longer
(``CYASGI_FUZZ_EXAMPLES``) or under atheris (tests/fuzz_http.py). Any crasher found becomes an
``@example`` here or a corpus case in tests/http_corpus.py.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings

from cyasgi.protocols.http.foreign import httptools
from tests.conftest import load_twin
from tests.fuzz_strategies import cut_bytes, cut_stream
from tests.fuzz_targets import DIVERGENCES, agrees_with_httptools, explain, new_loop, serve, twins_agree
from tests.parser_harness import NativeParser, RawHttptools, parse, quiet_parsers

EXAMPLES = int(os.environ.get("CYASGI_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    print_blob=True,
    # `make test` runs the same examples every time (a red CI names a real regression, never a new
    # random draw); `make fuzz` and CYASGI_FUZZ_RANDOM=1 explore.
    derandomize=not os.environ.get("CYASGI_FUZZ_RANDOM") and EXAMPLES <= 1000,
)

# Divergences the fuzzer found, each now either fixed or named in DIVERGENCES.
FOUND = [
    b"CONNECT * HTTP/2.0\r\n\r\r\n",  # unfinished: no verdict yet on our side
    b"CONNECT * HTTP/1.1\r\nHost: example.org\r\nContent-Length: 1\r\n\r\n\r\n",  # CONNECT has no content
    b"PROPFIND * HTTP/1.1\r\nHost: example.org\r\nContent-Length: 1\r\n\r\n\r\n",  # a stray LF after it
    b"PROPFIND example.org:443 HTTP/1.1\r\nHost: example.org\r\n\r\n\r\n",  # authority-form without CONNECT
    b"GET http://example.org/x?y HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\nConnection: Upgrade\r\n"
    b"Upgrade: websocket\r\nContent-Length: 1\r\n\r\n",  # an upgrade with a body
    b"GET / HTTP/1.0\r\nContent-Length: 0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
    b"\nPROPFIND / HTTP/1.1\r\nHost: example.org\r\n\r\n\r\n",  # a stray LF first
    b"\nPROPFIND / HTTP/1.1\r\nHost: example.org\r\n\r\nCONNECT  *HTTP/2.0\n\n\r\n",  # ... then a bad line
    b"PROPFIND http://example.org/x?y HTTP/1.1\r\nHost: example.org\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\nContent-Length: 0\r\n\r\n\r\n",  # a framing field in trailers
    b"GET / HTTP/1.1\r\nHost: example.org\r\nX-A: \r\nContent-Length: 0\r\n\r\n\r"
    b"PROPFIND / HTTP/1.1\r\nHost: example.org\r\n\r\n\r\n",  # a stray CR between requests
]


def found(test: Any) -> Any:
    for data in FOUND:
        test = example(chunks=[data])(test)
    return test


@pytest.fixture(scope="module")
def twins() -> tuple[Any, Any]:
    """(compiled, pure); compiled is None where it cannot be built (PyPy, CYASGI_NO_EXTENSIONS):
    the pure twin is fuzzed alone there."""
    try:
        compiled = load_twin("c")
    except pytest.skip.Exception:
        compiled = None
    return compiled, load_twin("py")


@pytest.fixture(scope="module")
def loop() -> Any:
    loop = new_loop()
    yield loop
    loop.close()


@FUZZ
@given(chunks=cut_stream())
@example(chunks=[b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n", b"\r\n"])
@example(chunks=[b"\r", b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"])
@found
def test_compiled_and_pure_parsers_agree(twins, loop, chunks):
    quiet_parsers()
    twins_agree(*twins, loop, chunks)


@pytest.mark.skipif(httptools is None, reason="httptools is not installed here")
@FUZZ
@given(chunks=cut_stream())
@found
def test_native_parser_agrees_with_httptools(twins, loop, chunks):
    quiet_parsers()
    reason = agrees_with_httptools(twins[1], loop, chunks)
    assert reason is None or reason in DIVERGENCES, reason


@FUZZ
@given(chunks=cut_bytes())
@example(chunks=[b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n"])
@example(
    chunks=[
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n"
    ]
)
def test_data_received_of_both_twins_with_every_parser(twins, chunks):
    """No exception escapes, nothing hangs, the app sees only well-formed requests, and the two
    twins answer byte for byte the same with each parser."""
    quiet_parsers()
    compiled, pure = twins
    for parser in ("cyasgi", "httptools", "h11"):
        if parser == "httptools" and httptools is None:
            continue
        transcript_py = asyncio.run(serve(pure, parser, chunks))
        if compiled is not None:
            assert asyncio.run(serve(compiled, parser, chunks)) == transcript_py, parser


HOST = b"Host: example.org\r\n"
CHUNKED = b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"

#: One stream for each entry of DIVERGENCES, on which the native parser and raw httptools part ways
#: for that reason.
DIVERGENT = {
    "request_line_spaces": b"GET  / HTTP/1.1\r\n" + HOST + b"\r\n",
    "host": b"GET / HTTP/1.1\r\n\r\n",
    "version": b"GET / HTTP/2.0\r\n" + HOST + b"\r\n",
    "transfer_encoding": b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "target_form": b"GET * HTTP/1.1\r\n" + HOST + b"\r\n",
    "content_length_digits": b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 0000000000000000001\r\n\r\nx",
    "chunk_size_digits": CHUNKED + b"1000000000000000\r\n",
    "chunk_line_length": CHUNKED + b"1;" + b"a" * 5000 + b"\r\nx\r\n0\r\n\r\n",
    "head_limits": b"GET / HTTP/1.1\r\n" + HOST + b"".join(b"X-%d: y\r\n" % i for i in range(101)) + b"\r\n",
    "trailer_size": CHUNKED + b"0\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"y" * 100) for i in range(700)) + b"\r\n",
    "bare_lf_between_requests": b"GET / HTTP/1.1\r\n" + HOST + b"\r\n\nGET / HTTP/1.1\r\n" + HOST + b"\r\n",
    "method": b"BREW / HTTP/1.1\r\n" + HOST + b"\r\n",
    "scheme": b"GET git+ssh://example.org/x HTTP/1.1\r\n" + HOST + b"\r\n",
    "chunk_extension_bws": CHUNKED + b"1 ; a=b\r\nx\r\n0\r\n\r\n",
    "transfer_encoding_tab": b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n",
    "upgrade_with_body": b"POST / HTTP/1.1\r\n" + HOST + b"Connection: upgrade\r\nUpgrade: h2c\r\n"
    b"Content-Length: 3\r\n\r\nabc",
    "close_beats_keep_alive": b"GET / HTTP/1.0\r\nConnection: close, keep-alive\r\n\r\n",
    "data_after_close": b"GET / HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\nGET / HTTP/1.1\r\n" + HOST + b"\r\n",
}


def divergence_met(pure: Any, loop: Any, data: bytes) -> str | None:
    """The divergence the differential harness names for ``data``. Where httptools is left waiting
    for more (a chunk too large ever to arrive) the fuzzer has no verdict to compare; the
    outcomes themselves are explained then."""
    met = agrees_with_httptools(pure, loop, [data])
    if met is None:
        ours, theirs = parse(NativeParser(pure, loop), [data]), parse(RawHttptools(), [data])
        if ours.rejected and theirs.partial:
            met = explain(data, ours, theirs)
    return met


@pytest.mark.skipif(httptools is None, reason="httptools is not installed here")
def test_every_listed_divergence_is_met_and_every_divergence_met_is_listed(twins, loop):
    quiet_parsers()
    pure = twins[1]
    assert set(DIVERGENT) == set(DIVERGENCES), "one stream in DIVERGENT for each entry of DIVERGENCES"
    met = {name: divergence_met(pure, loop, data) for name, data in DIVERGENT.items()}
    assert met == {name: name for name in DIVERGENT}
    for data in DIVERGENT.values():  # and there the compiled twin parts ways the same
        twins_agree(*twins, loop, [data[:7], data[7:]])
    # The streams the fuzzer found (FOUND) meet only listed divergences, or none.
    for data in FOUND:
        assert divergence_met(pure, loop, data) in {*DIVERGENCES, None}, data
