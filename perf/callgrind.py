"""Exact instruction counts of a benchmark script's hot loop, by callgrind: the difference of two runs
(N and 2N operations) cancels the interpreter's start-up and the script's set-up."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from typing import Callable

#: The measured runs' whole environment. A fixed hash seed: random ones change dict and set layouts, so
#: instruction counts, from run to run. No bytecode written: a module compiled in the shorter run only
#: would be counted as a (negative) cost per operation. Nothing of the caller's: its size moves every
#: address, which moves the count per operation a little too.
CALLGRIND_ENV = {"PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


def count_instructions(argv: list[str], keep: str | None = None) -> int:
    """Instructions of one whole run of ``argv`` under callgrind; ``keep``: where to copy its
    callgrind.out file (for callgrind_annotate)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        valgrind = shutil.which("valgrind") or "valgrind"  # found on the caller's PATH, not the child's
        command = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", *argv]
        subprocess.run(command, check=True, capture_output=True, env=CALLGRIND_ENV)
        if keep is not None:
            shutil.copyfile(out, keep)
        with open(out) as file:
            summary = re.search(r"^summary:\s+(\d+)", file.read(), re.MULTILINE)
    assert summary, "no summary in the callgrind output"
    return int(summary.group(1))


def instructions_per_operation(
    argv_for: Callable[[int], list[str]], count: int, keep: str | None = None
) -> float:
    """Instructions per operation: ``argv_for(n)`` runs n operations; measured with n and 2n.
    ``keep``: a path prefix under which both runs' callgrind.out files are kept (``<keep>.<n>``): a
    function's count in the longer run minus the shorter's is its cost per n operations."""
    # One quick run outside valgrind first: it writes the bytecode caches the measured runs then read.
    env = {key: value for key, value in CALLGRIND_ENV.items() if key != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(argv_for(1), check=True, capture_output=True, env=env)
    short, long = (
        count_instructions(argv_for(n), None if keep is None else f"{keep}.{n}") for n in (count, 2 * count)
    )
    return (long - short) / count
