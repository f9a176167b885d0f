"""Test helpers: a real server in a thread, a mock transport, a tiny HTTP/1.1 response reader."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cyasgi._compat import asyncio_run
from cyasgi.config import Config
from cyasgi.protocols.http.foreign import OWN_PARSER, H11Parser, httptools_parser_factory
from cyasgi.protocols.http.wire import encode_headers_block
from cyasgi.server import Server, ServerState

ROOT = Path(__file__).resolve().parent.parent

#: Upper bound for any single wait in the suite: long enough for a loaded 2-core machine.
WAIT = 10.0
#: For in-memory exchanges, which answer at once: a missing answer must not cost WAIT per case.
QUICK = 2.0


# A real server in a background thread -------------------------------------------------------


class ThreadedServer(Server):
    """A Server that reports when it is listening (or failed to start) through a threading.Event."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        #: Set when serve() has returned (or failed): the server's "process" is over.
        self.finished = threading.Event()
        self.error: BaseException | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()

    def run_in_thread(self) -> None:
        try:
            asyncio_run(self.serve(), loop_factory=self.config.get_loop_factory())
        except BaseException as exc:  # SystemExit from a failed start included
            self.error = exc
        finally:
            self.ready.set()
            self.finished.set()

    @property
    def port(self) -> int:
        return int(self.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.config.is_ssl else "http"
        return f"{scheme}://{host}:{self.port}"


@contextlib.contextmanager
def run_server(config: Config) -> Iterator[ThreadedServer]:
    server = ThreadedServer(config)
    thread = threading.Thread(target=server.run_in_thread, name="cyasgi-test-server", daemon=True)
    thread.start()
    if not server.ready.wait(WAIT):
        raise RuntimeError("the test server did not start in time")
    if server.error is not None or not server.started:
        thread.join(WAIT)
        raise RuntimeError(f"the test server failed to start: {server.error!r}")
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(WAIT)
        assert not thread.is_alive(), "the test server did not shut down"


def make_config(app: Any, twin: Any = None, **kwargs: Any) -> Config:
    """A Config for tests: port 0, logging left to pytest (caplog sees it), lifespan off by default."""
    kwargs.setdefault("port", 0)
    kwargs.setdefault("lifespan", "off")
    kwargs.setdefault("log_config", None)
    if twin is not None:
        kwargs.setdefault("http", twin.HttpProtocol)
    return Config(app, **kwargs)


async def read_body(receive: Any) -> bytes:
    """An app's whole request body, every ``http.request`` message of it."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def wait_started(server: Server, task: asyncio.Task[Any]) -> None:
    """Inside the server's own loop, wait until ``server.started`` (no event exists for it: poll, bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not server.started:
        assert not task.done(), task
        assert loop.time() < deadline, "the server did not start"
        await asyncio.sleep(0.01)


# Raw sockets --------------------------------------------------------------------------------


def ipv6_available() -> bool:
    """This machine has an IPv6 loopback to bind to."""
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def connect(server: ThreadedServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    return sock


def recv_until_closed(sock: socket.socket, limit: int = 1 << 24) -> bytes:
    """Everything the server sends until it closes the connection (bounded by the socket timeout)."""
    data = bytearray()
    while len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return bytes(data)


def recv_responses(sock: socket.socket, count: int, head_only: bool = False) -> list[Response]:
    """Read exactly ``count`` complete responses from the socket."""
    reader = ResponseReader(head_only=head_only)
    while len(reader.responses) < count:
        chunk = sock.recv(65536)
        if not chunk:
            reader.feed_eof()
            break
        reader.feed(chunk)
    assert len(reader.responses) >= count, f"expected {count} responses, got {reader.responses}"
    return reader.responses


# Parsing responses ----------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    reason: bytes = b""
    raw_head: bytes = b""
    chunked: bool = False

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def header_list(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key.lower() == name]


@dataclass
class ResponseReader:
    """Parse a stream of HTTP/1.1 responses (content-length, chunked or close-delimited)."""

    head_only: bool = False  # e.g. responses to HEAD requests
    responses: list[Response] = field(default_factory=list)
    buffer: bytes = b""
    _current: Response | None = None
    _remaining: int = -1

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while self._step():
            pass

    def feed_eof(self) -> None:
        if self._current is not None and self._remaining == -1 and not self._current.chunked:
            self._current.body += self.buffer
            self.buffer = b""
            self.responses.append(self._current)
            self._current = None

    def _step(self) -> bool:
        if self._current is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end == -1:
                return False
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            lines = head.split(b"\r\n")
            _version, status, *reason = lines[0].split(b" ", 2)
            headers = []
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers.append((name.strip().lower(), value.strip()))
            response = Response(int(status), headers, reason=reason[0] if reason else b"", raw_head=head)
            if 100 <= response.status < 200:
                self.responses.append(response)
                return True
            length = response.header(b"content-length")
            if self.head_only or response.status in (204, 304):
                self._remaining = 0
            elif response.header(b"transfer-encoding") == b"chunked":
                response.chunked = True
                self._remaining = -2
            elif length is not None:
                self._remaining = int(length)
            else:
                self._remaining = -1  # until close
            self._current = response
            if self._remaining == 0:
                self.responses.append(response)
                self._current = None
            return True
        response = self._current
        if self._remaining >= 0:
            if len(self.buffer) < self._remaining:
                return False
            response.body += self.buffer[: self._remaining]
            self.buffer = self.buffer[self._remaining :]
            self.responses.append(response)
            self._current = None
            return True
        if self._remaining == -2:  # chunked
            line_end = self.buffer.find(b"\r\n")
            if line_end == -1:
                return False
            size = int(self.buffer[:line_end].split(b";")[0], 16)
            if size == 0:
                if self.buffer[line_end + 2 : line_end + 4] != b"\r\n":
                    if len(self.buffer) < line_end + 4:
                        return False
                    raise AssertionError(f"trailers or junk after the last chunk: {self.buffer!r}")
                self.buffer = self.buffer[line_end + 4 :]
                self.responses.append(response)
                self._current = None
                return True
            if len(self.buffer) < line_end + 2 + size + 2:
                return False
            chunk = self.buffer[line_end + 2 : line_end + 2 + size]
            assert self.buffer[line_end + 2 + size : line_end + 4 + size] == b"\r\n", "bad chunk framing"
            response.body += chunk
            self.buffer = self.buffer[line_end + 4 + size :]
            return True
        return False


def parse_responses(data: bytes, head_only: bool = False) -> list[Response]:
    reader = ResponseReader(head_only=head_only)
    reader.feed(data)
    reader.feed_eof()
    return reader.responses


# In-memory protocol harness -------------------------------------------------------------------


class MockTransport:
    """An asyncio transport that records writes; ``connection_lost`` is the test's to deliver."""

    def __init__(
        self,
        sockname: Any = ("127.0.0.1", 8000),
        peername: Any = ("127.0.0.1", 54321),
        ssl: bool = False,
    ) -> None:
        self.extra = {"sockname": sockname, "peername": peername, "sslcontext": object() if ssl else None}
        self.buffer = bytearray()
        self.calls: list[str] = []  # "write" or "writelines", one entry per call
        self.closed = False
        self.aborted = False
        self.read_paused = False
        self.protocol: Any = None
        # Made on first use: on Python 3.9 an asyncio.Event binds to the current loop when created,
        # and the parser-level tests make transports with no loop set.
        self._written: asyncio.Event | None = None
        self._has_written = False

    @property
    def written(self) -> asyncio.Event:
        """Set by every write (and already set if something was written before it was asked for)."""
        if self._written is None:
            self._written = asyncio.Event()
            if self._has_written:
                self._written.set()
        return self._written

    def _wrote(self) -> None:
        self._has_written = True
        if self._written is not None:
            self._written.set()

    def get_extra_info(self, key: str, default: Any = None) -> Any:
        return self.extra.get(key, default)

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        assert isinstance(data, (bytes, bytearray, memoryview)), type(data)
        self.calls.append("write")
        self.buffer += data
        self._wrote()

    def writelines(self, chunks: Any) -> None:
        assert not self.closed, "write after close"
        self.calls.append("writelines")
        for chunk in chunks:
            assert isinstance(chunk, (bytes, bytearray, memoryview)), type(chunk)
            self.buffer += chunk
        self._wrote()

    def close(self) -> None:
        self.closed = True
        self._wrote()

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.read_paused = True

    def resume_reading(self) -> None:
        self.read_paused = False

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
        """Wait, event-driven, until ``predicate()`` holds after some write or close."""
        deadline = time.monotonic() + timeout
        while not predicate():
            self.written.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; written so far: {bytes(self.buffer)!r}")
            try:
                await asyncio.wait_for(self.written.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def responses(self, count: int, head_only: bool = False) -> list[Response]:
        await self.wait_for(lambda: len(parse_responses(bytes(self.buffer), head_only)) >= count)
        return parse_responses(bytes(self.buffer), head_only)


def make_state(server_header: bool = True) -> ServerState:
    state = ServerState()
    state.default_headers = [(b"date", b"Thu, 01 Jan 2026 00:00:00 GMT")]
    if server_header:
        state.default_headers.append((b"server", b"cyasgi"))
    state.default_headers_block = encode_headers_block(state.default_headers)
    return state


#: ``--http`` names of request parsers, and how a twin's protocol is told to drive one.
PARSER_FACTORIES: dict[str, Callable[[Config], Any]] = {
    "cyasgi": lambda config: OWN_PARSER,
    "httptools": lambda config: httptools_parser_factory,
    "h11": H11Parser.factory,
}


def make_protocol(
    twin: Any, app: Any, transport: MockTransport | None = None, parser: str | None = None, **kwargs: Any
) -> tuple[Any, MockTransport]:
    """A connected protocol of ``twin`` serving ``app`` over a MockTransport (call inside a loop).

    ``parser``: "cyasgi", "httptools" or "h11" to drive that parser; by default the twin's own choice.
    """
    config = make_config(app, twin, **kwargs)
    config.load()
    if parser is not None:
        config.http_parser_factory = PARSER_FACTORIES[parser](config)
    state = make_state()
    protocol = twin.HttpProtocol(config=config, server_state=state, app_state={}, _loop=asyncio.get_running_loop())
    transport = transport or MockTransport()
    protocol.connection_made(transport)
    return protocol, transport


# Subprocesses -----------------------------------------------------------------------------------


def cyasgi_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cyasgi", *args]


def cli_env(env: dict[str, str] | None) -> dict[str, str]:
    """The environment a cyasgi subprocess runs with: ours, unbuffered, no stray ``CYASGI_*`` settings."""
    full_env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CYASGI_") or key == "CYASGI_NO_EXTENSIONS"
    }
    for name in ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"):
        full_env.pop(name, None)
    full_env["PYTHONUNBUFFERED"] = "1"
    if env:
        full_env.update(env)
    return full_env


@contextlib.contextmanager
def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = ROOT,
    pass_fds: tuple[int, ...] = (),
) -> Iterator[CliProcess]:
    """Start ``cyasgi ARGS`` as a subprocess; on exit, SIGINT it (then kill) and reap it.

    It runs in the repository root by default, so ``tests.apps:NAME`` imports.
    """
    proc = subprocess.Popen(
        cyasgi_command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=cli_env(env),
        cwd=cwd,
        pass_fds=pass_fds,
    )
    cli = CliProcess(proc)
    try:
        yield cli
    finally:
        cli.stop()


class CliProcess:
    """A running cyasgi subprocess whose merged output is collected by a reader thread."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._changed:
                self._lines.append(raw.decode("utf-8", "replace"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def wait_for_line(self, needle: str, timeout: float = WAIT) -> str:
        """Block until a line containing ``needle`` was printed; return it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self._lines:
                    if needle in line:
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"{needle!r} not printed; output so far:\n{''.join(self._lines)}")
                self._changed.wait(min(remaining, 0.5))

    def wait_until_serving(self, timeout: float = WAIT) -> str:
        """Wait for the "running on" line and return the URL it names (port 0 resolved)."""
        line = self.wait_for_line(" running on ", timeout)
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)  # --use-colors makes the URL bold
        match = re.search(r"running on (\S+://\S+)", line)
        assert match, line
        return match.group(1)

    def wait(self, timeout: float = WAIT) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(WAIT)
        self._reader.join(WAIT)


def run_cli_to_exit(
    *args: str, env: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = ROOT, timeout: float = WAIT
) -> subprocess.CompletedProcess[str]:
    """Run ``cyasgi ARGS`` to completion (for commands that must exit by themselves); merged output."""
    return subprocess.run(
        cyasgi_command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        check=False,
        env=cli_env(env),
        cwd=cwd,
        timeout=timeout,
        text=True,
    )


class LogWatcher(logging.Handler):
    """Collects one logger's messages (any thread) so a test can wait for a line instead of sleeping."""

    def __init__(self, logger_name: str = "uvicorn.error") -> None:
        super().__init__(level=0)
        self.logger = logging.getLogger(logger_name)
        self.lines: list[str] = []
        self.records: list[logging.LogRecord] = []
        self._changed = threading.Condition()

    def __enter__(self) -> LogWatcher:  # noqa: PYI034 (3.9 has no typing.Self)
        self.logger.addHandler(self)
        self._old_level = self.logger.level
        if self.logger.getEffectiveLevel() > logging.INFO:
            self.logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self._old_level)

    def emit(self, record: logging.LogRecord) -> None:
        with self._changed:
            self.lines.append(record.getMessage())
            self.records.append(record)
            self._changed.notify_all()

    def wait_for_count(self, needle: str, count: int, timeout: float = WAIT) -> list[str]:
        """Block until ``count`` lines containing ``needle`` were logged; return them."""
        with self._changed:
            self._changed.wait_for(lambda: sum(needle in line for line in self.lines) >= count, timeout)
            found = [line for line in self.lines if needle in line]
        assert len(found) >= count, f"{count} x {needle!r} not logged; got {self.lines}"
        return found

    def wait_for(self, needle: str, timeout: float = WAIT) -> str:
        with self._changed:
            found = self._changed.wait_for(lambda: next((line for line in self.lines if needle in line), None), timeout)
        assert found, f"{needle!r} was not logged; got {self.lines}"
        return found
