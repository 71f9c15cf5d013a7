"""The scan engine: walks seized media read-only, digests every regular file in one read, looks the
digests up in signed filters and reports a verdict with its evidence (issue 3).

``Scanner(filters, mode=..., workers=..., stop_at_first_priority=..., cancel=...).scan(roots,
on_event) -> ScanReport``; ``cli.register`` adds ``fieldtriage scan``.
"""

from agent.scan.engine import Scanner
from agent.scan.events import ScanEvent, ScanFinished, ScanHit, ScanProgress, ScanStarted
from agent.scan.report import Hit, MatchEvidence, Problem, ScanReport

__all__ = [
    "Hit",
    "MatchEvidence",
    "Problem",
    "ScanEvent",
    "ScanFinished",
    "ScanHit",
    "ScanProgress",
    "ScanReport",
    "ScanStarted",
    "Scanner",
]
