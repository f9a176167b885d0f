"""Headless Chromium over TLS with ALPN h2: a page, a fetch and an EventSource, all on one HTTP/2
connection; the page reports the protocol the browser used and the app sees the close of the stream."""

from __future__ import annotations

import threading

import trustme

from tests.http2.h2util import h2_config, until
from tests.utils import run_server

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


def test_chromium_loads_a_page_and_an_event_stream_over_alpn_h2(twin, tmp_path):
    from tests.browser import BROWSER_WAIT, browsing, find_chromium

    chromium = find_chromium()
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "cert.pem"))
    reports: list[str] = []
    versions: dict[str, str] = {}
    heard: list[str] = []
    finished = threading.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        versions[scope["path"]] = scope["http_version"]
        if scope["path"] == "/result":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            reports.append(body.decode())
            finished.set()
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        elif scope["path"] == "/events":
            event_stream = [(b"content-type", b"text/event-stream")]
            await send({"type": "http.response.start", "status": 200, "headers": event_stream})
            await send({"type": "http.response.body", "body": b"data: hello\n\n", "more_body": True})
            await receive()  # the (empty) request
            heard.append((await receive())["type"])  # until the page closes the EventSource
        else:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
            await send({"type": "http.response.body", "body": PAGE})

    config = h2_config(app, twin, ssl_certfile=str(tmp_path / "cert.pem"))
    with run_server(config) as server, browsing(
        chromium, f"https://127.0.0.1:{server.port}/", "--ignore-certificate-errors"
    ):
        assert finished.wait(BROWSER_WAIT), f"the page reported {reports}"
        assert reports == ["h2 hello"]
        assert set(versions.values()) == {"2"}  # the page, the stream, the fetch (and a favicon, maybe)
        assert {"/", "/events", "/result"} <= set(versions)
        until(lambda: heard == ["http.disconnect"], timeout=BROWSER_WAIT)  # the page closed the EventSource
