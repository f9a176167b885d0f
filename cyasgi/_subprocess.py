"""Start a child process the same way for every supervisor: ``spawn``, stdin kept, logging set up again.

``spawn`` (not ``fork``) gives each child a fresh interpreter: no event loop, thread or lock
state is copied from the supervisor, and the app is imported in the child, so a reload sees the
new code. Sockets bound by the parent travel to the child through multiprocessing's pickling of
file descriptors.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from multiprocessing.context import SpawnProcess
from socket import socket
from typing import Any, Callable

from cyasgi.config import Config

multiprocessing.allow_connection_pickling()
spawn = multiprocessing.get_context("spawn")


def stdin_fileno() -> int | None:
    """The parent's stdin descriptor, or None when it has none (e.g. ``sys.stdin`` is None)."""
    try:
        return sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def get_subprocess(
    config: Config,
    target: Callable[..., None],
    sockets: list[socket],
    **extra: Any,
) -> SpawnProcess:
    """A not-yet-started ``spawn`` process that calls ``target(sockets=sockets, **extra)``.

    ``target`` runs after the child has re-attached the parent's stdin (debuggers such as pdb
    need it) and configured logging from ``config``. ``extra`` values must be picklable.
    """
    kwargs = {"config": config, "target": target, "sockets": sockets, "stdin_fileno": stdin_fileno(), **extra}
    return spawn.Process(target=subprocess_started, kwargs=kwargs)


def subprocess_started(
    config: Config,
    target: Callable[..., None],
    sockets: list[socket],
    stdin_fileno: int | None,
    **extra: Any,
) -> None:
    """The first code that runs in the child."""
    if stdin_fileno is not None:
        try:
            sys.stdin = os.fdopen(stdin_fileno)
        except OSError:  # the parent's stdin was closed meanwhile: keep the child's own
            pass
    # dictConfig state does not survive spawn: handlers, levels and formatters are rebuilt here.
    config.configure_logging()
    try:
        target(sockets=sockets, **extra)
    except KeyboardInterrupt:
        # Ctrl-C reaches the whole process group; the parent is already stopping us, and a
        # traceback from every child would only bury the useful output.
        pass
