"""The native request parsers alone (compiled ``[c]`` and pure ``[py]``): what each hands over,
whatever way the bytes are split, and where it stops."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from cyasgi.protocols.http.rules import is_valid_host
from tests.http_corpus import MALFORMED
from tests.parser_harness import NativeParser, Outcome, Parsed, parse


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def native(twin: Any, loop: asyncio.AbstractEventLoop) -> Any:
    """``native(chunks, **limits)``: the twin's parser's Outcome for these chunks."""

    def run(chunks: list[bytes], **limits: Any) -> Outcome:
        return parse(NativeParser(twin, loop, **limits), chunks)

    return run


def splits(data: bytes) -> Iterator[list[bytes]]:
    """Every way to cut ``data`` in two, and one byte at a time."""
    for cut in range(1, len(data)):
        yield [data[:cut], data[cut:]]
    yield [data[i : i + 1] for i in range(len(data))]


CHUNKED = (
    b"POST /up?x=1 HTTP/1.1\r\nHost: example.org\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'5;name="va;lue"\r\nhello\r\n1 ; flag\r\n,\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\nX-Other: o\r\n\r\n'
)
PIPELINE = (
    b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
    b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    b"GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
)
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def test_a_request_as_handed_over(native):
    outcome = native([b"GET /p%20q?a=b HTTP/1.1\r\nHost: example.org\r\nX-Mixed-Case: Value \t\r\n\r\n"])
    assert outcome == Outcome(
        [
            Parsed(
                method="GET",
                raw_path=b"/p%20q",
                query_string=b"a=b",
                http_version="1.1",
                headers=[(b"host", b"example.org"), (b"x-mixed-case", b"Value")],
                keep_alive=True,
                complete=True,
            )
        ]
    )


def test_heads_split_at_every_byte(native):
    whole = native([PIPELINE])
    assert [(r.method, r.raw_path, r.body, r.keep_alive) for r in whole.requests] == [
        ("GET", b"/a", b"", True),
        ("POST", b"/b", b"abc", True),
        ("GET", b"/c", b"", True),
    ]
    for chunks in splits(PIPELINE):
        assert native(chunks) == whole, [len(chunk) for chunk in chunks]


def test_chunked_bodies_split_at_every_byte(native):
    whole = native([CHUNKED])
    [request] = whole.requests
    assert request.body == b"hello, world" and request.complete
    assert request.headers == [(b"host", b"example.org"), (b"transfer-encoding", b"chunked")]  # no trailers
    for chunks in splits(CHUNKED):
        assert native(chunks) == whole, [len(chunk) for chunk in chunks]


def test_a_request_after_trailers_is_parsed(native):
    outcome = native([CHUNKED + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"])
    assert [r.raw_path for r in outcome.requests] == [b"/up", b"/next"]
    assert all(r.complete for r in outcome.requests)


@pytest.mark.parametrize(
    "head",
    [UPGRADE, b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n"],
    ids=["websocket", "connect"],
)
def test_the_upgrade_offset_whatever_the_split(native, head):
    data = head + b"\x81\x85bytes of the new protocol"
    for chunks in [[data], *splits(data)]:
        outcome = native(chunks)
        assert outcome.upgrade_offset == len(head), [len(chunk) for chunk in chunks]
        assert len(outcome.requests) == 1 and outcome.requests[0].complete


def test_an_upgrade_with_a_body_hands_over_after_the_body(native):
    head = UPGRADE.replace(b"\r\n\r\n", b"\r\nContent-Length: 4\r\n\r\n")
    outcome = native([head + b"bodyNEW"])
    assert outcome.upgrade_offset == len(head) + 4
    assert outcome.requests[0].body == b"body"


@pytest.mark.parametrize("case", [case for case in MALFORMED if len(case.data) < 400], ids=lambda case: case.name)
def test_refusals_do_not_depend_on_the_split(native, case):
    expected = native([case.data]).rejected
    assert expected == case.status
    for chunks in splits(case.data):
        assert native(chunks).rejected == expected, [len(chunk) for chunk in chunks]


def test_limits_at_the_parser(native):
    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"  # 27 bytes
    assert native([head], limit_request_head_size=64).accepted()
    padded = head.replace(b"Host: x", b"Host: x\r\nX: " + b"p" * (64 - len(head) - 5))
    assert len(padded) == 64
    assert native([padded], limit_request_head_size=64).accepted()
    longer = padded.replace(b"X: ", b"X: p")
    for chunks in [[longer], *splits(longer)]:
        assert native(chunks, limit_request_head_size=64).rejected == 431
    three = head.replace(b"Host: x", b"Host: x\r\nA: 1\r\nB: 2")
    assert native([three], limit_request_headers=3).accepted()
    assert native([three.replace(b"B: 2", b"B: 2\r\nC: 3")], limit_request_headers=3).rejected == 431


def test_too_many_fields_before_a_malformed_one_is_431_in_both_twins(native):
    fields = b"".join(b"F%d: v\r\n" % i for i in range(5))
    assert native([b"GET / HTTP/1.1\r\n" + fields + b"Bad Field\r\n\r\n"], limit_request_headers=4).rejected == 431
    assert native([b"GET / HTTP/1.1\r\n" + fields + b"Bad Field\r\n\r\n"], limit_request_headers=5).rejected == 400


def test_a_meaningful_error_before_too_many_fields_is_still_431(native):
    # Every field is well-formed, so the count is checked first; only then their meaning.
    fields = b"Content-Length: x\r\n" + b"".join(b"F%d: v\r\n" % i for i in range(5))
    assert native([b"POST / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"], limit_request_headers=4).rejected == 431
    assert native([b"POST / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"], limit_request_headers=10).rejected == 400


def test_body_limit_at_the_parser(native):
    post = b"POST / HTTP/1.1\r\nHost: x\r\n"
    assert native([post + b"Content-Length: 5\r\n\r\nabcde"], limit_request_body_size=5).accepted()
    over = native([post + b"Content-Length: 6\r\n\r\nabcdef"], limit_request_body_size=5)
    assert over.rejected == 413 and over.requests == []  # refused with its head: never handed over
    chunked = post + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"
    assert native([chunked], limit_request_body_size=6).accepted()
    for chunks in [[chunked], *splits(chunked)]:
        outcome = native(chunks, limit_request_body_size=5)
        # refused at the second chunk's size line: none of its bytes were handed over
        assert outcome.rejected == 413 and outcome.requests[0].body == b"abc"


def test_connection_tokens_and_versions(native):
    def keep_alive(head: bytes) -> bool:
        [request] = native([head + b"\r\n"]).requests
        return request.keep_alive

    assert keep_alive(b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert not keep_alive(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n")
    assert not keep_alive(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: foo\r\nConnection: CLOSE , bar\r\n")
    assert not keep_alive(b"GET / HTTP/1.0\r\n")
    assert keep_alive(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n")
    assert not keep_alive(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n")


def test_partial_message_and_head_states(twin, loop):
    recorder = NativeParser(twin, loop)
    parser = recorder.parser
    assert not parser.has_partial_message() and not parser.in_head()
    recorder.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-")
    assert parser.has_partial_message() and parser.in_head()
    recorder.feed(b"Length: 2\r\n\r\na")
    assert parser.has_partial_message() and not parser.in_head()  # in the body
    recorder.feed(b"b")
    assert not parser.has_partial_message() and not parser.in_head()
    recorder.feed(b"\r\n")  # an empty line before the next request is skipped, not held
    assert not parser.has_partial_message()


@pytest.mark.parametrize(
    "host",
    [b"", b"a", b"a.b-c_d~e", b"a:1", b"a:", b"[::1]", b"[::ffff:1.2.3.4]:8", b"[v7.a:b]", b"%41b", b"!$&'()*+,;=",
     b"a b", b"a@b", b"a/b", b"a:b", b"[::1", b"::1", b"[]", b"[v.x]", b"[vz.x]", b"%4", b"%zz", b"a:1:2", b"\xe9",
     b"[::1]x", b"[::1]:", b"a]", b"[v1.]", b"a?b", b"a#b", b"a\\b"],
)
def test_host_values(native, host):
    outcome = native([b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"])
    assert outcome.accepted() == is_valid_host(host)
