"""What one scan worker keeps: its counts and results, and the files waiting for their lookup; with
reader processes, how their outcomes are counted (the batches handed to them: ``process_feed``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.scan.estimate import UNKNOWN, refined
from agent.scan.events import ScanEstimate, ScanProgress
from agent.scan.report import Counts, Hit, Problem
from agent.scan.walker import WalkTally
from filters.digests import FileChangedError

# The outcome of one file read by a reader process, a tuple tagged: (OK, size, digests, bytes_read),
# (EMPTY, 0), (SKIPPED or ERROR, code, reason, size seen), (NOT_SCANNED, size seen).
OK, EMPTY, SKIPPED, ERROR, NOT_SCANNED = range(5)
Outcome = tuple[Any, ...]


@dataclass
class WorkerTally:
    """Written by one worker only; summed by the progress thread and at the end."""

    files_done: int = 0
    files_read: int = 0
    files_confirmed: int = 0
    files_empty: int = 0
    files_not_scanned: int = 0
    bytes_seen: int = 0  # sizes of the files opened (``fstat`` at open)
    files_sized: int = 0  # the files whose sizes are in bytes_seen (the progress estimate's mean size)
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


def progress_of(
    walk: WalkTally, tallies: Sequence[WorkerTally], elapsed: float, estimate: ScanEstimate = UNKNOWN
) -> ScanProgress:
    """Progress from the walk's and the workers' tallies (read while they are written), with the
    totals ``estimate`` said before the walk, refined by what it found (``agent.scan.estimate``)."""
    elapsed = max(elapsed, 1e-9)
    walk_done = walk.done  # read first: files_seen is final when it is True
    files_found = walk.files_seen
    # what takes an inode: the folders, files and entries skipped or in error found so far
    entries_found = walk.directories + files_found + len(walk.skipped) + len(walk.errors)
    files_done = sum(t.files_done for t in tallies)
    bytes_read = sum(t.bytes_read for t in tallies)
    bytes_found = sum(t.bytes_seen for t in tallies)
    hits = [h for t in tallies for h in list(t.hits)]
    # Sizes are known once files are opened: what is left to read is estimated from the bytes
    # read per file so far (exact when every file is done).
    left = max(0, files_found - files_done)
    bytes_to_read = bytes_read + (left * bytes_read // files_done if files_done else 0)
    files_estimated, bytes_estimated = refined(
        estimate,
        walk_done=walk_done,
        files_found=files_found,
        entries_found=entries_found,
        bytes_found=bytes_found,
        files_sized=sum(t.files_sized for t in tallies),
    )
    return ScanProgress(
        elapsed_s=elapsed,
        files_found=files_found,
        bytes_found=bytes_found,
        bytes_to_read=bytes_to_read,
        walk_done=walk_done,
        files_done=files_done,
        bytes_read=bytes_read,
        hits=len(hits),
        priority_hits=sum(h.priority for h in hits),
        errors=len(walk.errors) + sum(len(t.errors) for t in tallies),
        bytes_per_s=bytes_read / elapsed,
        files_per_s=files_done / elapsed,
        files_estimated=files_estimated,
        bytes_estimated=bytes_estimated,
    )


def totals_of(
    walk: WalkTally, tallies: Sequence[WorkerTally]
) -> tuple[Counts, list[Hit], list[Problem], list[Problem]]:
    """The counts, hits, errors and skipped entries of a scan (sorted: the same for any workers)."""
    counts = Counts(directories=walk.directories, files_seen=walk.files_seen)
    hits: list[Hit] = []
    errors, skipped = list(walk.errors), list(walk.skipped)
    for t in tallies:
        counts.bytes_seen += t.bytes_seen
        counts.files_empty += t.files_empty
        counts.files_read += t.files_read
        counts.files_confirmed += t.files_confirmed
        counts.files_not_scanned += t.files_not_scanned
        counts.bytes_read += t.bytes_read
        hits += t.hits
        errors += t.errors
        skipped += t.skipped
    # A file found but never reached is not scanned: the walk had not handed it out when the scan
    # stopped, or ^C landed in the walking thread while its batch was handed out or read.
    reached = sum(t.files_done + t.files_not_scanned for t in tallies)
    counts.files_not_scanned += max(0, walk.files_seen - reached)
    for problems, by_code in ((errors, counts.errors), (skipped, counts.skipped)):
        problems.sort()
        for p in problems:
            by_code[p.code] = by_code.get(p.code, 0) + 1
    hits.sort(key=lambda h: h.path)
    return counts, hits, errors, skipped


def internal_reason(err: Exception) -> str:
    return f"internal error: {type(err).__name__}: {err}"


def internal_error(path: bytes, err: Exception) -> Problem:
    return Problem(path, internal_reason(err), "internal")


def check_unchanged(fd: int, size: int) -> None:
    if os.fstat(fd).st_size != size:
        raise FileChangedError(5, f"file changed size while read (was {size} bytes)")


def account(
    tally: WorkerTally,
    pending: PendingLookups,
    prefix: bytes,
    names: Sequence[bytes],
    outcomes: Sequence[Outcome],
) -> int:
    """Count outcomes as ``Engine.scan_batch`` counts its files; read files join ``pending``.
    Returns the size of the largest file read (the caller decides whether to look them up now)."""
    paths, sizes, digests = pending.paths, pending.sizes, pending.digests
    seen = read = largest = 0
    for name, outcome in zip(names, outcomes, strict=True):
        tag = outcome[0]
        if tag == OK:
            _, size, found, bytes_read = outcome
            seen += size
            read += bytes_read
            paths.append(prefix + name)
            sizes.append(size)
            digests.append(found)
            largest = max(largest, size)
            continue
        if tag == NOT_SCANNED:
            seen += outcome[1]
            tally.files_not_scanned += 1
            continue
        if tag == EMPTY:
            tally.files_empty += 1
        else:
            _, code, reason, size = outcome
            seen += size
            (tally.skipped if tag == SKIPPED else tally.errors).append(Problem(prefix + name, reason, code))
        tally.files_done += 1
    tally.bytes_seen += seen
    tally.files_sized += len(outcomes)
    tally.bytes_read += read
    return largest
