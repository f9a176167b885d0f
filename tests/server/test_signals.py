"""Process-level server behaviour, in a real ``python -m cyasgi``: signals, UDS clean-up, inherited fds."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.utils import (
    ROOT,
    WAIT,
    CliProcess,
    ResponseReader,
    cli_env,
    parse_responses,
    recv_until_closed,
    run_cli,
)


def request(url: str, path: str) -> socket.socket:
    """Open a connection to ``url`` and send ``GET path`` on it."""
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=WAIT)
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    return sock


def read_one(sock: socket.socket) -> Any:
    reader = ResponseReader()
    while not reader.responses:
        chunk = sock.recv(65536)
        assert chunk, "closed before a response"
        reader.feed(chunk)
    return reader.responses[0]


@pytest.mark.parametrize(("sig", "exit_code"), [(signal.SIGINT, 0), (signal.SIGTERM, -signal.SIGTERM)])
def test_graceful_shutdown_on_signal(tmp_path, sig, exit_code):
    release = tmp_path / "release"
    with run_cli("tests.apps:slow", "--port", "0", "--lifespan", "on") as proc:
        url = proc.wait_until_serving()
        idle = request(url, "/")
        assert read_one(idle).body == b"fast"  # now an idle keep-alive connection
        busy = request(url, f"/until?{release}")
        proc.wait_for_line("test app: slow request started")

        proc.proc.send_signal(sig)

        proc.wait_for_line("Waiting for connections to close. (CTRL+C to force quit)")
        assert recv_until_closed(idle) == b""  # the idle connection was closed
        with pytest.raises(ConnectionRefusedError):  # nothing accepts new connections
            request(url, "/").close()
        release.touch()
        [response] = parse_responses(recv_until_closed(busy))  # the in-flight request completes
        assert (response.status, response.body) == (200, b"done")
        assert response.header(b"connection") == b"close"
        code = proc.wait()
        idle.close()
        busy.close()
    output = proc.output
    assert code == exit_code
    assert output.index("Shutting down") < output.index("test app: lifespan shutdown ran")
    assert "Application shutdown complete." in output
    assert "Finished server process" in output
    assert "Traceback" not in output


def test_sigint_after_a_long_poll_client_left_exits_at_once():
    """A long-poll whose client has gone is over: shutdown does not wait for it."""
    with run_cli("tests.apps:long_poll", "--port", "0", "--lifespan", "on") as proc:
        url = proc.wait_until_serving()
        sock = request(url, "/poll")
        proc.wait_for_line("test app: long poll waiting")
        sock.close()
        proc.wait_for_line("test app: long poll saw the client leave (http.disconnect)")
        proc.proc.send_signal(signal.SIGINT)
        code = proc.wait()
    assert code == 0
    assert "Waiting for connections to close" not in proc.output
    assert "Finished server process" in proc.output


def test_a_long_poll_client_leaving_during_shutdown_lets_it_finish():
    """Shutdown waits for the in-flight long-poll; once its client goes, the server exits."""
    with run_cli("tests.apps:long_poll", "--port", "0", "--lifespan", "on") as proc:
        url = proc.wait_until_serving()
        sock = request(url, "/poll")
        proc.wait_for_line("test app: long poll waiting")
        proc.proc.send_signal(signal.SIGINT)
        proc.wait_for_line("Waiting for connections to close. (CTRL+C to force quit)")
        sock.close()
        code = proc.wait()
    assert code == 0
    assert "test app: long poll saw the client leave (http.disconnect)" in proc.output
    assert "Application shutdown complete." in proc.output


def test_second_sigint_forces_exit():
    with run_cli("tests.apps:slow", "--port", "0", "--lifespan", "on") as proc:
        url = proc.wait_until_serving()
        busy = request(url, "/slow?60")
        proc.wait_for_line("test app: slow request started")
        proc.proc.send_signal(signal.SIGINT)
        proc.wait_for_line("Waiting for connections to close. (CTRL+C to force quit)")
        proc.proc.send_signal(signal.SIGINT)
        code = proc.wait()  # well before the 60 s the request wants
        data = recv_until_closed(busy)
        busy.close()
    assert code == 0
    assert data == b""  # the request never completed
    assert "test app: lifespan shutdown ran" not in proc.output  # skipped on a forced exit
    assert "Finished server process" in proc.output


def get(sock: socket.socket, path: str) -> Any:
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    return read_one(sock)


def test_shutdown_delay_keeps_serving_while_health_checks_fail():
    delay = 4.0
    with run_cli(
        "tests.apps:slow", "--port", "0", "--lifespan", "on",
        "--health-path", "/healthz", "--shutdown-delay", str(delay),
    ) as proc:
        url = proc.wait_until_serving()
        kept = request(url, "/healthz")
        healthy = read_one(kept)  # now an idle keep-alive connection, as a load balancer keeps them

        signalled = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        proc.wait_for_line("Shutdown delay: serving 4s more with health checks failing")

        # Health checks fail at once, and close their connection...
        unhealthy = get(kept, "/healthz")
        assert recv_until_closed(kept) == b""
        # ...but the listener is still open and requests are served, on new and kept connections.
        fresh = request(url, "/")
        assert read_one(fresh).body == b"fast"
        assert get(fresh, "/healthz").status == 503

        proc.wait_for_line("Shutting down", timeout=delay + WAIT)
        waited = time.monotonic() - signalled
        code = proc.wait()
        kept.close()
        fresh.close()
    output = proc.output
    assert (healthy.status, healthy.body) == (200, b"ok\n")
    assert (unhealthy.status, unhealthy.body, unhealthy.header(b"connection")) == (503, b"shutting down\n", b"close")
    assert waited >= delay - 0.2  # then the usual graceful shutdown
    assert code == -signal.SIGTERM
    assert output.index("Shutdown delay") < output.index("Shutting down") < output.index("lifespan shutdown ran")
    assert "Traceback" not in output


def test_second_sigint_cuts_the_shutdown_delay_short():
    with run_cli("tests.apps:slow", "--port", "0", "--lifespan", "on", "--shutdown-delay", "60") as proc:
        url = proc.wait_until_serving()
        proc.proc.send_signal(signal.SIGINT)
        proc.wait_for_line("Shutdown delay: serving 60s more")
        assert read_one(request(url, "/")).body == b"fast"  # still serving
        proc.proc.send_signal(signal.SIGINT)
        code = proc.wait()  # well before the 60 s
    assert code == 0
    assert "Shutting down" in proc.output
    assert "test app: lifespan shutdown ran" not in proc.output  # a forced exit, as without a delay


def test_uds_file_mode_and_removal(tmp_path):
    path = tmp_path / "app.sock"
    with run_cli("tests.apps:hello", "--uds", str(path)) as proc:
        proc.wait_for_line(f"cyasgi running on unix socket {path} (Press CTRL+C to quit)")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=WAIT) as client:
            assert client.get("http://unix/").text == "hello"
        proc.proc.send_signal(signal.SIGINT)
        assert proc.wait() == 0
    assert not path.exists()


@pytest.mark.parametrize("family", ["inet", "unix"])
def test_inherited_listening_fd(tmp_path, family):
    if family == "inet":
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        address: Any = listener.getsockname()
        transport = httpx.HTTPTransport()
        url = f"http://{address[0]}:{address[1]}/"
    else:
        address = str(tmp_path / "fd.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(address)
        transport = httpx.HTTPTransport(uds=address)
        url = "http://unix/"
    listener.listen(16)
    fd = listener.fileno()
    try:
        with run_cli("tests.apps:echo", "--fd", str(fd), pass_fds=(fd,)) as proc:
            line = proc.wait_for_line(" running on socket ")
            with httpx.Client(transport=transport, timeout=WAIT) as client:
                scope = client.get(url).json()
    finally:
        listener.close()
    assert f"cyasgi running on socket {address} (Press CTRL+C to quit)" in line
    if family == "inet":
        assert scope["server"] == list(address)
        assert scope["client"][0] == "127.0.0.1"
    else:
        assert scope["server"] == [address, None]
        assert scope["client"] is None


def test_max_requests_ends_the_process():
    with run_cli("tests.apps:hello", "--port", "0", "--limit-max-requests", "1") as proc:
        url = proc.wait_until_serving()
        assert httpx.get(url, timeout=WAIT).text == "hello"
        code = proc.wait()
    assert code == 0
    assert "INFO:     Maximum request limit of 1 exceeded. Terminating process." in proc.output  # uvicorn's level


def test_no_signal_handlers_left_behind_in_a_thread():
    """Serving from a thread other than the main one works without installing signal handlers."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import signal, threading, cyasgi, tests.apps as a\n"
                "before = signal.getsignal(signal.SIGINT)\n"
                "t = threading.Thread(target=cyasgi.run, args=(a.hello,),"
                " kwargs=dict(port=0, limit_max_requests=0, log_level='warning'))\n"
                "t.start(); t.join(20)\n"
                "assert not t.is_alive()\n"
                "assert signal.getsignal(signal.SIGINT) is before\n"
                "print('ok')\n"
            ),
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=WAIT * 2,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    assert result.stdout.strip() == "ok", result.stderr


def test_uds_path_of_a_regular_file_is_left_alone(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("precious")
    with run_cli("tests.apps:hello", "--uds", str(path)) as proc:
        code = proc.wait()
    assert code == 3
    assert f"Address {str(path)!r} is already in use" in proc.output
    assert path.read_text() == "precious"


# A program embedding cyasgi with handlers of its own --------------------------------------------


@contextlib.contextmanager
def run_embedding_program(mode: str) -> Iterator[CliProcess]:
    """Run tests/embedding_program.py (``run``, ``serve`` or ``handle-exit``); stop and reap it afterwards."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.embedding_program", mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=cli_env(None),
        cwd=ROOT,
    )
    program = CliProcess(proc)
    try:
        yield program
    finally:
        program.stop()


def assert_own_handler_ran_after_shutdown(output: str, sig: signal.Signals) -> None:
    """The server shut down gracefully, then the program's handler ran once, then serving returned
    with the program's handlers back in place."""
    finished = output.index("Finished server process")
    handled = output.index(f"own handler ran: {sig.name}")
    returned = output.index("serving returned; own handlers installed: True")
    assert finished < handled < returned, output
    assert output.count("own handler ran:") == 1, output
    assert "Traceback" not in output


@pytest.mark.parametrize("mode", ["run", "serve"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_real_signal_reaches_the_programs_own_handler_after_shutdown(mode, sig):
    with run_embedding_program(mode) as program:
        url = program.wait_until_serving()
        assert httpx.get(url, timeout=WAIT).text == "ok"
        program.proc.send_signal(sig)
        code = program.wait()
    assert code == 0, program.output  # the handler printed: neither KeyboardInterrupt nor death by signal
    assert_own_handler_ran_after_shutdown(program.output, sig)


def test_handle_exit_called_by_the_program_is_raised_again_after_shutdown():
    with run_embedding_program("handle-exit") as program:
        url = program.wait_until_serving()
        assert httpx.get(url + "/stop", timeout=WAIT).text == "ok"  # the app calls handle_exit(SIGTERM)
        code = program.wait()
    assert code == 0, program.output
    assert_own_handler_ran_after_shutdown(program.output, signal.SIGTERM)
