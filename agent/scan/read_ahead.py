"""Reading the next block of a large file while the caller hashes the current one.

Read and hash one after the other, a large file costs the copy from the page cache (or the wait
for the medium) plus the hash; overlapped, it costs the longer of the two. On the kiosk the medium
is the slow part (a USB stick at 30-40 MB/s), so while a block is hashed the next one is already on
its way; warm, the copy hides behind BLAKE3's multi-threaded hash (docs/performance.md).

``ReadAhead`` is one persistent reader thread with ``BUFFERS`` blocks in flight. ``borrowed()``
lends one from a pool (one per file being streamed at the same moment, at most one per worker) and
takes it back when the caller is done; a file is always finished or abandoned (the reader stops
and is waited for) before the pool gets it back, so the caller may close the descriptor.

Example::

    with borrowed() as ahead, closing(ahead.blocks(fd, size)) as blocks:
        for block in blocks:  # memoryviews, each valid until the next one is asked for
            hasher.update(block)

``closing`` matters: a generator left open by an exception is only finalised when its frame is
freed, and until then the reader may still be reading the descriptor.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Generator, Iterator
from contextlib import contextmanager

BLOCK = 1 << 20
BUFFERS = 2  # two 1 MiB blocks per file being streamed (three measured no faster)

_Message = tuple[memoryview, int] | tuple[None, BaseException | None]


class ReadAhead:
    """One reader thread and its buffers; streams one file at a time for one caller."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
        self._full: queue.SimpleQueue[_Message] = queue.SimpleQueue()
        self._free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        self._abort = threading.Event()
        self.streaming = False  # a file was started and its reader not yet finished with it
        for _ in range(BUFFERS):
            self._free.put(memoryview(bytearray(BLOCK)))
        threading.Thread(target=self._run, name="fieldtriage-read-ahead", daemon=True).start()

    def blocks(self, fd: int, size: int) -> Generator[memoryview, None, None]:
        """The blocks of ``fd`` from its current position to its end, in order.

        Stops early after more than ``size`` bytes (the caller sees the file grew). A read error is
        raised here, in the caller's thread. Each block is valid until the next one is asked for.
        Close the generator before closing ``fd`` (see the module docstring).
        """
        self._abort.clear()
        self.streaming = True
        self._jobs.put((fd, size))
        finished = False  # the reader's last message for this job was received
        try:
            while True:
                message = self._full.get()
                view, n = message
                if view is None:
                    finished = True
                    if n is not None:
                        raise n  # type: ignore[misc]  # the reader's OSError
                    return
                assert isinstance(n, int)
                try:
                    yield view[:n]
                finally:
                    self._free.put(view)
        finally:
            if not finished:  # abandoned (error, cancel, file grew): stop the reader, wait for it
                self._abort.set()
                while True:
                    view, _ = self._full.get()
                    if view is None:
                        break
                    self._free.put(view)
            self.streaming = False

    def abandon(self) -> None:
        """Stop after the current block (its blocks are never handed out again)."""
        self._abort.set()

    def _run(self) -> None:
        jobs, full, free, abort, readv = self._jobs, self._full, self._free, self._abort, os.readv
        while True:
            fd, size = jobs.get()
            done, error = 0, None
            try:
                while not abort.is_set():
                    view = free.get()
                    try:
                        n = readv(fd, [view])
                    except BaseException:
                        free.put(view)
                        raise
                    if n == 0:
                        free.put(view)
                        break
                    full.put((view, n))
                    done += n
                    if done > size:
                        break
            except BaseException as err:  # EIO from a bad sector: raised again by the caller
                error = err
            full.put((None, error))  # always the last message of a job


_idle: list[ReadAhead] = []
_idle_lock = threading.Lock()


@contextmanager
def borrowed() -> Iterator[ReadAhead]:
    """A ``ReadAhead`` from the pool (a new one when all are in use), returned afterwards."""
    with _idle_lock:
        ahead = _idle.pop() if _idle else None
    if ahead is None:
        ahead = ReadAhead()
    try:
        yield ahead
    finally:
        if ahead.streaming:  # a generator left open: never lend this one again (stale blocks)
            ahead.abandon()
        else:
            with _idle_lock:
                _idle.append(ahead)
