"""The HTTP/1.1 protocol selector: the compiled twin when it is built and allowed, else the pure one.

Nothing else in cyasgi imports a twin directly (tests and perf aside): the rest of the package
uses these names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cyasgi._compat import extension_built

if TYPE_CHECKING:  # one API for type checkers: the source both builds come from
    from cyasgi.protocols.http.protocol import FlowControl, HttpProtocol, RequestCycle, sweep_deadlines

    IMPLEMENTATION: str
elif extension_built("cyasgi._speedups.http"):
    from cyasgi._speedups.http import FlowControl, HttpProtocol, RequestCycle, sweep_deadlines

    IMPLEMENTATION = "compiled"
else:  # not built (no compiler at install time, PyPy) or CYASGI_NO_EXTENSIONS=1
    from cyasgi.protocols.http.protocol import FlowControl, HttpProtocol, RequestCycle, sweep_deadlines

    IMPLEMENTATION = "pure"

#: Module path of the twin in use, for --version and the start-up log.
IMPLEMENTATION_MODULE = HttpProtocol.__module__

TWIN_MODULES = {"cyasgi._speedups.http": "compiled", "cyasgi.protocols.http.protocol": "pure"}


#: uvicorn's name for the protocol ``--http auto`` selects.
AutoHTTPProtocol = HttpProtocol


def twin_name(protocol_class: type) -> str | None:
    """``"compiled"`` or ``"pure"`` for one of the twins' HttpProtocol or a class derived from it (the
    uvicorn-path classes, ``H11Protocol``...), else None (a protocol of the user's own)."""
    for klass in getattr(protocol_class, "__mro__", ()):
        twin = TWIN_MODULES.get(getattr(klass, "__module__", ""))
        if twin is not None:
            return twin
    return None


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
