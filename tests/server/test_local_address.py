"""The scope's ``server``: a listener bound to one IPv4 address gives every connection that address
without reading it from the connection's socket (ProtocolFactory.listening_on); a wildcard listener, or
a server with several listeners, reads each connection's own. Real servers, raw sockets, both twins."""

from __future__ import annotations

import json
import socket

import pytest

from tests.utils import WAIT, make_config, recv_until_closed, run_server

#: A second loopback address: a listener on 0.0.0.0 is reached through it, as through another interface.
OTHER_LOOPBACK = "127.0.0.2"


async def addresses_app(scope, receive, send):
    body = json.dumps({"server": scope["server"], "client": scope["client"]}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def addresses_seen(host: str, port: int, client_host: str = "127.0.0.1") -> tuple[dict, tuple[str, int]]:
    """What the app saw for one request over a new connection from ``client_host``, and the client's
    own address."""
    with socket.create_connection((host, port), timeout=WAIT, source_address=(client_host, 0)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        own = sock.getsockname()
        response = recv_until_closed(sock)
    return json.loads(response.split(b"\r\n\r\n", 1)[1]), own


def listening_port(server) -> int:
    return server.servers[0].sockets[0].getsockname()[1]


def test_one_ipv4_listener_gives_its_address_to_every_connection(twin):
    with run_server(make_config(addresses_app, twin, host="127.0.0.1")) as server:
        port = listening_port(server)
        for client_host in ("127.0.0.1", "127.0.0.3", "127.0.0.1"):  # the peer's host text is reused only when equal
            seen, own = addresses_seen("127.0.0.1", port, client_host)
            assert seen["server"] == ["127.0.0.1", port]
            assert seen["client"] == [own[0], own[1]] and own[0] == client_host


def test_a_wildcard_listener_reads_each_connections_local_address(twin):
    with run_server(make_config(addresses_app, twin, host="0.0.0.0")) as server:
        port = listening_port(server)
        for host in ("127.0.0.1", OTHER_LOOPBACK):
            seen, own = addresses_seen(host, port)
            assert seen["server"] == [host, port]  # never "0.0.0.0"
            assert seen["client"] == [own[0], own[1]]


def test_several_listeners_read_each_connections_local_address(twin):
    config = make_config(addresses_app, twin, bind=["127.0.0.1:0", f"{OTHER_LOOPBACK}:0"])
    with run_server(config) as server:
        ports = [s.sockets[0].getsockname()[1] for s in server.servers]
        for host, port in zip(("127.0.0.1", OTHER_LOOPBACK), ports):
            seen, _ = addresses_seen(host, port)
            assert seen["server"] == [host, port]


@pytest.mark.parametrize(
    ("family", "address", "expected"),
    [
        (socket.AF_INET, ("127.0.0.1", 0), "bound"),
        (socket.AF_INET, ("0.0.0.0", 0), None),
        (socket.AF_INET6, ("::1", 0), None),
    ],
)
def test_listening_on_keeps_only_one_specific_ipv4_address(twin, family, address, expected):
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    config = make_config(addresses_app, twin)
    config.load()
    factory = twin.ProtocolFactory(config, object(), {}, None)
    with socket.socket(family) as listener:
        try:
            listener.bind(address)
        except OSError:
            pytest.skip(f"cannot bind {address} here")
        factory.listening_on([listener])
        assert factory.local_address == (listener.getsockname() if expected else None)
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            factory.listening_on([listener, other])  # two listeners: a connection may come from either
            assert factory.local_address is None
