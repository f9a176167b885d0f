"""The two twins: the compiled one loads wherever it should, and both expose the same API."""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import socket
import subprocess
import sys
from typing import Any

import pytest

import cyasgi.protocols.http as selector
from cyasgi._compat import NO_EXTENSIONS
from tests.conftest import SPEEDUPS, load_twin
from tests.utils import MockTransport, make_protocol, make_state

EXPECT_COMPILED = not NO_EXTENSIONS and (SPEEDUPS / "http.pxd").exists()


@pytest.mark.skipif(not EXPECT_COMPILED, reason="the compiled twin is not expected here (pure mode or not CPython)")
def test_compiled_twin_is_the_one_loaded():
    # Fails when the build silently fell back to the pure twin (no compiler, broken build...).
    assert selector.IMPLEMENTATION == "compiled", "the compiled twin should have been built and loaded"
    assert selector.HttpProtocol.__module__ == "cyasgi._speedups.http"


def test_no_extensions_forces_the_pure_twin():
    env = dict(os.environ, CYASGI_NO_EXTENSIONS="1")
    out = subprocess.run(
        [sys.executable, "-c", "import cyasgi.protocols.http as h; print(h.IMPLEMENTATION, h.HttpProtocol.__module__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.split() == ["pure", "cyasgi.protocols.http.protocol"]


def test_version_names_the_twin_in_use():
    out = subprocess.run([sys.executable, "-m", "cyasgi", "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    expected = "compiled" if selector.IMPLEMENTATION == "compiled" else "pure"
    assert f"HTTP/1.1: {expected} twin" in out.stdout


def public_names(obj: object) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


@pytest.mark.skipif(not EXPECT_COMPILED, reason="needs the compiled twin")
@pytest.mark.parametrize("class_name", ["HttpProtocol", "RequestCycle", "FlowControl"])
def test_twins_have_the_same_public_methods_and_signatures(class_name):
    compiled = getattr(load_twin("c"), class_name)
    pure = getattr(load_twin("py"), class_name)
    methods = {name for name in public_names(pure) if callable(getattr(pure, name))}
    # asyncio.Protocol's inherited no-op methods are the only extras the pure twin may have.
    missing = {name for name in methods if not hasattr(compiled, name)} - {"buffer_updated", "get_buffer"}
    assert not missing, f"compiled {class_name} lacks {sorted(missing)}"
    pure_params = list(inspect.signature(pure.__init__).parameters)[1:]  # without self
    assert compiled_parameter_names(compiled) == pure_params


def compiled_parameter_names(cls: type) -> list[str]:
    """Constructor parameter names from the signature Cython embeds in a cdef class's docstring
    (``HttpProtocol(config: Any, ...) -> None``: the Python source's own signature)."""
    first_line = (cls.__doc__ or "").splitlines()[0]
    assert first_line.startswith(cls.__name__ + "("), f"no embedded signature: {cls.__doc__!r}"
    definition = ast.parse(f"def {first_line[: first_line.rindex(')') + 1]}: pass").body[0]
    assert isinstance(definition, ast.FunctionDef)
    return [arg.arg for arg in definition.args.args]


@pytest.mark.skipif(not EXPECT_COMPILED, reason="needs the compiled twin")
@pytest.mark.anyio
async def test_twins_have_the_same_public_attributes():
    async def app(scope, receive, send):  # pragma: no cover - never called
        pass

    compiled, _ = make_protocol(load_twin("c"), app)
    pure, _ = make_protocol(load_twin("py"), app)
    pure_attrs = {name for name in vars(pure) if not name.startswith("_")}
    missing = {name for name in pure_attrs if not hasattr(compiled, name)}
    assert not missing, f"compiled HttpProtocol lacks {sorted(missing)}"


def test_selector_exports():
    assert {"HttpProtocol", "RequestCycle", "FlowControl", "sweep_deadlines"} <= set(selector.__all__)
    assert selector.twin_name(selector.HttpProtocol) == selector.IMPLEMENTATION
    assert selector.twin_name(asyncio.Protocol) is None


@pytest.mark.parametrize(
    ("path", "parser_type"),
    [
        ("cyasgi.protocols.http.h11_impl:H11Protocol", "H11Parser"),
        ("cyasgi.protocols.http.httptools_impl:HttpToolsProtocol", "HttpRequestParser"),
        ("cyasgi.protocols.http.auto:AutoHTTPProtocol", None),
    ],
)
def test_uvicorn_module_paths_name_the_protocol_driving_that_parser(path, parser_type):
    """Code written for uvicorn names its protocol classes by module path; after s/uvicorn/cyasgi/
    each is the selected build of cyasgi's protocol with that parser (auto: the --http auto one)."""
    from cyasgi.config import Config
    from cyasgi.protocols.http.auto import twin_name

    if parser_type == "HttpRequestParser":
        pytest.importorskip("httptools")
    config = Config(app="tests.apps:hello", http=path)
    config.load()
    protocol_class = config.http_protocol_class
    assert issubclass(protocol_class, selector.HttpProtocol)
    assert twin_name(protocol_class) == selector.IMPLEMENTATION

    async def serve_one() -> tuple[Any, list[Any]]:
        protocol = protocol_class(
            config=config, server_state=make_state(), app_state={}, _loop=asyncio.get_running_loop()
        )
        transport = MockTransport()
        protocol.connection_made(transport)
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        return protocol.parser, await transport.responses(1)

    parser, [response] = asyncio.run(serve_one())
    assert response.status == 200
    if parser_type is not None:
        assert type(parser).__name__ == parser_type


class SocketTransport:
    """Just enough of a transport for ipv4_addresses: its socket."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sock if name == "socket" else default


@pytest.mark.skipif(not EXPECT_COMPILED, reason="the compiled kernel is not expected here (pure mode or not CPython)")
@pytest.mark.parametrize("client_host", ["127.0.0.1", "127.10.100.9", "127.255.0.10"])
def test_compiled_kernel_reads_ipv4_addresses_as_the_socket_gives_them(client_host):
    from cyasgi._speedups.kernel import ipv4_addresses

    with socket.socket() as listener, socket.socket() as client:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client.bind((client_host, 0))
        client.connect(listener.getsockname())
        accepted, _ = listener.accept()
        with accepted:
            assert ipv4_addresses(SocketTransport(accepted)) == (accepted.getsockname(), accepted.getpeername())
            assert ipv4_addresses(SocketTransport(client)) == (client.getsockname(), client.getpeername())
            # The server's address given (its listener's): only the peer's is read.
            known = ("192.0.2.1", 8000)
            assert ipv4_addresses(SocketTransport(accepted), known) == (known, accepted.getpeername())


@pytest.mark.skipif(not EXPECT_COMPILED, reason="the compiled kernel is not expected here (pure mode or not CPython)")
def test_compiled_kernel_leaves_other_sockets_to_the_transport():
    from cyasgi._speedups.kernel import ipv4_addresses

    assert ipv4_addresses(SocketTransport(None)) is None
    left, right = socket.socketpair()
    with left, right:
        assert ipv4_addresses(SocketTransport(left)) is None
    with socket.socket() as unconnected:
        unconnected.bind(("127.0.0.1", 0))
        assert ipv4_addresses(SocketTransport(unconnected)) is None
