"""``make fuzz``: a long fuzz run of the HTTP/1.1 parsers and protocols (tests/fuzz_targets.py).

Coverage-guided under atheris when it is installed (it instruments the pure twin, the protocol
code and the checks; the compiled twin is compared against them on every input), else the
hypothesis properties of tests/http1/test_fuzz.py with many examples. Either way the send side
(tests/http1/test_send_parity.py: what apps send, through both twins) runs first, with hypothesis.

    python tests/fuzz_http.py --seconds 600
    python tests/fuzz_http.py --hypothesis --examples 50000

A crasher atheris finds is written as ``crash-*`` in the working directory: add its bytes to
tests/http_corpus.py (or as an ``@example`` in tests/http1/test_fuzz.py) once fixed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run_pytest(test_file: str, examples: int, *options: str) -> int:
    """One test file with ``examples`` hypothesis examples per property, no time limit."""
    env = dict(os.environ, CYASGI_FUZZ_EXAMPLES=str(examples))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout=0", *options, test_file]
    return subprocess.call(command, cwd=ROOT, env=env)


def run_send_parity(examples: int) -> int:
    """The send-side differential test (hypothesis only: its input is a message sequence)."""
    print("send parity:", examples, "examples", flush=True)
    return run_pytest("tests/http1/test_send_parity.py", examples)


def run_hypothesis(examples: int) -> int:
    print("hypothesis:", examples, "examples per property", flush=True)
    return run_pytest("tests/http1/test_fuzz.py", examples, "-s")


def run_atheris(atheris: object, seconds: int) -> int:
    with atheris.instrument_imports():  # type: ignore[attr-defined]
        from cyasgi.protocols.http import errors, foreign, parser, protocol, rules, wire  # noqa: F401
        from tests import fuzz_targets

    from cyasgi.protocols.http.foreign import httptools
    from tests.conftest import TWIN_MODULES
    from tests.http_corpus import MALFORMED, VALID
    from tests.parser_harness import quiet_parsers

    compiled = importlib.import_module(TWIN_MODULES["c"])
    pure = importlib.import_module(TWIN_MODULES["py"])
    loop = fuzz_targets.new_loop()
    quiet_parsers()
    setups = ["cyasgi", "h11"] + (["httptools"] if httptools is not None else [])

    def one_input(data: bytes) -> None:
        provider = atheris.FuzzedDataProvider(data)  # type: ignore[attr-defined]
        cuts = sorted(set(provider.ConsumeIntListInRange(provider.ConsumeIntInRange(0, 6), 1, 4096)))
        stream = provider.ConsumeBytes(provider.remaining_bytes())
        edges = [0, *[c for c in cuts if c < len(stream)], len(stream)]
        chunks = [stream[a:b] for a, b in zip(edges, edges[1:]) if b > a] or [b""]
        fuzz_targets.twins_agree(compiled, pure, loop, chunks)
        if httptools is not None:
            fuzz_targets.agrees_with_httptools(pure, loop, chunks)
        for parser in setups:
            assert asyncio.run(fuzz_targets.serve(compiled, parser, chunks)) == asyncio.run(
                fuzz_targets.serve(pure, parser, chunks)
            ), parser

    seeds = Path(tempfile.mkdtemp(prefix="cyasgi-fuzz-corpus-"))
    for index, case in enumerate([*MALFORMED, *VALID]):
        (seeds / f"seed-{index}").write_bytes(b"\x00" + case.data)  # \x00: no cuts
    print(f"atheris: {seconds} s, seeds in {seeds}", flush=True)
    atheris.Setup([sys.argv[0], f"-max_total_time={seconds}", "-rss_limit_mb=4096", str(seeds)], one_input)  # type: ignore[attr-defined]
    atheris.Fuzz()  # type: ignore[attr-defined]
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=600, help="how long atheris runs")
    parser.add_argument("--examples", type=int, default=20000, help="hypothesis examples per property")
    parser.add_argument(
        "--hypothesis", action="store_true", help="use hypothesis even if atheris is installed"
    )
    parser.add_argument(
        "--send-examples", type=int, default=20000, help="examples of the send-side parity test"
    )
    args = parser.parse_args()
    status = run_send_parity(args.send_examples)
    if status:
        return status
    if not args.hypothesis:
        try:
            import atheris
        except ImportError:
            print("atheris is not installed: running hypothesis instead", flush=True)
        else:
            return run_atheris(atheris, args.seconds)
    return run_hypothesis(args.examples)


if __name__ == "__main__":
    sys.exit(main())
