"""HTTP/2 settings in Config: --http2, the tunables the HTTP/2 protocol reads, ``--http zttp``, and the
TLS context --http2 needs (ALPN h2, TLS 1.2 or newer), checked by real handshakes with trustme
certificates against a dummy peer (the HTTP/2 protocol itself is not involved)."""

from __future__ import annotations

import socket
import ssl
import threading
import warnings
from typing import Any, Callable

import pytest
import trustme

from cyasgi import config as config_module
from cyasgi.config import Config, ConfigError
from tests import apps
from tests.utils import WAIT, make_config

#: Every HTTP/2 attribute of Config with its default: the names cyasgi.protocols.http2 reads.
HTTP2_DEFAULTS: dict[str, Any] = {
    "http2": False,
    "http2_max_concurrent_streams": 100,
    "http2_initial_stream_window_size": 262144,
    "http2_initial_connection_window_size": 1048576,
    "http2_max_frame_size": 16384,
    "http2_max_header_list_size": 65536,
    "http2_keep_alive_interval": None,
    "http2_keep_alive_timeout": 20.0,
    "http2_stall_timeout": 60.0,
    "http2_max_rapid_resets": 100,
    "http2_max_empty_data_frames": 100,
    "http2_max_control_frames": 1000,
    "http2_max_stream_errors": 1000,
}


def test_http2_defaults():
    config = make_config(apps.hello)
    for name, default in HTTP2_DEFAULTS.items():
        assert getattr(config, name) == default, name
        if name != "http2":  # the constants in config.py are the one place the defaults live
            assert getattr(config_module, "DEFAULT_" + name.upper()) == default, name


def test_http2_settings_are_stored_as_given():
    given = {
        "http2": True,
        "http2_max_concurrent_streams": 1,
        "http2_initial_stream_window_size": 2**31 - 1,
        "http2_initial_connection_window_size": 65535,
        "http2_max_frame_size": 16777215,
        "http2_max_header_list_size": 1,
        "http2_keep_alive_interval": 0.5,
        "http2_keep_alive_timeout": 3,
        "http2_stall_timeout": 0.25,
        "http2_max_rapid_resets": 1,
        "http2_max_empty_data_frames": 2,
        "http2_max_control_frames": 3,
        "http2_max_stream_errors": 4,
    }
    config = make_config(apps.hello, **given)
    for name, value in given.items():
        assert getattr(config, name) == value, name


def test_keep_alive_interval_zero_is_off():
    assert make_config(apps.hello, http2_keep_alive_interval=0).http2_keep_alive_interval is None
    assert make_config(apps.hello, http2_keep_alive_interval=None).http2_keep_alive_interval is None


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("http2_max_concurrent_streams", 0, "--http2-max-concurrent-streams must be at least 1, not 0."),
        ("http2_max_concurrent_streams", 1.5, "--http2-max-concurrent-streams must be a whole number, not 1.5."),
        ("http2_max_concurrent_streams", True, "--http2-max-concurrent-streams must be a whole number, not True."),
        ("http2_max_concurrent_streams", "10", "--http2-max-concurrent-streams must be a whole number, not '10'."),
        (
            "http2_initial_stream_window_size",
            0,
            "--http2-initial-stream-window-size must be between 1 and 2147483647, not 0.",
        ),
        (
            "http2_initial_stream_window_size",
            2**31,
            "--http2-initial-stream-window-size must be between 1 and 2147483647, not 2147483648.",
        ),
        (
            "http2_initial_connection_window_size",
            65534,
            "--http2-initial-connection-window-size must be between 65535 and 2147483647, not 65534.",
        ),
        (
            "http2_initial_connection_window_size",
            2**31,
            "--http2-initial-connection-window-size must be between 65535 and 2147483647, not 2147483648.",
        ),
        ("http2_max_frame_size", 16383, "--http2-max-frame-size must be between 16384 and 16777215, not 16383."),
        ("http2_max_frame_size", 2**24, "--http2-max-frame-size must be between 16384 and 16777215, not 16777216."),
        ("http2_max_header_list_size", 0, "--http2-max-header-list-size must be at least 1, not 0."),
        ("http2_max_rapid_resets", 0, "--http2-max-rapid-resets must be at least 1, not 0."),
        ("http2_max_empty_data_frames", -1, "--http2-max-empty-data-frames must be at least 1, not -1."),
        ("http2_max_control_frames", 0, "--http2-max-control-frames must be at least 1, not 0."),
        ("http2_max_stream_errors", None, "--http2-max-stream-errors must be a whole number, not None."),
        (
            "http2_keep_alive_interval",
            -1.0,
            "--http2-keep-alive-interval must be a positive number of seconds (0 turns it off), not -1.0.",
        ),
        ("http2_keep_alive_timeout", 0, "--http2-keep-alive-timeout must be a positive number of seconds, not 0."),
        (
            "http2_keep_alive_timeout",
            None,
            "--http2-keep-alive-timeout must be a number of seconds, not None.",
        ),
        (
            "http2_stall_timeout",
            float("inf"),
            "--http2-stall-timeout must be a positive number of seconds, not inf.",
        ),
        ("http2_stall_timeout", float("nan"), "--http2-stall-timeout must be a positive number of seconds, not nan."),
        ("http2_stall_timeout", "60", "--http2-stall-timeout must be a number of seconds, not '60'."),
    ],
)
def test_bad_http2_settings_are_config_errors(name, value, message):
    with pytest.raises(ConfigError) as info:
        make_config(apps.hello, **{name: value})
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)  # what a uvicorn-style `except ValueError` catches


def test_bad_http2_settings_are_refused_even_without_http2():
    """A typo in a tunable is found when the setting is written, not on the day --http2 is turned on."""
    with pytest.raises(ConfigError, match="--http2-max-frame-size"):
        make_config(apps.hello, http2=False, http2_max_frame_size=1024)


def test_http2_loads_without_tls():
    config = make_config(apps.hello, http2=True)
    config.load()
    assert config.loaded and config.http2 is True and config.ssl is None


@pytest.mark.parametrize("http2", [False, True])
def test_http_zttp_is_auto(http2):
    """uvicorn 0.54 command lines say --http zttp: it is cyasgi's own HTTP/1.1 protocol, as auto picks it."""
    auto = make_config(apps.hello, http="auto")
    auto.load()
    zttp = make_config(apps.hello, http="zttp", http2=http2)
    zttp.load()
    assert zttp.http_protocol_class is auto.http_protocol_class
    assert zttp.http_parser_factory is auto.http_parser_factory is None
    assert zttp.http2 is http2


# TLS: what the context --http2 builds does in a real handshake --------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("h2-pki")
    cert = ca.issue_cert("localhost")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert.cert_chain_pems[0].write_to_path(cert_path)
    for blob in cert.cert_chain_pems[1:]:
        blob.write_to_path(cert_path, append=True)
    cert.private_key_pem.write_to_path(key_path)
    return {"ssl_certfile": str(cert_path), "ssl_keyfile": str(key_path)}


def handshake(
    server_context: ssl.SSLContext,
    ca: trustme.CA,
    offer: list[str] | None,
    maximum_version: ssl.TLSVersion | None = None,
) -> tuple[str | None, str | None]:
    """A TLS handshake over a socket pair; the client offers ``offer`` by ALPN. Returns what the client
    sees: (selected ALPN protocol, TLS version)."""
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    if offer is not None:
        client_context.set_alpn_protocols(offer)
    if maximum_version is not None:
        client_context.maximum_version = maximum_version
    server_sock, client_sock = socket.socketpair()
    server_sock.settimeout(WAIT)
    client_sock.settimeout(WAIT)
    server_errors: list[BaseException] = []

    def serve() -> None:  # the dummy server: handshake, then nothing
        try:
            with server_context.wrap_socket(server_sock, server_side=True):
                pass
        except (OSError, ssl.SSLError) as exc:
            server_errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_context.wrap_socket(client_sock, server_hostname="localhost") as tls:
            result = (tls.selected_alpn_protocol(), tls.version())
    finally:
        thread.join(WAIT)
    assert not server_errors, server_errors
    return result


def tls_context(**settings: Any) -> ssl.SSLContext:
    config = make_config(apps.hello, **settings)
    config.load()
    assert config.ssl is not None
    return config.ssl


def test_http2_tls_offers_h2_then_http11_by_alpn(ca, server_files):
    context = tls_context(http2=True, **server_files)
    assert handshake(context, ca, ["h2", "http/1.1"])[0] == "h2"
    assert handshake(context, ca, ["http/1.1", "h2"])[0] == "h2"  # the server's preference wins
    assert handshake(context, ca, ["http/1.1"])[0] == "http/1.1"  # an HTTP/1.1-only client
    assert handshake(context, ca, None)[0] is None  # no ALPN at all: HTTP/1.1, as before


def test_http2_tls_is_tls_12_or_newer(ca, server_files):
    context = tls_context(http2=True, **server_files)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert handshake(context, ca, ["h2"], maximum_version=ssl.TLSVersion.TLSv1_2) == ("h2", "TLSv1.2")


def test_without_http2_tls_is_as_before(ca, server_files):
    """HTTP/1.1 over TLS is unchanged: no ALPN is offered (a client asking for h2 gets no protocol)."""
    context = tls_context(**server_files)
    assert handshake(context, ca, ["h2", "http/1.1"])[0] is None


def test_http2_sets_alpn_and_tls_12_on_the_factorys_context(ca, server_files):
    def factory(config: Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(server_files["ssl_certfile"], server_files["ssl_keyfile"])
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED  # what a user may leave: raised for h2
        return context

    context = tls_context(http2=True, ssl_context_factory=factory)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert handshake(context, ca, ["h2", "http/1.1"])[0] == "h2"


def test_http2_keeps_a_factorys_higher_minimum_version(ca, server_files):
    def factory(config: Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        context = default()
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        return context

    context = tls_context(http2=True, ssl_context_factory=factory, **server_files)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert handshake(context, ca, ["h2", "http/1.1"]) == ("h2", "TLSv1.3")


def test_http2_refuses_an_ssl_version_older_than_tls_12(server_files):
    old = getattr(ssl, "PROTOCOL_TLSv1", None)
    if old is None:
        pytest.skip("this ssl module has no PROTOCOL_TLSv1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ssl.SSLContext(PROTOCOL_TLSv1) is deprecated
        with pytest.raises(ConfigError, match="--http2 needs TLS 1.2 or newer"):
            tls_context(http2=True, ssl_version=old, **server_files)
        # Without --http2 the old setting is left as uvicorn leaves it.
        assert tls_context(ssl_version=old, **server_files).protocol == old
