"""The HTTP/1.1 protocol selector: the compiled twin when it is built and allowed, else the pure one.

Nothing else in cyasgi imports a twin directly (tests and perf aside): the rest of the package
uses these names.
"""

from __future__ import annotations

from cyasgi._compat import NO_EXTENSIONS

if not NO_EXTENSIONS:
    try:
        from cyasgi._speedups.http import FlowControl, HttpProtocol, RequestCycle, sweep_deadlines
    except ImportError:  # not built (no compiler at install time): the pure twin serves
        IMPLEMENTATION = "pure"
    else:
        IMPLEMENTATION = "compiled"
else:
    IMPLEMENTATION = "pure"

if IMPLEMENTATION == "pure":
    from cyasgi.protocols.http_pure import FlowControl, HttpProtocol, RequestCycle, sweep_deadlines  # noqa: F811

#: Module path of the twin in use, for --version and the start-up log.
IMPLEMENTATION_MODULE = HttpProtocol.__module__

TWIN_MODULES = {"cyasgi._speedups.http": "compiled", "cyasgi.protocols.http_pure": "pure"}


def twin_name(protocol_class: type) -> str | None:
    """``"compiled"`` or ``"pure"`` for one of the twins' HttpProtocol, else None (a custom protocol)."""
    return TWIN_MODULES.get(getattr(protocol_class, "__module__", ""))

__all__ = ["IMPLEMENTATION", "IMPLEMENTATION_MODULE", "twin_name", "FlowControl", "HttpProtocol", "RequestCycle", "sweep_deadlines"]
