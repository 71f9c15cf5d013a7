"""Events a scan sends while it runs (``Scanner.scan(roots, on_event)``).

Order: one ``ScanStarted``, then ``ScanProgress`` (at most every ``PROGRESS_INTERVAL`` seconds) and
``ScanHit`` (as soon as a file matched, not at the end) interleaved, then one ``ScanFinished``.
``on_event`` is called from the scanner's threads, one call at a time: keep it quick (a daemon can
set a light and return). An exception in it is recorded and does not stop the scan.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.scan.report import Hit, ScanReport

PROGRESS_INTERVAL = 0.25


@dataclass(frozen=True)
class ScanStarted:
    roots: tuple[bytes, ...]
    mode: str
    workers: int
    filter_ids: tuple[str, ...]
    first_pass_kinds: tuple[str, ...]


@dataclass(frozen=True)
class ScanProgress:
    """Totals so far. ``files_found`` grows while the walk goes on (``walk_done`` False);
    ``bytes_found`` is the size of the files opened so far (sizes come from the ``fstat`` at open);
    ``bytes_to_read`` is an estimate of what the scan will have read when done: ``bytes_read`` plus
    the files left times the bytes read per file done so far (exact once every file is done)."""

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
