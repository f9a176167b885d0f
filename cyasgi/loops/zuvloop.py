"""``--loop zuvloop``: zuvloop's libuv event loop (written in Zig; it needs CPython 3.14+)."""

from __future__ import annotations

import asyncio
from typing import Callable

import zuvloop


def zuvloop_loop_factory(use_subprocess: bool = False) -> Callable[[], asyncio.AbstractEventLoop]:
    return zuvloop.new_event_loop
