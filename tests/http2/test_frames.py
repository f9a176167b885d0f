"""HTTP/2 framing (RFC 9113 §4, §6): both twins of cyasgi.protocols.http2.frames against the RFC's rules,
each other and the ``hyperframe`` package (a test-only oracle)."""

from __future__ import annotations

import importlib
import random
import struct
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cyasgi.protocols.http2.framing as framing
from cyasgi._compat import NO_EXTENSIONS
from cyasgi.protocols.http2 import frames as F
from cyasgi.protocols.http2.errors import (
    ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    PROTOCOL_ERROR,
    H2ConnectionError,
    H2StreamError,
)
from tests.conftest import SPEEDUPS

hyperframe = pytest.importorskip("hyperframe.frame")

TWINS = {"c": "cyasgi._speedups.frames", "py": "cyasgi.protocols.http2.frames"}
EXPECT_COMPILED = not NO_EXTENSIONS and (SPEEDUPS / "frames.pxd").exists()


def load(name: str) -> Any:
    if name == "c" and not EXPECT_COMPILED:
        pytest.skip("the compiled twin is disabled here (CYASGI_NO_EXTENSIONS=1 or not CPython)")
    module = importlib.import_module(TWINS[name])  # a build that should exist and does not fails here
    assert module.COMPILED == (name == "c")
    return module


@pytest.fixture(params=["c", "py"])
def twin(request: pytest.FixtureRequest) -> Any:
    """The frames module under test: compiled (``[c]``) or pure Python (``[py]``)."""
    return load(request.param)


def test_selector_picks_the_compiled_twin_when_built():
    if EXPECT_COMPILED:
        assert framing.COMPILED and framing.IMPLEMENTATION_MODULE == "cyasgi._speedups.frames"
    else:
        assert not framing.COMPILED and framing.IMPLEMENTATION_MODULE == "cyasgi.protocols.http2.frames"


def raw(frame_type: int, flags: int, stream_id: int, payload: bytes = b"", length: int | None = None) -> bytes:
    """A frame as bytes, built by hand (``length`` may lie)."""
    size = len(payload) if length is None else length
    return struct.pack(">L", size)[1:] + bytes((frame_type, flags)) + struct.pack(">L", stream_id) + payload


def view(frame: Any) -> tuple:
    """Everything a frame exposes, comparable across twins."""
    error = frame.error
    error_view = None if error is None else (type(error).__name__, error.stream_id, error.error_code)
    return (
        frame.type,
        frame.flags,
        frame.stream_id,
        frame.length,
        frame.payload,
        frame.settings,
        frame.error_code,
        frame.last_stream_id,
        frame.increment,
        frame.depends_on,
        frame.weight,
        frame.exclusive,
        error_view,
    )


def outcome(module: Any, wire: bytes, chunks: int = 1, **options: Any) -> tuple:
    """(frames, error code or None) of feeding ``wire`` in ``chunks`` pieces (0: byte by byte)."""
    reader = module.FrameReader(**options)
    got: list = []
    step = 1 if chunks == 0 else max(1, -(-len(wire) // chunks))
    try:
        for pos in range(0, max(len(wire), 1), step):
            got.extend(view(f) for f in reader.feed(wire[pos : pos + step]))
    except H2ConnectionError as exc:
        return got, exc.error_code
    return got, None


def conn_error(module: Any, wire: bytes, **options: Any) -> int:
    frames, code = outcome(module, wire, **options)
    assert code is not None, f"no connection error, frames {frames}"
    return code


# ---------------------------------------------------------------------------------------------------
# The rules, one minimal byte string each


PING8 = b"12345678"
STREAM0 = [F.DATA, F.HEADERS, F.PRIORITY, F.RST_STREAM, F.CONTINUATION]


@pytest.mark.parametrize("frame_type", STREAM0)
def test_stream_frames_on_stream_0(twin, frame_type):
    payload = {F.PRIORITY: b"\0\0\0\0\x10", F.RST_STREAM: b"\0\0\0\0"}.get(frame_type, b"x")
    assert conn_error(twin, raw(frame_type, 0x4, 0, payload)) == PROTOCOL_ERROR


@pytest.mark.parametrize("frame_type, payload", [(F.SETTINGS, b""), (F.PING, PING8), (F.GOAWAY, b"\0" * 8)])
def test_connection_frames_on_a_stream(twin, frame_type, payload):
    assert conn_error(twin, raw(frame_type, 0, 1, payload)) == PROTOCOL_ERROR


@pytest.mark.parametrize(
    "wire",
    [
        raw(F.SETTINGS, 0x1, 0, b"\0\x01\0\0\0\0"),  # ACK with a payload
        raw(F.SETTINGS, 0, 0, b"\0\x01\0\0\0"),  # not a multiple of 6
        raw(F.PING, 0, 0, b"1234567"),
        raw(F.PING, 0, 0, b"123456789"),
        raw(F.RST_STREAM, 0, 1, b"\0\0\0"),
        raw(F.RST_STREAM, 0, 1, b"\0\0\0\0\0"),
        raw(F.WINDOW_UPDATE, 0, 0, b"\0\0\0"),
        raw(F.WINDOW_UPDATE, 0, 1, b"\0\0\0\x01\0"),
        raw(F.GOAWAY, 0, 0, b"\0" * 7),
        raw(F.DATA, 0x8, 1, b""),  # PADDED without room for the pad length
        raw(F.HEADERS, 0x8 | 0x20 | 0x4, 1, b"\0\0\0\0\0"),  # PADDED + PRIORITY need 6 octets
    ],
    ids=[
        "settings-ack-payload", "settings-7", "ping-7", "ping-9", "rst-3", "rst-5", "window-3", "window-5",
        "goaway-7", "data-padded-0", "headers-padded-priority-5",
    ],
)  # fmt: skip
def test_frame_size_errors(twin, wire):
    assert conn_error(twin, wire) == FRAME_SIZE_ERROR


def test_size_errors_are_raised_from_the_header_alone(twin):
    reader = twin.FrameReader()
    with pytest.raises(H2ConnectionError) as info:
        reader.feed(raw(F.PING, 0, 0, length=9))  # no payload yet
    assert info.value.error_code == FRAME_SIZE_ERROR


def test_priority_of_the_wrong_length_is_a_stream_error(twin):
    [frame] = twin.FrameReader().feed(raw(F.PRIORITY, 0, 3, b"\0\0\0\x01"))
    assert isinstance(frame.error, H2StreamError)
    assert (frame.error.stream_id, frame.error.error_code) == (3, FRAME_SIZE_ERROR)


@pytest.mark.parametrize(
    "wire",
    [
        raw(F.DATA, 0x8, 1, b"\x01"),  # pad length 1, nothing left for it
        raw(F.DATA, 0x8, 1, b"\x03ab"),
        raw(F.HEADERS, 0x8 | 0x4, 1, b"\x02a"),
        raw(F.HEADERS, 0x8 | 0x20 | 0x4, 1, b"\x01\0\0\0\0\x0f"),  # the padding eats into nothing but priority
    ],
)
def test_padding_longer_than_the_payload(twin, wire):
    assert conn_error(twin, wire) == PROTOCOL_ERROR


def test_padding_stripped_and_priority_exposed(twin):
    wire = raw(F.DATA, 0x8 | 0x1, 1, b"\x03abcPPP") + raw(F.HEADERS, 0x8 | 0x20 | 0x4, 3, b"\x02\x80\0\0\x01\xffblkPP")
    data, headers = twin.FrameReader().feed(wire)
    assert (data.payload, data.length, data.flags) == (b"abc", 7, 0x9)
    assert headers.payload == b"blk"
    assert (headers.depends_on, headers.exclusive, headers.weight) == (1, True, 256)
    assert headers.error is None
    [self_dependent] = twin.FrameReader().feed(raw(F.HEADERS, 0x20 | 0x4, 5, b"\0\0\0\x05\x10x"))
    assert self_dependent.payload == b"x"
    assert (self_dependent.error.stream_id, self_dependent.error.error_code) == (5, PROTOCOL_ERROR)
    [priority] = twin.FrameReader().feed(raw(F.PRIORITY, 0, 7, b"\0\0\0\x07\0"))
    assert (priority.error.stream_id, priority.error.error_code) == (7, PROTOCOL_ERROR)


def test_header_block_interrupted(twin):
    open_block = raw(F.HEADERS, 0, 1, b"a")
    assert conn_error(twin, open_block + raw(F.DATA, 0, 1, b"x")) == PROTOCOL_ERROR
    assert conn_error(twin, open_block + raw(F.CONTINUATION, 0x4, 3, b"b")) == PROTOCOL_ERROR
    assert conn_error(twin, open_block + raw(F.PING, 0, 0, PING8)) == PROTOCOL_ERROR
    assert conn_error(twin, open_block + raw(0xA, 0, 0, b"unknown")) == PROTOCOL_ERROR
    assert conn_error(twin, raw(F.CONTINUATION, 0x4, 1, b"b")) == PROTOCOL_ERROR  # no block open
    frames, code = outcome(twin, open_block + raw(F.CONTINUATION, 0, 1, b"b") + raw(F.CONTINUATION, 0x4, 1, b"c"))
    assert code is None and len(frames) == 1
    assert frames[0][:5] == (F.HEADERS, 0x4, 1, 1, b"abc")


def test_unknown_frames_ignored(twin):
    wire = raw(0xA, 0xFF, 0, b"alt-svc") + raw(0x10, 0, 3, b"x" * 100) + raw(F.PING, 0, 0, PING8)
    frames, code = outcome(twin, wire)
    assert code is None and [f[0] for f in frames] == [F.PING]


def test_push_promise_from_a_client(twin):
    assert conn_error(twin, raw(F.PUSH_PROMISE, 0x4, 1, b"\0\0\0\x02")) == PROTOCOL_ERROR


@pytest.mark.parametrize(
    "identifier, value, code",
    [
        (F.SETTINGS_ENABLE_PUSH, 2, PROTOCOL_ERROR),
        (F.SETTINGS_INITIAL_WINDOW_SIZE, 2**31, FLOW_CONTROL_ERROR),
        (F.SETTINGS_MAX_FRAME_SIZE, 16383, PROTOCOL_ERROR),
        (F.SETTINGS_MAX_FRAME_SIZE, 2**24, PROTOCOL_ERROR),
        (F.SETTINGS_ENABLE_CONNECT_PROTOCOL, 2, PROTOCOL_ERROR),
        (F.SETTINGS_NO_RFC7540_PRIORITIES, 7, PROTOCOL_ERROR),
    ],
)
def test_settings_values_checked(twin, identifier, value, code):
    assert conn_error(twin, raw(F.SETTINGS, 0, 0, struct.pack(">HL", identifier, value))) == code


def test_settings_decoded_unknown_ignored(twin):
    payload = b"".join(
        struct.pack(">HL", i, v)
        for i, v in [(1, 0), (0xFF, 3), (4, 2**31 - 1), (5, 2**24 - 1), (2, 1), (7, 9), (6, 65536), (8, 1)]
    )
    [frame] = twin.FrameReader().feed(raw(F.SETTINGS, 0, 0, payload))
    assert frame.settings == [(1, 0), (4, 2**31 - 1), (5, 2**24 - 1), (2, 1), (6, 65536), (8, 1)]
    [ack] = twin.FrameReader().feed(twin.SETTINGS_ACK_FRAME)
    assert (ack.type, ack.flags, ack.settings) == (F.SETTINGS, F.FLAG_ACK, None)


def test_window_update_increment_0(twin):
    assert conn_error(twin, raw(F.WINDOW_UPDATE, 0, 0, b"\x80\0\0\0")) == PROTOCOL_ERROR  # reserved bit ignored
    [frame] = twin.FrameReader().feed(raw(F.WINDOW_UPDATE, 0, 5, b"\0\0\0\0"))
    assert (frame.error.stream_id, frame.error.error_code) == (5, PROTOCOL_ERROR)
    [frame] = twin.FrameReader().feed(raw(F.WINDOW_UPDATE, 0, 5, b"\xff\xff\xff\xff"))
    assert frame.increment == 2**31 - 1 and frame.error is None


def test_reserved_bit_of_the_stream_id_ignored(twin):
    [frame] = twin.FrameReader().feed(raw(F.DATA, 0, 0x80000003, b"x"))
    assert frame.stream_id == 3


def test_preface_then_settings_first(twin):
    settings = twin.settings_frame([])
    assert outcome(twin, F.CONNECTION_PREFACE + settings, expect_preface=True)[1] is None
    assert outcome(twin, F.CONNECTION_PREFACE + settings, chunks=0, expect_preface=True)[1] is None
    assert conn_error(twin, b"GET / HTTP/1.1\r\n", expect_preface=True) == PROTOCOL_ERROR
    assert conn_error(twin, b"PRI * HTTP/1.1", expect_preface=True) == PROTOCOL_ERROR
    assert conn_error(twin, F.CONNECTION_PREFACE + raw(F.PING, 0, 0, PING8), expect_preface=True) == PROTOCOL_ERROR
    assert conn_error(twin, F.CONNECTION_PREFACE + twin.SETTINGS_ACK_FRAME, expect_preface=True) == PROTOCOL_ERROR
    reader = twin.FrameReader(expect_preface=True)
    with pytest.raises(H2ConnectionError):
        reader.feed(b"GET")  # refused at the first octets
    with pytest.raises(H2ConnectionError):
        reader.feed(b"")  # and the reader stays failed


# ---------------------------------------------------------------------------------------------------
# Bounds


def test_oversized_length_rejected_after_9_octets(twin):
    reader = twin.FrameReader()
    reader.feed(raw(F.DATA, 0, 1, length=2**24 - 1)[:8])
    assert reader.buffered == 8
    with pytest.raises(H2ConnectionError) as info:
        reader.feed(raw(F.DATA, 0, 1, length=2**24 - 1)[8:] + b"x" * 1000)
    assert info.value.error_code == FRAME_SIZE_ERROR
    assert reader.buffered == 0
    reader = twin.FrameReader(max_frame_size=2**20)
    assert reader.feed(raw(F.DATA, 0, 1, length=2**20)) == [] and reader.buffered == 9
    with pytest.raises(H2ConnectionError):
        twin.FrameReader(max_frame_size=2**20).feed(raw(F.DATA, 0, 1, length=2**20 + 1))


def test_continuation_flood_rejected_with_bounded_memory(twin):
    reader = twin.FrameReader(max_continuation_frames=16)
    reader.feed(raw(F.HEADERS, 0, 1, b"a"))
    with pytest.raises(H2ConnectionError) as info:
        for _ in range(1000):
            reader.feed(raw(F.CONTINUATION, 0, 1, b""))
    assert info.value.error_code == ENHANCE_YOUR_CALM
    reader = twin.FrameReader()  # 80 KiB of block by default
    reader.feed(raw(F.HEADERS, 0, 1, b"a" * 16384))
    chunk = raw(F.CONTINUATION, 0, 1, b"b" * 16384)
    tracemalloc = None if sys.implementation.name == "pypy" else importlib.import_module("tracemalloc")
    if tracemalloc is not None:  # (PyPy has none: the buffered-bytes check below still holds there)
        tracemalloc.start()
    try:
        with pytest.raises(H2ConnectionError) as info:
            for _ in range(10_000):  # 160 MiB offered
                reader.feed(chunk)
        peak = tracemalloc.get_traced_memory()[1] if tracemalloc is not None else 0
    finally:
        if tracemalloc is not None:
            tracemalloc.stop()
    assert info.value.error_code == ENHANCE_YOUR_CALM
    assert peak < 300_000  # the block (80 KiB) and a frame, never the flood
    assert reader.header_block_open is False or reader.buffered == 0
    # the bound is checked from the CONTINUATION header, before its payload is buffered
    reader = twin.FrameReader(max_header_block_size=100)
    reader.feed(raw(F.HEADERS, 0, 1, b"a" * 60))
    with pytest.raises(H2ConnectionError):
        reader.feed(raw(F.CONTINUATION, 0x4, 1, length=41))


def test_buffer_bounded_by_one_frame(twin):
    reader = twin.FrameReader()
    frame = raw(F.DATA, 0, 1, b"x" * 16384)
    got = []
    for pos in range(0, len(frame) * 3, 1000):
        got += reader.feed((frame * 3)[pos : pos + 1000])
        assert reader.buffered <= 16384 + 9 + 1000
    assert len(got) == 3 and reader.buffered == 0


# ---------------------------------------------------------------------------------------------------
# Writers and round trips


def test_writers_exact_bytes(twin):
    assert twin.SETTINGS_ACK_FRAME == b"\0\0\0\x04\x01\0\0\0\0"
    assert twin.settings_frame({3: 100, 4: 65535}) == raw(4, 0, 0, b"\0\x03\0\0\0\x64\0\x04\0\0\xff\xff")
    assert twin.ping_frame(PING8, ack=True) == raw(6, 1, 0, PING8)
    assert twin.goaway_frame(7, 0xB, b"calm") == raw(7, 0, 0, b"\0\0\0\x07\0\0\0\x0bcalm")
    assert twin.rst_stream_frame(3, 8) == raw(3, 0, 3, b"\0\0\0\x08")
    assert twin.window_update_frame(0, 2**31 - 1) == raw(8, 0, 0, b"\x7f\xff\xff\xff")
    assert twin.headers_frames(1, b"blk", end_stream=True) == raw(1, 5, 1, b"blk")
    assert twin.data_frames(1, b"", end_stream=True) == raw(0, 1, 1)
    for bad in (0, 2**31):
        with pytest.raises(ValueError):
            twin.window_update_frame(1, bad)
    with pytest.raises(ValueError):
        twin.ping_frame(b"short")


@pytest.mark.parametrize("size", [0, 1, 16383, 16384, 16385, 3 * 16384, 3 * 16384 + 7])
@pytest.mark.parametrize("end_stream", [False, True])
def test_headers_and_data_split_by_max_frame_size(twin, size, end_stream):
    block = bytes(random.getrandbits(8) for _ in range(size))
    wire = twin.headers_frames(1, block, end_stream)
    pieces = list(hyperframe_frames(wire))
    assert pieces[0].type == 1 and all(p.type == 9 for p in pieces[1:])
    assert all(len(p.data) <= 16384 for p in pieces)
    assert ("END_STREAM" in pieces[0].flags) == end_stream
    assert ["END_HEADERS" in p.flags for p in pieces] == [False] * (len(pieces) - 1) + [True]
    assert len(wire) == size + 9 * len(pieces)
    [frame] = twin.FrameReader().feed(wire)
    assert (frame.type, frame.payload, frame.flags & 1) == (F.HEADERS, block, int(end_stream))
    wire = twin.data_frames(3, block, end_stream)
    pieces = list(hyperframe_frames(wire))
    assert all(p.type == 0 and len(p.data) <= 16384 for p in pieces)
    assert ["END_STREAM" in p.flags for p in pieces] == [False] * (len(pieces) - 1) + [end_stream]
    assert b"".join(f.payload for f in twin.FrameReader().feed(wire)) == block
    wire = twin.data_frames(3, block, end_stream, max_frame_size=100)
    assert all(f.length <= 100 for f in twin.FrameReader().feed(wire))


def writer_wire(module: Any, rng: random.Random) -> bytes:
    """A random sequence of frames from every writer."""
    parts = [module.settings_frame([(rng.choice([1, 3, 4, 6]), rng.randrange(2**31)) for _ in range(rng.randrange(5))])]
    for _ in range(rng.randrange(1, 12)):
        kind = rng.randrange(8)
        stream = rng.randrange(1, 2**31, 2)
        size = rng.choice([0, 1, rng.randrange(100), rng.randrange(70_000)])
        body = rng.randbytes(size)
        if kind == 0:
            parts.append(module.headers_frames(stream, body, rng.random() < 0.5, rng.choice([16384, 20000])))
        elif kind == 1:
            parts.append(module.data_frames(stream, body, rng.random() < 0.5))
        elif kind == 2:
            parts.append(module.ping_frame(rng.randbytes(8), rng.random() < 0.5))
        elif kind == 3:
            parts.append(module.goaway_frame(rng.randrange(2**31), rng.randrange(2**32), body[:100]))
        elif kind == 4:
            parts.append(module.rst_stream_frame(stream, rng.randrange(2**32)))
        elif kind == 5:
            parts.append(module.window_update_frame(rng.choice([0, stream]), rng.randrange(1, 2**31)))
        elif kind == 6:
            parts.append(module.SETTINGS_ACK_FRAME)
        else:
            parts.append(module.settings_frame({5: rng.randrange(16384, 2**24), 2: 0}))
    return b"".join(parts)


@pytest.mark.parametrize("seed", range(20))
def test_round_trip_and_partial_feeds(twin, seed):
    rng = random.Random(seed)
    wire = writer_wire(twin, rng)
    whole = outcome(twin, wire, max_frame_size=2**24 - 1)
    assert whole[1] is None and whole[0]
    assert outcome(twin, wire, chunks=rng.randrange(2, 50), max_frame_size=2**24 - 1) == whole
    if len(wire) < 20_000:
        assert outcome(twin, wire, chunks=0, max_frame_size=2**24 - 1) == whole
    # the frames come back as hyperframe reads them
    ours = whole[0]
    theirs = [f for f in hyperframe_frames(wire)]
    assert [(f.type, f.stream_id) for f in theirs if f.type != 9] == [(f[0], f[2]) for f in ours]


def test_twin_parity_of_writers():
    if not EXPECT_COMPILED:
        pytest.skip("one build here")
    c, py = load("c"), load("py")
    for seed in range(30):
        assert writer_wire(c, random.Random(seed)) == writer_wire(py, random.Random(seed))


def mutations(rng: random.Random, wire: bytes) -> bytes:
    data = bytearray(wire)
    for _ in range(rng.randrange(1, 6)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


@pytest.mark.parametrize("seed", range(40))
def test_twin_parity_on_damaged_streams(seed):
    """Both builds: the same frames and the same errors, whatever the bytes."""
    if not EXPECT_COMPILED:
        pytest.skip("one build here")
    c, py = load("c"), load("py")
    rng = random.Random(seed)
    wire = mutations(rng, writer_wire(py, rng))
    for chunks in (1, 7):
        expected = outcome(py, wire, chunks=chunks)
        assert outcome(c, wire, chunks=chunks) == expected
        assert outcome(c, wire, chunks=chunks, expect_preface=True) == outcome(
            py, wire, chunks=chunks, expect_preface=True
        )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), split=st.integers(1, 40))
def test_twin_parity_on_random_bytes(twin, data, split):
    py = load("py")
    assert outcome(twin, data, chunks=split) == outcome(py, data, chunks=split)
    assert outcome(twin, data, chunks=split, expect_preface=True) == outcome(
        py, data, chunks=split, expect_preface=True
    )


# ---------------------------------------------------------------------------------------------------
# Differential against hyperframe (valid frames)


def hyperframe_frames(wire: bytes):
    pos = 0
    while pos < len(wire):
        frame, length = hyperframe.Frame.parse_frame_header(memoryview(wire[pos : pos + 9]))
        frame.parse_body(memoryview(wire[pos + 9 : pos + 9 + length]))
        yield frame
        pos += 9 + length


stream_ids = st.integers(1, 2**31 - 1)
blobs = st.binary(max_size=200)


@st.composite
def hyperframe_frame(draw: Any) -> Any:
    kind = draw(st.sampled_from(["data", "headers", "priority", "rst", "settings", "ping", "goaway", "window"]))
    sid = draw(stream_ids)
    if kind == "data":
        frame = hyperframe.DataFrame(sid, data=draw(blobs))
        if draw(st.booleans()):
            frame.flags.add("END_STREAM")
        if draw(st.booleans()):
            frame.flags.add("PADDED")
            frame.pad_length = draw(st.integers(0, 255))
    elif kind == "headers":
        frame = hyperframe.HeadersFrame(sid, data=draw(blobs))
        frame.flags.add("END_HEADERS")
        if draw(st.booleans()):
            frame.flags.add("END_STREAM")
        if draw(st.booleans()):
            frame.flags.add("PADDED")
            frame.pad_length = draw(st.integers(0, 255))
        if draw(st.booleans()):
            frame.flags.add("PRIORITY")
            frame.depends_on = draw(st.integers(0, 2**31 - 1).filter(lambda d: d != sid))
            frame.stream_weight = draw(st.integers(0, 255))
            frame.exclusive = draw(st.booleans())
    elif kind == "priority":
        frame = hyperframe.PriorityFrame(
            sid,
            depends_on=draw(st.integers(0, 2**31 - 1).filter(lambda d: d != sid)),
            stream_weight=draw(st.integers(0, 255)),
            exclusive=draw(st.booleans()),
        )
    elif kind == "rst":
        frame = hyperframe.RstStreamFrame(sid, error_code=draw(st.integers(0, 2**32 - 1)))
    elif kind == "settings":
        if draw(st.booleans()):
            frame = hyperframe.SettingsFrame(0, flags=["ACK"])
        else:
            values = draw(
                st.dictionaries(
                    st.sampled_from([1, 3, 6]), st.integers(0, 2**32 - 1), max_size=3
                )
                | st.fixed_dictionaries({4: st.integers(0, 2**31 - 1), 5: st.integers(16384, 2**24 - 1)})
            )
            frame = hyperframe.SettingsFrame(0, settings=values)
    elif kind == "ping":
        frame = hyperframe.PingFrame(0, opaque_data=draw(st.binary(min_size=8, max_size=8)))
        if draw(st.booleans()):
            frame.flags.add("ACK")
    elif kind == "goaway":
        frame = hyperframe.GoAwayFrame(
            0,
            last_stream_id=draw(st.integers(0, 2**31 - 1)),
            error_code=draw(st.integers(0, 2**32 - 1)),
            additional_data=draw(blobs),
        )
    else:
        increment = draw(st.integers(1, 2**31 - 1))
        frame = hyperframe.WindowUpdateFrame(draw(st.integers(0, 2**31 - 1)), window_increment=increment)
    return frame


def same_frame(ours: Any, theirs: Any) -> None:
    assert (ours.type, ours.stream_id) == (theirs.type, theirs.stream_id)
    assert ours.length == theirs.body_len
    for flag in theirs.defined_flags:
        assert bool(ours.flags & flag.bit) == (flag.name in theirs.flags), flag.name
    if theirs.type in (0, 1, 6):
        assert ours.payload == (theirs.opaque_data if theirs.type == 6 else theirs.data)
    if theirs.type in (1, 2) and (theirs.type == 2 or "PRIORITY" in theirs.flags):
        assert (ours.depends_on, ours.weight, ours.exclusive) == (
            theirs.depends_on,
            theirs.stream_weight + 1,
            theirs.exclusive,
        )
    if theirs.type == 3:
        assert ours.error_code == theirs.error_code
    if theirs.type == 4 and "ACK" not in theirs.flags:
        assert dict(ours.settings) == dict(theirs.settings)
    if theirs.type == 7:
        assert (ours.last_stream_id, ours.error_code, ours.payload) == (
            theirs.last_stream_id,
            theirs.error_code,
            theirs.additional_data,
        )
    if theirs.type == 8:
        assert ours.increment == theirs.window_increment
    assert ours.error is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(hyperframe_frame(), min_size=1, max_size=6), split=st.integers(1, 64))
def test_differential_reading_what_hyperframe_writes(twin, frames, split):
    wire = b"".join(f.serialize() for f in frames)
    reader = twin.FrameReader()
    got = []
    for pos in range(0, len(wire), split):
        got += reader.feed(wire[pos : pos + split])
    assert len(got) == len(frames)
    for ours, theirs in zip(got, frames):
        same_frame(ours, theirs)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32))
def test_differential_hyperframe_reads_what_we_write(twin, seed):
    wire = writer_wire(twin, random.Random(seed))
    ours = twin.FrameReader(max_frame_size=2**24 - 1).feed(wire)
    theirs = [f for f in hyperframe_frames(wire) if f.type != 9]  # CONTINUATIONs: assembled in ours
    assert len(ours) == len(theirs)
    for mine, other in zip(ours, theirs):
        if other.type == 1:  # a block split over CONTINUATIONs is one frame in ours
            assert mine.payload.startswith(other.data)
            assert mine.stream_id == other.stream_id
            continue
        same_frame(mine, other)
