"""--reload: run the server in a child process and start a fresh one whenever watched files change."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from socket import socket
from types import FrameType
from typing import Callable

import click

from cyasgi._subprocess import get_subprocess
from cyasgi.config import Config, is_dir

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)

logger = logging.getLogger("uvicorn.error")

#: Default ``--reload-include`` / ``--reload-exclude`` globs (uvicorn's).
DEFAULT_INCLUDES = ["*.py"]
DEFAULT_EXCLUDES = [".*", ".py[cod]", ".sw.*", "~*"]


class FileFilter:
    """Which changed paths trigger a reload: the include globs minus the exclude globs and directories.

    A default glob is dropped when the user names it on the other side (``--reload-exclude '*.py'``
    turns off the ``*.py`` default). Globs match from the right of the path, like ``Path.match``.
    """

    def __init__(self, config: Config) -> None:
        includes = [glob for glob in DEFAULT_INCLUDES if glob not in config.reload_excludes]
        self.includes = list(dict.fromkeys(includes + list(config.reload_includes)))
        excludes = [glob for glob in DEFAULT_EXCLUDES if glob not in config.reload_includes]
        self.exclude_dirs = [directory.resolve() for directory in config.reload_dirs_excludes]
        excludes += [pattern for pattern in config.reload_excludes if not is_dir(Path(pattern))]
        self.excludes = list(dict.fromkeys(excludes))

    def __call__(self, path: Path) -> bool:
        if not any(path.match(glob) for glob in self.includes):
            return False
        if any(directory in path.parents for directory in self.exclude_dirs):
            return False
        return not any(path.match(glob) for glob in self.excludes)

    def prune_dir(self, path: Path) -> bool:
        """True for a directory whose files can never match (an excluded one, or e.g. ``.git``)."""
        if any(directory == path or directory in path.parents for directory in self.exclude_dirs):
            return True
        return any(path.match(glob) for glob in self.excludes)


class BaseReload:
    """The reload loop; subclasses say how changes are found (``should_restart``)."""

    reloader_name = "reloader"

    def __init__(self, config: Config, target: Callable[..., None], sockets: list[socket]) -> None:
        self.config = config
        self.target = target
        self.sockets = sockets
        self.should_exit = threading.Event()
        self.pid = os.getpid()
        self.watch_filter = FileFilter(config)

    def signal_handler(self, sig: int, frame: FrameType | None) -> None:
        self.should_exit.set()

    def run(self) -> None:
        self.startup()
        try:
            for changes in self:
                if changes:
                    logger.warning(
                        "%s detected changes in %s. Reloading...",
                        self.reloader_name,
                        ", ".join(map(_display_path, changes)),
                    )
                    self.restart()
        finally:
            self.shutdown()

    def pause(self) -> None:
        if self.should_exit.wait(self.config.reload_delay):
            raise StopIteration()

    def __iter__(self) -> Iterator[list[Path] | None]:
        return self

    def __next__(self) -> list[Path] | None:
        return self.should_restart()

    def startup(self) -> None:
        message = f"Started reloader process [{self.pid}] using {self.reloader_name}"
        color_message = "Started reloader process [{}] using {}".format(
            click.style(str(self.pid), fg="cyan", bold=True),
            click.style(str(self.reloader_name), fg="cyan", bold=True),
        )
        logger.info(message, extra={"color_message": color_message})
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, self.signal_handler)
        self.start_child()

    def start_child(self) -> None:
        self.process = get_subprocess(config=self.config, target=self.target, sockets=self.sockets)
        self.process.start()

    def stop_child(self) -> None:
        """SIGTERM the child (a graceful shutdown) and wait for it; one that already died is just reaped."""
        if self.process.exitcode is None:
            self.process.terminate()
        self.process.join()

    def restart(self) -> None:
        """Stop the running child (if any: it may have died on a syntax error) and start a new one."""
        self.stop_child()
        self.start_child()

    def shutdown(self) -> None:
        self.stop_child()
        for sock in self.sockets:
            sock.close()
        message = f"Stopping reloader process [{self.pid}]"
        color_message = "Stopping reloader process [{}]".format(click.style(str(self.pid), fg="cyan", bold=True))
        logger.info(message, extra={"color_message": color_message})

    def should_restart(self) -> list[Path] | None:
        raise NotImplementedError("a reloader says which files changed in should_restart()")


def _display_path(path: Path) -> str:
    try:
        return f"'{path.relative_to(Path.cwd())}'"
    except ValueError:
        return f"'{path}'"
