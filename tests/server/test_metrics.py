"""Prometheus metrics (--metrics-bind, --metrics-path; docs/metrics.md): real servers scraped while and
after a client did known things, on both twins; --workers adding up every worker across a killed
one; the event-loop lag of a blocked loop; every bad value."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from multiprocessing import Pipe
from typing import Any

import httpx
import pytest
import websockets.sync.client
from prometheus_client.parser import text_string_to_metric_families

from cyasgi.config import Config, ConfigError
from cyasgi.metrics import recorder as pure_recorder
from cyasgi.metrics.block import Block
from cyasgi.metrics.workers import METRICS_REQUEST
from cyasgi.server import TICK_INTERVAL
from tests.supervision import (
    APP,
    SPAWN_WAIT,
    cyasgi,
    get,
    ignore_http_errors,
    run_supervised,
    started_pids,
    wait_for_count,
)
from tests.utils import (
    WAIT,
    CliProcess,
    ThreadedServer,
    ipv6_available,
    make_config,
    recv_until_closed,
    run_cli_to_exit,
    run_server,
)

READY = "Application startup complete."
METRICS_ON = re.compile(r"Metrics on (http://\S+)")
#: How often a test reads the metrics while it waits for the server's tick to sample something.
POLL_INTERVAL = 0.05


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=WAIT)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def wait_for_sample(url: str, name: str, expected: Any, timeout: float = WAIT, **labels: str) -> Samples:
    """Scrape until ``name{labels}`` satisfies ``expected`` (a value or a predicate): gauges are sampled by
    the server's tick, once a second."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        found = samples.get((name, tuple(sorted(labels.items()))))
        if found is not None and (expected(found) if callable(expected) else found == expected):
            return samples
        assert time.monotonic() < deadline, f"{name}{labels} is {found}, waited for {expected}"
        time.sleep(POLL_INTERVAL)


def metrics_url(server: Any) -> str:
    return f"http://127.0.0.1:{server._metrics_listener.port}/metrics"


# The app ----------------------------------------------------------------------------------------


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await receive()  # connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text") or ""})
    path = scope["path"]
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if path == "/error":
        raise RuntimeError("the app fails")
    if path == "/block":
        time.sleep(BLOCK_SECONDS)  # blocks the event loop, as synchronous code in an async app does
    if path == "/hold":
        await asyncio.get_running_loop().run_in_executor(None, release.wait, WAIT)
    status = 404 if path == "/missing" else 200
    answer = body or b"hello"
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


BLOCK_SECONDS = 0.5
#: What the lag of the tick during a block is at least: the block less the server's tick interval.
SURELY_LATE = BLOCK_SECONDS - TICK_INTERVAL - 0.05
release = threading.Event()


def metrics_config(twin: Any, **kwargs: Any) -> Config:
    return make_config(app, twin, metrics_bind="127.0.0.1:0", metrics_path="/metrics", **kwargs)


def exchange(port: int, request: bytes) -> bytes:
    """One request on a connection of its own, read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(request)
        return recv_until_closed(sock)


# One process, both twins ----------------------------------------------------------------------------


def test_counts_are_what_the_client_did(twin):
    requests = [
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"GET /missing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nabcde",
        b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"GET /error HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"TRACE / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost t\r\n\r\n",  # malformed: 400
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n",  # over the body limit: 413
        b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % index for index in range(20)) + b"\r\n",  # 431
    ]
    with run_server(metrics_config(twin, limit_request_body_size=100, limit_request_headers=10)) as server:
        answers = [exchange(server.port, request) for request in requests]
        assert [answer.split(b" ", 2)[1] for answer in answers] == [
            b"200", b"404", b"200", b"200", b"500", b"200", b"400", b"413", b"431"
        ]
        samples = scrape(metrics_url(server))

    assert value(samples, "cyasgi_requests_total", method="GET", status="2xx") == 1
    assert value(samples, "cyasgi_requests_total", method="GET", status="4xx") == 1
    assert value(samples, "cyasgi_requests_total", method="GET", status="5xx") == 1
    assert value(samples, "cyasgi_requests_total", method="POST", status="2xx") == 1
    assert value(samples, "cyasgi_requests_total", method="HEAD", status="2xx") == 1
    assert value(samples, "cyasgi_requests_total", method="OTHER", status="2xx") == 1
    requests_total = sum(v for (name, _), v in samples.items() if name == "cyasgi_requests_total")
    assert requests_total == 6  # the 400, 413 and 431 never reached the app
    assert value(samples, "cyasgi_request_duration_seconds_count") == 6
    assert value(samples, "cyasgi_request_duration_seconds_bucket", le="+Inf") == 6
    assert 0 < value(samples, "cyasgi_request_duration_seconds_sum") < WAIT
    for cause, status in (("app_error", "500"), ("bad_request", "400"), ("body_too_large", "413"),
                          ("headers_too_large", "431")):
        assert value(samples, "cyasgi_server_responses_total", cause=cause, status=status) == 1, cause
    assert value(samples, "cyasgi_server_responses_total", cause="concurrency_limit", status="503") == 0
    # Every byte either way, exactly: the client's requests and the answers it read.
    assert value(samples, "cyasgi_received_bytes_total") == sum(len(request) for request in requests)
    assert value(samples, "cyasgi_sent_bytes_total") == sum(len(answer) for answer in answers)
    assert value(samples, "cyasgi_connections_accepted_total") == len(requests)


def test_metrics_path_on_the_main_port(twin):
    with run_server(metrics_config(twin)) as server:
        get(server.url)
        samples = scrape(server.url + "/metrics")
        assert value(samples, "cyasgi_requests_total", method="GET", status="2xx") == 1
        head = httpx.head(server.url + "/metrics", timeout=WAIT)
        assert head.status_code == 200 and head.content == b""
        # Only GET and HEAD: a POST there is the app's.
        assert httpx.post(server.url + "/metrics", content=b"x", timeout=WAIT).content == b"x"
        # The scrape itself was a request (GET 2xx), the HEAD too; the app's POST as well.
        samples = scrape(metrics_url(server))
        assert value(samples, "cyasgi_requests_total", method="GET", status="2xx") == 2
        assert value(samples, "cyasgi_requests_total", method="HEAD", status="2xx") == 1
        assert value(samples, "cyasgi_requests_total", method="POST", status="2xx") == 1


def test_a_blocked_event_loop_shows_in_the_lag_series(twin):
    with run_server(metrics_config(twin)) as server:
        url = metrics_url(server)
        # The loop's tick runs (a lag is measured over one of its sleeps).
        before = wait_for_sample(url, "cyasgi_event_loop_lag_seconds_count", lambda count: count >= 1)
        assert value(before, "cyasgi_event_loop_lag_worst_seconds", worker="0") < BLOCK_SECONDS
        assert get(server.url, "/block").status_code == 200
        # The tick whose sleep the block fell in wakes up to BLOCK_SECONDS late, at least BLOCK_SECONDS
        # less one tick interval.
        after = wait_for_sample(
            url, "cyasgi_event_loop_lag_worst_seconds", lambda lag: lag >= SURELY_LATE, worker="0"
        )
        slow_ticks = value(after, "cyasgi_event_loop_lag_seconds_count") - value(
            after, "cyasgi_event_loop_lag_seconds_bucket", le="0.25"
        )
        assert slow_ticks >= 1
        assert value(after, "cyasgi_event_loop_lag_seconds_sum") >= SURELY_LATE


def test_open_connections_and_requests_in_flight(twin):
    release.clear()
    with run_server(metrics_config(twin, ws="websockets-sansio")) as server:
        url = metrics_url(server)
        with httpx.Client(timeout=WAIT) as client:
            held = threading.Thread(target=client.get, args=(server.url + "/hold",))
            held.start()
            try:
                samples = wait_for_sample(url, "cyasgi_requests_in_flight", 1, worker="0")
                assert value(samples, "cyasgi_open_connections", protocol="http/1.1", worker="0") >= 1
            finally:
                release.set()
                held.join(WAIT)
            wait_for_sample(url, "cyasgi_requests_in_flight", 0, worker="0")
        ws_url = server.url.replace("http://", "ws://") + "/ws"
        with websockets.sync.client.connect(ws_url, open_timeout=WAIT) as ws:
            for index in range(3):
                ws.send(f"message {index}")
                assert ws.recv(timeout=WAIT) == f"message {index}"
            samples = wait_for_sample(url, "cyasgi_open_connections", 1, protocol="websocket", worker="0")
            # The WebSocket's app task is not an HTTP request in flight.
            assert value(samples, "cyasgi_requests_in_flight", worker="0") == 0
        samples = scrape(url)
        assert value(samples, "cyasgi_websocket_messages_total", direction="in") == 3
        assert value(samples, "cyasgi_websocket_messages_total", direction="out") == 3


def test_http2_requests_are_counted(twin):
    with run_server(metrics_config(twin, http2=True)) as server:
        with httpx.Client(http1=False, http2=True, timeout=WAIT) as client:
            for _ in range(3):
                response = client.post(server.url + "/echo", content=b"x" * 10)
                assert response.http_version == "HTTP/2" and response.content == b"x" * 10
            url = metrics_url(server)
            samples = wait_for_sample(url, "cyasgi_open_connections", 1, protocol="h2", worker="0")
        assert value(samples, "cyasgi_requests_total", method="POST", status="2xx") == 3
        assert value(samples, "cyasgi_request_duration_seconds_count") == 3
        assert value(samples, "cyasgi_received_bytes_total") > 30
        assert value(samples, "cyasgi_sent_bytes_total") > 30


def test_concurrency_limit_503_is_counted(twin):
    release.clear()
    # The held request's connection and task take both places.
    with run_server(metrics_config(twin, limit_concurrency=2)) as server:
        with httpx.Client(timeout=WAIT) as client:
            held = threading.Thread(target=client.get, args=(server.url + "/hold",))
            held.start()
            try:
                wait_for_sample(metrics_url(server), "cyasgi_requests_in_flight", 1, worker="0")
                assert httpx.get(server.url + "/", timeout=WAIT).status_code == 503
            finally:
                release.set()
                held.join(WAIT)
        samples = scrape(metrics_url(server))
    assert value(samples, "cyasgi_server_responses_total", cause="concurrency_limit", status="503") == 1
    assert value(samples, "cyasgi_requests_total", method="GET", status="5xx") == 1


def test_request_timeout_408_is_counted(twin):
    with run_server(metrics_config(twin, timeout_header_read=0.3)) as server:
        # A head that never ends: the server answers 408 and closes.
        answer = exchange(server.port, b"GET / HTTP/1.1\r\nHost: t\r\n")
        assert answer.startswith(b"HTTP/1.1 408 ")
        samples = scrape(metrics_url(server))
    assert value(samples, "cyasgi_server_responses_total", cause="request_timeout", status="408") == 1
    assert value(samples, "cyasgi_sent_bytes_total") == len(answer)


def test_a_worker_asks_the_supervisor_and_says_503_when_it_does_not_answer(twin, monkeypatch):
    """The worker's side of --metrics-path with --workers, the supervisor played by the test."""
    monkeypatch.setattr("cyasgi.server.METRICS_REPLY_TIMEOUT", 0.5)
    supervisor_end, worker_end = Pipe()
    server = ThreadedServer(make_config(app, twin, metrics_path="/metrics"))
    server.health_channel = worker_end
    server.metrics_block = Block()
    thread = threading.Thread(target=server.run_in_thread, daemon=True)
    thread.start()
    try:
        assert server.ready.wait(WAIT) and server.started
        assert supervisor_end.poll(WAIT) and supervisor_end.recv_bytes() == b"!1"  # "started"
        unanswered = get(server.url, "/metrics")
        assert unanswered.status_code == 503 and unanswered.text == "metrics unavailable\n"
        assert supervisor_end.recv_bytes() == METRICS_REQUEST
        # Answered: the exposition the supervisor sent is the response.
        with httpx.Client(timeout=WAIT) as client:
            results: list[httpx.Response] = []
            answered = threading.Thread(target=lambda: results.append(client.get(server.url + "/metrics")))
            answered.start()
            assert supervisor_end.poll(WAIT) and supervisor_end.recv_bytes() == METRICS_REQUEST
            supervisor_end.send_bytes(METRICS_REQUEST + b"cyasgi_workers 2.0\n")
            answered.join(WAIT)
        assert results[0].status_code == 200 and results[0].text == "cyasgi_workers 2.0\n"
    finally:
        server.should_exit = True
        thread.join(WAIT)
    assert not thread.is_alive()


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback here")
def test_the_listener_on_ipv6():
    with run_server(make_config(app, metrics_bind="[::1]:0")) as server:
        assert get(server.url).status_code == 200
        samples = scrape(f"http://[::1]:{server._metrics_listener.port}/metrics")
    assert value(samples, "cyasgi_requests_total", method="GET", status="2xx") == 1


def test_no_metrics_by_default(twin):
    with run_server(make_config(app, twin)) as server:
        assert server.server_state.metrics_block is None and server._metrics_listener is None
        assert get(server.url, "/metrics").status_code == 200  # the app's own path
        assert server.config.metrics_enabled is False


# The recorder: both builds write the same counts ------------------------------------------------------


def test_both_recorders_count_alike(twin):
    compiled = twin.__name__.startswith("cyasgi._speedups")
    module = pure_recorder
    if compiled:
        from cyasgi._speedups import recorder as module  # type: ignore[no-redef]
    block = bytearray(pure_recorder.BLOCK_SIZE)
    recorder = module.Recorder(block)
    started = time.monotonic()
    for method, status in (("GET", 200), ("PUT", 301), ("TRACE", 404), ("DELETE", 503), ("GET", 99), ("GET", 700)):
        recorder.request_done(method, status, started)
    for status in (400, 408, 413, 431, 503, 500, 418):
        recorder.server_response(status)
    recorder.received(7)
    recorder.sent(11)
    recorder.accepted()
    recorder.websocket_message_in()
    recorder.websocket_message_out()
    recorder.observe(pure_recorder.LOOP_LAG, 0.3)
    slots = memoryview(block).cast("Q").tolist()
    at = pure_recorder.REQUESTS
    per_method = pure_recorder.STATUS_CLASSES
    assert slots[at + 0 * per_method + 1] == 1  # GET 2xx
    assert slots[at + 0 * per_method + 4] == 2  # GET 99 and 700: counted as 5xx, never out of the block
    assert slots[at + 3 * per_method + 2] == 1  # PUT 3xx
    assert slots[at + 7 * per_method + 3] == 1  # TRACE: OTHER 4xx
    assert slots[at + 4 * per_method + 4] == 1  # DELETE 5xx
    assert slots[pure_recorder.SERVER_RESPONSES : pure_recorder.SERVER_RESPONSES + 6] == [1] * 6  # not 418
    assert sum(slots[pure_recorder.DURATION : pure_recorder.DURATION + pure_recorder.BUCKETS]) == 6
    assert slots[pure_recorder.BYTES_RECEIVED] == 7 and slots[pure_recorder.BYTES_SENT] == 11
    assert slots[pure_recorder.CONNECTIONS_ACCEPTED] == 1
    assert slots[pure_recorder.WEBSOCKET_MESSAGES_IN] == slots[pure_recorder.WEBSOCKET_MESSAGES_OUT] == 1
    lag = pure_recorder.LOOP_LAG
    assert slots[lag + 11] == 1  # 0.3 s: in the bucket up to 0.5 s
    assert slots[lag + pure_recorder.BUCKETS] == 300_000


@pytest.mark.parametrize(
    ("microseconds", "bucket"),
    [(0, 0), (100, 0), (101, 1), (250, 1), (251, 2), (1000, 3), (1001, 4), (10_000_000, 15), (10_000_001, 16)],
)
def test_bucket_bounds(microseconds, bucket):
    assert pure_recorder.bucket_index(microseconds) == bucket
    bounds = pure_recorder.bucket_bounds()
    assert len(bounds) == pure_recorder.BOUNDS and bounds[0] == 0.0001 and bounds[-1] == 10.0
    if bucket < pure_recorder.BOUNDS:
        assert microseconds <= bounds[bucket] * 1e6


# --workers: the supervisor adds every worker up --------------------------------------------------------


@contextlib.contextmanager
def two_workers_with_metrics(*options: str) -> Iterator[tuple[CliProcess, str, str]]:
    """``cyasgi --workers 2 --metrics-bind 127.0.0.1:0 OPTIONS``, both workers ready: the process, the
    server's URL and the metrics' URL."""
    command = cyasgi(APP, "--port", "0", "--workers", "2", "--metrics-bind", "127.0.0.1:0", *options)
    with run_supervised(command) as cli:
        url = cli.wait_until_serving()
        match = METRICS_ON.search(cli.wait_for_line("Metrics on "))
        assert match, cli.output
        wait_for_count(cli, READY, 2)
        yield cli, url, match.group(1)


#: The bounded load of the --workers test: client threads, requests each (one connection per request).
LOAD_THREADS = 4
LOAD_REQUESTS = 15


def load(url: str, threads: int = LOAD_THREADS, requests: int = LOAD_REQUESTS) -> list[threading.Thread]:
    """Start ``threads`` clients making ``requests`` requests each; the caller joins them."""

    def client() -> None:
        for _ in range(requests):
            assert get(url).status_code == 200

    started = [threading.Thread(target=client) for _ in range(threads)]
    for thread in started:
        thread.start()
    return started


def test_workers_are_added_up_and_a_killed_worker_is_not_forgotten():
    with two_workers_with_metrics("--metrics-path", "/m") as (cli, url, metrics):
        # Scraped during a bounded load: the count only grows, and ends at what the clients did.
        clients = load(url)
        seen = []
        while any(thread.is_alive() for thread in clients):
            seen.append(value(scrape(metrics), "cyasgi_requests_total", method="GET", status="2xx"))
        for thread in clients:
            thread.join(WAIT)
        assert seen == sorted(seen)
        done = LOAD_THREADS * LOAD_REQUESTS
        samples = scrape(metrics)
        assert value(samples, "cyasgi_requests_total", method="GET", status="2xx") == done
        assert value(samples, "cyasgi_workers") == 2
        victim = started_pids(cli)[0]
        os.kill(victim, signal.SIGKILL)
        cli.wait_for_line(f"Child process [{victim}] died", SPAWN_WAIT)
        wait_for_count(cli, READY, 3)
        samples = wait_for_sample(metrics, "cyasgi_workers", 2)
        # The dead worker's requests are still counted: no counter went backwards.
        assert value(samples, "cyasgi_requests_total", method="GET", status="2xx") == done
        assert value(samples, "cyasgi_worker_restarts_total", reason="crash") == 1
        assert value(samples, "cyasgi_request_duration_seconds_count") == done
        assert value(samples, "cyasgi_connections_accepted_total") == done
        assert {labels for name, labels in samples if name == "cyasgi_requests_in_flight"} == {
            (("worker", "0"),),
            (("worker", "1"),),
        }
        for thread in load(url, threads=2, requests=5):
            thread.join(WAIT)
        samples = scrape(metrics)
        assert value(samples, "cyasgi_requests_total", method="GET", status="2xx") == done + 10
        # --metrics-path on the main port shows every worker, whichever one answers.
        for _ in range(4):
            samples = scrape(url + "/m")
            assert value(samples, "cyasgi_workers") == 2
        assert value(samples, "cyasgi_requests_total", method="GET", status="2xx") >= done + 10 + 3


def test_restarts_by_reason_max_requests():
    with two_workers_with_metrics("--limit-max-requests", "3") as (_, url, metrics):
        for _ in range(8):  # whichever worker takes them, one reaches its limit
            assert get(url).status_code == 200
        samples = wait_for_sample(
            metrics, "cyasgi_worker_restarts_total", lambda count: count >= 1, reason="max_requests"
        )
        assert value(samples, "cyasgi_worker_restarts_total", reason="crash") == 0
        assert value(samples, "cyasgi_worker_restarts_total", reason="reload") == 0
        assert value(samples, "cyasgi_requests_total", method="GET", status="2xx") == 8


def test_restarts_by_reason_reload():
    # (Without --limit-max-requests: no worker leaves by itself while SIGHUP rolls them over.)
    with two_workers_with_metrics() as (cli, url, metrics):
        assert get(url).status_code == 200
        cli.proc.send_signal(signal.SIGHUP)
        # One worker after the other: each replacement boots before its predecessor retires.
        samples = wait_for_sample(metrics, "cyasgi_worker_restarts_total", 2, SPAWN_WAIT, reason="reload")
        assert value(samples, "cyasgi_worker_restarts_total", reason="crash") == 0
        assert value(samples, "cyasgi_requests_total", method="GET", status="2xx") == 1


def test_a_worker_replaced_for_its_blocked_loop_is_counted_as_a_health_check_restart():
    with two_workers_with_metrics("--timeout-worker-healthcheck", "1") as (cli, url, metrics):
        for _ in range(4):
            assert get(url).status_code == 200
        # The stuck worker dies with the request open: its client gets an error, which is the point.
        blocked = threading.Thread(target=lambda: ignore_http_errors(lambda: get(url, "/block")), daemon=True)
        blocked.start()
        cli.wait_for_line("did not answer the health check within 1s", SPAWN_WAIT)
        wait_for_count(cli, READY, 3)
        samples = wait_for_sample(metrics, "cyasgi_workers", 2)
        blocked.join(WAIT)
        assert value(samples, "cyasgi_worker_restarts_total", reason="health_check") == 1
        assert value(samples, "cyasgi_worker_restarts_total", reason="crash") == 0
        # The replacement took the stuck worker's label.
        assert {labels for name, labels in samples if name == "cyasgi_requests_in_flight"} == {
            (("worker", "0"),),
            (("worker", "1"),),
        }
        assert value(samples, "cyasgi_requests_total", method="GET", status="2xx") == 4


# Bad values ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics_bind": "9100"}, "--metrics-bind '9100': expected HOST:PORT"),
        ({"metrics_bind": "unix:/tmp/m.sock"}, "--metrics-bind 'unix:/tmp/m.sock': expected HOST:PORT or [IPV6]:PORT"),
        ({"metrics_bind": "127.0.0.1:70000"}, "port 70000 is out of range"),
        ({"metrics_path": "metrics"}, "--metrics-path must be a path such as"),
        ({"metrics_path": "/h", "health_path": "/h"}, "--metrics-path and --health-path must differ"),
    ],
)
def test_bad_values_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Config(app, **kwargs)


def test_without_prometheus_client_it_says_what_to_install(monkeypatch):
    monkeypatch.setattr("cyasgi.config.prometheus_available", lambda: False)
    with pytest.raises(ConfigError, match=re.escape("pip install 'cyasgi[metrics]'")):
        Config(app, metrics_bind="127.0.0.1:0")


def test_cli_exit_codes():
    bad = run_cli_to_exit("tests.apps:hello", "--metrics-bind", "localhost")
    assert bad.returncode == 3, bad.stdout
    assert "--metrics-bind 'localhost': expected HOST:PORT" in bad.stdout
    assert "Traceback" not in bad.stdout
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for extra in ((), ("--workers", "2")):
            busy = run_cli_to_exit(
                "tests.apps:hello", "--port", "0", "--metrics-bind", f"127.0.0.1:{port}", *extra, timeout=SPAWN_WAIT
            )
            assert busy.returncode == 3, busy.stdout
            assert "--metrics-bind" in busy.stdout and "Traceback" not in busy.stdout
