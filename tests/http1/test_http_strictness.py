"""The strict HTTP/1.1 corpus (tests/http_corpus.py), in memory, against every twin and parser.

Each malformed request gets its 4xx/505 with ``connection: close`` after the request before it
is answered; the connection is closed; the application never sees it nor the request behind it.
Run for the compiled and the pure twin, each driving its own parser, httptools and h11: the
answers are the same everywhere but for the divergences the corpus names.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cyasgi.protocols.http.foreign import httptools
from tests.conftest import TWIN_PARSERS, load_twin
from tests.http_corpus import AFTER, BEFORE, MALFORMED, SERVED, VALID, WAITS, Case, ValidCase
from tests.utils import QUICK, make_protocol, parse_responses

pytestmark = pytest.mark.anyio





class RecordingApp:
    """Reads the whole body (or the disconnect), records what it saw, answers 200 with the body."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, list[tuple[bytes, bytes]], bytes, bool]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.seen.append((scope["method"], scope["path"], scope["headers"], body, False))
                return
            body += message["body"]
            if not message["more_body"]:
                break
        self.seen.append((scope["method"], scope["path"], scope["headers"], body, True))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    @property
    def paths(self) -> list[str]:
        return [path for _method, path, _headers, _body, _complete in self.seen]


def pieces(data: bytes) -> list[bytes]:
    """One byte at a time (larger steps past 2 KB, to stay quick)."""
    step = 1 if len(data) <= 2048 else 997
    return [data[i : i + step] for i in range(0, len(data), step)]


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def case_id(case: Case | ValidCase) -> str:
    return case.name


@pytest.mark.parametrize("case", MALFORMED, ids=case_id)
async def test_refused_after_the_request_before_it(twin_parser, case):
    twin, parser = twin_parser
    app = RecordingApp()
    protocol, transport = make_protocol(twin, app, parser=parser)
    protocol.data_received(BEFORE + case.data + AFTER)
    expected = case.answer(parser)
    if expected == SERVED:  # a documented divergence of this parser: the request is served
        await transport.responses(2)
        assert "/before" in app.paths and len(app.paths) >= 2, app.paths
        return
    if expected == WAITS:  # a documented divergence: the parser waits for the announced body
        await transport.responses(1)
        await settle()
        assert app.paths[0] == "/before" and not transport.closed
        return
    await transport.wait_for(lambda: transport.closed, timeout=QUICK)
    await settle()
    before, refusal = parse_responses(bytes(transport.buffer))
    assert before.status == 200 and before.body == b""
    assert refusal.status == expected, case.rule
    assert refusal.header(b"connection") == b"close"
    assert app.paths == ["/before"]


@pytest.mark.parametrize("case", MALFORMED, ids=case_id)
async def test_refused_when_arriving_byte_by_byte(twin_parser, case):
    twin, parser = twin_parser
    app = RecordingApp()
    protocol, transport = make_protocol(twin, app, parser=parser)
    for piece in pieces(case.data + AFTER):
        protocol.data_received(piece)
        if transport.closed:
            break
    expected = case.answer(parser)
    if expected in (SERVED, WAITS):
        await settle()
        assert app.seen or not transport.closed
        return
    await transport.wait_for(lambda: transport.closed, timeout=QUICK)
    await settle()
    [refusal] = parse_responses(bytes(transport.buffer))
    assert refusal.status == expected, case.rule
    assert refusal.header(b"connection") == b"close"
    if case.body_error:
        # The head was complete and valid, so the application may have started: it saw the
        # request end in a disconnect, never a complete body.
        assert all(not complete for *_rest, complete in app.seen), app.seen
    else:
        assert app.seen == []
    assert "/after" not in app.paths


@pytest.mark.parametrize("case", VALID, ids=case_id)
async def test_valid_edge_cases_are_served_alike(twin_parser, case):
    twin, parser = twin_parser
    app = RecordingApp()
    protocol, transport = make_protocol(twin, app, parser=parser)
    protocol.data_received(case.data)
    if parser in case.divergent:
        status, _why = case.divergent[parser]
        await transport.wait_for(lambda: transport.closed, timeout=QUICK)
        [refusal] = parse_responses(bytes(transport.buffer))
        assert refusal.status == status
        assert app.seen == []
        return
    [response] = await transport.responses(1)
    assert response.status == 200
    [(method, path, headers, body, complete)] = app.seen
    assert (method, path, body, complete) == (case.method, case.path, case.body, True), case.rule
    assert response.body == case.body
    assert all(name == name.lower() and value == value.strip(b" \t") for name, value in headers)


@pytest.mark.parametrize("case", VALID, ids=case_id)
async def test_valid_edge_cases_give_every_parser_the_same_scope(case):
    """The headers the application sees are byte-for-byte the same whichever parser read them."""
    seen = {}
    for twin_name, parser in TWIN_PARSERS:
        if parser in case.divergent or parser in case.other_scope or (parser == "httptools" and httptools is None):
            continue
        try:
            twin = load_twin(twin_name)
        except pytest.skip.Exception:
            continue
        app = RecordingApp()
        protocol, transport = make_protocol(twin, app, parser=parser)
        protocol.data_received(case.data)
        await transport.responses(1)
        seen[f"{twin_name}-{parser}"] = app.seen
    reference = seen.pop("py-cyasgi")
    for setup_id, record in seen.items():
        assert record == reference, setup_id
