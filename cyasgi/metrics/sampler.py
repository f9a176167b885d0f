"""The server tick's part of the metrics: what is measured by the loop itself rather than counted.

* Event-loop lag: how much later than asked the tick's sleep ended. A loop busy with synchronous
  code (or starved of CPU) wakes late; the lag goes into a histogram, and the worst of the last
  minute into a gauge.
* Open connections by protocol and requests in flight: gauges sampled once a second from the
  server's connection set and task set, so counting them costs the request path nothing.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from cyasgi.metrics.recorder import IN_FLIGHT, LOOP_LAG, LOOP_LAG_WORST_US, OPEN_CONNECTIONS, PROTOCOLS
from cyasgi.protocols.websockets.base import WebSocketProtocolBase

#: The window of the worst-lag gauge, in seconds.
WORST_LAG_WINDOW = 60.0
#: Seconds between two samples of the connection and in-flight gauges.
SAMPLE_INTERVAL = 1.0

PROTOCOL_HTTP1 = PROTOCOLS.index("http/1.1")
PROTOCOL_H2 = PROTOCOLS.index("h2")
PROTOCOL_WEBSOCKET = PROTOCOLS.index("websocket")


def protocol_kinds() -> dict[type, int]:
    """The PROTOCOLS index of the connection classes that are not HTTP/1.1 (both builds')."""
    from cyasgi._compat import extension_built
    from cyasgi.protocols.http2.protocol import H2Protocol

    kinds: dict[type, int] = {H2Protocol: PROTOCOL_H2}
    if extension_built("cyasgi._speedups.h2protocol"):
        from cyasgi._speedups.h2protocol import H2Protocol as CompiledH2Protocol

        kinds[CompiledH2Protocol] = PROTOCOL_H2
    return kinds


def connection_kind(connection: Any, kinds: dict[type, int]) -> int:
    """The PROTOCOLS index of a connection protocol object."""
    if isinstance(connection, WebSocketProtocolBase):
        return PROTOCOL_WEBSOCKET
    return kinds.get(type(connection), PROTOCOL_HTTP1)


class LoopSampler:
    """Fed by every tick of the server (``tick(now)`` after the tick's sleep of ``interval``)."""

    def __init__(self, recorder: Any, server_state: Any, interval: float) -> None:
        self.recorder = recorder
        self.server_state = server_state
        self.interval = interval
        self.expected = 0.0  # when the current sleep should end; 0: no sleep measured yet
        self.worst: deque[tuple[float, int]] = deque()  # (when, lag in us), decreasing lags
        self.next_sample = 0.0
        self.kinds = protocol_kinds()

    def before_sleep(self, now: float) -> None:
        self.expected = now + self.interval

    def tick(self, now: float) -> None:
        if self.expected:
            lag = max(0.0, now - self.expected)
            self.recorder.observe(LOOP_LAG, lag)
            self._remember(now, int(lag * 1e6))
        if now >= self.next_sample:
            self.next_sample = now + SAMPLE_INTERVAL
            self.sample()

    def _remember(self, now: float, lag_us: int) -> None:
        """Keep the worst lag of the window: a lag hides every earlier, smaller one."""
        worst = self.worst
        while worst and worst[-1][1] <= lag_us:
            worst.pop()
        worst.append((now, lag_us))
        while worst[0][0] < now - WORST_LAG_WINDOW:
            worst.popleft()
        self.recorder.set_gauge(LOOP_LAG_WORST_US, worst[0][1])

    def sample(self) -> None:
        counts = [0] * len(PROTOCOLS)
        for connection in list(self.server_state.connections):
            counts[connection_kind(connection, self.kinds)] += 1
        for index, count in enumerate(counts):
            self.recorder.set_gauge(OPEN_CONNECTIONS + index, count)
        # Every running WebSocket has its app's task in the set too; the rest are HTTP requests.
        in_flight = len(self.server_state.tasks) - counts[PROTOCOL_WEBSOCKET]
        self.recorder.set_gauge(IN_FLIGHT, max(0, in_flight))
