"""Frame decoding of the WebSocket base protocol in memory: nanoseconds per incoming frame (and per
outgoing message for the ``send`` workloads).

    .venv/bin/python perf/ws_microbench.py                 # every workload, every --ws engine
    .venv/bin/python perf/ws_microbench.py --ws wsproto --repeat 9

No sockets, no app task: a stub transport, a protocol opened by hand, and ``data_received`` fed
prepared reads of masked client frames (32-byte payloads unless the workload says otherwise); the
queued messages are dropped after every read. The ``send`` workloads run the app's ``send()`` of one
message to completion instead (it never suspends on the stub transport). The ``receive`` workloads run
the app's ``receive()`` of one 32-byte text message: ``receive queued`` takes one the reader has queued
(the row includes that deque append), ``receive waiting`` finds the queue empty, suspends on its
future, which ``_message`` (the reader's queueing of a decoded message) completes, and resumes: an
echo app's pattern, without the event loop's wake-up of its task. Driving a coroutine by hand
ends each call with a StopIteration exception, which an awaiting task does not pay: the ``awaited``
workloads await ``send()`` (or a queued message's ``receive()``) in a loop inside one coroutine,
driven once. The ``deflate`` workloads
negotiate permessage-deflate in the handshake and send compressed frames (RSV1), which the engine
decodes. The ``deflate echo`` workloads are the WebSocket bench's deflate workload in memory: one
compressed JSON text received (offered with client_no_context_takeover, or without: ``ctx``) and sent
back compressed, per message. The best of ``--repeat`` runs is reported, in the process's CPU time
(``time.process_time``), which a busy machine disturbs far less than wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import timeit
import zlib
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cyasgi.config import Config
from cyasgi.protocols.http.wire import encode_headers_block
from cyasgi.server import ServerState
from perf.ws_bench import json_message

ENGINES = {
    "websockets-sansio": "cyasgi.protocols.websockets.websockets_sansio_impl:WebSocketsSansIOProtocol",
    "wsproto": "cyasgi.protocols.websockets.wsproto_impl:WSProtocol",
}
MASK = b"\x12\x34\x56\x78"
HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
#: The same handshake offering permessage-deflate (the server's default config accepts it).
DEFLATE_HANDSHAKE = HANDSHAKE[:-2] + b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
#: The WebSocket bench's offer: every client message compressed on its own, in a 32 KiB window.
NO_CONTEXT_HANDSHAKE = (
    HANDSHAKE[:-2] + b"Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n\r\n"
)
#: The client's window: the server asks for 12 bits (websockets_sansio_impl), wsproto accepts any.
CLIENT_WINDOW_BITS = 12
#: A sync-flushed deflate block ends with this; permessage-deflate drops it from the message.
DEFLATE_TAIL = b"\x00\x00\xff\xff"
RSV1 = 0x40
#: Frames per message in the fragmented workload.
FRAGMENTS = 4


class StubTransport:
    """Just what the protocol calls on an open connection."""

    def __init__(self) -> None:
        self.extra = {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000), "sslcontext": None}

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def write(self, data: bytes) -> None:
        pass

    def writelines(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def masked_frame(first_byte: int, payload: bytes) -> bytes:
    """A client frame (payloads below 126 bytes only)."""
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes((first_byte, 0x80 | len(payload))) + MASK + masked


def deflated_frame(first_byte: int, payload: bytes) -> bytes:
    """A compressed client message (RSV1). Each is compressed on its own, so it refers to nothing
    before it and decodes the same whatever the server's window already holds: a read can repeat."""
    compressor = zlib.compressobj(wbits=-CLIENT_WINDOW_BITS)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(DEFLATE_TAIL)
    return masked_frame(first_byte | RSV1, data[: -len(DEFLATE_TAIL)])


async def _app(scope: Any, receive: Any, send: Any) -> None:
    pass


def open_protocol(
    engine: str, loop: asyncio.AbstractEventLoop, deflate: bool = False, handshake: bytes = b""
) -> Any:
    config = Config(_app, ws=engine, ws_max_queue=1 << 30, log_config=None, lifespan="off")
    config.load()
    state = ServerState()
    state.default_headers = []
    state.default_headers_block = encode_headers_block([])
    protocol = config.ws_protocol_class(config=config, server_state=state, app_state={}, _loop=loop)
    protocol.connection_made(StubTransport())
    protocol.data_received(handshake or (DEFLATE_HANDSHAKE if deflate else HANDSHAKE))
    protocol._accept({"type": "websocket.accept"})
    protocol._queue.clear()
    assert protocol._plain_send != deflate, "permessage-deflate was not negotiated as asked"
    return protocol


WORKLOADS = {
    # name: (one read, frames in it)
    "binary32 x100": (masked_frame(0x82, bytes(range(32))) * 100, 100),
    "text32 x100": (masked_frame(0x81, b"0123456789abcdef" * 2) * 100, 100),
    "binary32 x1": (masked_frame(0x82, bytes(range(32))), 1),
    "fragmented 4x32 x25": (
        (
            masked_frame(0x01, b"a" * 32)
            + masked_frame(0x00, b"b" * 32)
            + masked_frame(0x00, b"c" * 32)
            + masked_frame(0x80, b"d" * 32)
        )
        * 25,
        100,
    ),
    "deflate text32 x100": (deflated_frame(0x81, b"0123456789abcdef" * 2) * 100, 100),
    "deflate binary1k x10": (deflated_frame(0x82, b"0123456789abcdef" * 64) * 10, 10),
}
#: name: the message the app sends.
SEND_WORKLOADS = {
    "send text32": {"type": "websocket.send", "text": "0123456789abcdef" * 2},
    "send binary32": {"type": "websocket.send", "bytes": bytes(range(32))},
    "deflate send text32": {"type": "websocket.send", "text": "0123456789abcdef" * 2},
}
#: The message the app's receive() takes in the receive workloads.
RECEIVED = {"type": "websocket.receive", "text": "0123456789abcdef" * 2}
RECEIVE_WORKLOADS = ("receive queued", "receive waiting")
#: The same calls awaited one after another inside one coroutine, as an app's task awaits them.
AWAITED_WORKLOADS = ("awaited send text32", "awaited receive queued")


#: The JSON text of the WebSocket bench's deflate workload (perf/ws_bench.py, 300 bytes).
ECHO_TEXT = json_message(300)
#: name: (the handshake, the client window bits the message is compressed for)
ECHO_WORKLOADS = {
    "deflate echo json300": (NO_CONTEXT_HANDSHAKE, zlib.MAX_WBITS),
    "deflate echo json300 ctx": (DEFLATE_HANDSHAKE, CLIENT_WINDOW_BITS),
}


def time_echo(protocol: Any, args: argparse.Namespace, window_bits: int) -> float:
    """Nanoseconds per message received compressed and sent back (the app's ``send()`` of its text).
    The message is compressed on its own, so it is valid again and again whatever the context."""
    compressor = zlib.compressobj(wbits=-window_bits)
    data = compressor.compress(ECHO_TEXT) + compressor.flush(zlib.Z_SYNC_FLUSH)
    frame = masked_frame_any(0x81 | RSV1, data[: -len(DEFLATE_TAIL)])
    queue = protocol._queue
    send = protocol.send

    def run() -> None:
        protocol.data_received(frame)
        try:
            send({"type": "websocket.send", "text": queue.popleft()["text"]}).send(None)
        except StopIteration:
            pass

    run()
    assert not queue and protocol._phase == 2, "the echo did not go through"
    best = min(timeit.repeat(run, number=args.frames // 10, repeat=args.repeat, timer=time.process_time))
    return best / (args.frames // 10) * 1e9


def masked_frame_any(first_byte: int, payload: bytes) -> bytes:
    """A client frame of any payload below 64 KiB."""
    if len(payload) < 126:
        return masked_frame(first_byte, payload)
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes((first_byte, 0x80 | 126)) + len(payload).to_bytes(2, "big") + MASK + masked


def time_send(protocol: Any, message: dict[str, Any], args: argparse.Namespace) -> float:
    """Nanoseconds per ``send(message)``, each coroutine driven to its end by hand."""
    send = protocol.send

    def run(send: Any = send, message: dict[str, Any] = message) -> None:
        try:
            send(message).send(None)
        except StopIteration:
            pass
        else:  # pragma: no cover - the stub transport never makes send() wait
            raise AssertionError("send() suspended")

    run()
    best = min(timeit.repeat(run, number=args.frames, repeat=args.repeat, timer=time.process_time))
    return best / args.frames * 1e9


def time_receive(protocol: Any, name: str, args: argparse.Namespace) -> float:
    """Nanoseconds per ``receive()`` of one message, the coroutine driven to its end by hand."""
    receive = protocol.receive
    queue = protocol._queue
    message = RECEIVED

    def queued(receive: Any = receive, append: Any = queue.append, message: dict[str, Any] = message) -> None:
        append(message)
        try:
            receive().send(None)
        except StopIteration as stop:
            assert stop.value is message
        else:  # pragma: no cover - a message is queued: receive() never suspends
            raise AssertionError("receive() suspended")

    def waiting(receive: Any = receive, deliver: Any = protocol._message, message: dict[str, Any] = message) -> None:
        coroutine = receive()
        coroutine.send(None)  # the queue is empty: it yields its future
        deliver(message)
        try:
            coroutine.send(None)
        except StopIteration as stop:
            assert stop.value is message
        else:  # pragma: no cover - the message is there: it returns
            raise AssertionError("receive() suspended twice")

    run = queued if name == "receive queued" else waiting
    run()
    best = min(timeit.repeat(run, number=args.frames, repeat=args.repeat, timer=time.process_time))
    return best / args.frames * 1e9


def time_awaited(protocol: Any, name: str, args: argparse.Namespace) -> float:
    """Nanoseconds per ``await send(message)`` or ``await receive()`` of a queued message, awaited
    ``--frames`` times in a row inside one coroutine that is driven once."""
    send = protocol.send
    receive = protocol.receive
    append = protocol._queue.append
    sent = SEND_WORKLOADS["send text32"]
    received = RECEIVED

    async def sends(count: int) -> None:
        for _ in range(count):
            await send(sent)

    async def receives(count: int) -> None:
        for _ in range(count):
            append(received)
            await receive()

    loop = sends if name == "awaited send text32" else receives

    def run(count: int = args.frames) -> None:
        try:
            loop(count).send(None)
        except StopIteration:
            pass
        else:  # pragma: no cover - nothing here suspends
            raise AssertionError(f"{name} suspended")

    run(1)
    best = min(timeit.repeat(run, number=1, repeat=args.repeat, timer=time.process_time))
    return best / args.frames * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ws", default=",".join(ENGINES), help="comma-separated engines")
    parser.add_argument(
        "--workloads",
        default=",".join([*WORKLOADS, *SEND_WORKLOADS, *RECEIVE_WORKLOADS, *AWAITED_WORKLOADS, *ECHO_WORKLOADS]),
        help="comma-separated workload names",
    )
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--frames", type=int, default=200_000, help="frames per run")
    args = parser.parse_args()
    loop = asyncio.new_event_loop()
    for engine in args.ws.split(","):
        plain = open_protocol(engine, loop)
        compressed = open_protocol(engine, loop, deflate=True)
        for name in args.workloads.split(","):
            if name in ECHO_WORKLOADS:
                handshake, window_bits = ECHO_WORKLOADS[name]
                echo = open_protocol(engine, loop, deflate=True, handshake=handshake)
                print(f"{engine:18} {name:22} {time_echo(echo, args, window_bits):8.1f} ns/message")
                continue
            protocol = compressed if name.startswith("deflate") else plain
            if name in AWAITED_WORKLOADS:
                print(f"{engine:18} {name:22} {time_awaited(protocol, name, args):8.1f} ns/message")
                continue
            if name in RECEIVE_WORKLOADS:
                print(f"{engine:18} {name:22} {time_receive(protocol, name, args):8.1f} ns/message")
                continue
            if name in SEND_WORKLOADS:
                print(f"{engine:18} {name:22} {time_send(protocol, SEND_WORKLOADS[name], args):8.1f} ns/message")
                continue
            data, frames = WORKLOADS[name]
            queue = protocol._queue

            def feed(data: bytes = data, protocol: Any = protocol, queue: Any = queue) -> None:
                protocol.data_received(data)
                queue.clear()

            protocol.data_received(data)
            messages = frames // FRAGMENTS if name.startswith("fragmented") else frames
            assert len(queue) == messages and "websocket.receive" == queue[-1]["type"], (engine, name, len(queue))
            queue.clear()
            assert not protocol._buffer and protocol._phase == 2, (engine, name)  # whole frames, still OPEN
            number = max(1, args.frames // frames)
            best = min(timeit.repeat(feed, number=number, repeat=args.repeat, timer=time.process_time))
            print(f"{engine:18} {name:22} {best / (number * frames) * 1e9:8.1f} ns/frame")
    tasks = asyncio.all_tasks(loop)  # the app tasks the handshakes started, never run
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.close()


if __name__ == "__main__":
    main()
