"""permessage-deflate on the paths that leave the engine (deflate.py, the reader's compressed frames):
messages of every kind through a real server with the ``websockets`` client (which offers the extension
by default), with and without context takeover on either side; the inflated-size limit (1009 without
inflating a bomb); both reader builds alike; our compressed frames byte for byte the engine's."""

from __future__ import annotations

import asyncio
import importlib
import random
import zlib
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory, PerMessageDeflate
from websockets.frames import Frame, Opcode

from cyasgi.protocols.websockets import frames
from cyasgi.protocols.websockets.deflate import EMPTY_STORED_BLOCK, MessageDeflater, MessageInflater
from cyasgi.protocols.websockets.phases import OPEN
from tests.utils import WAIT, make_config, run_server
from tests.ws.test_ws_twins import EXPECT_COMPILED, TWINS, feed_in_random_reads, harness, masked
from tests.ws_utils import RawClient, Recorder, disconnect_recorder_app, echo_app, frame, only_connection

TICKS = b",".join(b'{"id": %d, "price": %d.25, "side": "buy"}' % (i, 100 + i) for i in range(40))
JSON = b'{"ticks": [' + TICKS + b"]}"
#: The client's offers: the websockets default (context takeover both ways), and each side without it.
OFFERS = {
    "takeover": ClientPerMessageDeflateFactory(),
    "client no takeover": ClientPerMessageDeflateFactory(client_no_context_takeover=True),
    "server no takeover": ClientPerMessageDeflateFactory(server_no_context_takeover=True),
    "neither, small windows": ClientPerMessageDeflateFactory(
        client_no_context_takeover=True, server_no_context_takeover=True, server_max_window_bits=9
    ),
}
MESSAGES: list[Any] = [
    "héllo ✓",
    JSON.decode(),
    b"\x00\x01binary",
    "",
    b"",
    JSON,  # again: with context takeover it now refers to the window
    "x" * 200_000,
    bytes(random.Random(7).getrandbits(8) for _ in range(70_000)),  # does not compress
]


def ws_url(server: Any) -> str:
    return f"ws://127.0.0.1:{server.port}/"


@pytest.mark.anyio
@pytest.mark.parametrize("offer", OFFERS)
async def test_messages_of_every_kind_through_a_real_server(ws: str, offer: str) -> None:
    with run_server(make_config(echo_app, ws=ws)) as server:
        async with connect(ws_url(server), open_timeout=WAIT, extensions=[OFFERS[offer]], compression=None) as client:
            assert any(isinstance(e, PerMessageDeflate) for e in client.protocol.extensions)
            for message in MESSAGES:
                await client.send(message)
                assert await asyncio.wait_for(client.recv(), WAIT) == message
            # Fragmented (the engine inflates these), then whole again: the contexts still agree.
            await client.send(["frag", "mented ", JSON.decode()])
            assert await asyncio.wait_for(client.recv(), WAIT) == "fragmented " + JSON.decode()
            await client.send([b"a" * 1000, b"b" * 1000])
            assert await asyncio.wait_for(client.recv(), WAIT) == b"a" * 1000 + b"b" * 1000
            await client.ping(b"between")
            await client.send(JSON)
            assert await asyncio.wait_for(client.recv(), WAIT) == JSON


@pytest.mark.anyio
async def test_the_default_client_negotiates_and_compresses(ws: str) -> None:
    """The websockets client's default offer (compression="deflate"), many messages in a row."""
    with run_server(make_config(echo_app, ws=ws)) as server:
        async with connect(ws_url(server), open_timeout=WAIT) as client:
            assert client.protocol.extensions
            for index in range(50):
                text = JSON.decode() + str(index)
                await client.send(text)
                assert await asyncio.wait_for(client.recv(), WAIT) == text



@pytest.mark.parametrize("offer", [b"permessage-deflate", b"permessage-deflate; client_no_context_takeover"])
def test_the_websockets_engines_hand_the_common_paths_over(ws: str, offer: bytes) -> None:
    """The reader inflates and deflate.py compresses with the websockets engines; wsproto keeps it all."""
    with run_server(make_config(echo_app, ws=ws)) as server, RawClient(server) as client:
        assert client.handshake(extra=b"Sec-WebSocket-Extensions: " + offer + b"\r\n")[0] == 101
        protocol = only_connection(server)
        takes_over = ws != "wsproto"
        assert (protocol._inflater is not None) is takes_over
        assert (getattr(protocol, "_deflater", None) is not None) is takes_over
        client.send(frame(0x1, compressed(JSON), rsv=4))
        fin, opcode, payload = client.read_frame()
        assert fin and opcode == 0x1
        assert zlib.decompressobj(wbits=-12).decompress(payload + EMPTY_STORED_BLOCK) == JSON

def compressed(payload: bytes, window_bits: int = 15) -> bytes:
    """``payload`` as one permessage-deflate message on its own (the trailing empty block dropped)."""
    compressor = zlib.compressobj(wbits=-window_bits)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[: -len(EMPTY_STORED_BLOCK)]


NO_TAKEOVER_OFFER = b"Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n"


@pytest.mark.parametrize("size", [1024, 1025], ids=["at the limit", "one past"])
@pytest.mark.parametrize("opcode", [0x1, 0x2], ids=["text", "binary"])
def test_the_inflated_size_is_limited(ws: str, size: int, opcode: int) -> None:
    recorder = Recorder()
    config = make_config(disconnect_recorder_app(recorder), ws=ws, ws_max_size=1024)
    with run_server(config) as server, RawClient(server) as client:
        status, head = client.handshake(extra=NO_TAKEOVER_OFFER)
        assert status == 101 and b"permessage-deflate" in head
        client.send(frame(opcode, compressed(b"a" * size), rsv=4))
        client.send(frame(0x8, b"\x03\xe8"))
        assert client.read_close()[0] == (1000 if size <= 1024 else 1009)
        recorder.wait_done()
    if size <= 1024:
        key = "text" if opcode == 0x1 else "bytes"
        assert recorder.messages[0] == {"type": "websocket.receive", key: "a" * size if key == "text" else b"a" * size}
    else:
        assert recorder.messages[-1]["code"] == 1009


def test_a_deflate_bomb_is_refused_without_inflating_it() -> None:
    bomb = compressed(b"\x00" * 50_000_000)
    assert len(bomb) < 100_000
    decompressor = zlib.decompressobj(wbits=-15)
    inflater = MessageInflater(15, decompressor)
    assert inflater.inflate(bomb, 1_000_000) is None
    # zlib stopped one byte past the limit: the rest is still unconsumed, never inflated.
    assert decompressor.unconsumed_tail


def test_a_bomb_through_a_real_server_is_1009(ws: str) -> None:
    recorder = Recorder()
    config = make_config(disconnect_recorder_app(recorder), ws=ws, ws_max_size=100_000)
    with run_server(config) as server, RawClient(server) as client:
        assert client.handshake(extra=NO_TAKEOVER_OFFER)[0] == 101
        client.send(frame(0x2, compressed(b"\x00" * 20_000_000), rsv=4))
        assert client.read_close()[0] == 1009
        recorder.wait_done()


def test_corrupt_compressed_data_fails_the_connection(ws: str) -> None:
    with run_server(make_config(echo_app, ws=ws)) as server, RawClient(server) as client:
        assert client.handshake(extra=NO_TAKEOVER_OFFER)[0] == 101
        client.send(frame(0x1, b"\xff\xff\xff\xff", rsv=4))
        assert client.read_close()[0] in (1002, 1007)


# The reader's two builds with an inflater ----------------------------------------------------------------


def deflater_stream(window_bits: int, takeover: bool) -> bytes:
    """Compressed client frames as a client with (or without) context takeover writes them, with a
    fragmented compressed message, control frames and plain messages between them."""
    compressor = zlib.compressobj(wbits=-window_bits)

    def message(payload: bytes) -> bytes:
        nonlocal compressor
        if not takeover:
            compressor = zlib.compressobj(wbits=-window_bits)
        data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return data[:-4]

    # The harness's engine inflates nothing, so the fragmented message (the engine's) is compressed on
    # its own: the shared context skips it on both sides. The real server's test covers the engine's.
    fragmented = compressed(JSON * 3, window_bits)
    parts = [
        masked(frames.FIN_TEXT | 0x40, message(JSON)),
        masked(frames.FIN_BINARY | 0x40, message(bytes(range(256)) * 4)),
        masked(frames.FIN | 0x9, b"ping"),
        masked(frames.FIN_TEXT, b"plain"),
        masked(frames.FIN_TEXT | 0x40, message(JSON)),
        masked(frames.OP_TEXT | 0x40, fragmented[:10]),
        masked(frames.FIN | 0xA, b"pong"),
        masked(frames.FIN | frames.OP_CONT, fragmented[10:]),
        masked(frames.FIN_TEXT | 0x40, message("déjà ✓".encode() * 30)),
        masked(frames.FIN_TEXT | 0x40, message(b"")),
        masked(frames.FIN_TEXT | 0x40, message(b"bad \xff utf-8")),
        masked(frames.FIN_TEXT, b"never"),
    ]
    return b"".join(parts)


def run_inflating(name: str, stream: bytes, seed: int, takeover: bool, max_size: int = 4096) -> list[Any]:
    """The reader harness of test_ws_twins with an inflater (its own decompressor standing for the
    engine's), fed ``stream`` in random reads."""
    reader = harness(importlib.import_module(TWINS[name]).FrameReader)
    reader.max_size = max_size
    reader._inflater = MessageInflater(15, zlib.decompressobj(wbits=-15) if takeover else None)
    seen = feed_in_random_reads(reader, stream, seed, (1, 3, 20, 200))
    return [seen, reader.calls, reader._phase]


@pytest.mark.parametrize("takeover", [True, False], ids=["takeover", "no takeover"])
def test_both_builds_inflate_the_same(takeover: bool) -> None:
    if not EXPECT_COMPILED:
        pytest.skip("the compiled twin is disabled here (CYASGI_NO_EXTENSIONS=1 or not CPython)")
    stream = deflater_stream(15, takeover)
    for seed in range(10):
        assert run_inflating("c", stream, seed, takeover) == run_inflating("py", stream, seed, takeover), seed


@pytest.mark.parametrize("takeover", [True, False], ids=["takeover", "no takeover"])
def test_the_reader_inflates_whole_messages_and_leaves_the_rest_to_the_engine(takeover: bool) -> None:
    seen, calls, phase = run_inflating("py", deflater_stream(15, takeover), 0, takeover, max_size=1 << 20)
    texts = [m.get("text", m.get("bytes")) for m in seen]
    assert texts[:4] == [JSON.decode(), bytes(range(256)) * 4, "plain", JSON.decode()]
    assert texts[4:] == ["déjà ✓" * 30, ""]  # the fragmented message went to the engine
    engine_frames = b"".join(call[1] for call in calls if call[0] == "engine")
    assert engine_frames.startswith(masked(frames.FIN | 0x9, b"ping"))
    assert calls[-1] == ("fail", frames.CLOSE_INVALID_DATA, calls[-1][2])  # the invalid UTF-8
    assert phase != OPEN


def test_a_message_past_max_size_in_the_reader_is_1009() -> None:
    stream = masked(frames.FIN_BINARY | 0x40, compressed(b"z" * 5000)) + masked(frames.FIN_TEXT, b"never")
    for name in ("c", "py") if EXPECT_COMPILED else ("py",):
        seen, calls, _ = run_inflating(name, stream, 0, False)
        assert seen == [] and calls == [("fail", frames.CLOSE_TOO_BIG, "message too big")]


def test_data_that_does_not_inflate_goes_to_the_engine() -> None:
    bad = masked(frames.FIN_TEXT | 0x40, b"\xff\xff\xff\xff")
    seen, calls, _ = run_inflating("py", bad, 0, False)
    assert seen == [] and calls == [("engine", bad)]


# Our frames, byte for byte the engine's --------------------------------------------------------------------


@pytest.mark.parametrize("no_takeover", [False, True], ids=["takeover", "no takeover"])
@pytest.mark.parametrize("window_bits", [9, 12, 15])
def test_our_compressed_frames_are_the_engines(no_takeover: bool, window_bits: int) -> None:
    settings = {"memLevel": 5}
    engine = PerMessageDeflate(False, no_takeover, 15, window_bits, dict(settings))
    ours = MessageDeflater(window_bits, no_takeover, dict(settings))
    for message in [JSON, b"", JSON, "déjà ✓".encode() * 500, bytes(range(256)) * 40]:
        for opcode, first in ((Opcode.TEXT, frames.FIN_TEXT), (Opcode.BINARY, frames.FIN_BINARY)):
            expected = Frame(opcode, message).serialize(mask=False, extensions=[engine])
            assert ours.frame(first, message) == expected


def test_the_inflater_keeps_the_shared_context() -> None:
    """With takeover the second message refers to the first: only one shared decompressor inflates it."""
    compressor = zlib.compressobj(wbits=-15)
    first = compressor.compress(JSON) + compressor.flush(zlib.Z_SYNC_FLUSH)
    second = compressor.compress(JSON) + compressor.flush(zlib.Z_SYNC_FLUSH)
    inflater = MessageInflater(15, zlib.decompressobj(wbits=-15))
    assert inflater.inflate(first[:-4], 1 << 20) == JSON
    assert inflater.inflate(second[:-4], 1 << 20) == JSON
    assert len(second) < len(first) // 4

