"""The ``--workers`` supervisor's side of the metrics: every worker's block, read on a scrape.

Each worker counts into a block of its own, made here before it is spawned. A scrape reads every
live block and adds the counters of the workers that are gone (``retired``), so a replaced worker
never makes a counter go backwards. The listener thread and the supervisor's loop share the
state under one lock.
"""

from __future__ import annotations

import threading
from typing import Any

from cyasgi.metrics.block import Block, add_counters, empty_values
from cyasgi.metrics.endpoint import MetricsListener
from cyasgi.metrics.exposition import RESTART_REASONS, Snapshot, render

#: What a worker sends on its health pipe to ask for the exposition, and the prefix of the answer.
METRICS_REQUEST = b"M"


class WorkersMetrics:
    def __init__(self, config: Any) -> None:
        self._lock = threading.Lock()
        self._retired = empty_values()
        self._blocks: dict[int, tuple[str, Block]] = {}  # id of the worker handle -> (label, block)
        self._restarts = dict.fromkeys(RESTART_REASONS, 0)
        self.listener: MetricsListener | None = None
        if config.metrics_address is not None:
            host, port = config.metrics_address
            self.listener = MetricsListener(host, port, self.read)

    def start(self) -> None:
        if self.listener is not None:
            self.listener.start()

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.stop()
        with self._lock:
            for _, block in self._blocks.values():
                block.close()
            self._blocks.clear()

    def new_block(self, worker: object, label: str) -> Block:
        block = Block()
        with self._lock:
            self._blocks[id(worker)] = (label, block)
        return block

    def retire(self, worker: object) -> None:
        """The worker has exited: its counters join the retired totals and its block is freed."""
        with self._lock:
            entry = self._blocks.pop(id(worker), None)
            if entry is not None:
                add_counters(self._retired, entry[1].values())
                entry[1].close()

    def restarted(self, reason: str) -> None:
        with self._lock:
            self._restarts[reason] += 1

    def read(self) -> Snapshot:
        with self._lock:
            totals = list(self._retired)
            workers = []
            for label, block in sorted(self._blocks.values(), key=lambda entry: int(entry[0])):
                values = block.values()
                add_counters(totals, values)
                workers.append((label, values))
            return Snapshot(totals, workers, dict(self._restarts))

    def exposition(self) -> bytes:
        """The text a worker's --metrics-path answers with, sent back on its health pipe."""
        return render(self.read)[0]
