"""The scan engine: walks seized media read-only, digests every regular file in one read, looks the
digests up in signed filters and reports a verdict with its evidence (issue 3).

``Scanner(filters, mode=..., workers=..., stop_at_first_priority=..., cancel=...).scan(roots,
on_event) -> ScanReport``; ``cli.register`` adds ``fieldtriage scan``.

The names below are imported when first used, so that a reader process (``reader_processes``)
imports only what reading needs (not the filters' numpy: it starts in a fraction of the time).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.scan.engine import Scanner
    from agent.scan.events import ScanEvent, ScanFinished, ScanHit, ScanProgress, ScanStarted
    from agent.scan.report import Hit, MatchEvidence, Problem, ScanReport

_WHERE = {
    "Scanner": "agent.scan.engine",
    "ScanEvent": "agent.scan.events",
    "ScanFinished": "agent.scan.events",
    "ScanHit": "agent.scan.events",
    "ScanProgress": "agent.scan.events",
    "ScanStarted": "agent.scan.events",
    "Hit": "agent.scan.report",
    "MatchEvidence": "agent.scan.report",
    "Problem": "agent.scan.report",
    "ScanReport": "agent.scan.report",
}

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


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'agent.scan' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
