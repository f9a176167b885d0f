"""--reload without watchfiles: poll the modification times of the watched files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from socket import socket
from typing import Callable

from cyasgi.config import Config
from cyasgi.supervisors.basereload import BaseReload


class StatReload(BaseReload):
    """Every ``--reload-delay`` seconds, walk the reload directories and compare mtimes.

    The same include/exclude globs as the watchfiles reloader apply; excluded directories (such
    as ``.git`` or ``.venv`` through the ``.*`` default) are not even walked. A file that appears
    or disappears counts as a change, like an edit.
    """

    reloader_name = "StatReload"

    def __init__(self, config: Config, target: Callable[..., None], sockets: list[socket]) -> None:
        super().__init__(config, target, sockets)
        self.mtimes = self.snapshot()

    def should_restart(self) -> list[Path] | None:
        self.pause()
        current = self.snapshot()
        changed = [path for path, mtime in current.items() if self.mtimes.get(path) != mtime]
        changed += [path for path in self.mtimes if path not in current]
        self.mtimes = current
        return sorted(changed) or None

    def snapshot(self) -> dict[Path, float]:
        mtimes: dict[Path, float] = {}
        for path in self.iter_files():
            try:
                mtimes[path] = path.stat().st_mtime
            except OSError:  # removed between the walk and the stat
                continue
        return mtimes

    def iter_files(self) -> Iterator[Path]:
        for reload_dir in self.config.reload_dirs:
            for root, dirs, files in os.walk(reload_dir):
                base = Path(root)
                dirs[:] = [name for name in dirs if not self.watch_filter.prune_dir(base / name)]
                for name in files:
                    path = base / name
                    if self.watch_filter(path):
                        yield path
