"""--bind: several listeners at once (TCP over IPv4 and IPv6, UNIX sockets, inherited fds), real processes
answered by curl; --workers sharing them; dual-stack ``::``; every bad value (docs/settings.md#listeners)."""

from __future__ import annotations

import errno
import json
import re
import shutil
import signal
import socket
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from cyasgi.config import Config, ConfigError
from cyasgi.main import main as cli
from tests import apps
from tests.supervision import APP, SPAWN_WAIT, cyasgi, run_supervised, wait_for_count
from tests.utils import WAIT, CliProcess, ipv6_available, make_config, run_cli, run_cli_to_exit, run_server

READY = "Application startup complete."
BIND_FORMS = "expected HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N"
RUNNING = re.compile(r"cyasgi running on (.+) \(Press CTRL\+C to quit\)")

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


needs_ipv6 = pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback here")


def curl(url: str, uds: Path | None = None, headers: Sequence[str] = (), options: Sequence[str] = ()) -> str:
    """The body curl gets for ``url`` (over the UNIX socket ``uds`` if given)."""
    command = ["curl", "--silent", "--show-error", "--fail", "--globoff", "--max-time", str(WAIT), *options]
    if uds is not None:
        command += ["--unix-socket", str(uds)]
    for header in headers:
        command += ["--header", header]
    run = {"capture_output": True, "text": True, "check": False, "stdin": subprocess.DEVNULL}
    result = subprocess.run([*command, url], timeout=WAIT + 1, **run)
    assert result.returncode == 0, (url, result.stderr)
    return result.stdout


def listeners(cli: CliProcess, count: int, timeout: float = WAIT) -> list[str]:
    """What the first ``count`` "running on" lines name, in order."""
    wait_for_count(cli, "cyasgi running on ", count, timeout)
    return RUNNING.findall(cli.output)


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def test_ipv4_ipv6_and_unix_listeners_at_once(tmp_path):
    path = tmp_path / "app.sock"
    binds = ["127.0.0.1:0", *(["[::1]:0"] if ipv6_available() else []), f"unix:{path}"]
    args = [arg for bind in binds for arg in ("--bind", bind)]
    with run_cli("tests.apps:hello", *args) as cli:
        named = listeners(cli, len(binds))
        assert curl(named[0] + "/") == "hello"
        if ipv6_available():
            assert re.fullmatch(r"http://\[::1\]:\d+", named[1]) and port_of(named[1]) != 0
            assert curl(named[1] + "/") == "hello"
        assert stat.S_IMODE(path.stat().st_mode) == 0o666
        assert curl("http://localhost/", uds=path) == "hello"
        cli.proc.send_signal(signal.SIGINT)
        assert cli.wait() == 0
    # One line per listener, in the order given; --bind replaced the default 127.0.0.1:8000.
    assert len(named) == len(binds)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", named[0]) and port_of(named[0]) != 0
    assert named[-1] == f"unix socket {path}"
    assert "8000" not in cli.output
    # Listening comes after the application started, as with --host/--port.
    assert cli.output.index(READY) < cli.output.index("cyasgi running on ")
    assert not path.exists()


def test_explicit_host_port_uds_and_fd_add_their_listeners(tmp_path):
    inherited = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    inherited.bind(("127.0.0.1", 0))
    inherited.listen(16)
    fd = inherited.fileno()
    uds = tmp_path / "uds.sock"
    bound = tmp_path / "bound.sock"
    with socket.socket(socket.AF_UNIX) as stale:  # a crashed server's leftover: replaced
        stale.bind(str(bound))
    try:
        args = ["--port", "0", "--uds", str(uds), "--bind", f"unix:{bound}", "--bind", f"fd://{fd}"]
        with run_cli("tests.apps:hello", *args, pass_fds=(fd,)) as cli:
            named = listeners(cli, 4)
            assert curl(named[0] + "/") == "hello"
            assert curl("http://localhost/", uds=bound) == "hello"
            host, port = inherited.getsockname()
            assert curl(f"http://{host}:{port}/") == "hello"
            assert curl("http://localhost/", uds=uds) == "hello"
    finally:
        inherited.close()
    # --host/--port first, then the --bind values, then --uds (and --fd would follow).
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", named[0])
    assert named[1:] == [f"unix socket {bound}", f"socket {(host, port)}", f"unix socket {uds}"]
    assert not uds.exists() and not bound.exists()


def test_tls_on_every_listener(tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    path = tmp_path / "tls.sock"
    tls = ["--ssl-certfile", str(cert_file), "--ssl-keyfile", str(key_file)]
    with run_cli("tests.apps:hello", "--bind", "127.0.0.1:0", "--bind", f"unix:{path}", *tls) as cli:
        named = listeners(cli, 2)
        assert re.fullmatch(r"https://127\.0\.0\.1:\d+", named[0])
        assert curl(named[0] + "/", options=("--cacert", str(ca_file))) == "hello"
        assert curl("https://localhost/", uds=path, options=("--cacert", str(ca_file))) == "hello"


@pytest.mark.parametrize("extra", [[], ["--reuse-port"]], ids=["shared", "reuse-port"])
def test_workers_serve_every_listener(tmp_path, extra):
    path = tmp_path / "app.sock"
    command = cyasgi(APP, "--workers", "2", "--bind", "127.0.0.1:0", "--bind", f"unix:{path}", *extra)
    with run_supervised(command) as cli:
        named = listeners(cli, 2, SPAWN_WAIT)
        wait_for_count(cli, READY, 2)
        over_tcp = {curl(named[0] + "/") for _ in range(30 if extra else 2)}
        over_uds = {curl("http://localhost/", uds=path) for _ in range(2)}
        pids = set(re.findall(r"Started server process \[(\d+)\]", cli.output))
        cli.proc.send_signal(signal.SIGTERM)
        assert cli.wait(SPAWN_WAIT) == 0
    # The supervisor bound and announced each listener once; the workers serve them all.
    assert named == [named[0], f"unix socket {path}"] and len(RUNNING.findall(cli.output)) == 2
    assert over_tcp <= pids and over_uds <= pids and len(pids) == 2
    if extra:  # each worker has its own TCP socket: the kernel spreads connections over both
        assert over_tcp == pids
    assert not path.exists()


@needs_ipv6
@pytest.mark.parametrize(
    "args", [["--host", "::", "--port", "0"], ["--bind", "[::]:0"]], ids=["host", "bind"]
)
def test_ipv6_wildcard_also_serves_ipv4(args):
    forwarded = ("X-Forwarded-For: 203.0.113.7",)
    with run_cli("tests.apps:echo", *args) as cli:
        [named] = listeners(cli, 1)
        port = port_of(named)
        assert named == f"http://[::]:{port}"
        over_ipv4 = json.loads(curl(f"http://127.0.0.1:{port}/"))
        over_ipv6 = json.loads(curl(f"http://[::1]:{port}/"))
        # The IPv4 peer (::ffff:127.0.0.1) is the default --forwarded-allow-ips' 127.0.0.1.
        proxied = json.loads(curl(f"http://127.0.0.1:{port}/", headers=forwarded))
    assert over_ipv4["client"][0] == "::ffff:127.0.0.1"
    assert over_ipv6["client"][0] == "::1"
    assert proxied["client"] == ["203.0.113.7", 0]


BAD_VALUES = [
    ("foo", BIND_FORMS),
    ("127.0.0.1:", BIND_FORMS),
    (":8000", BIND_FORMS),
    ("127.0.0.1:http", "'http' is not a port number"),
    ("127.0.0.1:65536", "port 65536 is out of range (0 to 65535)"),
    ("[::1]:99999", "port 99999 is out of range (0 to 65535)"),
    ("::1:8000", "write an IPv6 address in brackets, [::1]:8000"),
    ("[localhost]:8000", "'localhost' is not an IPv6 address; write other hosts without brackets"),
    ("unix:", "unix: needs a socket path (unix:PATH)"),
    ("fd://", "fd:// needs a file descriptor number (fd://N)"),
    ("fd://three", "fd:// needs a file descriptor number (fd://N)"),
]
#: One bad value of each kind also in a real process (the others in-process: the same code path).
IN_A_PROCESS = {"foo", "127.0.0.1:65536", "unix:", "fd://three"}


@pytest.mark.parametrize(("value", "reason"), BAD_VALUES)
def test_bad_values_exit_3_with_the_value_and_the_reason(value, reason):
    args = ["tests.apps:hello", "--bind", "127.0.0.1:0", "--bind", value]
    expected = f"Error: --bind {value!r}: {reason}"
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert (result.exit_code, result.output.strip()) == (3, expected)
    if value in IN_A_PROCESS:
        completed = run_cli_to_exit(*args)
        assert (completed.returncode, completed.stdout.strip()) == (3, expected)


def test_bad_value_from_a_config_file_names_the_file(tmp_path, monkeypatch):
    (tmp_path / "app.toml").write_text('bind = ["127.0.0.1:0", "localhost"]\n')
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["tests.apps:hello", "--config", "app.toml"], catch_exceptions=False)
    expected = f"Error: app.toml: 'bind': --bind 'localhost': {BIND_FORMS}"
    assert (result.exit_code, result.output.strip()) == (3, expected)


def test_bad_value_from_the_environment_exits_3():
    result = run_cli_to_exit("tests.apps:hello", env={"CYASGI_BIND": "127.0.0.1:0,unix:"})
    assert result.returncode == 3, result.stdout
    assert "Error: --bind 'unix:': unix: needs a socket path" in result.stdout


def test_server_in_python_serves_every_listener_and_removes_its_socket_file(tmp_path):
    path = tmp_path / "api.sock"
    with run_server(make_config(apps.hello, bind=["127.0.0.1:0", f"unix:{path}"])) as server:
        port = server.servers[0].sockets[0].getsockname()[1]
        assert curl(f"http://127.0.0.1:{port}/") == "hello"
        assert curl("http://localhost/", uds=path) == "hello"
        assert len(server.servers) == 2
    assert not path.exists()


def test_config_and_run_refuse_bad_values():
    with pytest.raises(ConfigError, match=re.escape(f"--bind 'foo': {BIND_FORMS}")):
        Config("tests.apps:hello", bind=["127.0.0.1:0", "foo"], log_config=None)
    with pytest.raises(ConfigError, match="--reuse-port needs a TCP listener"):
        Config("tests.apps:hello", bind="unix:/tmp/x.sock", reuse_port=True, log_config=None)
    config = Config("tests.apps:hello", bind="[::]:8080", uds="/tmp/x.sock", log_config=None)
    assert [str(listener) for listener in config.listeners] == ["[::]:8080", "unix:/tmp/x.sock"]


def test_address_in_use_names_the_listener_and_leaves_no_socket_file(tmp_path):
    path = tmp_path / "app.sock"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli_to_exit("tests.apps:hello", "--bind", f"unix:{path}", "--bind", f"127.0.0.1:{port}")
    assert result.returncode == 3, result.stdout
    errors = [line for line in result.stdout.splitlines() if line.startswith("ERROR:")]
    assert errors == [
        f"ERROR:    [Errno {errno.EADDRINUSE}] error while attempting to bind on address "
        f"('127.0.0.1', {port}): address already in use"
    ]
    assert "Application shutdown complete." in result.stdout  # as for --port in use
    assert not path.exists()


def test_a_regular_file_at_a_unix_path_is_an_error_and_left_alone(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("precious")
    args = ["--workers", "2", "--bind", "127.0.0.1:0", "--bind", f"unix:{path}"]
    result = run_cli_to_exit("tests.apps:hello", *args)
    assert result.returncode == 3, result.stdout
    assert f"error while attempting to bind on address {str(path)!r}: address already in use" in result.stdout
    assert path.read_text() == "precious"
