"""Headless Chromium over TLS with ALPN h2: a page, a fetch and an EventSource, all on one HTTP/2
connection (the page reports the protocol the browser used and the app sees the close of the stream);
and a WebSocket the browser opens on that connection as an extended CONNECT (RFC 8441)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import trustme

from tests.http2.h2util import h2_config, until
from tests.utils import read_body, run_server

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>cyasgi h2</title></head><body>
<script>
const report = (text) => fetch("/result", {method: "POST", body: text});
const source = new EventSource("/events");
source.onmessage = (event) => {
  source.close();
  const protocol = performance.getEntriesByType("navigation")[0].nextHopProtocol;
  report(protocol + " " + event.data);
};
source.onerror = () => report("error");
</script></body></html>
"""

WEBSOCKET_PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>cyasgi h2 websocket</title></head><body>
<script>
const report = (text) => fetch("/result", {method: "POST", body: text});
fetch("/warm").then(() => {
  const socket = new WebSocket("wss://" + location.host + "/ws");
  socket.onopen = () => socket.send("ping");
  socket.onmessage = (event) => { socket.close(1000); report("message " + event.data); };
  socket.onerror = () => report("error");
});
</script></body></html>
"""


class Page:
    """The app's side of a page test: the page, and the text the page posts to /result."""

    def __init__(self, page: bytes) -> None:
        self.page = page
        self.reports: list[str] = []
        self.finished = threading.Event()

    async def serve(self, scope: dict, receive: Any, send: Any) -> None:
        """Answer an HTTP request: /result takes the report, anything else gets the page."""
        if scope["path"] == "/result":
            body = await read_body(receive)
            self.reports.append(body.decode())
            self.finished.set()
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:
            html = [(b"content-type", b"text/html")]
            await send({"type": "http.response.start", "status": 200, "headers": html})
            await send({"type": "http.response.body", "body": self.page if scope["path"] == "/" else b"ok"})


@contextlib.contextmanager
def browsing_over_h2(app: Any, twin: Any, tmp_path: Any) -> Iterator[float]:
    """The app served with --http2 over TLS (a trustme certificate), Chromium on its page; yields how
    long to wait for the browser."""
    from tests.browser import BROWSER_WAIT, browsing, find_chromium

    chromium = find_chromium()
    cert = trustme.CA().issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "cert.pem"))
    config = h2_config(app, twin, ssl_certfile=str(tmp_path / "cert.pem"))
    with run_server(config) as server:
        with browsing(chromium, f"https://127.0.0.1:{server.port}/", "--ignore-certificate-errors"):
            yield BROWSER_WAIT


def test_chromium_loads_a_page_and_an_event_stream_over_alpn_h2(twin, tmp_path):
    page = Page(PAGE)
    versions: dict[str, str] = {}
    heard: list[str] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        versions[scope["path"]] = scope["http_version"]
        if scope["path"] == "/events":
            event_stream = [(b"content-type", b"text/event-stream")]
            await send({"type": "http.response.start", "status": 200, "headers": event_stream})
            await send({"type": "http.response.body", "body": b"data: hello\n\n", "more_body": True})
            await receive()  # the (empty) request
            heard.append((await receive())["type"])  # until the page closes the EventSource
        else:
            await page.serve(scope, receive, send)

    with browsing_over_h2(app, twin, tmp_path) as wait:
        assert page.finished.wait(wait), f"the page reported {page.reports}"
        assert page.reports == ["h2 hello"]
        assert set(versions.values()) == {"2"}  # the page, the stream, the fetch (and a favicon, maybe)
        assert {"/", "/events", "/result"} <= set(versions)
        until(lambda: heard == ["http.disconnect"], timeout=wait)  # the page closed the EventSource


def test_chromium_opens_a_websocket_over_the_h2_connection(twin, tmp_path):
    """With SETTINGS_ENABLE_CONNECT_PROTOCOL the browser sends its WebSocket as an extended CONNECT on
    the HTTP/2 connection it already has: the app's scope says ``http_version "2"``."""
    page = Page(WEBSOCKET_PAGE)
    websocket: dict = {}
    closed = threading.Event()

    async def app(scope, receive, send):
        if scope["type"] == "websocket":
            websocket["http_version"] = scope["http_version"]
            websocket["scheme"] = scope["scheme"]
            await receive()
            await send({"type": "websocket.accept"})
            message = await receive()
            await send({"type": "websocket.send", "text": "pong " + message["text"]})
            websocket["end"] = await receive()
            closed.set()
        elif scope["type"] == "http":
            await page.serve(scope, receive, send)

    with browsing_over_h2(app, twin, tmp_path) as wait:
        assert page.finished.wait(wait), f"the page reported {page.reports}"
        assert page.reports == ["message pong ping"]
        assert (websocket["http_version"], websocket["scheme"]) == ("2", "wss")
        assert closed.wait(wait)
        assert websocket["end"] == {"type": "websocket.disconnect", "code": 1000, "reason": ""}
