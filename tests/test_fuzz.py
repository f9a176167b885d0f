"""Differential and robustness fuzzing with hypothesis (tests/fuzz_targets.py says what is checked).

A short, bounded run is part of ``make test``; ``make fuzz`` runs the same properties much longer
(``CYASGI_FUZZ_EXAMPLES``) or under atheris (tests/fuzz_http.py). Any crasher found becomes an
``@example`` here or a corpus case in tests/http_corpus.py.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings

from cyasgi.protocols.parsers import httptools
from tests.conftest import load_twin
from tests.fuzz_strategies import cut_bytes, cut_stream
from tests.fuzz_targets import agrees_with_httptools, new_loop, serve, twins_agree
from tests.parser_harness import quiet_parsers

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

#: Divergences from httptools met in this run, for the summary test (and docs/reliability.md).
MET: Counter[str] = Counter()


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
    if reason:
        MET[reason] += 1


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


def test_divergences_met_are_all_listed():
    # Every reason returned above is a DIVERGENCES key (explain() returns nothing else); this
    # records which ones the run met, visible with -rA.
    from tests.fuzz_targets import DIVERGENCES

    assert set(MET) <= set(DIVERGENCES)
    print("divergences from httptools met:", dict(MET))
