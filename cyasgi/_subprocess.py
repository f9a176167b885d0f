"""Start a child process the same way for every supervisor: ``spawn``, stdin kept, logging set up again.

``spawn`` (not ``fork``) gives each child a fresh interpreter: no event loop, thread or lock
state is copied from the supervisor, and the app is imported in the child, so a reload sees the
new code. Sockets bound by the parent travel to the child through multiprocessing's pickling of
file descriptors.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
from multiprocessing.context import SpawnProcess
from multiprocessing.reduction import DupFd
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
    sockets: list[socket.socket],
    **extra: Any,
) -> SpawnProcess:
    """A not-yet-started ``spawn`` process that calls ``target(sockets=sockets, **extra)``.

    ``target`` runs after the child has re-attached the parent's stdin (debuggers such as pdb
    need it) and configured logging from ``config``. ``extra`` values must be picklable.
    """
    shared = [InheritedSocket(sock) for sock in sockets]
    kwargs = {"config": config, "target": target, "sockets": shared, "stdin_fileno": stdin_fileno(), **extra}
    return spawn.Process(target=subprocess_started, kwargs=kwargs)


def subprocess_started(
    config: Config,
    target: Callable[..., None],
    sockets: list[socket.socket],
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


class InheritedSocket:
    """A socket for a child process, rebuilt there by ``rebuild_socket`` (a real socket.socket)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def __reduce__(self) -> tuple[Any, ...]:
        sock = self.sock
        return rebuild_socket, (DupFd(sock.fileno()), sock.family, sock.type, sock.proto)


def rebuild_socket(dup_fd: Any, family: int, type_: int, proto: int) -> socket.socket:
    """The child's socket object for a descriptor inherited from the parent, left non-blocking.

    A listening socket inherited by several workers is one open file description: its O_NONBLOCK
    flag is shared by all of them. PyPy's ``socket.socket(fileno=...)`` makes the descriptor
    blocking (unless the default timeout is 0), and a worker whose loop then loses an accept race
    to another one blocks in accept() until the next connection comes. A zero default timeout
    while building the object keeps the flag as every event loop needs it.
    """
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(0.0)
    try:
        return socket.socket(family, type_, proto, fileno=dup_fd.detach())
    finally:
        socket.setdefaulttimeout(previous)
