"""How long a server takes to reach its steady speed: req/s for each second of load from its start.

For a JIT (PyPy) this is the warm-up that ``perf/bench.py --first-warmup`` must cover. Uses the venvs,
servers and workloads of perf/bench.py (run that once first to build the venvs):

    python3 perf/warmup.py --servers cyasgi-pypy,uvicorn-pypy --workload hello --seconds 30
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the ``perf`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perf import bench, environment
from perf.registry import PYPY, SERVERS, WORKLOADS, Context


def curve(server_name: str, workload_name: str, seconds: int, settings: bench.Settings) -> list[float]:
    server, workload = SERVERS[server_name], WORKLOADS[workload_name]
    if server.interpreter == PYPY:
        python = environment.find_pypy(settings.pypy)
    else:
        python = environment.find_python(settings.python)
    venv, _info = environment.venv_for(python)
    if not Path(venv.python).exists():
        raise SystemExit(f"no venv at {venv.path}: run perf/bench.py once first")
    process = bench.start(Context(venv.bin_dir), server, workload, settings)
    try:
        process.wait_ready(bench.START_TIMEOUT)
        bench.check_answer(process, workload)
        return [bench.load(process, workload, settings, 1).result.rps for _ in range(seconds)]
    finally:
        process.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="cyasgi-pypy", help="comma-separated names (cyasgi-pypy)")
    parser.add_argument("--workload", default="hello", choices=list(WORKLOADS))
    parser.add_argument("--seconds", type=int, default=30, help="seconds of load, one wrk run each (30)")
    parser.add_argument("--pypy", default=None, help="the PyPy interpreter (default: pypy3 on the PATH)")
    args = parser.parse_args(argv)
    settings = bench.Settings(servers=[], workloads=[], pypy=args.pypy)
    for name in [n.strip() for n in args.servers.split(",") if n.strip()]:
        if name not in SERVERS:
            raise SystemExit(f"unknown server {name} (see perf/bench.py --list)")
        rates = curve(name, args.workload, args.seconds, settings)
        steady = sorted(rates[len(rates) // 2 :])[len(rates[len(rates) // 2 :]) // 2]  # median of the 2nd half
        reached = next((i + 1 for i, rate in enumerate(rates) if rate >= 0.9 * steady), len(rates))
        print(f"{name} on {args.workload}: " + " ".join(f"{rate / 1000:.0f}k" for rate in rates))
        print(f"  steady ~{steady:,.0f} req/s (median of the second half); 90 % of it after {reached} s of load")
    return 0


if __name__ == "__main__":
    sys.exit(main())
