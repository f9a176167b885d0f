"""Prometheus metrics (``--metrics-bind``, ``--metrics-path``): what is counted and where.

* ``recorder``: the counting, one source compiled for CPython (C increments of a shared block).
* ``block``: the block of counts, in memory a supervisor can read (``--workers``).
* ``sampler``: the server tick's part: event-loop lag, open connections, requests in flight.
* ``exposition``: the Prometheus text, made with ``prometheus_client`` from the blocks on a scrape.
* ``endpoint``: the ``--metrics-bind`` listener and the ``--metrics-path`` answer.

docs/metrics.md describes every series.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cyasgi._compat import extension_built

if TYPE_CHECKING:  # one API for type checkers: the source both builds come from
    from cyasgi.metrics.recorder import Recorder
elif extension_built("cyasgi._speedups.recorder"):
    from cyasgi._speedups.recorder import Recorder
else:  # not built, PyPy, or CYASGI_NO_EXTENSIONS=1
    from cyasgi.metrics.recorder import Recorder


def recorder_for(server_state: Any) -> Any:
    """A Recorder over the server's block, or None when metrics are off (the protocols test for it)."""
    block = getattr(server_state, "metrics_block", None)
    return None if block is None else Recorder(block)
