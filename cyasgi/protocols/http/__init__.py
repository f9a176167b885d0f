"""The HTTP/1.1 protocol, as a package: the one protocol (``protocol``), its parsers (``parser``,
``foreign``), the rules and wire helpers it follows, and the selector (``auto``) that picks the
compiled or the pure build of it.

``from cyasgi.protocols.http import HttpProtocol`` gives the selected build; the names are loaded on
first use, so importing a submodule (``cyasgi.protocols.http.rules``) does not load the protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what __getattr__ gives, for type checkers
    from cyasgi.protocols.http.auto import (
        IMPLEMENTATION,
        IMPLEMENTATION_MODULE,
        AutoHTTPProtocol,
        FlowControl,
        HttpProtocol,
        RequestCycle,
        sweep_deadlines,
        twin_name,
    )

__all__ = [
    "IMPLEMENTATION",
    "IMPLEMENTATION_MODULE",
    "AutoHTTPProtocol",
    "FlowControl",
    "HttpProtocol",
    "RequestCycle",
    "sweep_deadlines",
    "twin_name",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from cyasgi.protocols.http import auto

        return getattr(auto, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
