"""``--loop auto``: uvloop where it is installed (never on PyPy), else asyncio."""

from __future__ import annotations

import asyncio
from typing import Callable

from cyasgi._compat import IS_PYPY


def auto_loop_factory(use_subprocess: bool = False) -> Callable[[], asyncio.AbstractEventLoop]:
    if not IS_PYPY:
        try:
            from cyasgi.loops.uvloop import uvloop_loop_factory
        except ImportError:
            pass
        else:
            return uvloop_loop_factory(use_subprocess=use_subprocess)
    from cyasgi.loops.asyncio import asyncio_loop_factory

    return asyncio_loop_factory(use_subprocess=use_subprocess)


def loop_name(factory: Callable[[], asyncio.AbstractEventLoop] | None) -> str:
    """A short name for the start-up log: ``uvloop``, ``asyncio`` or the factory's own name."""
    if factory is None:
        return "the running loop"
    module = getattr(factory, "__module__", "") or ""
    if module.startswith("uvloop"):
        return "uvloop"
    if module.startswith("asyncio"):
        return "asyncio"
    return getattr(factory, "__qualname__", repr(factory))
