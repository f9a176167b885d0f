# cython: boundscheck=False, wraparound=False
# (compiled: every slot index is computed from the layout below and kept in range by the code itself)
"""What the server counts for ``--metrics-bind`` / ``--metrics-path``, one source for both builds: the
pure build runs this file, CPython runs it compiled as ``cyasgi._speedups.recorder`` (a link to it) with
``cyasgi/_speedups/recorder.pxd``, where every count is a C increment of a 64-bit slot.

A process counts into one *block*: a writable buffer of ``BLOCK_SLOTS`` unsigned 64-bit slots laid out
as below. With ``--workers`` each worker's block is shared memory the supervisor reads on a scrape;
nothing is sent anywhere per request. The protocols hold a ``Recorder`` over the block (None when
metrics are off, so the hot path pays one test). The layout is read by ``cyasgi.metrics.exposition``.

Histograms keep one count per bucket (not cumulative) and the sum in microseconds. Their bounds go
1, 2.5, 5 per decade, from ``FIRST_BOUND_US`` to ``BOUNDS`` buckets further, then +Inf.
"""

from __future__ import annotations

try:
    import cython
except ImportError:  # no Cython where this runs: the pure build
    from cyasgi import _cython_shim as cython

if not cython.compiled:  # the compiled build takes it from the C kernel (recorder.pxd)
    from cyasgi.protocols.http.kernel import monotonic

#: The methods counted by name; any other is counted as ``OTHER``.
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER")
METHOD_INDEX: dict[str | None, int] = {name: index for index, name in enumerate(METHODS)}
METHOD_OTHER = len(METHODS) - 1
#: Status classes 1xx to 5xx.
STATUS_CLASSES = 5

#: Responses the server writes itself, by cause (the status each one has).
CAUSES = (
    ("bad_request", 400),
    ("request_timeout", 408),
    ("body_too_large", 413),
    ("headers_too_large", 431),
    ("concurrency_limit", 503),
    ("app_error", 500),
)
CAUSE_BAD_REQUEST = 0
CAUSE_REQUEST_TIMEOUT = 1
CAUSE_BODY_TOO_LARGE = 2
CAUSE_HEADERS_TOO_LARGE = 3
CAUSE_CONCURRENCY_LIMIT = 4
CAUSE_APP_ERROR = 5

#: Open connections by protocol (sampled by the server's tick).
PROTOCOLS = ("http/1.1", "h2", "websocket")

#: Histogram bounds: FIRST_BOUND_US microseconds, then x2.5, x2, x2 per decade, BOUNDS of them.
FIRST_BOUND_US = 100
BOUNDS = 16
BUCKETS = BOUNDS + 1  # and +Inf

# The block's layout: counters first (added up over replaced workers), then gauges (only live values).
REQUESTS = 0  # len(METHODS) x STATUS_CLASSES
DURATION = REQUESTS + len(METHODS) * STATUS_CLASSES  # BUCKETS counts, then the sum (us)
BYTES_RECEIVED = DURATION + BUCKETS + 1
BYTES_SENT = BYTES_RECEIVED + 1
SERVER_RESPONSES = BYTES_SENT + 1  # len(CAUSES)
CONNECTIONS_ACCEPTED = SERVER_RESPONSES + len(CAUSES)
WEBSOCKET_MESSAGES_IN = CONNECTIONS_ACCEPTED + 1
WEBSOCKET_MESSAGES_OUT = WEBSOCKET_MESSAGES_IN + 1
LOOP_LAG = WEBSOCKET_MESSAGES_OUT + 1  # BUCKETS counts, then the sum (us)
COUNTER_SLOTS = LOOP_LAG + BUCKETS + 1
OPEN_CONNECTIONS = COUNTER_SLOTS  # len(PROTOCOLS)
IN_FLIGHT = OPEN_CONNECTIONS + len(PROTOCOLS)
LOOP_LAG_WORST_US = IN_FLIGHT + 1  # the worst lag of the last minute
BLOCK_SLOTS = LOOP_LAG_WORST_US + 1
#: Bytes in a block.
BLOCK_SIZE = BLOCK_SLOTS * 8


def bucket_index(microseconds: int) -> int:
    """The histogram bucket of a duration: the first bound it does not exceed, BOUNDS for +Inf."""
    bound = FIRST_BOUND_US
    index = 0
    while microseconds > bound and index < BOUNDS:
        index += 1
        bound = bound * 5 // 2 if index % 3 == 1 else bound * 2
    return index


def bucket_bounds() -> list[float]:
    """The upper bounds, in seconds, of the histogram buckets (+Inf not included)."""
    bounds = []
    bound = FIRST_BOUND_US
    for index in range(1, BOUNDS + 1):
        bounds.append(bound / 1e6)
        bound = bound * 5 // 2 if index % 3 == 1 else bound * 2
    return bounds


def status_cause(status: int) -> int:
    """The cause index of a response the server writes itself, by its status (-1: not one of them)."""
    if status == 400:
        return CAUSE_BAD_REQUEST
    if status == 408:
        return CAUSE_REQUEST_TIMEOUT
    if status == 413:
        return CAUSE_BODY_TOO_LARGE
    if status == 431:
        return CAUSE_HEADERS_TOO_LARGE
    if status == 503:
        return CAUSE_CONCURRENCY_LIMIT
    if status == 500:
        return CAUSE_APP_ERROR
    return -1


class Recorder:
    """Counts into a block; one per protocol module and server, all over the process's one block."""

    def __init__(self, block: object) -> None:
        self.slots = memoryview(block).cast("Q")  # type: ignore[arg-type]

    def request_done(self, method: str | None, status: int, started: float) -> None:
        """A response completed (or was cut short after it started): ``started`` is when its head came."""
        status_class = status // 100 - 1
        if status_class < 0 or status_class >= STATUS_CLASSES:
            status_class = STATUS_CLASSES - 1
        method_index = METHOD_INDEX.get(method, METHOD_OTHER)
        self.slots[REQUESTS + method_index * STATUS_CLASSES + status_class] += 1
        self.observe(DURATION, monotonic() - started)

    def observe(self, histogram: int, seconds: float) -> None:
        microseconds = int(seconds * 1e6) if seconds > 0.0 else 0
        self.slots[histogram + bucket_index(microseconds)] += 1
        self.slots[histogram + BUCKETS] += microseconds

    def received(self, size: int) -> None:
        self.slots[BYTES_RECEIVED] += size

    def sent(self, size: int) -> None:
        self.slots[BYTES_SENT] += size

    def accepted(self) -> None:
        self.slots[CONNECTIONS_ACCEPTED] += 1

    def server_response(self, status: int) -> None:
        """A response the server wrote itself (see CAUSES), by its status."""
        cause = status_cause(status)
        if cause >= 0:
            self.slots[SERVER_RESPONSES + cause] += 1

    def websocket_message_in(self) -> None:
        self.slots[WEBSOCKET_MESSAGES_IN] += 1

    def websocket_message_out(self) -> None:
        self.slots[WEBSOCKET_MESSAGES_OUT] += 1

    def set_gauge(self, slot: int, value: int) -> None:
        self.slots[slot] = value
