"""HPACK decode and encode cost: cyasgi's compiled twin, its pure twin and the ``hpack`` package.

Workloads (blocks made by the ``hpack`` package's encoder, as a browser's would be: Huffman strings,
every field but secrets added to the dynamic table):
  first    Chrome's 15-field GET, the first request of a connection: a fresh decoder, all literals
  repeat   the same GET again on the warm decoder: every field indexed
  encode   a 5-field response (:status, content-type, content-length, date, server) on a warm encoder

    python perf/hpack_bench.py                 # ns per operation (best of 5 rounds)
    python perf/hpack_bench.py --callgrind      # instructions per operation via valgrind (exact)
    python perf/hpack_bench.py --impls c,py --workloads first

Instructions per operation are the difference of two runs (N and 2N operations) under callgrind,
which cancels the start-up. Figures are in docs/http2.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

IMPLS = {"c": "cyasgi._speedups.hpack", "py": "cyasgi.protocols.http2.hpack", "hpack": "hpack"}
WORKLOADS = ("first", "repeat", "encode")

CHROME_GET = [
    (b":method", b"GET"),
    (b":authority", b"localhost:8000"),
    (b":scheme", b"https"),
    (b":path", b"/"),
    (b"sec-ch-ua", b'"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"'),
    (b"sec-ch-ua-mobile", b"?0"),
    (b"sec-ch-ua-platform", b'"Linux"'),
    (b"upgrade-insecure-requests", b"1"),
    (
        b"user-agent",
        b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    ),
    (
        b"accept",
        b"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,"
        b"application/signed-exchange;v=b3;q=0.7",
    ),
    (b"sec-fetch-site", b"none"),
    (b"sec-fetch-mode", b"navigate"),
    (b"sec-fetch-dest", b"document"),
    (b"accept-encoding", b"gzip, deflate, br, zstd"),
    (b"accept-language", b"en-US,en;q=0.9"),
]
RESPONSE = [
    (b":status", b"200"),
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"13"),
    (b"date", b"Wed, 03 Dec 2026 06:00:00 GMT"),
    (b"server", b"cyasgi"),
]


def browser_blocks() -> tuple[bytes, bytes]:
    import hpack

    encoder = hpack.Encoder()
    return encoder.encode(CHROME_GET, huffman=True), encoder.encode(CHROME_GET, huffman=True)


def operation(impl: str, workload: str):
    """A no-argument callable doing one operation (with everything it needs prepared)."""
    module = importlib.import_module(IMPLS[impl])
    first, repeat = browser_blocks()
    if workload == "encode":
        if impl == "hpack":
            lib_encoder = module.Encoder()
            lib_encoder.encode(RESPONSE, huffman=False)
            return lambda: lib_encoder.encode(RESPONSE, huffman=False)
        encoder = module.Encoder()
        encoder.encode(RESPONSE)
        return lambda: encoder.encode(RESPONSE)
    if impl == "hpack":
        if workload == "first":
            return lambda: module.Decoder().decode(first, raw=True)
        warm = module.Decoder()
        warm.decode(first, raw=True)
        return lambda: warm.decode(repeat, raw=True)
    decoder_class = module.Decoder
    if workload == "first":
        return lambda: decoder_class().decode(first)
    decoder = decoder_class()
    decoder.decode(first)
    assert decoder.decode(repeat) == CHROME_GET
    return lambda: decoder.decode(repeat)


def run(impl: str, workload: str, count: int) -> None:
    op = operation(impl, workload)
    for _ in range(count):
        op()


def time_ns(impl: str, workload: str, count: int = 20_000, rounds: int = 5) -> float:
    op = operation(impl, workload)
    for _ in range(count // 10):
        op()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(count):
            op()
        best = min(best, (time.perf_counter_ns() - start) / count)
    return best


CALLGRIND_COUNT = 2_000
CALLGRIND_ENV = {"PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


def child_argv(impl: str, workload: str, count: int) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), "--run", impl, workload, str(count)]


def callgrind_count(impl: str, workload: str, count: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        valgrind = shutil.which("valgrind") or "valgrind"
        command = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}"] + child_argv(impl, workload, count)
        subprocess.run(command, check=True, capture_output=True, env=CALLGRIND_ENV)
        with open(out) as file:
            summary = re.search(r"^summary:\s+(\d+)", file.read(), re.MULTILINE)
    assert summary, "no summary in the callgrind output"
    return int(summary.group(1))


def callgrind_instructions(impl: str, workload: str, count: int = CALLGRIND_COUNT) -> float:
    env = {key: value for key, value in CALLGRIND_ENV.items() if key != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(child_argv(impl, workload, 1), check=True, capture_output=True, env=env)  # bytecode caches
    short, long = (callgrind_count(impl, workload, n) for n in (count, 2 * count))
    return (long - short) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impls", default="c,py,hpack")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--callgrind", action="store_true", help="instructions per operation via valgrind")
    parser.add_argument("--run", nargs=3, metavar=("IMPL", "WORKLOAD", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        impl, workload, count = args.run
        run(impl, workload, int(count))
        return
    first, repeat = browser_blocks()
    version = sys.version.split()[0]
    print(f"{sys.implementation.name} {version}; GET block {len(first)} octets first, {len(repeat)} repeated")
    for workload in args.workloads.split(","):
        for impl in args.impls.split(","):
            if args.callgrind:
                print(f"{workload:7} {impl:6} {callgrind_instructions(impl, workload):10,.0f} instructions")
            else:
                print(f"{workload:7} {impl:6} {time_ns(impl, workload):10,.0f} ns")


if __name__ == "__main__":
    main()
