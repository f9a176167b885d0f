"""--reload: a changed file restarts the server; a syntax error does not stop the reloader."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from cyasgi.config import Config
from cyasgi.supervisors.basereload import FileFilter
from tests.supervision import SPAWN_WAIT, cyasgi, get, run_supervised, wait_for_count

APP_SOURCE = '''
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({{"type": message["type"] + ".complete"}})
            if message["type"] == "lifespan.shutdown":
                return
    body = b"{version}"
    await send({{"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}})
    await send({{"type": "http.response.body", "body": body}})
'''

READY = "Application startup complete."


def write_app(directory: Path, version: str) -> None:
    (directory / "reloaded_app.py").write_text(APP_SOURCE.format(version=version))


def reload_command(directory: Path, *extra: str) -> list[str]:
    return [*extra, "reloaded_app:app", "--reload", "--reload-dir", str(directory), "--reload-delay", "0.05",
            "--port", "0", "--lifespan", "on", "--app-dir", str(directory)]


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_app(tmp_path, "v1")
    return tmp_path


def check_reload_cycle(command: list[str], app_dir: Path, reloader: str) -> None:
    with run_supervised(command, cwd=app_dir) as cli:
        url = cli.wait_until_serving(SPAWN_WAIT)
        cli.wait_for_line(f"Started reloader process [{cli.proc.pid}] using {reloader}")
        wait_for_count(cli, READY, 1)
        assert get(url).text == "v1"

        write_app(app_dir, "v2")
        cli.wait_for_line(f"{reloader} detected changes in 'reloaded_app.py'. Reloading...", SPAWN_WAIT)
        wait_for_count(cli, READY, 2)
        assert get(url).text == "v2"

        # A syntax error: the new child dies, the reloader stays and waits for the fix.
        (app_dir / "reloaded_app.py").write_text("def broken(:\n")
        wait_for_count(cli, "Reloading...", 2)
        cli.wait_for_line("SyntaxError", SPAWN_WAIT)
        assert cli.proc.poll() is None

        write_app(app_dir, "v3")
        wait_for_count(cli, "Reloading...", 3)
        wait_for_count(cli, READY, 3)
        assert get(url).text == "v3"
    assert f"Stopping reloader process [{cli.proc.pid}]" in cli.output


def test_watchfiles_reload_on_change_and_after_a_fixed_syntax_error(app_dir: Path):
    check_reload_cycle(cyasgi(*reload_command(app_dir)), app_dir, "WatchFiles")


SLOW_START_SOURCE = """
import asyncio
import os
import time

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                deadline = time.monotonic() + 30
                while not os.path.exists("go") and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)  # not serving until the test says so
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
"""


def test_a_connection_made_while_the_server_starts_waits_instead_of_being_refused(tmp_path: Path):
    """The reloader listens on the socket it binds before the server process starts: a client that
    connects during start-up (or a restart) is answered once the app is ready, not refused."""
    (tmp_path / "slow_app.py").write_text(SLOW_START_SOURCE)
    command = cyasgi(
        "slow_app:app", "--reload", "--reload-dir", str(tmp_path), "--port", "0", "--lifespan", "on",
        "--app-dir", str(tmp_path),
    )
    with run_supervised(command, cwd=tmp_path) as cli:
        url = cli.wait_until_serving(SPAWN_WAIT)
        host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=SPAWN_WAIT) as sock:  # during start-up
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert READY not in cli.output  # still starting: it waits for "go"
            (tmp_path / "go").write_text("")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"ok")


def test_stat_reload_is_the_fallback_without_watchfiles(app_dir: Path):
    # The same CLI in an interpreter where watchfiles cannot be imported.
    no_watchfiles = "import sys; sys.modules['watchfiles'] = None; from cyasgi.main import main; main()"
    command = [sys.executable, "-c", no_watchfiles, *reload_command(app_dir)]
    check_reload_cycle(command, app_dir, "StatReload")


def filter_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **kwargs: object) -> FileFilter:
    monkeypatch.chdir(tmp_path)
    return FileFilter(Config("app:app", reload=True, log_config=None, **kwargs))  # type: ignore[arg-type]


def test_default_globs_watch_python_files_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    accepts = filter_for(tmp_path, monkeypatch)
    assert accepts(tmp_path / "app.py")
    assert accepts(tmp_path / "pkg" / "models.py")
    for ignored in ("app.pyc", ".app.py", "app.py.swp", "~app.py", "notes.txt", "page.html"):
        assert not accepts(tmp_path / ignored), ignored


def test_include_and_exclude_globs_and_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "generated").mkdir()
    accepts = filter_for(
        tmp_path, monkeypatch, reload_includes=["*.html", "*.toml"], reload_excludes=["generated", "test_*.py"]
    )
    assert accepts(tmp_path / "templates" / "page.html")
    assert accepts(tmp_path / "pyproject.toml")
    assert accepts(tmp_path / "app.py")
    assert not accepts(tmp_path / "test_app.py")
    assert not accepts(tmp_path / "generated" / "schema.py")
    assert accepts.prune_dir(tmp_path / "generated")
    assert accepts.prune_dir(tmp_path / ".git")
    assert not accepts.prune_dir(tmp_path / "templates")


def test_excluding_the_default_include_turns_it_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    accepts = filter_for(tmp_path, monkeypatch, reload_includes=["*.cfg"], reload_excludes=["*.py"])
    assert accepts(tmp_path / "settings.cfg")
    assert not accepts(tmp_path / "app.py")
