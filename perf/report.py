"""From rounds to the report: medians, ratios from the same run, the markdown table and the JSON."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from perf.registry import (
    BASELINE,
    CEILING,
    H2_REFERENCES,
    H2C,
    HTTP1,
    PROTOCOL_NAMES,
    PYPY,
    Server,
    command_line,
)

#: Per-round metrics whose median is reported.
METRICS = ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "server_cpu_pct", "client_cpu_pct")


def median(values: Iterable[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def summarize(cell: dict[str, Any]) -> dict[str, Any]:
    """Fill in a cell's ``median`` (of each metric over its rounds) and its total ``errors``."""
    rounds = cell.get("rounds", [])
    cell["median"] = {metric: median(r.get(metric) for r in rounds) for metric in METRICS}
    cell["errors"] = sum(r.get("errors", 0) for r in rounds)
    return cell


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return value / reference


def add_ratios(cells: Sequence[dict[str, Any]], baseline: str = BASELINE) -> None:
    """``vs_baseline`` / ``vs_ceiling``: median req/s over the baseline's (uvicorn unless told) and the raw
    ceiling's, same workload."""
    by_key = {(cell["server"], cell["workload"]): cell for cell in cells}
    for cell in cells:
        rps = cell["median"]["rps"]
        for key, reference in (("vs_baseline", baseline), ("vs_ceiling", CEILING)):
            other = by_key.get((reference, cell["workload"]))
            cell[key] = ratio(rps, other["median"]["rps"]) if other and other["status"] == "ok" else None
        ceiling = by_key.get((CEILING, cell["workload"]))
        ceiling_cpu = ceiling["median"]["cpu_us_per_req"] if ceiling and ceiling["status"] == "ok" else None
        cell["cpu_vs_ceiling"] = ratio(cell["median"]["cpu_us_per_req"], ceiling_cpu)
        # The HTTP/2 rows: to each reference peer of the same workload (granian, hypercorn).
        cell["vs"], cell["cpu_vs"] = {}, {}
        for reference in H2_REFERENCES:
            other = by_key.get((reference, cell["workload"]))
            if other is not None and other["status"] == "ok":
                cell["vs"][reference] = ratio(rps, other["median"]["rps"])
                cell["cpu_vs"][reference] = ratio(cell["median"]["cpu_us_per_req"], other["median"]["cpu_us_per_req"])


# the bar of HTTP/2 (issue 14): checked on every run that has its workloads ------------------------

#: ``(what, server, workload, metric, reference server, reference workload, bound)``: the server's median
#: ``metric`` over the reference's, at least ``bound`` for req/s, at most ``bound`` for CPU per request.
BARS: tuple[tuple[str, str, str, str, str, str, float], ...] = (
    ("h2-hello req/s ≥ 1.5× granian's", "cyasgi-h2", "h2-hello", "rps", "granian-h2", "h2-hello", 1.5),
    ("h2-hello req/s ≥ 8× hypercorn's", "cyasgi-h2", "h2-hello", "rps", "hypercorn-h2", "h2-hello", 8.0),
    ("h2-echo-1k req/s ≥ 1.2× granian's", "cyasgi-h2", "h2-echo-1k", "rps", "granian-h2", "h2-echo-1k", 1.2),
    (
        "h2-hello-m1 server CPU per request ≤ 1.5× cyasgi's HTTP/1.1 hello",
        "cyasgi-h2", "h2-hello-m1", "cpu_us_per_req", "cyasgi", "hello", 1.5,
    ),
)  # fmt: skip


def check_bars(
    cells: Sequence[dict[str, Any]], servers: dict[str, dict[str, Any]], workloads: Iterable[str]
) -> list[dict[str, Any]]:
    """Each bar whose workload is in the run: ``met`` True/False (None: not measured) and a ``line``
    "bar: WHAT: met|missed|not measured (figures)"."""
    by_key = {(cell["server"], cell["workload"]): cell for cell in cells}
    present = set(workloads)
    out = []
    for what, server, workload, metric, reference, reference_workload, bound in BARS:
        if workload not in present:
            continue
        figures: list[float] = []
        busy: list[str] = []
        missing: list[str] = []
        for name, load in ((server, workload), (reference, reference_workload)):
            cell = by_key.get((name, load))
            value = cell["median"][metric] if cell is not None and cell["status"] == "ok" else None
            if value is None:
                status = cell["status"] if cell is not None else servers.get(name, {}).get("status", "not in this run")
                missing.append(f"{name} on {load}: {'not in this run' if status == 'ok' else status}")
            else:
                figures.append(value)
                busy.append(_num(cell["median"]["server_cpu_pct"], 0, " %"))
        bar: dict[str, Any] = {"what": what, "server": server, "reference": reference, "bound": bound}
        if missing:
            bar.update(met=None, ratio=None, line=f"bar: {what}: not measured ({'; '.join(missing)})")
        else:
            value, other = figures
            got = ratio(value, other)

            def passes(x: float, bound: float = bound, metric: str = metric) -> bool:
                return x >= bound if metric == "rps" else x <= bound

            met = got is not None and passes(got)
            unit = "req/s" if metric == "rps" else "µs/req"
            digits = 0 if metric == "rps" else 1
            shown = _times(got)
            if got is not None and passes(round(got, 2)) != met:
                shown = f"{got:.4f}×"  # 1.4998× missed, not "1.50×"
            figure = f"{shown}: {_num(value, digits)} vs {_num(other, digits)} {unit}"
            if metric != "rps":
                # CPU per request grows when a server is not kept busy (fewer requests per wake-up): say how busy.
                figure += f"; the servers used {busy[0]} and {busy[1]} of their core"
            bar.update(met=met, ratio=got, line=f"bar: {what}: {'met' if met else 'missed'} ({figure})")
        out.append(bar)
    return out


# the bar of HTTP/1.1 against the best peer (issue 15): checked on every run that has the peers ------------

#: The servers a "peer" bar compares cyasgi with (the best of those in the run): the other servers' fastest
#: single-worker setups. cyasgi's own variants and the raw ceiling are not peers.
PEERS = ("uvicorn", "uvicorn-h11", "granian", "hypercorn", "socketify")
#: ``(workload, least ratio of cyasgi's req/s to the best peer's)``; hello also ≥ 2.5× uvicorn[standard].
PEER_BARS: tuple[tuple[str, float], ...] = (
    ("hello", 1.3),
    ("new-connection", 1.2),
    ("pipelined", 1.0),
    ("echo-1k", 1.0),
    ("echo-64k", 1.0),
    ("stream-1m", 1.0),
    ("fastapi-json", 1.0),
)
UVICORN_BARS: tuple[tuple[str, float], ...] = (("hello", 2.5),)
#: new-connection: cyasgi's server CPU per request at most this many times the raw uvloop ceiling's.
CEILING_CPU_BARS: tuple[tuple[str, float], ...] = (("new-connection", 1.3),)


def check_peer_bars(cells: Sequence[dict[str, Any]], workloads: Iterable[str]) -> list[dict[str, Any]]:
    """The HTTP/1.1 bars of the compiled twin against the best peer of the run (and uvicorn, and the ceiling's
    CPU), for the workloads in the run: ``met`` True/False (None: not measured) and a ``line``."""
    by_key = {(cell["server"], cell["workload"]): cell for cell in cells}
    present = set(workloads)
    out: list[dict[str, Any]] = []

    def median(server: str, workload: str, metric: str) -> float | None:
        cell = by_key.get((server, workload))
        return cell["median"][metric] if cell is not None and cell["status"] == "ok" else None

    def bar(what: str, value: float | None, other: float | None, other_name: str, bound: float, rps: bool) -> None:
        if value is None or other is None:
            missing = "cyasgi" if value is None else other_name
            out.append({"what": what, "met": None, "line": f"bar: {what}: not measured ({missing} has no result)"})
            return
        got = ratio(value, other)
        met = got is not None and (got >= bound if rps else got <= bound)
        unit, digits = ("req/s", 0) if rps else ("µs/req", 1)
        figure = f"{_times(got)}: {_num(value, digits)} vs {other_name}'s {_num(other, digits)} {unit}"
        out.append({"what": what, "met": met, "line": f"bar: {what}: {'met' if met else 'missed'} ({figure})"})

    for workload, bound in PEER_BARS:
        if workload not in present:
            continue
        peers = [(median(peer, workload, "rps"), peer) for peer in PEERS]
        measured = [(rps, peer) for rps, peer in peers if rps is not None]
        best_rps, best = max(measured) if measured else (None, "every peer")
        bar(f"{workload} req/s ≥ {bound:g}× the best peer's", median("cyasgi", workload, "rps"), best_rps, best,
            bound, True)  # fmt: skip
    for workload, bound in UVICORN_BARS:
        if workload in present:
            bar(f"{workload} req/s ≥ {bound:g}× uvicorn's", median("cyasgi", workload, "rps"),
                median("uvicorn", workload, "rps"), "uvicorn", bound, True)  # fmt: skip
    for workload, bound in CEILING_CPU_BARS:
        if workload in present:
            bar(f"{workload} server CPU per request ≤ {bound:g}× the raw uvloop ceiling's",
                median("cyasgi", workload, "cpu_us_per_req"), median(CEILING, workload, "cpu_us_per_req"),
                CEILING, bound, False)  # fmt: skip
    return out


# formatting -------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}{suffix}"


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _times(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def processor(meta: dict[str, Any]) -> str:
    """The processor of a run, for the heading of each of its tables (absolute figures, and even the order of
    the peers, differ between processors: a table without its processor cannot be compared)."""
    return str(meta.get("cpu_model") or "unknown processor")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], right_from: int = 1) -> list[str]:
    align = ["---" if i < right_from else "--:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _cell_rps(cell: dict[str, Any] | None, baseline: str = BASELINE) -> str:
    if cell is None:
        return ""
    if cell["status"] != "ok":
        return cell["status"]
    text = _num(cell["median"]["rps"])
    if cell.get("vs_baseline") is not None and cell["server"] != baseline:
        text += f" ({_times(cell['vs_baseline'])})"
    return text


def _cell_cpu(
    cell: dict[str, Any] | None, by_key: dict[tuple[str, str], dict[str, Any]], baseline_name: str = BASELINE
) -> str:
    if cell is None:
        return ""
    if cell["status"] != "ok":
        return cell["status"]
    text = _num(cell["median"]["cpu_us_per_req"], 1)
    baseline = by_key.get((baseline_name, cell["workload"]))
    if cell["server"] != baseline_name and baseline is not None and baseline["status"] == "ok":
        text += f" ({_times(ratio(cell['median']['cpu_us_per_req'], baseline['median']['cpu_us_per_req']))})"
    return text


def protocol_of(workload: dict[str, Any]) -> str:
    return str(workload.get("protocol", HTTP1))  # a run saved before the h2c workloads: all HTTP/1.1


def render_summary(doc: dict[str, Any], level: int = 1, image: str | None = None) -> list[str]:
    """The header facts, the two server × workload tables of the HTTP/1.1 workloads and the table of the
    HTTP/2 ones with the bar checks (``level``: heading level of the title)."""
    meta, servers, all_workloads, cells = doc["meta"], doc["servers"], doc["workloads"], doc["results"]
    by_key = {(cell["server"], cell["workload"]): cell for cell in cells}
    workloads = {name: w for name, w in all_workloads.items() if protocol_of(w) != H2C}
    h2_workloads = [name for name, w in all_workloads.items() if protocol_of(w) == H2C]
    # The columns of the HTTP/1.1 tables: the servers that ran with a result in one of their workloads.
    ran = [
        name for name, server in servers.items()
        if server["status"] == "ok" and any((name, workload) in by_key for workload in workloads)
    ]  # fmt: skip
    baseline = meta.get("baseline", BASELINE)
    baseline_label = servers[baseline]["label"] if baseline in servers else baseline
    title, section = "#" * level, "#" * (level + 1)
    interpreters = meta.get("interpreters", {})
    if len(interpreters) > 1:
        python_lines = [
            f"- **Python**: {i['python']} (`{i['executable']}`) for " + ", ".join(i["servers"])
            for i in interpreters.values()
        ]
    else:
        python_lines = [f"- **Python**: {meta['python']} (`{meta['python_executable']}`), for every server"]
    out = [
        f"{title} cyasgi benchmark, {meta['date']}",
        "",
        f"- **Date**: {meta['date']} (the run took {meta['elapsed_s'] / 60:.1f} min)",
        *python_lines,
        (
            f"- **CPU**: {meta['cpu_model']}, {meta['cpus']} cores; each server pinned to core "
            f"{meta['server_cpu']}, wrk to core {meta['client_cpu']}; kernel {meta['kernel']}"
        ),
        (
            f"- **Load**: `{meta['wrk']}`, `wrk -t1 -c{meta['connections']} -d{meta['duration_s']:g}s --latency` "
            f"after a {meta['warmup_s']:g} s warm-up, {meta['rounds']} round(s) interleaved across servers; "
            "medians of the rounds are shown"
            + (f"; each server first got {meta['first_warmup_s']} s of load (JIT warm-up)"
               if meta.get("first_warmup_s") else "")
        ),
        *(
            [
                f"- **HTTP/2 load**: `{meta.get('h2load', 'h2load')}`, h2c with prior knowledge, "
                f"`h2load -t1 -c{meta['connections']} -m<streams> -D {meta['duration_s']:g}s --warm-up-time "
                f"{meta['warmup_s']:g}s` (the server's CPU is counted from the end of the warm-up); a run with "
                "any request not answered 2xx is rejected, not timed"
            ]
            if h2_workloads
            else []
        ),
        f"- **Machine load** (1/5/15 min) before: {meta['load_before']}, after: {meta['load_after']}. "
        + (meta.get("note") or ""),
        f"- **cyasgi** {meta['cyasgi_revision']}, `cyasgi --version` as each cyasgi row runs it: "
        + "; ".join(f"{k}: `{v}`" for k, v in meta["twins"].items()),
        "- **Versions**: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
    ]
    out += [
        f"- **Versions on {i['python']}**: " + ", ".join(f"{k} {v}" for k, v in i["versions"].items())
        for kind, i in interpreters.items()
        if len(interpreters) > 1 and kind != "cpython"
    ]
    skipped = [server for server in servers.values() if server["status"] != "ok"]
    out += [f"- **Not run**: {server['label']}: {server['status']}" for server in skipped]
    if workloads:
        out += [
            "",
            f"{section} Requests per second on {processor(meta)} (median; × {baseline_label} in the same run)",
            "",
        ]
        header = ["workload", *(servers[name]["label"] for name in ran)]
        rows = [[name, *(_cell_rps(by_key.get((server, name)), baseline) for server in ran)] for name in workloads]
        out += _table(header, rows)
        out += [
            "",
            f"{section} Server CPU µs per request on {processor(meta)} (median; × {baseline_label}: lower is better)",
            "",
            "Less sensitive to other load on the machine than req/s: it counts only the CPU time the server got.",
            "",
        ]
        rows = [
            [name, *(_cell_cpu(by_key.get((server, name)), by_key, baseline) for server in ran)] for name in workloads
        ]
        out += _table(header, rows)
    peer_bars = check_peer_bars(cells, workloads)
    if peer_bars:
        out += ["", "The bar of the compiled twin against the best peer (issue 15), on this run:", ""]
        out += [f"- {bar['line']}" for bar in peer_bars]
    if h2_workloads:
        out += ["", *render_h2(doc, h2_workloads, section)]
    if image:
        out += ["", f"![median req/s by workload and server]({image})"]
    return out


def render_h2(doc: dict[str, Any], names: Sequence[str], section: str = "##") -> list[str]:
    """The HTTP/2 rows: one per workload and server, with req/s and CPU per request beside granian's and
    hypercorn's of the same run, then the bar checks."""
    servers, workloads = doc["servers"], doc["workloads"]
    by_key = {(cell["server"], cell["workload"]): cell for cell in doc["results"]}
    labels = {reference: reference.removesuffix("-h2") for reference in H2_REFERENCES}
    out = [
        f"{section} HTTP/2 (h2c, h2load) on {processor(doc['meta'])}: req/s and server CPU µs per request (median; × "
        + " and × ".join(labels.values())
        + " in the same run)",
        "",
    ]
    header = [
        "workload", "server", "req/s", *(f"× {label}" for label in labels.values()), "CPU µs/req",
        *(f"CPU × {label}" for label in labels.values()),
    ]  # fmt: skip
    rows = []
    for name in names:
        for server, info in servers.items():
            cell = by_key.get((server, name))
            if cell is None:
                continue
            label = info["label"]
            if cell["status"] != "ok":
                error = f"{cell['status']}: {cell.get('error') or ''}".rstrip(": ")
                rows.append([name, label, error] + [""] * (len(header) - 3))
                continue
            vs, cpu_vs = cell.get("vs", {}), cell.get("cpu_vs", {})
            rows.append([
                name, label, _num(cell["median"]["rps"]), *(_times(vs.get(ref)) for ref in labels),
                _num(cell["median"]["cpu_us_per_req"], 1), *(_times(cpu_vs.get(ref)) for ref in labels),
            ])  # fmt: skip
    out += _table(header, rows, right_from=2)
    descriptions = "; ".join(f"{name}: {workloads[name]['description']}" for name in names)
    out += ["", f"Workloads ({descriptions}). The bar for HTTP/2 (issue 14), on this run:", ""]
    out += [f"- {bar['line']}" for bar in check_bars(doc["results"], servers, workloads)]
    return out


def render_details(doc: dict[str, Any], level: int = 2) -> list[str]:
    """One table per workload with every metric."""
    servers, workloads, cells = doc["servers"], doc["workloads"], doc["results"]
    by_key = {(cell["server"], cell["workload"]): cell for cell in cells}
    ran = [name for name, server in servers.items() if server["status"] == "ok"]
    section = "#" * level
    out = [f"{section} Per workload, on {processor(doc.get('meta', {}))}", ""]
    detail_header = [
        "server", "req/s", "× " + doc.get("meta", {}).get("baseline", BASELINE), "× ceiling", "p50 ms", "p99 ms",
        "CPU µs/req", "CPU µs × ceiling",
        "server CPU", "client CPU", "peak RSS MiB", "errors",
    ]  # fmt: skip
    for name, workload in workloads.items():
        out += [f"{section}# {name}: {workload['description']}", ""]
        if protocol_of(workload) == H2C:
            out += [
                f"h2load over h2c, {workload.get('streams', 1)} concurrent stream(s) per connection: it prints "
                "no latency percentiles; a round with any request not answered 2xx is rejected.",
                "",
            ]
        elif not workload.get("latency", True):
            out += [
                "wrk records no usable latency with pipelining (one sample per batch), so none is shown.",
                "",
            ]
        rows = []
        for server in ran:
            cell = by_key.get((server, name))
            if cell is None:
                continue
            if cell["status"] != "ok":
                rows.append([servers[server]["label"], cell["status"] + ": " + (cell.get("error") or "")]
                            + [""] * (len(detail_header) - 2))  # fmt: skip
                continue
            m = cell["median"]
            rss = cell.get("peak_rss_kb")
            rows.append([
                servers[server]["label"], _num(m["rps"]), _times(cell["vs_baseline"]), _times(cell["vs_ceiling"]),
                _ms(m["p50_ms"]), _ms(m["p99_ms"]), _num(m["cpu_us_per_req"], 1), _times(cell["cpu_vs_ceiling"]),
                _num(m["server_cpu_pct"], 0, " %"), _num(m["client_cpu_pct"], 0, " %"),
                _num(rss / 1024 if rss else None, 1), _num(cell["errors"]),
            ])  # fmt: skip
        out += _table(detail_header, rows)
        out.append("")
    out.append(
        "CPU µs/req is the server's user+system CPU time (all its processes and threads, from /proc) over the "
        "measured window divided by the requests wrk (or h2load) completed in it; server and client CPU (wrk's or "
        "h2load's) are percentages of one core. Peak RSS is the sum of VmHWM over the server's processes. Errors "
        "are non-2xx/3xx responses plus socket errors, summed over the rounds (an h2load round with any is "
        "rejected).\n"
    )
    return out


def render_commands(servers: Iterable[Server]) -> list[str]:
    """The table of every registered server's exact command line (``perf/registry.py``), for the docs."""
    header = ["name", "interpreter", "protocols", "WebSocket bench", "command"]
    rows = [
        [
            f"`{server.name}`", "PyPy" if server.interpreter == PYPY else "CPython",
            ", ".join(PROTOCOL_NAMES[protocol] for protocol in sorted(server.protocols)),
            "yes" if server.websocket else "", f"`{command_line(server)}`",
        ]
        for server in servers
    ]  # fmt: skip
    return _table(header, rows, right_from=len(header))


def render_markdown(doc: dict[str, Any]) -> str:
    out = render_summary(doc, image=None) + [""] + render_details(doc)
    detailed = [server for server in doc["servers"].values() if server["status"] != "ok"]
    if detailed:
        out += ["## Servers that did not run", ""]
        out += [
            f"- {server['label']}: **{server['status']}** {server.get('detail', '')}".rstrip()
            for server in detailed
        ]
        out.append("")
    skipped = doc.get("skipped", [])
    if skipped:
        out += ["## Servers skipped on some workloads", ""]
        out += [
            f"- {item['server']}: {item['reason']} (not on {', '.join(item['workloads'])})" for item in skipped
        ]
        out.append("")
    return "\n".join(out)


#: The markers of the docs' block of command lines (``perf/bench.py --update-commands``).
COMMANDS_BEGIN, COMMANDS_END = "<!-- commands:begin -->", "<!-- commands:end -->"


def update_block(
    text: str, block: str, begin: str = "<!-- results:begin -->", end: str = "<!-- results:end -->"
) -> str:
    """``text`` with what lies between the ``begin`` and ``end`` markers replaced by ``block``."""
    start, stop = text.find(begin), text.find(end)
    if start == -1 or stop < start:
        raise ValueError(f"no {begin} ... {end} block")
    return text[: start + len(begin)] + "\n" + block.rstrip("\n") + "\n" + text[stop:]


def write_outputs(doc: dict[str, Any], directory: Path, stem: str = "latest") -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"json": directory / f"{stem}.json", "md": directory / f"{stem}.md"}
    paths["json"].write_text(json.dumps(doc, indent=2) + "\n")
    paths["md"].write_text(render_markdown(doc))
    return paths
