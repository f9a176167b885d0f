"""The Prometheus text of the counts, made on a scrape by ``prometheus_client`` (``cyasgi[metrics]``).

A ``Snapshot`` is what one scrape reads: the counters added up over every worker (and over the
workers that were replaced: counters never go backwards), each live worker's gauges under a
``worker`` label, and the supervisor's restart counts. docs/metrics.md lists the series.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable

from cyasgi.metrics.recorder import (
    BUCKETS,
    BYTES_RECEIVED,
    BYTES_SENT,
    CAUSES,
    CONNECTIONS_ACCEPTED,
    DURATION,
    IN_FLIGHT,
    LOOP_LAG,
    LOOP_LAG_WORST_US,
    METHODS,
    OPEN_CONNECTIONS,
    PROTOCOLS,
    REQUESTS,
    SERVER_RESPONSES,
    STATUS_CLASSES,
    WEBSOCKET_MESSAGES_IN,
    WEBSOCKET_MESSAGES_OUT,
    bucket_bounds,
)

#: Why the supervisor replaced a worker (``cyasgi_worker_restarts_total{reason}``).
RESTART_REASONS = ("crash", "health_check", "max_requests", "reload")

MISSING_EXTRA = "the metrics need prometheus_client: pip install 'cyasgi[metrics]'"


class Snapshot:
    """One scrape's reading of the counts."""

    def __init__(
        self,
        totals: list[int],
        workers: list[tuple[str, list[int]]],
        restarts: dict[str, int] | None = None,
    ) -> None:
        self.totals = totals  # every slot; the counters added up over all workers, live and gone
        self.workers = workers  # (label, slots) of each live worker, for the gauges
        self.restarts = restarts  # None without a supervisor


def prometheus_available() -> bool:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


class ServerCollector:
    """A ``prometheus_client`` collector reading a Snapshot at each scrape."""

    def __init__(self, read: Callable[[], Snapshot]) -> None:
        self.read = read

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snapshot = self.read()
        totals = snapshot.totals

        requests = CounterMetricFamily(
            "cyasgi_requests", "HTTP requests answered, by method and status class.", labels=["method", "status"]
        )
        for method_index, method in enumerate(METHODS):
            for status_index in range(STATUS_CLASSES):
                value = totals[REQUESTS + method_index * STATUS_CLASSES + status_index]
                requests.add_metric([method, f"{status_index + 1}xx"], value)
        yield requests
        yield _histogram(
            "cyasgi_request_duration_seconds",
            "Time from a request's head received to its response complete.",
            totals,
            DURATION,
        )
        received, sent = totals[BYTES_RECEIVED], totals[BYTES_SENT]
        yield _counter("cyasgi_received_bytes", "Bytes read from HTTP/1.1 and HTTP/2 connections.", received)
        yield _counter("cyasgi_sent_bytes", "Bytes written to HTTP/1.1 and HTTP/2 connections.", sent)
        yield _counter("cyasgi_connections_accepted", "Connections accepted.", totals[CONNECTIONS_ACCEPTED])

        responses = CounterMetricFamily(
            "cyasgi_server_responses",
            "Responses the server wrote itself, by cause (the application never saw the request, or failed).",
            labels=["cause", "status"],
        )
        for index, (cause, status) in enumerate(CAUSES):
            responses.add_metric([cause, str(status)], totals[SERVER_RESPONSES + index])
        yield responses

        messages = CounterMetricFamily(
            "cyasgi_websocket_messages", "WebSocket messages, received (in) and sent (out).", labels=["direction"]
        )
        messages.add_metric(["in"], totals[WEBSOCKET_MESSAGES_IN])
        messages.add_metric(["out"], totals[WEBSOCKET_MESSAGES_OUT])
        yield messages
        yield _histogram(
            "cyasgi_event_loop_lag_seconds",
            "How late the server's periodic tick woke up: time the event loop was busy or starved.",
            totals,
            LOOP_LAG,
        )

        worst = GaugeMetricFamily(
            "cyasgi_event_loop_lag_worst_seconds", "The worst event-loop lag of the last minute.", labels=["worker"]
        )
        connections = GaugeMetricFamily(
            "cyasgi_open_connections", "Open connections by protocol.", labels=["protocol", "worker"]
        )
        in_flight = GaugeMetricFamily(
            "cyasgi_requests_in_flight", "HTTP requests whose application is running.", labels=["worker"]
        )
        for label, values in snapshot.workers:
            worst.add_metric([label], values[LOOP_LAG_WORST_US] / 1e6)
            for index, protocol in enumerate(PROTOCOLS):
                connections.add_metric([protocol, label], values[OPEN_CONNECTIONS + index])
            in_flight.add_metric([label], values[IN_FLIGHT])
        yield worst
        yield connections
        yield in_flight

        if snapshot.restarts is not None:
            restarts = CounterMetricFamily(
                "cyasgi_worker_restarts", "Workers the supervisor replaced, by reason.", labels=["reason"]
            )
            for reason in RESTART_REASONS:
                restarts.add_metric([reason], snapshot.restarts.get(reason, 0))
            yield restarts
            yield _gauge("cyasgi_workers", "Workers serving.", len(snapshot.workers))


def _counter(name: str, documentation: str, value: int) -> Any:
    from prometheus_client.core import CounterMetricFamily

    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: int) -> Any:
    from prometheus_client.core import GaugeMetricFamily

    return GaugeMetricFamily(name, documentation, value=value)


def _histogram(name: str, documentation: str, totals: list[int], first: int) -> Any:
    """A histogram from its block slots: BUCKETS counts (one each, not cumulative), then the sum in us."""
    from prometheus_client.core import HistogramMetricFamily

    buckets = []
    cumulative = 0
    for bound, index in zip([*map(repr, bucket_bounds()), "+Inf"], range(BUCKETS)):
        cumulative += totals[first + index]
        buckets.append((bound, cumulative))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=totals[first + BUCKETS] / 1e6)


def render(read: Callable[[], Snapshot]) -> tuple[bytes, str]:
    """The text of one scrape and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(read))
    return generate_latest(registry), CONTENT_TYPE_LATEST
