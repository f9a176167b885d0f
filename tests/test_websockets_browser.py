"""A real browser: headless Chromium opens a WebSocket from a page served by cyasgi and echoes.

The page reports its result back over HTTP (``POST /result``), so the test waits on an event set by
the server instead of scraping the browser's output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.utils import WAIT, make_config, run_server
from tests.ws_utils import echo_app

#: Starting a browser on a loaded 2-core machine is slow: a wider bound than other waits.
BROWSER_WAIT = WAIT * 6

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>cyasgi ws</title></head><body>
<script>
const report = (text) => fetch("/result", {method: "POST", body: text});
const ws = new WebSocket(`ws://${location.host}/echo`);
const big = "compressible ".repeat(5000);
let step = 0;
ws.onopen = () => ws.send("hello from chromium");
ws.onmessage = (event) => {
  step += 1;
  if (step === 1) { window.first = event.data; ws.send(big); return; }
  const ok = event.data === big;
  report(window.first + "|" + (ok ? "big ok" : "big mismatch") + "|" + ws.extensions).then(() => ws.close(1000, "bye"));
};
ws.onerror = () => report("websocket error");
</script></body></html>
"""


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        try:
            subprocess.run(
                ["apt-get", "install", "-y", "-q", "chromium"],
                env=env,
                capture_output=True,
                timeout=900,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            pass
        path = shutil.which("chromium")
        if path:
            return path
    pytest.skip("chromium is not installed and `apt-get install -y chromium` could not install it")


@pytest.fixture
def chromium() -> str:
    return find_chromium()


def browser_app(results: list[str], done: threading.Event, scopes: list[dict[str, Any]]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            scopes.append(scope)
            await echo_app(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"] == "/result":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            results.append(body.decode())
            done.set()
            status, content = 204, b""
            headers = []
        elif scope["path"] == "/":
            status, content = 200, PAGE
            headers = [(b"content-type", b"text/html; charset=utf-8")]
        else:
            status, content = 404, b""
            headers = []
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    return app


def start_browser(chromium: str, url: str, profile: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
def profile_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="cyasgi-chromium-") as path:
        yield path


@pytest.mark.parametrize("ws", ["websockets-sansio", "wsproto"])
def test_chromium_echo(chromium: str, profile_dir: str, ws: str) -> None:
    results: list[str] = []
    scopes: list[dict[str, Any]] = []
    done = threading.Event()
    with run_server(make_config(browser_app(results, done, scopes), ws=ws)) as server:
        origin = f"http://127.0.0.1:{server.port}"
        browser = start_browser(chromium, origin + "/", profile_dir)
        try:
            assert done.wait(BROWSER_WAIT), "the page never reported back"
        finally:
            browser.terminate()
            try:
                browser.wait(WAIT)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait(WAIT)
    first, big, extensions = results[0].split("|")
    assert first == "hello from chromium"
    assert big == "big ok"
    assert "permessage-deflate" in extensions  # Chromium offers it; cyasgi negotiates it
    headers = dict(scopes[0]["headers"])
    assert b"Chrome" in headers[b"user-agent"]
    assert headers[b"origin"] == origin.encode()
