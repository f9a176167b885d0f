"""Interpreter facts and small version shims shared by the whole package."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable
from typing import Callable, TypeVar

T = TypeVar("T")

IS_PYPY = sys.implementation.name == "pypy"


def env_flag(name: str) -> bool:
    """True when the variable is set to a non-empty value other than ``0``."""
    return os.environ.get(name, "") not in ("", "0")


#: The one switch between the twins: the compiled one is never imported when this is true.
NO_EXTENSIONS = env_flag("CYASGI_NO_EXTENSIONS") or sys.implementation.name != "cpython"

def extension_built(module: str) -> bool:
    """The compiled extension ``module`` (``cyasgi._speedups.http``...) is installed and allowed.

    A one-source module's ``cyasgi/_speedups/NAME.py`` is the pure source linked there for the
    compiler: without the built extension it would import as plain Python, so it is never imported
    to find out."""
    if NO_EXTENSIONS:
        return False
    import importlib.machinery
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except ImportError:
        return False
    return spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)


#: ``asyncio.Task(..., eager_start=True)`` exists (3.12+): the app runs until its first real
#: suspension inside the callback that starts it, with ``current_task()`` right for anyio.
HAS_EAGER_TASKS = sys.version_info >= (3, 12)


def asyncio_run(main: Awaitable[T], *, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None) -> T:
    """``asyncio.run(main, loop_factory=...)`` on every supported Python."""
    if sys.version_info >= (3, 12):
        return asyncio.run(main, loop_factory=loop_factory)  # type: ignore[arg-type]
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(main)  # type: ignore[arg-type]
    # 3.9 / 3.10: a hand-rolled Runner.
    loop = loop_factory() if loop_factory is not None else asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            if hasattr(loop, "shutdown_default_executor"):
                loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {"message": "unhandled exception during shutdown", "exception": task.exception(), "task": task}
            )


def python_description() -> str:
    impl = sys.implementation.name
    name = {"cpython": "CPython", "pypy": "PyPy"}.get(impl, impl)
    return f"{name} {'.'.join(map(str, sys.version_info[:3]))}"


