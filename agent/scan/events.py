"""Events a scan sends while it runs (``Scanner.scan(roots, on_event)``).

Order: one ``ScanStarted``, then ``ScanProgress`` (at most every ``PROGRESS_INTERVAL`` seconds) and
``ScanHit`` (as soon as a file matched, not at the end) interleaved, then one ``ScanFinished``.
``on_event`` is called from the scanner's threads, one call at a time: keep it quick (a daemon can
set a light and return). An exception in it is recorded and does not stop the scan.

The fraction done that the bay's light and the progress line show is ``fraction_done`` (one rule
for both; docs/report.md, "Counts and progress"): files done over the estimated total files while
the walk goes on (``ScanProgress.files_estimated``, from what the filesystems hold:
``ScanEstimate``), by the scan's own byte figures once the walk is done::

    >>> p = ScanProgress(1.0, 40, 0, 0, False, 10, 4096, 0, 0, 0, 4096.0, 10.0, files_estimated=100)
    >>> fraction_done(p), fraction_done(p, at_least=0.2)
    (0.1, 0.2)
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.scan.report import Hit, ScanReport

PROGRESS_INTERVAL = 0.25


@dataclass(frozen=True)
class ScanEstimate:
    """What the roots hold before the walk has seen it, from their filesystems (``statvfs``: used
    inodes and used blocks) or a phone's storages (capacity minus free space); None where unknown.

    ``entries``: used inodes, an upper bound of the regular files (it also counts folders, symbolic
    links and the filesystem's own inodes: ext4's reserved ones, its journal); None where the
    filesystem reports no inodes (vfat, exFAT, btrfs, many FUSE drivers) and for phones.
    ``bytes``: used bytes (file data, and also metadata, a journal, the slack of the last block of
    every file; on a phone also the apps and system data MTP does not show). ``block_size``: the
    filesystem's unit of allocation (a FAT cluster), for that slack; None when not known."""

    entries: int | None = None
    bytes: int | None = None
    block_size: int | None = None


@dataclass(frozen=True)
class ScanStarted:
    roots: tuple[bytes, ...]
    mode: str
    workers: int
    filter_ids: tuple[str, ...]
    first_pass_kinds: tuple[str, ...]
    estimate: ScanEstimate = ScanEstimate()


@dataclass(frozen=True)
class ScanProgress:
    """Totals so far. ``files_found`` grows while the walk goes on (``walk_done`` False);
    ``bytes_found`` is the size of the files opened so far (sizes come from the ``fstat`` at open);
    ``bytes_to_read`` is an estimate of what the scan will have read when done: ``bytes_read`` plus
    the files left times the bytes read per file done so far (exact once every file is done).

    ``files_estimated``: the regular files the scan will have found, estimated from
    ``ScanEstimate`` and refined as the walk goes (``agent.scan.estimate.refined``): never below
    ``files_found``, and ``files_found`` itself once the walk is done; None when nothing is known
    (no estimate and the walk not done). ``bytes_estimated``: the bytes of those files as the
    filesystem's used bytes say (never below ``bytes_found``), None when unknown."""

    elapsed_s: float
    files_found: int
    bytes_found: int
    bytes_to_read: int
    walk_done: bool
    files_done: int
    bytes_read: int
    hits: int
    priority_hits: int
    errors: int
    bytes_per_s: float
    files_per_s: float
    files_estimated: int | None = None
    bytes_estimated: int | None = None

    @property
    def eta_s(self) -> float | None:
        """Seconds left, once the walk is done and a rate is known."""
        if not self.walk_done or self.bytes_per_s <= 0:
            return None
        return max(0.0, (self.bytes_to_read - self.bytes_read) / self.bytes_per_s)


@dataclass(frozen=True)
class ScanHit:
    hit: Hit
    elapsed_s: float


@dataclass(frozen=True)
class ScanFinished:
    report: ScanReport


ScanEvent = ScanStarted | ScanProgress | ScanHit | ScanFinished


def fraction_done(progress: ScanProgress, at_least: float | None = None) -> float | None:
    """The part of the scan done, 0.0 to 1.0, for the bay's light and the progress line; None while
    nothing is known (the walk goes on and there is no estimate).

    While the walk goes on: files done over ``max(files_estimated, files_found)``. Once it is done:
    bytes read over ``bytes_to_read`` (which extrapolates the bytes read per file done, so this is
    files done over files found, confirmation reads aside), files when nothing was read, 1.0 for a
    scan with no file. ``at_least`` (the fraction shown before) keeps what is shown from going back:
    an estimate that proves low when more files are found than it said does not turn the light back.
    """
    fraction: float | None = None
    if not progress.walk_done:
        if progress.files_estimated is not None:
            total = max(progress.files_estimated, progress.files_found)
            fraction = progress.files_done / total if total else None
    elif progress.bytes_to_read > 0:
        fraction = progress.bytes_read / progress.bytes_to_read
    elif progress.files_found:
        fraction = progress.files_done / progress.files_found
    else:
        fraction = 1.0  # nothing to read
    if fraction is not None:
        fraction = min(1.0, max(0.0, fraction))
    if at_least is not None:
        fraction = at_least if fraction is None else max(fraction, at_least)
    return fraction
