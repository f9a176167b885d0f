"""Real HTTP/2 clients against a real server (both twins): curl (h2c with prior knowledge, and TLS with
ALPN h2), nghttp and h2load (Debian's nghttp2-client), httpx with its h2 transport, and the h2 library
over TLS."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
from typing import Any

import httpx
import pytest
import trustme

from tests.conftest import load_twin
from tests.http2.h2util import AppState, H2Client, h2_config, make_app, status
from tests.utils import WAIT, run_server

#: Each external client gets this long at most (it is a few hundred ms when all is well).
CLIENT_TIMEOUT = 30

needs_nghttp = pytest.mark.skipif(
    shutil.which("nghttp") is None, reason="nghttp is not installed (apt-get install nghttp2-client)"
)
needs_h2load = pytest.mark.skipif(
    shutil.which("h2load") is None, reason="h2load is not installed (apt-get install nghttp2-client)"
)
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def pki(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("h2pki")
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    paths = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    ca.cert_pem.write_to_path(paths["ca"])
    leaf.cert_chain_pems[0].write_to_path(paths["cert"])
    for blob in leaf.cert_chain_pems[1:]:
        blob.write_to_path(paths["cert"], append=True)
    leaf.private_key_pem.write_to_path(paths["key"])
    return {name: str(path) for name, path in paths.items()}


@pytest.fixture(scope="module", params=["c", "py"])
def tls_server(request: pytest.FixtureRequest, shared_state: AppState, pki: dict[str, str]) -> Any:
    twin = load_twin(request.param)
    config = h2_config(make_app(shared_state), twin, ssl_certfile=pki["cert"], ssl_keyfile=pki["key"])
    with run_server(config) as running:
        yield running


def run(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, timeout=CLIENT_TIMEOUT, input=input, check=False)


# curl ------------------------------------------------------------------------------------------


@needs_curl
def test_curl_prior_knowledge(server):
    result = run(
        "curl",
        "-sS",
        "--http2-prior-knowledge",
        "-w",
        "\n%{http_version} %{http_code}",
        server.url + "/hello",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"Hello, world!\n2 200"


@needs_curl
def test_curl_prior_knowledge_upload(server, tmp_path):
    payload = tmp_path / "payload.bin"
    payload.write_bytes(bytes(range(256)) * 2048)
    result = run(
        "curl", "-sS", "--http2-prior-knowledge", "--data-binary", f"@{payload}", "-o", str(tmp_path / "out"),
        "-w", "%{http_version} %{http_code}", server.url + "/echo",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"2 200"
    assert (tmp_path / "out").read_bytes() == payload.read_bytes()


@needs_curl
def test_curl_over_tls_negotiates_h2(tls_server, pki):
    result = run(
        "curl", "-sS", "--http2", "--cacert", pki["ca"], "-w", "\n%{http_version} %{http_code}",
        tls_server.url.replace("127.0.0.1", "localhost") + "/scope",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    body, _, tail = result.stdout.rpartition(b"\n")
    assert tail == b"2 200"
    info = json.loads(body)
    assert info["http_version"] == "2"
    assert info["scheme"] == "https"
    assert info["tls"] is True
    assert "tls" in info["extensions"]


@needs_curl
def test_curl_over_tls_http11_still_works(tls_server, pki):
    result = run(
        "curl", "-sS", "--http1.1", "--cacert", pki["ca"], "-w", "\n%{http_version} %{http_code}",
        tls_server.url.replace("127.0.0.1", "localhost") + "/scope",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    body, _, tail = result.stdout.rpartition(b"\n")
    assert tail == b"1.1 200"
    assert json.loads(body)["http_version"] == "1.1"


# nghttp2-client ----------------------------------------------------------------------------------


@needs_nghttp
def test_nghttp(server):
    result = run("nghttp", "-n", "-s", server.url + "/hello", server.url + "/stream")
    assert result.returncode == 0, result.stdout + result.stderr
    # -s prints one statistics row per request: both completed with 200.
    rows = [line for line in result.stdout.decode().splitlines() if "/hello" in line or "/stream" in line]
    assert len(rows) == 2 and all(" 200 " in row for row in rows), result.stdout


@needs_nghttp
def test_nghttp_body_and_upload(server, tmp_path):
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"n" * 100000)
    result = run("nghttp", "-d", str(payload), server.url + "/echo")
    assert result.returncode == 0, result.stderr
    assert result.stdout == payload.read_bytes()


@needs_nghttp
def test_nghttp_over_tls(tls_server):
    # nghttp does not check certificates: this is about ALPN h2 and the frames over TLS.
    result = run("nghttp", "-v", tls_server.url + "/hello")
    assert result.returncode == 0, result.stderr
    assert b"Hello, world!" in result.stdout
    assert b"The negotiated protocol: h2" in result.stdout


@needs_h2load
def test_h2load_many_streams(server):
    result = run("h2load", "-n", "2000", "-c", "4", "-m", "10", server.url + "/hello")
    output = result.stdout.decode()
    assert result.returncode == 0, output + result.stderr.decode()
    assert "2000 succeeded, 0 failed, 0 errored" in output, output
    assert "status codes: 2000 2xx" in output, output


@needs_h2load
def test_h2load_upload(server, tmp_path):
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"p" * 1024)
    result = run("h2load", "-n", "200", "-c", "2", "-m", "5", "-d", str(payload), server.url + "/echo")
    output = result.stdout.decode()
    assert result.returncode == 0, output
    assert "200 succeeded, 0 failed, 0 errored" in output, output
    assert "status codes: 200 2xx" in output, output


@needs_h2load
def test_h2load_over_tls(tls_server):
    result = run("h2load", "-n", "200", "-c", "2", "-m", "10", tls_server.url + "/hello")
    output = result.stdout.decode()
    assert result.returncode == 0, output
    assert "Application protocol: h2" in output, output
    assert "200 succeeded, 0 failed, 0 errored" in output, output


# httpx -------------------------------------------------------------------------------------------


def test_httpx_prior_knowledge(server):
    with httpx.Client(http1=False, http2=True, timeout=WAIT) as client:
        response = client.get(server.url + "/scope", params={"q": "1"})
        assert response.http_version == "HTTP/2"
        info = response.json()
        assert info["http_version"] == "2" and info["query_string"] == "q=1"
        body = bytes(range(256)) * 1024
        echoed = client.post(server.url + "/echo", content=body)
        assert echoed.http_version == "HTTP/2" and echoed.content == body
        streamed = client.get(server.url + "/stream")
        assert streamed.content == b"chunk0;chunk1;chunk2;chunk3;chunk4;"


def test_httpx_over_tls(tls_server, pki):
    context = ssl.create_default_context(cafile=pki["ca"])
    transport = httpx.HTTPTransport(http2=True, verify=context)
    with httpx.Client(transport=transport, timeout=WAIT) as client:
        responses = [client.get(tls_server.url + "/scope") for _ in range(3)]
    for response in responses:
        assert response.http_version == "HTTP/2"
        assert response.json()["scheme"] == "https"
        assert response.json()["tls"] is True


def test_httpx_concurrent_streams(server):
    import asyncio

    async def main() -> list:
        async with httpx.AsyncClient(http1=False, http2=True, timeout=WAIT) as client:
            return await asyncio.gather(*(client.get(server.url + "/hello") for _ in range(50)))

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * 50
    assert {r.http_version for r in responses} == {"HTTP/2"}
    # One connection carried them all.
    assert len(server.server_state.connections) <= 1


# The h2 library over TLS -------------------------------------------------------------------------


def test_h2_library_over_tls(tls_server, pki):
    context = ssl.create_default_context(cafile=pki["ca"])
    context.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", tls_server.port), timeout=WAIT)
    sock = context.wrap_socket(raw, server_hostname="localhost")
    assert sock.selected_alpn_protocol() == "h2"
    client = H2Client(tls_server, sock=sock)
    response = client.get("/scope")
    assert status(response) == 200
    info = json.loads(response["body"])
    assert info["scheme"] == "https" and info["tls"] is True and info["http_version"] == "2"
    client.close()
