"""The chart of a run: median req/s by workload and server, one panel per workload (scales differ a lot).

Runs in the benchmark venv, which has matplotlib:  python perf/plot.py perf/results/latest.json out.png
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

COLUMNS = 4
CUT = 6.0


def plot(doc: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = [name for name, server in doc["servers"].items() if server["status"] == "ok"]
    workloads = list(doc["workloads"])
    cells = {(cell["server"], cell["workload"]): cell for cell in doc["results"]}
    palette = plt.get_cmap("tab10")
    colours = {name: palette(i % 10) for i, name in enumerate(servers)}

    rows = math.ceil(len(workloads) / COLUMNS)
    columns = min(COLUMNS, len(workloads))
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 0.45 * len(servers) * rows + 1.6 * rows),
                             squeeze=False)  # fmt: skip
    for index, workload in enumerate(workloads):
        ax = axes[index // columns][index % columns]
        names, values = [], []
        for server in servers:
            cell = cells.get((server, workload))
            if cell is not None and cell["status"] == "ok" and cell["median"]["rps"] is not None:
                names.append(server)
                values.append(cell["median"]["rps"])
        positions = list(range(len(names)))
        # A bar more than CUT times the next tallest (the raw ceiling, pipelined) would flatten the
        # others: draw it cut at that length, hatched, with its true value.
        ordered = sorted(values)
        cap = (
            ordered[-2] * CUT
            if len(ordered) > 1 and ordered[-2] > 0 and ordered[-1] > ordered[-2] * CUT
            else None
        )
        shown = [min(value, cap) if cap else value for value in values]
        bars = ax.barh(positions, shown, color=[colours[name] for name in names])
        ax.set_yticks(positions)
        ax.set_yticklabels(names, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(workload, fontsize=10)
        ax.tick_params(axis="x", labelsize=7)
        ax.xaxis.set_major_formatter(lambda value, _: f"{value / 1000:g}k" if value else "0")
        ax.set_xlim(0, (max(shown) if shown else 1) * 1.35)
        for bar, position, value, drawn in zip(bars, positions, values, shown):
            label = f" {value / 1000:.1f}k" if value >= 1000 else f" {value:.0f}"
            if drawn < value:
                bar.set_hatch("//")
                label += " (bar cut)"
            ax.text(drawn, position, label, va="center", fontsize=7)
    for index in range(len(workloads), rows * columns):
        axes[index // columns][index % columns].axis("off")
    meta = doc["meta"]
    interpreters = meta.get("interpreters", {})
    pythons = " + ".join(i["python"] for i in interpreters.values()) if len(interpreters) > 1 else meta["python"]
    h2 = any(workload.get("protocol") == "h2c" for workload in doc["workloads"].values())
    fig.suptitle(
        f"Requests/s, median of {meta['rounds']} round(s) of {meta['duration_s']:g} s: server on 1 core, "
        f"wrk -t1 -c{meta['connections']}{' (h2load -t1 for h2-*)' if h2 else ''} on the other\n"
        f"{pythons} · {meta['cpu_model']} · {meta['date']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    plot(json.loads(Path(argv[0]).read_text()), Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
