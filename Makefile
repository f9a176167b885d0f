# The README's two commands: `make run` and `make test`. Everything else builds on them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
PYPY ?= pypy3

# The .py files there are symlinks to pure modules compiled with their augmenting .pxd.
SPEEDUPS := $(wildcard cyasgi/_speedups/*.pyx cyasgi/_speedups/*.pxd cyasgi/_speedups/*.pxi cyasgi/_speedups/*.py)

.PHONY: run test test-pure test-pypy test-autobahn pypy-installed wrk-installed h2load-installed bench bench-h2 bench-pypy bench-ws perf-check perf-conn build annotate lint clean fuzz venv

# Create the venv and install cyasgi (editable) with its test dependencies.
$(VENV)/.installed: pyproject.toml setup.py requirements/test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/test.txt
	$(PY) -m pip install -q --no-build-isolation -e .
	touch $@

venv: $(VENV)/.installed

# (Re)compile the Cython twin in place; a no-op when nothing changed.
build: $(VENV)/.installed $(SPEEDUPS)
	$(PY) setup.py -q build_ext --inplace

run: build
	$(BIN)/cyasgi --app-dir examples hello:app --host $(HOST) --port $(PORT)

test: build
	$(PY) -m pytest $(PYTEST_ARGS)
	# The protocol contract again under the debug allocator: an overrun in the compiled twin aborts here.
	PYTHONMALLOC=debug $(PY) -m pytest -q -p no:cacheprovider tests/http1/test_http_protocol.py

# The Autobahn TestSuite's fuzzing-client cases 1-7 and 10 against a real server for every --ws
# (tests/autobahn.py, run by kosoku); a summary per implementation, non-zero on any FAILED case.
# AUTOBAHN_ARGS="--ws wsproto --case '7.*' --verbose", ...
test-autobahn: build
	$(PY) tests/autobahn.py $(AUTOBAHN_ARGS)

# A long fuzz run (tests/fuzz_http.py): coverage-guided with atheris when it installs, else hypothesis
# with many examples. `make test` already runs a short, bounded one (tests/http1/test_fuzz.py).
FUZZ_SECONDS ?= 600
fuzz: build
	-$(PY) -m pip install -q atheris || echo "atheris did not install: hypothesis runs instead"
	$(PY) tests/fuzz_http.py --seconds $(FUZZ_SECONDS)

# The whole suite with the compiled twin forced off at import.
test-pure: build
	CYASGI_NO_EXTENSIONS=1 $(PY) -m pytest $(PYTEST_ARGS)

# The whole suite on PyPy, which always runs the pure twin, in its own venv (.venv-pypy). PyPy 3.9 comes
# from Debian when it is missing: the interpreter, its venv module, and its headers (httptools builds
# through cpyext). CYASGI_REQUIRE_EXTENSIONS means nothing on PyPy: no extension is built there.
test-pypy: pypy-installed
	CYASGI_REQUIRE_EXTENSIONS= $(MAKE) build PYTHON=$(PYPY) VENV=.venv-pypy
	.venv-pypy/bin/python -m pytest $(PYTEST_ARGS)

pypy-installed:
	@$(PYPY) -c 'import ensurepip, os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' 2>/dev/null \
	  || (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pypy3 pypy3-venv pypy3-dev >/dev/null 2>&1 \
	      || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pypy3 pypy3-venv pypy3-dev >/dev/null)) \
	  || { echo "PyPy 3.9 could not be installed from Debian (apt-get install pypy3 pypy3-venv pypy3-dev)"; exit 1; }

# The benchmark harness builds its own venv (perf/.venv-3.12: cyasgi from this checkout + the peers);
# any python3 >= 3.9 runs it. BENCH_ARGS="--quick", "--servers cyasgi,uvicorn --workloads hello", ...
# Every registered workload runs, the HTTP/2 (h2c) ones too: h2load and curl load and probe those, so they
# are installed from Debian first when missing (h2load-installed; where that fails the h2c rows say
# "h2load not installed" and the rest of the bench runs).
bench: wrk-installed h2load-installed
	$(PYTHON) perf/bench.py $(BENCH_ARGS)

# Only the HTTP/2 rows (h2load -c64 -m10 / -m1 / 1 KiB POST -m10 over h2c with prior knowledge) and what the
# HTTP/2 bar of issue 14 is checked against: cyasgi --http2 beside granian --http 2 (the reference peer),
# hypercorn and uvicorn --http zttp --http2, plus cyasgi's HTTP/1.1 hello (the -m1 CPU bar, so its rounds
# alternate with the -m1 ones: --interleave). The report's HTTP/2 section ends with "bar: ... met/missed
# (figure)" lines, written to perf/results/h2.md. BENCH_ARGS="--quick", "--rounds 5", ...
H2_BENCH_SERVERS := cyasgi,cyasgi-h2,granian-h2,hypercorn-h2,uvicorn-h2
H2_BENCH_WORKLOADS := hello,h2-hello,h2-hello-m1,h2-echo-1k
bench-h2: wrk-installed h2load-installed
	$(PYTHON) perf/bench.py --servers $(H2_BENCH_SERVERS) --workloads $(H2_BENCH_WORKLOADS) \
	  --interleave hello,h2-hello-m1 --name h2 $(BENCH_ARGS)

# wrk, which loads every HTTP/1.1 workload, installed from Debian when missing: without it no row can be
# measured, so a failure to install it stops the bench.
wrk-installed:
	@command -v wrk >/dev/null 2>&1 \
	  || (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1 \
	      || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null)) \
	  || { echo "wrk could not be installed from Debian (apt-get install wrk): make bench needs it"; exit 1; }

# h2load (Debian's nghttp2-client) and curl with HTTP/2, installed when missing; a warning, not a failure,
# where they cannot be (no root, no network): only the h2c workloads need them.
h2load-installed:
	@(command -v h2load && curl -V | grep -q HTTP2) >/dev/null 2>&1 \
	  || (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client curl >/dev/null 2>&1 \
	      || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client curl >/dev/null)) \
	  || echo "h2load could not be installed from Debian (apt-get install nghttp2-client curl): the h2c workloads will not run"

# cyasgi on PyPy beside uvicorn and hypercorn on PyPy and the compiled twin on CPython (docs/pypy.md);
# the PyPy servers get 10 s of load first (the JIT's warm-up). BENCH_ARGS="--update-docs docs/pypy.md", ...
PYPY_BENCH_SERVERS := cyasgi-pypy,uvicorn-pypy,uvicorn-h11-pypy,hypercorn-pypy,socketify-pypy,cyasgi,uvicorn
bench-pypy: wrk-installed pypy-installed
	$(PYTHON) perf/bench.py --servers $(PYPY_BENCH_SERVERS) --workloads hello,headers,echo-1k,stream-1m \
	  --first-warmup 10 --baseline uvicorn-pypy --name pypy $(BENCH_ARGS)

# WebSocket echo throughput and idle memory against every peer of perf/registry.py that serves ASGI
# WebSockets (uvicorn, granian, hypercorn, socketify; see docs/websockets.md), both workloads: the plain
# echo and the permessage-deflate one. BENCH_ARGS="--quick", "--workloads deflate", ...
bench-ws: build
	$(PY) perf/ws_bench.py $(BENCH_ARGS)

# What a new connection costs (callgrind, exact): cyasgi against the raw uvloop protocol (docs/benchmarks.md).
perf-conn: build
	$(PY) perf/conn_callgrind.py $(PERF_CONN_ARGS)

# Callgrind instructions per request of both twins on CPython 3.12 (perf/perf_check.py) against the
# committed perf/baseline/callgrind.json: non-zero when a figure is more than 3 % above it. UPDATE=1 writes
# the figures measured as the new baseline. PERF_CHECK_ARGS="--tolerance 5", "--workloads hello --twins c".
# CPython 3.12 is found the way .ci/run finds it (PY312=... picks another); its venv is .venv312.
PY312 ?= $(shell ls -d $(HOME)/.pyenv/versions/3.12*/bin/python3 2>/dev/null | tail -n 1)
perf-check:
	@test -n "$(PY312)" || { echo "make perf-check: no CPython 3.12 at $(HOME)/.pyenv/versions/3.12*/bin/python3" \
	  "(the baseline is for 3.12: install one with pyenv, or pass PY312=/path/to/python3.12)"; exit 1; }
	$(MAKE) build PYTHON=$(PY312) VENV=.venv312
	.venv312/bin/python perf/perf_check.py $(if $(filter 1,$(UPDATE)),--update) $(PERF_CHECK_ARGS)

annotate: $(VENV)/.installed
	cd cyasgi/_speedups && ../../$(BIN)/cython -3 -a *.pyx

# ruff (cyasgi, tests, perf), mypy (cyasgi) and cython-lint (the .pyx/.pxd/.pxi of cyasgi/_speedups), their
# settings in pyproject.toml; the pinned tools of requirements/lint.txt go into the venv on first use.
# cython-lint runs pycodestyle from the PATH: the venv's.
$(VENV)/.lint-installed: $(VENV)/.installed requirements/lint.txt
	$(PY) -m pip install -q -r requirements/lint.txt
	touch $@

lint: $(VENV)/.lint-installed
	$(BIN)/ruff check cyasgi tests perf
	$(BIN)/mypy
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/cython-lint cyasgi/_speedups

clean:
	rm -rf build dist *.egg-info .mypy_cache .ruff_cache cyasgi/_speedups/*.c cyasgi/_speedups/*.html cyasgi/_speedups/*.so
	find . -name __pycache__ -prune -exec rm -rf {} +
