"""cyasgi.workers under a real gunicorn arbiter."""

from __future__ import annotations

import re
import ssl
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.supervision import (
    APP,
    SPAWN_WAIT,
    get,
    ignore_http_errors,
    run_supervised,
    stop_during_request,
    wait_for_count,
)
from tests.utils import WAIT, CliProcess

pytest.importorskip("gunicorn")

READY = "Application startup complete."


#: gunicorn binds a free port itself and names it in its log: no port to guess, nothing to race for.
#: (Not ``fd://N``: gunicorn reads an inherited socket as ``socket.fromfd(N, AF_UNIX, ...)``, and on
#: PyPy that socket's getsockname() is garbage, so a TCP listener is taken for a unix one.)
BIND = "127.0.0.1:0"


def listening_url(cli: CliProcess, scheme: str = "http") -> str:
    """The address gunicorn's arbiter says it is listening at."""
    line = cli.wait_for_line("Listening at: ", SPAWN_WAIT)
    match = re.search(r"Listening at: https?://(\S+)", line)
    assert match, line
    return f"{scheme}://{match.group(1)}"


def gunicorn(tmp_path: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    # XDG_RUNTIME_DIR: gunicorn >= 25 puts its control socket there; keep each test's apart.
    command = [sys.executable, "-m", "gunicorn", "--graceful-timeout", "5", *args, APP]
    return command, {"XDG_RUNTIME_DIR": str(tmp_path)}


def test_cyasgi_worker_serves_recycles_and_stops_gracefully(tmp_path: Path):
    command, env = gunicorn(
        tmp_path, "-k", "cyasgi.workers.CyasgiWorker", "-w", "2", "--bind", BIND,
        "--max-requests", "6", "--keep-alive", "3",
    )
    with run_supervised(command, env=env) as cli:
        url = listening_url(cli)
        wait_for_count(cli, READY, 2)
        statuses = [get(url).status_code for _ in range(30)]
        # --max-requests: the workers exit after their quota and gunicorn boots new ones.
        wait_for_count(cli, "Booting worker", 4)
        assert "Maximum request limit of" in cli.output

        wait_for_count(cli, READY, 4)
        code, slow = stop_during_request(cli, url, "/slow", "starts a slow request")
    assert code == 0
    assert statuses == [200] * 30
    assert slow == [200]
    assert "Shutting down: Master" in cli.output


def test_gunicorn_timeout_kills_a_blocked_worker_and_logs_its_stack(tmp_path: Path):
    command, env = gunicorn(
        tmp_path, "-k", "cyasgi.workers.CyasgiWorker", "-w", "1", "--bind", BIND,
        "--timeout", "3",
    )
    with run_supervised(command, env=env) as cli:
        url = listening_url(cli)
        wait_for_count(cli, READY, 1)
        request = lambda: httpx.get(url + "/block", timeout=SPAWN_WAIT)  # noqa: E731
        blocker = threading.Thread(target=ignore_http_errors, args=(request,))
        blocker.start()
        cli.wait_for_line("blocks its event loop")
        cli.wait_for_line("WORKER TIMEOUT", SPAWN_WAIT)
        cli.wait_for_line("Stacks of its threads", SPAWN_WAIT)
        wait_for_count(cli, READY, 2)
        blocker.join(WAIT)
        assert get(url).status_code == 200
    out = cli.output
    assert "tests/process_app.py" in out[out.index("Stacks of its threads") :]


def test_h11_worker_runs_the_pure_stack_on_a_unix_socket(tmp_path: Path):
    path = tmp_path / "gunicorn.sock"
    command, env = gunicorn(tmp_path, "-k", "cyasgi.workers.CyasgiH11Worker", "-w", "1", "--bind", f"unix:{path}")
    env["CYASGI_NO_EXTENSIONS"] = "1"
    with run_supervised(command, env=env) as cli:
        wait_for_count(cli, READY, 1)
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=WAIT) as client:
            response = client.get("http://localhost/client")
    assert response.status_code == 200
    assert response.text.startswith("http ")
    assert "pure twin" in cli.output and " on asyncio" in cli.output


def test_gunicorn_tls_settings_reach_the_worker(tmp_path: Path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    command, env = gunicorn(
        tmp_path, "-k", "cyasgi.workers.CyasgiWorker", "-w", "1", "--bind", BIND,
        "--certfile", str(certfile), "--keyfile", str(keyfile),
    )
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with run_supervised(command, env=env) as cli:
        wait_for_count(cli, READY, 1)
        response = httpx.get(listening_url(cli, "https") + "/client", verify=context, timeout=WAIT)
    assert response.status_code == 200
    assert response.text == "https 127.0.0.1"
