"""--reload with watchfiles: the OS's file notifications (inotify on Linux), filtered by the reload globs."""

from __future__ import annotations

from pathlib import Path
from socket import socket
from typing import Any, Callable

from watchfiles import watch

from cyasgi.config import Config
from cyasgi.supervisors.basereload import BaseReload


class WatchFilesReload(BaseReload):
    reloader_name = "WatchFiles"

    def __init__(self, config: Config, target: Callable[..., None], sockets: list[socket]) -> None:
        super().__init__(config, target, sockets)
        self.watcher = watch(
            *config.reload_dirs,
            watch_filter=self.accepts,
            stop_event=self.should_exit,
            # Wake up every few seconds even without changes, so a stop request is never missed.
            yield_on_timeout=True,
            ignore_permission_denied=True,
        )

    def accepts(self, change: Any, path: str) -> bool:
        return self.watch_filter(Path(path))

    def should_restart(self) -> list[Path] | None:
        self.pause()
        changes = next(self.watcher)  # StopIteration once should_exit is set ends the reload loop
        if not changes:
            return None
        return sorted({Path(path) for _, path in changes})
