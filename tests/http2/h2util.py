"""Helpers of the HTTP/2 server tests: an HTTP/2 Config, one ASGI app with a route per case, a raw-frame
client on top of the ``h2`` library (an independent implementation), and a frame builder for the frames
``h2`` refuses to send."""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from cyasgi.config import Config
from tests.utils import WAIT, ThreadedServer, make_config

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

#: Client sockets of the running test, closed after it (conftest.py) even when it failed half-way: a
#: connection left open would hold the shared server's shutdown.
OPEN_SOCKETS: list[socket.socket] = []


def close_sockets() -> None:
    while OPEN_SOCKETS:
        OPEN_SOCKETS.pop().close()


# Frame types and error codes (RFC 9113 §6, §7).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    range(10)
)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 0x5, 0x6, 0x7, 0x8, 0x9
ENHANCE_YOUR_CALM = 0xB
MAX_STREAM_ID = 2**31 - 1


def h2_config(app: Any, twin: Any, **kwargs: Any) -> Config:
    """A test Config (tests/utils.py make_config) with --http2; ``http2_*`` keywords tune it, the rest
    are the defaults a user gets."""
    return make_config(app, twin, http2=True, **kwargs)


# The application ----------------------------------------------------------------------------------


@dataclass
class AppState:
    """What the app saw and did, shared with the test thread."""

    events: dict[str, threading.Event] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    file_path: str = ""
    changed: threading.Condition = field(default_factory=threading.Condition)
    #: Bumped by reset(): an app started before it is released from every wait.
    generation: int = 0

    def event(self, name: str) -> threading.Event:
        with self.lock:
            if name not in self.events:
                self.events[name] = threading.Event()
            return self.events[name]

    def reset(self) -> None:
        """Forget everything; first release whatever an earlier test left the app waiting for."""
        with self.lock:
            self.generation += 1
            events = list(self.events.values())
            self.events = {}
            self.values = {}
            self.file_path = ""
        for event in events:
            event.set()

    def set(self, name: str, value: Any = True) -> None:
        with self.lock:
            self.values.setdefault(name, []).append(value)
        self.event(name).set()
        with self.changed:
            self.changed.notify_all()

    def wait_count(self, name: str, count: int, timeout: float = WAIT) -> None:
        with self.changed:
            reached = self.changed.wait_for(lambda: len(self.values.get(name, ())) >= count, timeout)
        assert reached, f"the app reached {name!r} {len(self.values.get(name, ()))} times, not {count}"

    def wait(self, name: str, timeout: float = WAIT) -> Any:
        assert self.event(name).wait(timeout), f"the app never reached {name!r}; seen: {sorted(self.values)}"
        return self.values[name][-1]


async def _release(state: AppState, name: str, generation: int) -> None:
    """Wait (in the server's loop) until the test thread sets ``name`` (or the test is over); bounded."""
    import asyncio

    deadline = time.monotonic() + WAIT
    event = state.event(name)
    while not event.is_set() and state.generation == generation:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the test never released {name!r}")
        await asyncio.sleep(0.005)


async def _read_body(receive: Any) -> tuple[bytes, list[dict]]:
    chunks = []
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks), messages


def make_app(state: AppState) -> Any:
    """One app, a route per case; ``state`` tells the test what happened inside the server."""

    async def app(scope: dict, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        generation = state.generation
        path = scope["path"]

        def mark(name: str, value: Any = True) -> None:
            # What an app of an earlier test does late must not show in this test's state.
            if state.generation == generation:
                state.set(name, value)

        plain = [(b"content-type", b"text/plain")]

        async def respond(body: bytes, status: int = 200, headers: Any = None) -> None:
            await send({"type": "http.response.start", "status": status, "headers": headers or plain})
            await send({"type": "http.response.body", "body": body})

        if path == "/scope":
            body, _ = await _read_body(receive)
            info = {
                "http_version": scope["http_version"],
                "method": scope["method"],
                "path": scope["path"],
                "raw_path": scope["raw_path"].decode("latin-1"),
                "query_string": scope["query_string"].decode("latin-1"),
                "scheme": scope["scheme"],
                "server": list(scope["server"]) if scope["server"] else None,
                "client": list(scope["client"]) if scope["client"] else None,
                "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
                "extensions": sorted(scope.get("extensions") or {}),
                "tls": scope.get("extensions", {}).get("tls") is not None,
            }
            await respond(json.dumps(info).encode(), headers=[(b"content-type", b"application/json")])
        elif path == "/receive-once":
            message = await receive()
            mark("receive-once", message)
            await respond(repr(sorted(message.items())).encode())
        elif path == "/echo":
            body, _ = await _read_body(receive)
            await respond(body, headers=[(b"content-type", b"application/octet-stream")])
        elif path == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": plain})
            for index in range(5):
                await send({"type": "http.response.body", "body": b"chunk%d;" % index, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/big-header":
            await respond(b"big head", headers=[(b"x-big", b"h" * 40000), (b"content-type", b"text/plain")])
        elif path == "/hello":
            await respond(b"Hello, world!")
        elif path.startswith("/status/"):
            await send({"type": "http.response.start", "status": int(path[8:]), "headers": plain})
            await send({"type": "http.response.body", "body": b"must not be sent"})
        elif path == "/trailers":
            await send({"type": "http.response.start", "status": 200, "headers": plain, "trailers": True})
            await send({"type": "http.response.body", "body": b"with trailers"})
            await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})
        elif path == "/early-hint":
            await send(
                {"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload; as=style"]}
            )
            await respond(b"after the hint")
        elif path == "/pathsend":
            await send({"type": "http.response.start", "status": 200, "headers": plain})
            await send({"type": "http.response.pathsend", "path": state.file_path})
            mark("pathsend-returned")
        elif path == "/zerocopy":
            with open(state.file_path, "rb") as file:
                await send({"type": "http.response.start", "status": 200, "headers": plain})
                await send({"type": "http.response.zerocopysend", "file": file.fileno()})
            mark("zerocopy-returned")
        elif path == "/error":
            raise RuntimeError("the app failed on purpose")
        elif path == "/error-after-start":
            await send({"type": "http.response.start", "status": 200, "headers": plain})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise RuntimeError("the app failed on purpose, mid-response")
        elif path == "/bad-name":
            await respond(b"no", headers=[(b"bad name", b"x")])
        elif path == "/bad-value":
            await respond(b"no", headers=[(b"x-bad", b"a\nb")])
        elif path == "/connection-headers":
            headers = [
                (b"connection", b"keep-alive"),
                (b"transfer-encoding", b"chunked"),
                (b"x-kept", b"yes"),
            ]
            await respond(b"framed by HTTP/2", headers=headers)
        elif path == "/wait-disconnect":
            await send({"type": "http.response.start", "status": 200, "headers": plain})
            await send({"type": "http.response.body", "body": b"started", "more_body": True})
            mark("wait-disconnect-started")
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    mark("disconnect", message)
                    return
        elif path == "/big":
            size = int(scope["query_string"] or b"1048576")
            await send({"type": "http.response.start", "status": 200, "headers": plain})
            mark("big-sending")
            await send({"type": "http.response.body", "body": b"b" * size})
            mark("big-returned")
        elif path == "/noread":
            mark("noread-started")
            await _release(state, "noread-go", generation)
            message = await receive()
            mark("noread-read", len(message.get("body", b"")))
            await _release(state, "noread-finish", generation)
            await respond(b"done")
        elif path == "/slow":
            mark("slow-started")
            await _release(state, "slow-go", generation)
            await respond(b"slow done")
        else:
            await respond(b"not found", status=404)

    return app


def until(predicate: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Poll a condition no event tells about (state inside the server thread), bounded."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


# A raw HTTP/2 client on the h2 library -------------------------------------------------------------


def request_headers(path: str, method: str = "GET", authority: str = "example.com", **extra: str) -> list:
    headers = [(":method", method), (":path", path), (":scheme", "http"), (":authority", authority)]
    headers.extend((name.replace("_", "-"), value) for name, value in extra.items())
    return headers


class H2Client:
    """An ``h2`` client connection over a blocking socket; every read is bounded by WAIT."""

    def __init__(
        self,
        server: ThreadedServer,
        settings: dict | None = None,
        sock: socket.socket | None = None,
        validate: bool = True,
        preface_sent: bool = False,
    ) -> None:
        self.sock = sock or socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        OPEN_SOCKETS.append(self.sock)
        self.sock.settimeout(WAIT)
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding="utf-8",
            validate_inbound_headers=validate,
            validate_outbound_headers=False,
        )
        self.conn = h2.connection.H2Connection(config)
        if settings:
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.conn.initiate_connection()
        if preface_sent:
            assert self.conn.data_to_send(len(PREFACE)) == PREFACE
        self.flush()
        self.events: list = []
        self.closed = False
        self.responses: dict[int, dict] = {}
        self.auto_ack = True

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(
        self, path: str, method: str = "GET", body: bytes | None = None, end: bool = True, **extra: str
    ) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        headers = request_headers(path, method, **extra)
        self.conn.send_headers(stream_id, headers, end_stream=end and not body)
        if body:
            self.send_body(stream_id, body, end)
        self.flush()
        return stream_id

    def send_body(self, stream_id: int, body: bytes, end: bool = True) -> None:
        view = memoryview(body)
        while view:
            size = min(
                len(view), self.conn.max_outbound_frame_size, self.conn.local_flow_control_window(stream_id)
            )
            if size <= 0:
                self.wait_for(lambda: self.conn.local_flow_control_window(stream_id) > 0)
                continue
            self.conn.send_data(stream_id, view[:size].tobytes())
            view = view[size:]
            self.flush()
        if end:
            self.conn.end_stream(stream_id)
        self.flush()

    def read_once(self, timeout: float = WAIT) -> bool:
        """One read; False once the server closed the connection."""
        if self.closed:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return False
        for event in self.conn.receive_data(data):
            self.events.append(event)
            self.record(event)
        try:
            self.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        return True

    def record(self, event: Any) -> None:
        stream_id = getattr(event, "stream_id", None)
        if stream_id is None:
            return
        response = self.responses.setdefault(
            stream_id,
            {"headers": [], "informational": [], "body": b"", "trailers": [], "ended": False, "reset": None},
        )
        if isinstance(event, h2.events.ResponseReceived):
            response["headers"] = event.headers
        elif isinstance(event, h2.events.InformationalResponseReceived):
            response["informational"].append(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            response["body"] += event.data
            if self.auto_ack:
                self.conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            response["trailers"] = event.headers
        elif isinstance(event, h2.events.StreamEnded):
            response["ended"] = True
        elif isinstance(event, h2.events.StreamReset):
            response["reset"] = event.error_code

    def wait_for(self, predicate: Callable[[], Any], timeout: float = WAIT) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; events: {self.events[-10:]}"
            try:
                if not self.read_once(left):
                    result = predicate()
                    assert result, f"the server closed the connection; events: {self.events[-10:]}"
                    return result
            except socket.timeout:
                continue

    def response(self, stream_id: int, timeout: float = WAIT) -> dict:
        """The stream's response once it ended (or was reset)."""
        self.wait_for(
            lambda: (
                stream_id in self.responses
                and (self.responses[stream_id]["ended"] or self.responses[stream_id]["reset"] is not None)
            ),
            timeout,
        )
        return self.responses[stream_id]

    def get(self, path: str, timeout: float = WAIT, **kwargs: Any) -> dict:
        return self.response(self.request(path, **kwargs), timeout)

    def terminated(self, timeout: float = WAIT) -> h2.events.ConnectionTerminated:
        return self.wait_for(
            lambda: next((e for e in self.events if isinstance(e, h2.events.ConnectionTerminated)), None),
            timeout,
        )

    def wait_closed(self, timeout: float = WAIT) -> None:
        """Read until the server closes the TCP connection (bounded)."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            assert left > 0, "the server did not close the connection"
            try:
                self.read_once(left)
            except socket.timeout:
                continue
            except h2.exceptions.ProtocolError:
                # Frames after GOAWAY the h2 state machine refuses: read the rest raw.
                raw_until_closed(self.sock, deadline - time.monotonic())
                self.closed = True

    def close(self) -> None:
        self.sock.close()


def status(response: dict) -> int:
    return int(dict(response["headers"])[":status"])


def header(response: dict, name: str) -> str | None:
    return dict(response["headers"]).get(name)


# Raw frames ----------------------------------------------------------------------------------------


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream_id) + payload


def settings_frame(**values: int) -> bytes:
    ids = {"header_table_size": 1, "initial_window_size": 4, "max_frame_size": 5}
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", ids[k], v) for k, v in values.items()))


def raw_until_closed(sock: socket.socket, timeout: float = WAIT) -> bytes:
    """Everything until the server closes (a bounded wait: a server that keeps it open fails)."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"the server kept the connection open; got {parse_frames(bytes(data))}"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return bytes(data)
        except socket.timeout:
            continue
        if not chunk:
            return bytes(data)
        data += chunk


def parse_frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream id, payload) of every whole frame in ``data``."""
    frames = []
    position = 0
    while position + 9 <= len(data):
        length = int.from_bytes(data[position : position + 3], "big")
        kind, flags, stream_id = struct.unpack(">BBI", data[position + 3 : position + 9])
        payload = data[position + 9 : position + 9 + length]
        if len(payload) < length:
            break
        frames.append((kind, flags, stream_id & MAX_STREAM_ID, payload))
        position += 9 + length
    return frames


def read_until(sock: socket.socket, data: bytes, predicate: Any, timeout: float = WAIT) -> bytes:
    """``data`` and what the server sends after it, until ``predicate`` holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not predicate(data):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; frames: {parse_frames(data)}"
        sock.settimeout(left)
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection; frames: {parse_frames(data)}"
        data += chunk
    return data


def goaways(data: bytes) -> list[tuple[int, int]]:
    """(last stream id, error code) of each GOAWAY in ``data``."""
    return [
        (struct.unpack(">I", payload[:4])[0] & MAX_STREAM_ID, struct.unpack(">I", payload[4:8])[0])
        for kind, _, _, payload in parse_frames(data)
        if kind == GOAWAY
    ]


def rst_streams(data: bytes) -> list[tuple[int, int]]:
    """(stream id, error code) of each RST_STREAM in ``data``."""
    return [
        (stream_id, struct.unpack(">I", payload)[0])
        for kind, _, stream_id, payload in parse_frames(data)
        if kind == RST_STREAM
    ]


def raw_connect(server: ThreadedServer, settings: bytes | None = None) -> socket.socket:
    """A plain socket that sent the preface and a SETTINGS frame (empty unless given)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    OPEN_SOCKETS.append(sock)
    sock.sendall(PREFACE + (settings if settings is not None else frame(SETTINGS, 0, 0)))
    return sock


def hpack_block(headers: list) -> bytes:
    import hpack

    return hpack.Encoder().encode(headers)


def write_file(path: os.PathLike | str, size: int) -> bytes:
    content = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    with open(path, "wb") as file:
        file.write(content)
    return content


# WebSockets over a stream (RFC 8441) -------------------------------------------------------------

#: WebSocket opcodes (RFC 6455 §5.2).
WS_TEXT, WS_BINARY, WS_CLOSE = 0x1, 0x2, 0x8


def ws_frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    """A masked client frame (RFC 6455 §5.2)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    size = len(payload)
    if size < 126:
        head = struct.pack(">BB", first, 0x80 | size)
    elif size < 65536:
        head = struct.pack(">BBH", first, 0x80 | 126, size)
    else:
        head = struct.pack(">BBQ", first, 0x80 | 127, size)
    mask = os.urandom(4)
    masked = bytes(octet ^ mask[i % 4] for i, octet in enumerate(payload))
    return head + mask + masked


def ws_frames(data: bytes) -> tuple[list[tuple[int, int, bytes]], bytes]:
    """(first octet, opcode, payload) of the whole server frames in ``data`` (unmasked), and the rest."""
    frames = []
    while len(data) >= 2:
        first, second = data[0], data[1]
        assert not second & 0x80, "a server frame is never masked"
        size = second & 0x7F
        at = 2
        if size == 126:
            if len(data) < 4:
                break
            size, at = struct.unpack(">H", data[2:4])[0], 4
        elif size == 127:
            if len(data) < 10:
                break
            size, at = struct.unpack(">Q", data[2:10])[0], 10
        if len(data) < at + size:
            break
        frames.append((first, first & 0x0F, data[at : at + size]))
        data = data[at + size :]
    return frames, data


class WebSocketStream:
    """A WebSocket on one stream of an ``H2Client``."""

    def __init__(self, client: H2Client, path: str, *extra: tuple[str, str], version: bool = True) -> None:
        self.client = client
        self.stream_id = client.conn.get_next_available_stream_id()
        headers = [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "example.com"),
        ]
        if version:
            headers.append(("sec-websocket-version", "13"))
        headers.extend(extra)
        client.conn.send_headers(self.stream_id, headers)
        client.flush()
        self.taken = 0  # octets of the stream's data already parsed into frames

    def response(self) -> dict:
        self.client.wait_for(lambda: self.record["headers"] or self.record["reset"] is not None)
        return self.record

    @property
    def record(self) -> dict:
        return self.client.responses.setdefault(
            self.stream_id,
            {"headers": [], "informational": [], "body": b"", "trailers": [], "ended": False, "reset": None},
        )

    def send(self, opcode: int, payload: bytes, **kwargs: Any) -> None:
        self.client.send_body(self.stream_id, ws_frame(opcode, payload, **kwargs), end=False)

    def frames(self, count: int) -> list[tuple[int, int, bytes]]:
        """The next ``count`` frames from the server."""

        def parsed() -> list | None:
            frames, _ = ws_frames(self.record["body"][self.taken :])
            return frames if len(frames) >= count else None

        frames = self.client.wait_for(parsed)[:count]
        for first, _, payload in frames:
            self.taken += (
                2 + len(payload) + (2 if 126 <= len(payload) < 65536 else 8 if len(payload) >= 65536 else 0)
            )
        return frames

    def close(self, code: int = 1000) -> None:
        self.send(WS_CLOSE, struct.pack(">H", code))
