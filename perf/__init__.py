"""cyasgi's benchmark harness: ``python perf/bench.py --help``; the registry is in :mod:`perf.registry`."""
