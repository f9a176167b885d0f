"""``make perf-check``: callgrind instructions per request of both HTTP/1.1 twins against a baseline.

Measures every workload of ``perf/microbench.py`` for every twin with ``--callgrind`` (CPython 3.12,
uvloop, ``--http auto``), prints baseline, now and the change, and exits non-zero when a figure is more
than the tolerance above its baseline. ``--update`` writes the new figures as the baseline instead.

    python perf/perf_check.py                           # check (exit 1: slower, 2: could not check)
    python perf/perf_check.py --update                  # measure and rewrite perf/baseline/callgrind.json
    python perf/perf_check.py --workloads hello --twins c --repeat 2   # a subset, each figure twice
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib
import importlib.metadata
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the ``perf`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perf import microbench

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "perf" / "baseline" / "callgrind.json"
#: A figure more than this many percent above its baseline fails the check.
TOLERANCE_PCT = 3.0
#: How the figures are measured; a baseline measured otherwise cannot be compared.
LOOP = "uvloop"
HTTP = "auto"
#: Settings that change what is measured: figures measured with others cannot be compared. The rest
#: (request counts, warm-up, the parser each twin drives) are noted when they differ.
INCOMPARABLE_SETTINGS = ("environment", "loop", "http")
#: Packages whose versions can move the figures a little: the compiled twin's C, the loop, the pure
#: twin's parser on CPython.
PACKAGES = ("Cython", "uvloop", "httptools")
#: The layout of the baseline file.
FORMAT = 1

EXIT_OK = 0
EXIT_SLOWER = 1
EXIT_ERROR = 2

OK = "ok"
SLOWER = "SLOWER"
CHEAPER = "cheaper"
NO_BASELINE = "no baseline"
#: Statuses that fail the check: a figure over the bar, or one with no bar to hold it to.
FAILING = (SLOWER, NO_BASELINE)

Figures = dict[str, dict[str, float]]  # workload -> twin -> instructions per request


class BaselineError(ValueError):
    """The baseline file cannot be used: what is wrong with it."""


@dataclass(frozen=True)
class Baseline:
    python: str
    date: str
    commit: str
    how: dict[str, Any]
    versions: dict[str, str | None]
    figures: Figures


@dataclass(frozen=True)
class Row:
    workload: str
    twin: str
    baseline: float | None
    now: float
    status: str
    spread: float = 0.0  # max - min over repeated measurements

    @property
    def change_pct(self) -> float | None:
        return None if self.baseline is None else (self.now / self.baseline - 1) * 100


# the baseline file ------------------------------------------------------------------------------


def parse_baseline(text: str) -> Baseline:
    """The baseline file's contents, checked; BaselineError says what is wrong with it."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BaselineError("not a JSON object")
    if doc.get("format") != FORMAT:
        raise BaselineError(f"format {doc.get('format')!r}, expected {FORMAT}")
    for key in ("python", "date", "commit"):
        if not isinstance(doc.get(key), str):
            raise BaselineError(f"{key!r} missing or not a string")
    figures = doc.get("instructions_per_request")
    if not isinstance(figures, dict) or not figures:
        raise BaselineError("'instructions_per_request' missing or empty")
    for workload, twins in figures.items():
        if not isinstance(twins, dict) or not twins:
            raise BaselineError(f"{workload}: no figures")
        for twin, value in twins.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise BaselineError(f"{workload}/{twin}: {value!r} is not a positive number")
    return Baseline(
        python=doc["python"],
        date=doc["date"],
        commit=doc["commit"],
        how=dict(doc.get("how", {})),
        versions=dict(doc.get("versions", {})),
        figures={w: {t: float(v) for t, v in twins.items()} for w, twins in figures.items()},
    )


def baseline_text(figures: Figures, meta: dict[str, Any], date: str, commit: str) -> str:
    """The baseline file for these figures (one decimal: the measurement is exact to far less)."""
    doc = {
        "format": FORMAT,
        "what": "perf/microbench.py --callgrind: instructions per request, checked by make perf-check",
        "python": meta["python"],
        "date": date,
        "commit": commit,
        "how": meta["how"],
        "versions": meta["versions"],
        "instructions_per_request": {
            workload: {twin: round(value, 1) for twin, value in twins.items()}
            for workload, twins in figures.items()
        },
    }
    return json.dumps(doc, indent=2) + "\n"


# comparison -------------------------------------------------------------------------------------


def status_of(baseline: float | None, now: float, tolerance_pct: float) -> str:
    if baseline is None:
        return NO_BASELINE
    # Multiplied out rather than divided, so a figure exactly at the tolerance passes.
    if now * 100 > baseline * (100 + tolerance_pct):
        return SLOWER
    if now * 100 < baseline * (100 - tolerance_pct):
        return CHEAPER
    return OK


def compare(
    baseline: Figures, measured: Figures, tolerance_pct: float, spreads: Figures | None = None
) -> list[Row]:
    """One row per measured figure, in the order measured."""
    rows = []
    for workload, twins in measured.items():
        for twin, now in twins.items():
            base = baseline.get(workload, {}).get(twin)
            spread = (spreads or {}).get(workload, {}).get(twin, 0.0)
            rows.append(Row(workload, twin, base, now, status_of(base, now, tolerance_pct), spread))
    return rows


def exit_status(rows: list[Row]) -> int:
    return EXIT_SLOWER if any(row.status in FAILING for row in rows) else EXIT_OK


def render_table(rows: list[Row]) -> str:
    show_spread = any(row.spread for row in rows)
    header = f"{'workload':<12} {'twin':<4} {'baseline':>10} {'now':>10} {'change':>9}"
    lines = [header + (f" {'spread':>7}" if show_spread else "") + "  status"]
    for row in rows:
        base = "-" if row.baseline is None else f"{row.baseline:,.0f}"
        change = "-" if row.change_pct is None else f"{row.change_pct:+.2f} %"
        line = f"{row.workload:<12} {row.twin:<4} {base:>10} {row.now:>10,.0f} {change:>9}"
        lines.append(line + (f" {row.spread:>7,.1f}" if show_spread else "") + f"  {row.status}")
    return "\n".join(lines)


def verdict(rows: list[Row], tolerance_pct: float) -> str:
    slower = [f"{r.workload}/{r.twin}" for r in rows if r.status == SLOWER]
    missing = [f"{r.workload}/{r.twin}" for r in rows if r.status == NO_BASELINE]
    cheaper = [f"{r.workload}/{r.twin}" for r in rows if r.status == CHEAPER]
    lines = []
    if slower:
        lines.append(f"FAIL: more than +{tolerance_pct:g} % over the baseline: {', '.join(slower)}")
    if missing:
        lines.append(f"FAIL: no baseline figure for {', '.join(missing)}")
    if slower or missing:
        lines.append("If the cost is meant, `make perf-check UPDATE=1` makes these figures the baseline.")
    if cheaper:
        lines.append(
            f"Cheaper by more than {tolerance_pct:g} %: {', '.join(cheaper)}; "
            "`make perf-check UPDATE=1` makes the lower figures the bar."
        )
    if not slower and not missing:
        lines.insert(0, f"OK: every figure within +{tolerance_pct:g} % of its baseline.")
    return "\n".join(lines)


def series(python: str) -> str:
    """'CPython 3.12' of 'CPython 3.12.1': what must match for figures to be comparable."""
    implementation, _, version = python.partition(" ")
    return f"{implementation} {'.'.join(version.split('.')[:2])}"


def mismatches(baseline: Baseline, meta: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(why the figures cannot be compared at all, differences that may move them a little)."""
    hard, soft = [], []
    if series(baseline.python) != series(meta["python"]):
        hard.append(f"the baseline is for {baseline.python}, this is {meta['python']}")
    elif baseline.python != meta["python"]:
        soft.append(f"Python: {baseline.python} in the baseline, {meta['python']} now")
    for key, now in meta["how"].items():
        then = baseline.how.get(key, now)
        if key == "parsers" and isinstance(then, dict):  # per twin, for the twins measured now
            differ = [(f"{key}[{twin}]", then[twin], v) for twin, v in now.items() if then.get(twin, v) != v]
        else:
            differ = [(key, then, now)] if then != now else []
        found = hard if key in INCOMPARABLE_SETTINGS else soft
        found.extend(f"{name}: {a!r} in the baseline, {b!r} now" for name, a, b in differ)
    for name, version in meta["versions"].items():
        if baseline.versions.get(name, version) != version:
            soft.append(f"{name}: {baseline.versions[name]} in the baseline, {version} now")
    return hard, soft


# the measurement --------------------------------------------------------------------------------


def parser_of(twin: str) -> str:
    """The parser class the twin drives under HTTP (its own, or httptools on CPython for the pure one)."""
    loop = asyncio.new_event_loop()
    try:
        protocol, _ = microbench.make_protocol(twin, microbench.hello_app, loop, HTTP)
    finally:
        loop.close()
    kind = type(protocol.parser)
    return f"{kind.__module__.partition('.')[0]}.{kind.__qualname__}"  # the package, not a module path


def current_meta(twins: list[str]) -> dict[str, Any]:
    """What the figures about to be measured depend on: the Python, the settings, the versions."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    valgrind = subprocess.run(
        ["valgrind", "--version"], check=False, capture_output=True, text=True
    ).stdout.strip()
    versions["valgrind"] = valgrind or None
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "how": {
            "environment": microbench.CALLGRIND_ENV,
            "loop": LOOP,
            "http": HTTP,
            "parsers": {twin: parser_of(twin) for twin in twins},
            "requests": [microbench.CALLGRIND_REQUESTS, 2 * microbench.CALLGRIND_REQUESTS],
            "warmup": microbench.WARMUP,
        },
        "versions": versions,
    }


def commit_description() -> str:
    """HEAD's short hash, marked when the code measured differs from it (the baseline file aside)."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True
    ).stdout.strip()
    if not head:
        return "unknown"
    status = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no"], check=False, capture_output=True, text=True
    )
    baseline = str(BASELINE.relative_to(ROOT))
    changed = [line for line in status.stdout.splitlines() if not line.endswith(baseline)]
    return f"{head} with uncommitted changes" if changed else head


def measure(workloads: list[str], twins: list[str], repeat: int) -> tuple[Figures, Figures]:
    """(median of the repeats, their spread) for each figure, with progress on stderr."""
    figures: Figures = {}
    spreads: Figures = {}
    for workload in workloads:
        for twin in twins:
            start = time.monotonic()
            values = [microbench.callgrind_instructions(twin, workload, LOOP, HTTP) for _ in range(repeat)]
            figures.setdefault(workload, {})[twin] = statistics.median(values)
            spreads.setdefault(workload, {})[twin] = max(values) - min(values)
            shown = ", ".join(f"{value:,.2f}" for value in values)
            print(f"  {workload:<12} {twin:<3} {shown} ({time.monotonic() - start:.0f} s)", file=sys.stderr)
    return figures, spreads


def unready(twins: list[str]) -> str | None:
    """What stops the measurement before it starts: no valgrind, a twin that does not import."""
    if shutil.which("valgrind") is None:
        return "valgrind is not installed (Debian: apt-get install valgrind)"
    for twin in twins:
        try:
            importlib.import_module(microbench.TWINS[twin])
        except ImportError as exc:
            return f"twin {twin!r} ({microbench.TWINS[twin]}) does not import with {sys.executable}: {exc}"
    return None


def fail(message: str) -> int:
    print(f"perf-check: {message}", file=sys.stderr)
    return EXIT_ERROR


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", type=Path, default=BASELINE, help="the baseline file (%(default)s)")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=TOLERANCE_PCT,
        help="percent over the baseline that fails (%(default)s)",
    )
    parser.add_argument(
        "--update", action="store_true", help="write the figures measured as the new baseline"
    )
    parser.add_argument("--workloads", default=",".join(microbench.WORKLOADS), help="comma-separated (all)")
    parser.add_argument("--twins", default=",".join(microbench.TWINS), help="comma-separated (all)")
    parser.add_argument("--repeat", type=int, default=1, help="measure each figure N times, show the spread")
    args = parser.parse_args(argv)
    args.workloads = args.workloads.split(",")
    args.twins = args.twins.split(",")
    for name, chosen, known in (
        ("workload", args.workloads, microbench.WORKLOADS),
        ("twin", args.twins, microbench.TWINS),
    ):
        unknown = [item for item in chosen if item not in known]
        if unknown:
            parser.error(f"unknown {name}: {', '.join(unknown)} (known: {', '.join(known)})")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.tolerance < 0:
        parser.error("--tolerance must not be negative")
    whole = set(args.workloads) == set(microbench.WORKLOADS) and set(args.twins) == set(microbench.TWINS)
    if args.update and not whole:  # a baseline stands for one commit: all of it is measured at once
        parser.error("--update measures every workload and twin: drop --workloads and --twins")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = unready(args.twins)
    if problem:
        return fail(problem)

    meta = current_meta(args.twins)
    baseline: Baseline | None = None
    if args.baseline.exists():
        try:
            baseline = parse_baseline(args.baseline.read_text())
        except BaselineError as exc:
            if not args.update:
                return fail(f"{args.baseline}: {exc}")
    elif not args.update:
        return fail(f"no baseline at {args.baseline}: `make perf-check UPDATE=1` measures and writes one")
    if baseline is not None:
        hard, soft = mismatches(baseline, meta)
        for line in soft:
            print(f"note: {line} (figures may move a little)", file=sys.stderr)
        if hard and not args.update:
            return fail("the figures are not comparable: " + "; ".join(hard))

    print(
        f"perf-check: {meta['python']}, {len(args.workloads) * len(args.twins)} figures, callgrind ...",
        file=sys.stderr,
    )
    start = time.monotonic()
    try:
        figures, spreads = measure(args.workloads, args.twins, args.repeat)
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-20:]
        return fail("a measured run failed:\n" + "\n".join(tail))
    elapsed = time.monotonic() - start

    rows = compare(baseline.figures if baseline else {}, figures, args.tolerance, spreads)
    if baseline is not None:
        print(f"baseline: {baseline.python}, {baseline.date}, commit {baseline.commit} ({args.baseline})")
    print(f"now:      {meta['python']}, commit {commit_description()}; measured in {elapsed:.0f} s")
    print(render_table(rows))
    if args.update:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        args.baseline.parent.mkdir(parents=True, exist_ok=True)
        args.baseline.write_text(baseline_text(figures, meta, stamp, commit_description()))
        print(f"Baseline written: {args.baseline}")
        return EXIT_OK
    print(verdict(rows, args.tolerance))
    return exit_status(rows)


if __name__ == "__main__":
    sys.exit(main())
