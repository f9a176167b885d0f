"""Trust ``X-Forwarded-Proto`` and ``X-Forwarded-For`` from known proxies (``--forwarded-allow-ips``)."""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, Union

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

_SCHEMES = frozenset({"http", "https", "ws", "wss"})
_TRUST_CACHE_SIZE = 4096


def parse_host_port(value: str) -> tuple[str, int]:
    """``"1.2.3.4:80"`` → ``("1.2.3.4", 80)``; ``"[::1]:80"`` → ``("::1", 80)``; no port → 0.

    Anything that is not clearly host:port is returned whole, so a trust check never matches a
    normalised form of arbitrary input.
    """
    value = value.strip()
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if sep and rest.startswith(":") and rest[1:].isdigit():
            return host, int(rest[1:])
        if sep and not rest:
            return host, 0
        return value, 0
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        if port.isdigit():
            return host, int(port)
    return value, 0


class TrustedHosts:
    """``--forwarded-allow-ips``: IP addresses, networks, ``*``, and literals (e.g. a socket path)."""

    def __init__(self, trusted_hosts: list[str] | str) -> None:
        if isinstance(trusted_hosts, str):
            items = [item.strip() for item in trusted_hosts.split(",")]
        else:
            items = [str(item).strip() for item in trusted_hosts]
        items = [item for item in items if item]
        self.always_trust = "*" in items
        self.networks: list[IPNetwork] = []
        self.literals: set[str] = set()
        for item in items:
            if item == "*":
                continue
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self.literals.add(item)
        self._cache: dict[str, bool] = {}

    def __contains__(self, host: str | None) -> bool:
        if self.always_trust:
            return True
        if not host:
            return False
        trusted = self._cache.get(host)
        if trusted is None:
            trusted = self._compute(host)
            if len(self._cache) >= _TRUST_CACHE_SIZE:
                self._cache.clear()
            self._cache[host] = trusted
        return trusted

    def _compute(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host in self.literals
        # An IPv4 peer of a dual-stack socket (--host ::) shows as ::ffff:a.b.c.d: trusted as a.b.c.d too.
        mapped = getattr(address, "ipv4_mapped", None)
        candidates = (address,) if mapped is None else (address, mapped)
        return any(candidate in network for candidate in candidates for network in self.networks)

    def client_from_forwarded_for(self, forwarded_for: str) -> tuple[str, int] | None:
        """The nearest hop that is not a trusted proxy; the first hop if all of them are."""
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        if not hops:
            return None
        if self.always_trust:
            return parse_host_port(hops[0])
        for hop in reversed(hops):
            host, port = parse_host_port(hop)
            if host not in self:
                return host, port
        return parse_host_port(hops[0])


class ProxyHeadersMiddleware:
    """Rewrite ``scope["client"]`` and ``scope["scheme"]`` from proxy headers sent by trusted peers.

    Over a UNIX socket the peer has no address; the socket's path stands in for it, so
    ``--forwarded-allow-ips /run/app.sock`` trusts the proxy that connects there.
    """

    def __init__(self, app: Callable[..., Any], trusted_hosts: list[str] | str = "127.0.0.1") -> None:
        self.app = app
        self.trusted_hosts = TrustedHosts(trusted_hosts)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] in ("http", "websocket") and is_trusted_peer(
            self.trusted_hosts, scope.get("client"), scope.get("server")
        ):
            apply_proxy_headers(scope, self.trusted_hosts)
        return await self.app(scope, receive, send)


def is_trusted_peer(trusted_hosts: TrustedHosts, client: Any, server: Any) -> bool:
    """The peer may set proxy headers; over a UNIX socket the socket's path stands for the peer."""
    if client:
        return client[0] in trusted_hosts
    return bool(server) and server[1] is None and server[0] in trusted_hosts


def apply_proxy_headers(scope: dict[str, Any], trusted_hosts: TrustedHosts) -> None:
    """Set ``scheme`` and ``client`` from X-Forwarded-Proto / X-Forwarded-For sent by a trusted peer.

    The HTTP protocols call this directly (they decide trust once per connection); the
    middleware above does the same for WebSocket scopes and for apps wrapped by hand.
    """
    proto = None
    forwarded_for: list[str] = []
    for name, value in scope["headers"]:
        if name == b"x-forwarded-proto":
            proto = value.decode("latin-1")
        elif name == b"x-forwarded-for":
            forwarded_for.append(value.decode("latin-1"))
    if proto is not None:
        scheme = proto.split(",")[-1].strip().lower()
        if scheme in _SCHEMES:
            if scope["type"] == "websocket":
                scheme = scheme.replace("http", "ws")
            scope["scheme"] = scheme
    if forwarded_for:
        client = trusted_hosts.client_from_forwarded_for(",".join(forwarded_for))
        if client is not None:
            scope["client"] = client
