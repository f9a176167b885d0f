"""TLS: every ``--ssl-*`` setting and the ``ssl_context_factory`` hook, with certificates from trustme."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cyasgi.config import Config, ConfigError
from cyasgi.protocols.tls import rfc4514_name
from tests import apps
from tests.utils import WAIT, make_config, recv_responses, run_server


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def pki(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Files for a server certificate (plain, password-protected and combined key) and a client one."""
    folder = tmp_path_factory.mktemp("pki")
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client@example.com")
    paths = {name: folder / name for name in ("ca.pem", "cert.pem", "key.pem", "key-encrypted.pem", "combined.pem")}
    ca.cert_pem.write_to_path(paths["ca.pem"])
    server.cert_chain_pems[0].write_to_path(paths["cert.pem"])
    for blob in server.cert_chain_pems[1:]:
        blob.write_to_path(paths["cert.pem"], append=True)
    server.private_key_pem.write_to_path(paths["key.pem"])
    key = serialization.load_pem_private_key(server.private_key_pem.bytes(), password=None)
    paths["key-encrypted.pem"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    server.private_key_and_cert_chain_pem.write_to_path(paths["combined.pem"])
    return {"paths": {name: str(path) for name, path in paths.items()}, "client": client}


def client_context(ca: trustme.CA, client_cert: trustme.LeafCert | None = None, **kwargs: Any) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if client_cert is not None:
        client_cert.configure_cert(context)
    for name, value in kwargs.items():
        setattr(context, name, value)
    return context


def tls_config(twin: Any, pki: dict[str, Any], **kwargs: Any) -> Config:
    paths = pki["paths"]
    kwargs.setdefault("ssl_certfile", paths["cert.pem"])
    kwargs.setdefault("ssl_keyfile", paths["key.pem"])
    return make_config(apps.echo, twin, **kwargs)


def test_https_end_to_end(twin, ca, pki, caplog):
    caplog.set_level(logging.INFO)
    with run_server(tls_config(twin, pki)) as server:
        assert server.url.startswith("https://127.0.0.1:")
        response = httpx.get(server.url + "/secure", verify=client_context(ca), timeout=WAIT)
        port = server.port
    assert response.status_code == 200
    assert response.json()["scheme"] == "https"
    assert f"cyasgi running on https://127.0.0.1:{port} (Press CTRL+C to quit)" in caplog.messages


@pytest.mark.parametrize("variant", ["encrypted key", "combined file"])
def test_keyfile_password_and_combined_file(twin, ca, pki, variant):
    paths = pki["paths"]
    if variant == "encrypted key":
        config = tls_config(twin, pki, ssl_keyfile=paths["key-encrypted.pem"], ssl_keyfile_password="s3cret")
    else:
        config = tls_config(twin, pki, ssl_certfile=paths["combined.pem"], ssl_keyfile=None)
    with run_server(config) as server:
        assert httpx.get(server.url, verify=client_context(ca), timeout=WAIT).status_code == 200


# ``kind``: the built-in type uvicorn lets out for the same mistake (ssl.SSLError is an OSError);
# cyasgi's one-line ConfigError is an instance of it too.
@pytest.mark.parametrize(
    ("overrides", "message", "kind"),
    [
        ({"ssl_keyfile": "key-encrypted.pem", "ssl_keyfile_password": "wrong"}, "Could not set up TLS from ", OSError),
        ({"ssl_keyfile": "key-encrypted.pem"}, "Could not set up TLS from ", OSError),
        (
            {"ssl_certfile": "/nonexistent/cert.pem"},
            "Could not set up TLS from /nonexistent/cert.pem",
            FileNotFoundError,
        ),
        ({"ssl_ca_certs": "/nonexistent/ca.pem"}, "/nonexistent/ca.pem", FileNotFoundError),
        ({"ssl_ciphers": "NO-SUCH-CIPHER"}, "Could not set up TLS from ", OSError),
        ({"ssl_version": 99}, "Could not set up TLS from ", ValueError),
        ({"ssl_certfile": None}, "--ssl-keyfile needs --ssl-certfile", ValueError),
    ],
)
def test_bad_tls_settings_are_config_errors(twin, pki, overrides, message, kind):
    paths = pki["paths"]
    overrides = {key: paths.get(value, value) if isinstance(value, str) else value for key, value in overrides.items()}
    if overrides.get("ssl_keyfile") == paths["key-encrypted.pem"] and "ssl_keyfile_password" not in overrides:
        overrides["ssl_keyfile_password"] = None
    config = tls_config(twin, pki, **overrides)
    with pytest.raises(ConfigError) as info:
        config.load()
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, kind)


def test_ssl_version_reaches_the_context(twin, pki):
    config = tls_config(twin, pki)
    config.load()
    assert config.ssl is not None
    assert config.ssl.protocol == ssl.PROTOCOL_TLS_SERVER
    assert config.ssl.verify_mode == ssl.CERT_NONE


def test_ssl_ciphers(twin, ca, pki):
    cipher = "ECDHE-ECDSA-AES128-GCM-SHA256"  # trustme issues ECDSA keys
    with run_server(tls_config(twin, pki, ssl_ciphers=cipher)) as server:
        # TLS 1.3 suites are not chosen by set_ciphers(); pin TLS 1.2 to see the setting.
        context = client_context(ca, maximum_version=ssl.TLSVersion.TLSv1_2)
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            negotiated = tls.cipher()
    assert negotiated is not None and negotiated[0] == cipher


def test_client_certificate_required(twin, ca, pki):
    config = tls_config(twin, pki, ssl_cert_reqs=ssl.CERT_REQUIRED, ssl_ca_certs=pki["paths"]["ca.pem"])
    with run_server(config) as server:
        with pytest.raises((httpx.HTTPError, ssl.SSLError, OSError)):
            httpx.get(server.url, verify=client_context(ca), timeout=WAIT)
        response = httpx.get(server.url, verify=client_context(ca, pki["client"]), timeout=WAIT)
    assert response.status_code == 200


def test_ssl_context_factory_wraps_the_default(twin, ca, pki):
    seen: list[Any] = []

    def factory(config: Config, default_factory: Any) -> ssl.SSLContext:
        context = default_factory()
        seen.append((config, context))
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        return context

    config = tls_config(twin, pki, ssl_context_factory=factory)
    with run_server(config) as server:
        response = httpx.get(server.url, verify=client_context(ca), timeout=WAIT)
        too_old = client_context(ca, maximum_version=ssl.TLSVersion.TLSv1_2)
        with pytest.raises((httpx.HTTPError, ssl.SSLError, OSError)):
            httpx.get(server.url, verify=too_old, timeout=WAIT)
    assert response.status_code == 200
    [(passed_config, context)] = seen
    assert passed_config is config and config.ssl is context


def factory_without_files(paths: dict[str, str]) -> Any:
    """An ssl_context_factory that builds its own context, never calling the default one."""

    def factory(config: Config, default_factory: Any) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(paths["cert.pem"], paths["key.pem"])
        return context

    return factory


def test_ssl_context_factory_without_files(twin, ca, pki):
    factory = factory_without_files(pki["paths"])
    config = make_config(apps.echo, twin, ssl_context_factory=factory)
    assert config.is_ssl
    with run_server(config) as server:
        assert httpx.get(server.url, verify=client_context(ca), timeout=WAIT).json()["scheme"] == "https"


def test_ssl_context_factory_errors(twin):
    def returns_nothing(config: Config, default_factory: Any) -> Any:
        return None

    def uses_default_without_cert(config: Config, default_factory: Any) -> Any:
        return default_factory()

    # uvicorn's types and meaning: a TypeError for what the factory returned, a RuntimeError for
    # calling the default factory without the file it needs.
    with pytest.raises(TypeError, match="must return an `ssl.SSLContext`, got NoneType") as returned:
        make_config(apps.echo, twin, ssl_context_factory=returns_nothing).load()
    with pytest.raises(RuntimeError, match="requires `ssl_certfile`") as called:
        make_config(apps.echo, twin, ssl_context_factory=uses_default_without_cert).load()
    assert isinstance(returned.value, ConfigError) and isinstance(called.value, ConfigError)


def test_create_ssl_context_takes_uvicorns_keywords_and_alpn(ca, pki):
    """An ssl_context_factory written for uvicorn may build its context with create_ssl_context."""
    from cyasgi.config import create_ssl_context

    paths = pki["paths"]
    server_context = create_ssl_context(
        certfile=paths["cert.pem"],
        keyfile=paths["key.pem"],
        password=None,
        ssl_version=ssl.PROTOCOL_TLS_SERVER,
        cert_reqs=ssl.CERT_NONE,
        ca_certs=None,
        ciphers=None,
        alpn_protocols=["http/1.1"],
    )
    client_context_ = client_context(ca)
    client_context_.set_alpn_protocols(["h2", "http/1.1"])
    # A handshake in memory: each side's outgoing bytes are the other's incoming ones.
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context_.wrap_bio(client_in, client_out, server_hostname="localhost")
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(10):  # TLS 1.3 needs two round trips; a bound, not a wait
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if client.selected_alpn_protocol() and server.selected_alpn_protocol():
            break
    assert server.selected_alpn_protocol() == client.selected_alpn_protocol() == "http/1.1"


def test_pki_files_exist(pki):
    assert all(Path(path).stat().st_size > 0 for path in pki["paths"].values())


# The ASGI TLS extension: scope["extensions"]["tls"] --------------------------------------------------


async def report_tls(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the scope's tls extension as JSON (``"absent"`` on a plain connection)."""
    tls = scope["extensions"].get("tls", "absent")
    if tls != "absent":
        tls = dict(tls, client_cert_chain=list(tls["client_cert_chain"]))
    body = json.dumps(tls).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def get_over_tls(port: int, context: ssl.SSLContext, requests: int = 1) -> tuple[list[Any], tuple[str, str, int], str]:
    """``requests`` GETs on one TLS connection: the answers, the negotiated cipher and version."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * requests)
        responses = recv_responses(tls, requests)
        cipher, version = tls.cipher(), tls.version()
    return [json.loads(response.body) for response in responses], cipher, version


def iana_number(cipher_name: str) -> int:
    for entry in ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).get_ciphers():
        if entry["name"] == cipher_name:
            return int(entry["id"]) & 0xFFFF
    raise AssertionError(f"{cipher_name} unknown")


def test_tls_extension_with_a_client_certificate(twin, ca, pki):
    config = tls_config(twin, pki, ssl_cert_reqs=ssl.CERT_REQUIRED, ssl_ca_certs=pki["paths"]["ca.pem"])
    config.app = report_tls
    with run_server(config) as server:
        (first, second), cipher, version = get_over_tls(server.port, client_context(ca, pki["client"]), requests=2)
    client_pem = pki["client"].cert_chain_pems[0].bytes().decode()
    client_cert = x509.load_pem_x509_certificate(client_pem.encode())
    server_pem = Path(pki["paths"]["cert.pem"]).read_text()
    assert first == second  # computed once per connection, a copy per request
    assert first["tls_version"] == {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}[version]
    assert first["cipher_suite"] == iana_number(cipher[0])
    assert first["server_cert"] == ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(server_pem))
    chain = first["client_cert_chain"]
    assert ssl.PEM_cert_to_DER_cert(chain[0]) == ssl.PEM_cert_to_DER_cert(client_pem)
    if sys.version_info >= (3, 13):  # get_verified_chain(): the certificate, then up to the trusted CA
        assert ssl.PEM_cert_to_DER_cert(chain[-1]) == ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode())
    else:
        assert len(chain) == 1
    assert first["client_cert_name"] == client_cert.subject.rfc4514_string()
    assert first["client_cert_error"] is None


def test_tls_extension_without_a_client_certificate_on_tls_1_2(twin, ca, pki):
    config = tls_config(twin, pki, ssl_ciphers="ECDHE-ECDSA-AES128-GCM-SHA256", ssl_cert_reqs=ssl.CERT_OPTIONAL,
                        ssl_ca_certs=pki["paths"]["ca.pem"])
    config.app = report_tls
    with run_server(config) as server:
        [info], cipher, version = get_over_tls(
            server.port, client_context(ca, maximum_version=ssl.TLSVersion.TLSv1_2)
        )
    assert version == "TLSv1.2" and cipher[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"
    assert info["tls_version"] == 0x0303
    assert info["cipher_suite"] == 0xC02B  # RFC 5289's TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    assert info["client_cert_chain"] == [] and info["client_cert_name"] is None
    assert info["server_cert"].startswith("-----BEGIN CERTIFICATE-----\n")


def test_tls_extension_server_cert_without_a_certfile(twin, ca, pki):
    factory = factory_without_files(pki["paths"])
    with run_server(make_config(report_tls, twin, ssl_context_factory=factory)) as server:
        [info], _cipher, _version = get_over_tls(server.port, client_context(ca))
    assert info["server_cert"] is None  # the context came from code: no file to read it from
    assert info["tls_version"] in (0x0303, 0x0304) and isinstance(info["cipher_suite"], int)


def test_no_tls_extension_on_plain_http(twin):
    with run_server(make_config(report_tls, twin)) as server:
        response = httpx.get(f"http://127.0.0.1:{server.port}/", timeout=WAIT)
    assert response.json() == "absent"


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ((((("commonName", "alice"),),)), "CN=alice"),
        (
            ((("countryName", "FR"),), (("organizationName", "A, B+C"),), (("commonName", " #x "),)),
            "CN=\\ #x\\ ,O=A\\, B\\+C,C=FR",
        ),
        (((("organizationalUnitName", "a"), ("commonName", "b")),), "OU=a+CN=b"),
        (((("emailAddress", "x@example.com"),),), "emailAddress=x@example.com"),
        (((("commonName", '#"<>;\\'),),), 'CN=\\#\\"\\<\\>\\;\\\\'),
    ],
)
def test_rfc4514_names(subject, expected):
    assert rfc4514_name(subject) == expected
