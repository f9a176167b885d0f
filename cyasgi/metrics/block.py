"""The block of counts a server process writes (layout: ``cyasgi.metrics.recorder``).

A block is memory that survives its writer: an anonymous file (``memfd`` where there is one, else
an unlinked temporary file) mapped by the worker that counts into it and by the supervisor that
reads it on a scrape and, when the worker is gone, adds its counters to the totals of the workers
before it. Nothing is sent between the processes: the file descriptor travels once, at spawn.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from multiprocessing.reduction import DupFd
from typing import Any

from cyasgi.metrics.recorder import BLOCK_SIZE, BLOCK_SLOTS, COUNTER_SLOTS


class Block:
    """A block of ``BLOCK_SLOTS`` 64-bit counts in shared memory."""

    def __init__(self, fd: int | None = None) -> None:
        if fd is None:
            fd = _anonymous_file()
            os.ftruncate(fd, BLOCK_SIZE)
        self.fd = fd
        self.memory = mmap.mmap(fd, BLOCK_SIZE)
        self.slots = memoryview(self.memory).cast("Q")

    def values(self) -> list[int]:
        """A copy of every slot (each 64-bit read is whole: counts are only ever added to)."""
        return self.slots.tolist()

    def for_child(self) -> InheritedBlock:
        """The block for a spawned child: pickled, it arrives there as a Block over the same memory."""
        return InheritedBlock(self.fd)

    def close(self) -> None:
        self.slots.release()
        self.memory.close()
        os.close(self.fd)


class InheritedBlock:
    """A block on its way to a child process. The descriptor is duplicated when the process starts
    (multiprocessing's DupFd only works while a child is being spawned)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_block, (DupFd(self.fd),)


def _rebuild_block(dup_fd: Any) -> Block:
    return Block(dup_fd.detach())


def add_counters(totals: list[int], values: list[int]) -> None:
    """Add a block's counters (not its gauges) to ``totals``: a replaced worker's counts stay counted."""
    for index in range(COUNTER_SLOTS):
        totals[index] += values[index]


def empty_values() -> list[int]:
    return [0] * BLOCK_SLOTS


def _anonymous_file() -> int:
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:
        try:
            return memfd_create("cyasgi-metrics", getattr(os, "MFD_CLOEXEC", 0))
        except OSError:  # a kernel without memfd
            pass
    fd, path = tempfile.mkstemp(prefix="cyasgi-metrics-")
    os.unlink(path)
    return fd
