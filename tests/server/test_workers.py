"""--workers: the Multiprocess supervisor, with real processes and real connections."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import threading

import httpx
import pytest

from cyasgi._subprocess import rebuild_socket
from tests.supervision import (
    APP,
    SPAWN_WAIT,
    Load,
    cyasgi,
    get,
    ignore_http_errors,
    pid_alive,
    run_supervised,
    started_pids,
    stop_during_request,
    wait_for_count,
    wait_until_dead,
)
from tests.utils import WAIT

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGTTIN"), reason="POSIX signals")

READY = "Application startup complete."


def workers(count: int, *extra: str) -> list[str]:
    return cyasgi(APP, "--port", "0", "--workers", str(count), *extra)


def test_killed_worker_is_replaced_while_requests_keep_succeeding():
    with run_supervised(workers(2)) as cli:
        url = cli.wait_until_serving()
        wait_for_count(cli, READY, 2)
        victim = started_pids(cli)[0]
        assert get(url).status_code == 200

        os.kill(victim, signal.SIGKILL)
        # The survivor keeps serving while the replacement boots: every request gets a 200.
        statuses = [get(url).status_code for _ in range(20)]
        cli.wait_for_line(f"Child process [{victim}] died (killed by SIGKILL)", SPAWN_WAIT)
        wait_for_count(cli, READY, 3)
        statuses += [get(url).status_code for _ in range(20)]

        assert statuses == [200] * 40
        replacement = started_pids(cli)[2]
        assert pid_alive(replacement) and not pid_alive(victim)


def test_sighup_replaces_every_worker_under_load_without_a_failed_request():
    with run_supervised(workers(2)) as cli:
        url = cli.wait_until_serving()
        wait_for_count(cli, READY, 2)
        old = started_pids(cli)
        with Load(url, threads=4) as load:
            load.wait_for_requests(50)
            cli.proc.send_signal(signal.SIGHUP)
            cli.wait_for_line("Received SIGHUP, restarting processes.")
            finished = wait_for_count(cli, "Finished server process", 2)
            load.wait_for_requests(50)
        new = started_pids(cli)[2:]

        assert load.errors == []
        assert set(load.statuses) == {200}
        assert len(new) == 2 and not set(new) & set(old)
        logged = {line.split("INFO:", 1)[-1].strip() for line in finished}
        assert {f"Finished server process [{pid}]" for pid in old} <= logged
        # One at a time: each new worker was ready before its predecessor was told to stop.
        out = cli.output
        starts = sorted(out.index(f"Started server process [{pid}]") for pid in new)
        stops = sorted(out.index(f"Terminated child process [{pid}]") for pid in old)
        assert starts[0] < stops[0] < starts[1] < stops[1]
        assert {str(pid) for pid in new} & load.pids  # the load went on, served by the new workers


def test_blocked_event_loop_is_detected_logged_with_its_stack_and_replaced():
    with run_supervised(workers(2, "--timeout-worker-healthcheck", "1")) as cli:
        url = cli.wait_until_serving()
        wait_for_count(cli, READY, 2)

        # The stuck worker dies with the request open: that is the point.
        request = lambda: httpx.get(url + "/block", timeout=SPAWN_WAIT)  # noqa: E731
        client = threading.Thread(target=ignore_http_errors, args=(request,), daemon=True)
        client.start()
        cli.wait_for_line("blocks its event loop")
        line = cli.wait_for_line("did not answer the health check within 1s", SPAWN_WAIT)
        stuck = int(line.split("Child process [", 1)[1].split("]", 1)[0])
        wait_for_count(cli, READY, 3)
        client.join(WAIT)

        out = cli.output
        stack = out[out.index(line) :]
        assert "time.sleep" in stack or "process_app.py" in stack
        assert 'File "' in stack and "tests/process_app.py" in stack
        wait_until_dead(stuck)
        assert [get(url).status_code for _ in range(10)] == [200] * 10


def test_worker_failing_at_startup_stops_the_supervisor_with_exit_code_3():
    with run_supervised(cyasgi("tests.process_app:missing", "--port", "0", "--workers", "2")) as cli:
        assert cli.wait(SPAWN_WAIT) == 3
        out = cli.output
    assert "failed to start, stopping the parent process" in out
    assert 'Attribute "missing" not found' in out
    assert out.count("Error loading ASGI app") <= 2  # no restart loop: at most the two first workers


def test_sigttin_adds_and_sigttou_removes_a_worker():
    with run_supervised(workers(2)) as cli:
        cli.wait_until_serving()
        wait_for_count(cli, READY, 2)

        cli.proc.send_signal(signal.SIGTTIN)
        cli.wait_for_line("Received SIGTTIN, increasing the number of processes.")
        wait_for_count(cli, READY, 3)
        third = started_pids(cli)[2]
        assert pid_alive(third)

        cli.proc.send_signal(signal.SIGTTOU)
        cli.wait_for_line(f"Terminated child process [{third}]")
        wait_until_dead(third)
        cli.proc.send_signal(signal.SIGTTOU)
        wait_for_count(cli, "Received SIGTTOU", 2)
        second = int(wait_for_count(cli, "Terminated child process", 2)[1].split("[", 1)[1].split("]", 1)[0])
        cli.proc.send_signal(signal.SIGTTOU)
        cli.wait_for_line("Already reached one process, cannot decrease the number of processes anymore.")
        wait_until_dead(second)
        assert len([pid for pid in started_pids(cli) if pid_alive(pid)]) == 1


def test_sigterm_lets_in_flight_requests_finish_then_stops_everything():
    with run_supervised(workers(2, "--timeout-graceful-shutdown", "5")) as cli:
        url = cli.wait_until_serving()
        wait_for_count(cli, READY, 2)
        pids = started_pids(cli)
        code, statuses = stop_during_request(cli, url, "/slow", "starts a slow request")
        out = cli.output
    assert code == 0
    assert statuses == [200]
    assert "Received SIGTERM, exiting." in out and "Stopping parent process" in out
    assert not any(pid_alive(pid) for pid in pids)


def test_sigterm_cancels_a_hung_request_after_the_graceful_timeout():
    with run_supervised(workers(2, "--timeout-graceful-shutdown", "1")) as cli:
        url = cli.wait_until_serving()
        wait_for_count(cli, READY, 2)
        code, statuses = stop_during_request(cli, url, "/hang", "starts a request that never ends")
    out = cli.output
    assert code == 0
    assert statuses == []  # cut off: the worker cancelled it
    assert "Cancel 1 running task(s), timeout graceful shutdown exceeded" in out
    assert "did not stop in time" not in out  # the worker honoured its own timeout
    assert out.count("Finished server process") == 2



def test_max_requests_recycles_workers_without_failing_a_request():
    with run_supervised(workers(2, "--limit-max-requests", "8", "--limit-max-requests-jitter", "4")) as cli:
        url = cli.wait_until_serving()
        wait_for_count(cli, READY, 2)
        statuses = [get(url).status_code for _ in range(40)]
        wait_for_count(cli, "exited; starting a new one.", 2)
        statuses += [get(url).status_code for _ in range(10)]
        out = cli.output
    assert statuses == [200] * 50
    assert "Maximum request limit of" in out
    assert len(started_pids(cli)) >= 4


def test_reuse_port_gives_each_worker_its_own_socket():
    with run_supervised(workers(2, "--reuse-port")) as cli:
        url = cli.wait_until_serving()
        wait_for_count(cli, READY, 2)
        pids = {get(url).text for _ in range(60)}
        own = started_pids(cli)
        listeners = [_listening_inodes(pid) for pid in own]
    # The kernel spreads connections over both sockets, and they are distinct sockets.
    assert pids == {str(pid) for pid in own}
    assert all(listeners) and not set(listeners[0]) & set(listeners[1])


def test_reuse_port_lets_independent_servers_share_a_port():
    with run_supervised(cyasgi(APP, "--port", "0", "--reuse-port")) as first:
        url = first.wait_until_serving()
        port = url.rsplit(":", 1)[1]
        with run_supervised(cyasgi(APP, "--port", port, "--reuse-port")) as second:
            assert second.wait_until_serving() == url
            wait_for_count(second, READY, 1)
            pids = {get(url).text for _ in range(40)}
        assert pids == {str(pid) for pid in started_pids(first) + started_pids(second)}


def test_reload_and_workers_together_are_refused():
    with run_supervised(cyasgi(APP, "--reload", "--workers", "2", "--port", "0")) as cli:
        assert cli.wait(WAIT) == 3
    assert "--reload and --workers cannot be used together" in cli.output


def _listening_inodes(pid: int) -> list[str]:
    """Socket inodes the process holds in LISTEN state (from /proc/<pid>/fd and /proc/net/tcp)."""
    listening = set()
    with open("/proc/net/tcp") as tcp:
        for row in tcp.read().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A":  # TCP_LISTEN
                listening.add(fields[9])
    inodes = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in listening:
            inodes.append(target[8:-1])
    return inodes


def test_a_socket_rebuilt_in_a_worker_leaves_the_shared_listener_non_blocking():
    """Workers share one open file description; rebuilding it in a new worker must not make it
    blocking for the others (PyPy's socket(fileno=...) did, hanging workers in accept())."""

    class Inherited:
        def __init__(self, fd: int) -> None:
            self.fd = fd

        def detach(self) -> int:
            return self.fd

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        rebuilt = rebuild_socket(Inherited(os.dup(listener.fileno())), listener.family, listener.type, listener.proto)
        with rebuilt:
            assert fcntl.fcntl(listener.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK
            assert rebuilt.getsockname() == listener.getsockname()
    assert socket.getdefaulttimeout() is None
