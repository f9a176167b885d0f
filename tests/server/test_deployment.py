"""Deployment recipes from docs/deployment.md, run for real: systemd socket activation, nginx in front."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.supervision import APP, SPAWN_WAIT, cyasgi, run_supervised, wait_for_count
from tests.utils import WAIT

READY = "Application startup complete."


def systemd_exec(listener: socket.socket, *args: str) -> list[str]:
    """What systemd does for a socket unit: the socket as fd 3, LISTEN_FDS/LISTEN_PID set, exec."""
    launcher = (
        "import os, sys\n"
        "os.dup2(int(sys.argv[1]), 3)\n"
        "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()))\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'cyasgi', *sys.argv[2:]])\n"
    )
    return [sys.executable, "-c", launcher, str(listener.fileno()), *args]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_systemd_socket_activation_through_fd_3(workers: str):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        command = systemd_exec(listener, APP, "--fd", "3", "--workers", workers)
        with run_supervised(command, pass_fds=[listener.fileno()]) as cli:
            cli.wait_for_line(f"running on socket ('127.0.0.1', {port})")
            wait_for_count(cli, READY, int(workers))
            # The unit's socket keeps listening: connections made now queue until a worker accepts.
            responses = [httpx.get(f"http://127.0.0.1:{port}/", timeout=WAIT) for _ in range(6)]
    assert [response.status_code for response in responses] == [200] * 6


def test_systemd_socket_activation_of_a_unix_socket(tmp_path: Path):
    path = str(tmp_path / "app.sock")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(128)
        with run_supervised(systemd_exec(listener, APP, "--fd", "3"), pass_fds=[listener.fileno()]) as cli:
            cli.wait_for_line(f"running on socket {path}")
            wait_for_count(cli, READY, 1)
            with httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=WAIT) as client:
                response = client.get("http://localhost/client")
    assert response.status_code == 200


# nginx in front -----------------------------------------------------------------------------------

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

    upstream cyasgi_tcp {{ server 127.0.0.1:{app_port}; keepalive 8; }}
    upstream cyasgi_uds {{ server unix:{app_socket}; keepalive 8; }}

    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {tmp}/cert.pem;
        ssl_certificate_key {tmp}/key.pem;

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;

        location /tcp/ {{ proxy_pass http://cyasgi_tcp/; }}
        location /uds/ {{ proxy_pass http://cyasgi_uds/; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def run_nginx(tmp: Path, **values: object) -> Iterator[int]:
    """nginx as a plain foreground process of this user, its whole config under ``tmp``.

    nginx cannot be handed a listening socket, so its port is a free one picked just before;
    on the rare loss of that race it is started again with another.
    """
    for _attempt in range(3):
        port = free_port()
        (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, port=port, **values))
        proc = subprocess.Popen(
            [NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            if _wait_for_port(port, proc):
                yield port
                return
        finally:
            proc.terminate()
            try:
                proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(WAIT)
    raise AssertionError("nginx did not start:\n" + (tmp / "error.log").read_text())


def _wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> bool:
    """nginx has no readiness signal: try to connect until it listens or exits (bounded)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
            return True
        except ConnectionRefusedError:
            time.sleep(0.02)
    return False


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (.ci/run installs it)")
def test_nginx_in_front_over_tcp_and_unix_socket_with_proxy_headers(tmp_path: Path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    app_socket = tmp_path / "cyasgi.sock"

    tcp_app = cyasgi(APP, "--port", "0", "--workers", "2")
    # Over a UNIX socket the proxy has no address: trust the socket path itself.
    uds_app = cyasgi(APP, "--uds", str(app_socket), "--forwarded-allow-ips", str(app_socket))
    with run_supervised(tcp_app) as tcp_cli, run_supervised(uds_app) as uds_cli:
        app_port = int(tcp_cli.wait_until_serving().rsplit(":", 1)[1])
        wait_for_count(tcp_cli, READY, 2)
        uds_cli.wait_for_line(f"running on unix socket {app_socket}")
        wait_for_count(uds_cli, READY, 1)

        with run_nginx(tmp_path, app_port=app_port, app_socket=app_socket) as port:
            context = ssl.create_default_context()
            ca.configure_trust(context)
            # The client comes from 127.0.0.2, so its address differs from nginx's own (127.0.0.1).
            transport = httpx.HTTPTransport(verify=context, local_address="127.0.0.2")
            with httpx.Client(transport=transport, timeout=SPAWN_WAIT) as client:
                seen = {kind: [client.get(f"https://127.0.0.1:{port}/{kind}/client").text for _ in range(5)]
                        for kind in ("tcp", "uds")}
    # TLS ends at nginx, and the app still sees the client's scheme and address.
    assert seen == {"tcp": ["https 127.0.0.2"] * 5, "uds": ["https 127.0.0.2"] * 5}
