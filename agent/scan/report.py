"""The result of a scan: verdict, hits with their evidence, problems, counts, timings.

``ScanReport.to_json()`` gives the document ``fieldtriage scan --json`` prints (schema in
docs/report.md). Hits and problems are sorted by path bytes, so that everything but ``timings``
is the same whatever the worker count.

Verdicts (``verdict_of``):

* ``priority_match``: some file matched a priority set;
* ``match``: files matched, only in ``other`` sets;
* ``no_match``: the whole tree was read and nothing matched;
* ``incomplete``: nothing matched, but something could not be read or the scan was cancelled or
  stopped early. Never ``no_match`` for a tree that was not completely read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from agent.scan.names import path_b64, shown

Verdict = Literal["priority_match", "match", "no_match", "incomplete"]
EXIT_STATUS: dict[Verdict, int] = {"no_match": 0, "priority_match": 1, "match": 1, "incomplete": 3}
REPORT_VERSION = 1


@dataclass(frozen=True)
class MatchEvidence:
    """One digest of a file found in one set.

    ``confirmed`` is for sample-set matches: True when a whole-file digest of the same file matched
    a whole-file set covering this sample set, False when those digests were computed and did not
    match (the sample hit still counts), None when not checked (quick mode, or no covering set).
    """

    filter_id: str
    filter_name: str
    set_index: int
    kind: str
    category: str
    priority: str
    digest: bytes
    confirmed: bool | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "filter_id": self.filter_id,
            "filter_name": self.filter_name,
            "set": self.set_index,
            "kind": self.kind,
            "category": self.category,
            "priority": self.priority,
            "digest": self.digest.hex(),
        }
        if self.kind == "sample":
            out["confirmed"] = self.confirmed
        return out


@dataclass(frozen=True)
class Hit:
    path: bytes
    size: int
    matches: tuple[MatchEvidence, ...]
    digests: dict[str, bytes]

    @property
    def priority(self) -> bool:
        return any(m.priority == "priority" for m in self.matches)

    @property
    def confirmed(self) -> bool | None:
        """True if a whole-file digest matched; False if only unconfirmed sample matches; else None."""
        if any(m.kind != "sample" for m in self.matches):
            return True
        checked = [m.confirmed for m in self.matches if m.confirmed is not None]
        return any(checked) if checked else None

    @property
    def categories(self) -> list[str]:
        return sorted({m.category for m in self.matches})

    def to_json(self) -> dict[str, Any]:
        return {
            "path": shown(self.path),
            "path_b64": path_b64(self.path),
            "size": self.size,
            "priority": self.priority,
            "confirmed": self.confirmed,
            "categories": self.categories,
            "matches": [m.to_json() for m in self.matches],
            "digests": {k: v.hex() for k, v in sorted(self.digests.items())},
        }


@dataclass(frozen=True, order=True)
class Problem:
    """An entry that was not read: an ``error`` (makes an otherwise clean scan incomplete) or an
    entry ``skipped`` by rule (symlinks, FIFOs, sockets, devices, directories already visited)."""

    path: bytes
    reason: str
    code: str  # short machine word: "symlink", "fifo", "EACCES", "changed", "loop"...

    def to_json(self) -> dict[str, Any]:
        return {
            "path": shown(self.path),
            "path_b64": path_b64(self.path),
            "code": self.code,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class SetSummary:
    index: int
    kind: str
    category: str
    priority: str
    entries: int
    item_group: int | None
    role: str
    note: str | None
    checked: bool = True  # False: skipped, and no consulted set covers its items

    def to_json(self) -> dict[str, Any]:
        return {
            "set": self.index,
            "kind": self.kind,
            "category": self.category,
            "priority": self.priority,
            "entries": self.entries,
            "item_group": self.item_group,
            "role": self.role,
            "note": self.note,
            "checked": self.checked,
        }


@dataclass(frozen=True)
class FilterSummary:
    filter_id: str
    name: str
    source: str
    signer: str | None
    fully_covered_by_samples: bool
    sets: tuple[SetSummary, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "filter_id": self.filter_id,
            "name": self.name,
            "source": shown(self.source.encode("utf-8", "surrogateescape")),
            "signer": self.signer,
            "fully_covered_by_samples": self.fully_covered_by_samples,
            "sets": [s.to_json() for s in self.sets],
        }


@dataclass
class Counts:
    directories: int = 0
    files_seen: int = 0  # regular files found, by their listed type (including empty ones)
    bytes_seen: int = 0  # sizes of those opened (fstat at open; no lstat per file in the walk)
    files_read: int = 0  # files whose digests were computed
    files_empty: int = 0  # zero-length: never looked up
    files_confirmed: int = 0  # files read whole to confirm a sample hit
    files_not_scanned: int = 0  # found but not read because the scan stopped
    bytes_read: int = 0  # bytes actually read from files (both passes)
    skipped: dict[str, int] = field(default_factory=dict)  # by code
    errors: dict[str, int] = field(default_factory=dict)  # by code

    def to_json(self) -> dict[str, Any]:
        out = dict(vars(self))
        out["skipped"] = dict(sorted(self.skipped.items()))
        out["errors"] = dict(sorted(self.errors.items()))
        return out


@dataclass
class Timings:
    """How the scan ran (the only part of a report that depends on the worker count and the clock)."""

    workers: int = 0
    started_at: str = ""
    elapsed_s: float = 0.0
    walk_s: float | None = None
    first_hit_s: float | None = None
    first_priority_hit_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in vars(self).items()}


@dataclass
class ScanReport:
    verdict: Verdict
    complete: bool
    cancelled: bool
    stopped_at_first_priority: bool
    mode: str
    roots: tuple[bytes, ...]
    first_pass_kinds: tuple[str, ...]
    filters: tuple[FilterSummary, ...]
    counts: Counts
    hits: list[Hit]
    errors: list[Problem]
    skipped: list[Problem]
    timings: Timings

    @property
    def exit_status(self) -> int:
        return EXIT_STATUS[self.verdict]

    def to_json(self, *, timings: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "report_version": REPORT_VERSION,
            "verdict": self.verdict,
            "complete": self.complete,
            "cancelled": self.cancelled,
            "stopped_at_first_priority": self.stopped_at_first_priority,
            "mode": self.mode,
            "roots": [{"path": shown(r), "path_b64": path_b64(r)} for r in self.roots],
            "first_pass_kinds": list(self.first_pass_kinds),
            "filters": [f.to_json() for f in self.filters],
            "counts": self.counts.to_json(),
            "hits": [h.to_json() for h in self.hits],
            "errors": [p.to_json() for p in self.errors],
            "skipped": [p.to_json() for p in self.skipped],
        }
        if timings:
            out["timings"] = self.timings.to_json()
        return out


def verdict_of(hits: list[Hit], complete: bool) -> Verdict:
    if any(h.priority for h in hits):
        return "priority_match"
    if hits:
        return "match"
    return "no_match" if complete else "incomplete"
