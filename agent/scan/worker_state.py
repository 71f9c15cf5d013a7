"""What one scan worker keeps: its counts and results, and the files waiting for their lookup."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from agent.scan.report import Hit, Problem
from filters.digests import FileChangedError


@dataclass
class WorkerTally:
    """Written by one worker only; summed by the progress thread and at the end."""

    files_done: int = 0
    files_read: int = 0
    files_confirmed: int = 0
    files_empty: int = 0
    files_not_scanned: int = 0
    bytes_seen: int = 0  # sizes of the files opened (``fstat`` at open)
    bytes_read: int = 0
    hits: list[Hit] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)


class PendingLookups:
    """Files of one worker read in the first pass and waiting for their lookup (parallel lists)."""

    __slots__ = ("digests", "fds", "paths", "sizes")

    def __init__(self) -> None:
        self.paths: list[bytes] = []
        self.sizes: list[int] = []
        self.digests: list[dict[str, bytes]] = []
        self.fds: list[int] = []  # only when a sample hit may need its file read again

    def take(self) -> tuple[list[bytes], list[int], list[dict[str, bytes]], list[int]]:
        taken = (self.paths, self.sizes, self.digests, self.fds)
        self.paths, self.sizes, self.digests, self.fds = [], [], [], []
        return taken


def internal_error(path: bytes, err: Exception) -> Problem:
    return Problem(path, f"internal error: {type(err).__name__}: {err}", "internal")


def check_unchanged(fd: int, size: int) -> None:
    if os.fstat(fd).st_size != size:
        raise FileChangedError(5, f"file changed size while read (was {size} bytes)")
