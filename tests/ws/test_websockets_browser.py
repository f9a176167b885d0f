"""A real browser: headless Chromium opens a WebSocket from a page served by cyasgi and echoes.

The page reports its result back over HTTP (``POST /result``), so the test waits on an event set by
the server instead of scraping the browser's output.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.browser import BROWSER_WAIT, browsing, find_chromium
from tests.utils import make_config, read_body, run_server
from tests.ws_utils import echo_app

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
            body = await read_body(receive)
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


@pytest.mark.parametrize("ws", ["websockets-sansio", "wsproto"])
def test_chromium_echo(chromium: str, ws: str) -> None:
    results: list[str] = []
    scopes: list[dict[str, Any]] = []
    done = threading.Event()
    with run_server(make_config(browser_app(results, done, scopes), ws=ws)) as server:
        origin = f"http://127.0.0.1:{server.port}"
        with browsing(chromium, origin + "/"):
            assert done.wait(BROWSER_WAIT), "the page never reported back"
    first, big, extensions = results[0].split("|")
    assert first == "hello from chromium"
    assert big == "big ok"
    assert "permessage-deflate" in extensions  # Chromium offers it; cyasgi negotiates it
    headers = dict(scopes[0]["headers"])
    assert b"Chrome" in headers[b"user-agent"]
    assert headers[b"origin"] == origin.encode()
