"""HTTP/2 frame parsing cost: cyasgi's compiled twin, its pure twin and the ``hyperframe`` package.

The workload is a typical request's frames: a HEADERS frame (a 150-octet header block, END_HEADERS)
then a DATA frame (1 KiB, END_STREAM), parsed from one buffer; figures are per frame.

    python perf/h2_frames_bench.py                 # ns per parsed frame (best of 5 rounds)
    python perf/h2_frames_bench.py --callgrind      # instructions per parsed frame via valgrind (exact)
    python perf/h2_frames_bench.py --impls c,py

Instructions are the difference of two runs (N and 2N operations) under callgrind, which cancels the
start-up. Figures are in docs/http2.md.
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

IMPLS = {"c": "cyasgi._speedups.frames", "py": "cyasgi.protocols.http2.frames", "hyperframe": "hyperframe.frame"}
FRAMES_PER_OP = 2


def request_wire() -> bytes:
    from cyasgi.protocols.http2 import frames

    return frames.headers_frames(1, bytes(range(150)), False) + frames.data_frames(1, b"x" * 1024, True)


def operation(impl: str):
    module = importlib.import_module(IMPLS[impl])
    wire = request_wire()
    if impl == "hyperframe":
        parse_header = module.Frame.parse_frame_header

        def parse() -> list:
            view = memoryview(wire)
            out = []
            pos = 0
            while pos < len(wire):
                frame, length = parse_header(view[pos : pos + 9])
                frame.parse_body(view[pos + 9 : pos + 9 + length])
                out.append(frame)
                pos += 9 + length
            return out

        return parse
    reader = module.FrameReader()
    assert len(reader.feed(wire)) == FRAMES_PER_OP
    feed = reader.feed
    return lambda: feed(wire)


def run(impl: str, count: int) -> None:
    op = operation(impl)
    for _ in range(count):
        op()


def time_ns(impl: str, count: int = 100_000, rounds: int = 5) -> float:
    op = operation(impl)
    for _ in range(count // 10):
        op()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(count):
            op()
        best = min(best, (time.perf_counter_ns() - start) / count)
    return best / FRAMES_PER_OP


CALLGRIND_COUNT = 5_000
CALLGRIND_ENV = {"PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


def child_argv(impl: str, count: int) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), "--run", impl, str(count)]


def callgrind_count(impl: str, count: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        valgrind = shutil.which("valgrind") or "valgrind"
        command = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}"] + child_argv(impl, count)
        subprocess.run(command, check=True, capture_output=True, env=CALLGRIND_ENV)
        with open(out) as file:
            summary = re.search(r"^summary:\s+(\d+)", file.read(), re.MULTILINE)
    assert summary, "no summary in the callgrind output"
    return int(summary.group(1))


def callgrind_instructions(impl: str, count: int = CALLGRIND_COUNT) -> float:
    env = {key: value for key, value in CALLGRIND_ENV.items() if key != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(child_argv(impl, 1), check=True, capture_output=True, env=env)  # bytecode caches
    short, long = (callgrind_count(impl, n) for n in (count, 2 * count))
    return (long - short) / count / FRAMES_PER_OP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impls", default="c,py,hyperframe")
    parser.add_argument("--callgrind", action="store_true", help="instructions per frame via valgrind")
    parser.add_argument("--run", nargs=2, metavar=("IMPL", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run(args.run[0], int(args.run[1]))
        return
    print(f"{sys.implementation.name} {sys.version.split()[0]}; HEADERS (150-octet block) + DATA (1 KiB)")
    for impl in args.impls.split(","):
        if args.callgrind:
            print(f"{impl:10} {callgrind_instructions(impl):10,.0f} instructions per frame")
        else:
            print(f"{impl:10} {time_ns(impl):10,.0f} ns per frame")


if __name__ == "__main__":
    main()
