"""HTTP/2 abuse budgets end to end (both twins): each ends the connection with GOAWAY(ENHANCE_YOUR_CALM)
and a closed socket, in bounded time; a client that floods without reading is paused, its ACKs bounded,
and cut off once 16 KiB of them wait unread."""

from __future__ import annotations

import importlib
import socket
import struct
import sys
import time
from typing import Any

import hpack
import pytest

from tests.conftest import load_twin
from tests.http2.h2util import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    HEADERS,
    PING,
    PRIORITY,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    AppState,
    H2Client,
    frame,
    goaways,
    h2_config,
    hpack_block,
    make_app,
    parse_frames,
    raw_connect,
    raw_until_closed,
    request_headers,
    status,
    until,
)
from tests.utils import WAIT, run_server


def flood(server: Any, frames: bytes, timeout: float = WAIT) -> list[int]:
    """Send ``frames`` after the preface; the codes of the GOAWAYs before the server closed (bounded)."""
    sock = raw_connect(server)
    try:
        sock.sendall(frames)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server closed first: what it sent is still read below
    data = raw_until_closed(sock, timeout)
    sock.close()
    return [code for _, code in goaways(data)]


def open_and_reset(count: int, path: str = "/hello") -> bytes:
    out = []
    for index in range(count):
        stream_id = 2 * index + 1
        out.append(frame(HEADERS, END_HEADERS | END_STREAM, stream_id, hpack_block(request_headers(path))))
        out.append(frame(RST_STREAM, 0, stream_id, struct.pack(">I", 8)))
    return b"".join(out)


def test_rapid_reset(server):
    assert flood(server, open_and_reset(200)) == [ENHANCE_YOUR_CALM]


def test_resets_within_the_budget_are_fine(server):
    sock = raw_connect(server)
    sock.sendall(open_and_reset(50))
    client_ids = 101
    sock.sendall(frame(HEADERS, END_HEADERS | END_STREAM, client_ids, hpack_block(request_headers("/hello"))))
    data = b""
    sock.settimeout(WAIT)
    while b"Hello, world!" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed: {goaways(data)}"
        data += chunk
    assert goaways(data) == []
    sock.close()


def test_empty_data_frame_flood(server):
    opening = frame(HEADERS, END_HEADERS, 1, hpack_block(request_headers("/echo", method="POST")))
    assert flood(server, opening + frame(DATA, 0, 1) * 150) == [ENHANCE_YOUR_CALM]


def test_ping_flood_in_one_write(server):
    pings = b"".join(frame(PING, 0, 0, struct.pack(">Q", index)) for index in range(1100))
    assert flood(server, pings) == [ENHANCE_YOUR_CALM]


def test_settings_flood_in_one_write(server):
    settings = frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 65535)) * 1100
    assert flood(server, settings) == [ENHANCE_YOUR_CALM]


def test_priority_flood_in_one_write(server):
    priorities = b"".join(frame(PRIORITY, 0, 2 * i + 1, struct.pack(">IB", 0, 16)) for i in range(1100))
    assert flood(server, priorities) == [ENHANCE_YOUR_CALM]


def test_window_update_flood_in_one_write(server):
    updates = frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)) * 1100
    assert flood(server, updates) == [ENHANCE_YOUR_CALM]


def test_server_provoked_resets(server):
    # MadeYouReset (CVE-2025-8671): streams the server must reset for a broken rule (an uppercase field
    # name: a malformed request), past --http2-max-stream-errors (1000).
    malformed = [*request_headers("/hello"), ("X-Upper", "1")]
    frames = b"".join(
        frame(HEADERS, END_HEADERS | END_STREAM, 2 * i + 1, hpack_block(malformed)) for i in range(1100)
    )
    assert flood(server, frames) == [ENHANCE_YOUR_CALM]


def test_continuation_flood(server):
    # A header block that never ends: CONTINUATION frames of 16 KiB without END_HEADERS.
    block = hpack_block(request_headers("/hello"))
    frames = frame(HEADERS, 0, 1, block) + frame(CONTINUATION, 0, 1, b"\x40\x01a\x01b" * 3276) * 200
    assert flood(server, frames) == [ENHANCE_YOUR_CALM]


def test_continuation_flood_of_tiny_frames(server):
    block = hpack_block(request_headers("/hello"))
    frames = frame(HEADERS, 0, 1, block) + frame(CONTINUATION, 0, 1, b"") * 1000
    assert flood(server, frames) == [ENHANCE_YOUR_CALM]


def hpack_bomb(streams: int, references: int = 60000) -> bytes:
    """One 4000-octet field added to the dynamic table, then referenced by its 1-octet index
    ``references`` times per header block: ~240 MB of decoded fields from ~60 KiB on the wire, per
    stream, by default."""
    name, value = b"x-bomb", b"v" * 4000
    literal = b"\x40" + bytes([len(name)]) + name + b"\x7f" + _hpack_int(len(value) - 127) + value
    # GET, /, http (static indexes), :authority as a literal without indexing: the table holds x-bomb only.
    head = b"\x82\x84\x86\x01\x0bexample.com"
    out = []
    for index in range(streams):
        stream_id = 2 * index + 1
        block = head + (literal if index == 0 else b"") + b"\xbe" * references  # 62: the x-bomb entry
        chunks = [block[i : i + 16384] for i in range(0, len(block), 16384)]
        out.append(
            frame(HEADERS, END_STREAM | (END_HEADERS if len(chunks) == 1 else 0), stream_id, chunks[0])
        )
        for position, chunk in enumerate(chunks[1:], 2):
            out.append(frame(CONTINUATION, END_HEADERS if position == len(chunks) else 0, stream_id, chunk))
    return b"".join(out)


def _hpack_int(value: int) -> bytes:
    out = bytearray()
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def test_hpack_bomb(server):
    """A block decoding past 16 times the header-list limit is a bomb: GOAWAY(ENHANCE_YOUR_CALM)."""
    assert flood(server, hpack_bomb(20), timeout=3.0) == [ENHANCE_YOUR_CALM]


def test_header_lists_over_the_limit_get_431_and_cost_no_memory(server):
    """Below the bomb bound (here ~200 KB decoded each, the limit is 64 KiB): 431 on each stream, the
    connection lives, and the fields past the limit were never kept (the server runs in this process:
    tracemalloc sees its allocations)."""
    if sys.implementation.name == "pypy":
        pytest.skip("PyPy has no tracemalloc (the 431 is checked by the test above's stream too)")
    tracemalloc = importlib.import_module("tracemalloc")
    decoder = hpack.Decoder()
    sock = raw_connect(server)
    tracemalloc.start()
    try:
        sock.sendall(hpack_bomb(5, references=50))
        data = b""
        sock.settimeout(WAIT)
        while len([f for f in parse_frames(data) if f[0] == HEADERS]) < 5:
            chunk = sock.recv(65536)
            assert chunk, f"closed: {goaways(data)}"
            data += chunk
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    sock.close()
    heads = [decoder.decode(payload) for kind, _, _, payload in parse_frames(data) if kind == HEADERS]
    assert [dict(head)[":status"] for head in heads] == ["431"] * 5
    assert peak < 4 << 20, peak  # 5 x 200 KB of decoded fields never existed


def test_a_client_that_never_reads_is_paused(server):
    """PINGs in writes under the per-read budget, nothing read: the server stops reading once its own
    writes back up, so what it holds for the client stays bounded (or it gives up on the connection)."""
    sock = raw_connect(server)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    batch = b"".join(frame(PING, 0, 0, struct.pack(">Q", index)) for index in range(100))
    sock.settimeout(0.5)
    sent = 0
    limit = 256 << 20
    deadline = time.monotonic() + WAIT
    blocked = False
    while sent < limit and time.monotonic() < deadline:
        try:
            sock.sendall(batch)
        except socket.timeout:
            blocked = True  # the server stopped reading: the kernel buffers are full
            break
        except (BrokenPipeError, ConnectionResetError):
            blocked = True  # the server gave up on the connection
            break
        sent += len(batch)
    assert blocked, f"the server read {sent} octets of PINGs from a client that reads nothing"
    buffered = [
        connection.transport.get_write_buffer_size()
        for connection in list(server.server_state.connections)
        if connection.transport is not None and not connection.transport.is_closing()
    ]
    assert all(size < 1 << 20 for size in buffered), buffered
    sock.close()


@pytest.mark.parametrize("twin_name", ["c", "py"])
def test_a_client_that_leaves_its_acks_unread_is_cut_off(twin_name):
    """With a control-frame budget no read reaches, PINGs sent without reading the answers: once ~16 KiB
    of ACKs wait in the server's own buffer (the kernel's are full), the server ends the connection."""
    config = h2_config(make_app(AppState()), load_twin(twin_name), http2_max_control_frames=1_000_000)
    with run_server(config) as server:
        sock = raw_connect(server)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        batch = b"".join(frame(PING, 0, 0, struct.pack(">Q", index)) for index in range(100))
        sock.settimeout(WAIT)
        sent = 0
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            while sent < 256 << 20:  # (the kernel buffers hold a few MiB of ACKs at most)
                sock.sendall(batch)
                sent += len(batch)
        until(lambda: not server.server_state.connections)
        sock.close()


def test_the_connection_is_usable_after_a_budget_was_not_reached(server):
    client = H2Client(server)
    for _ in range(5):
        client.conn.ping(b"12345678")
    client.flush()
    assert status(client.get("/hello")) == 200
    client.close()
