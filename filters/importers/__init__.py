"""Readers for the inputs of ``fieldtriage filter build``: each yields ``DigestEntry`` records.

Every reader is a generator over one input (of ``DigestEntry``, or ``DigestBatch`` for big lists),
streams it (bounded memory whatever its size), and
reports each bad record to ``ImportReport.bad`` with its line or record number instead of stopping;
under ``ImportOptions.strict`` the first bad record raises ``ImportFailed``. An input that cannot be
read at all (missing, unreadable, not the format asked for) raises ``ImportFailed`` naming it.

Formats: ``folder`` (digests of every regular file), ``list`` (one hex digest per line), ``vics``
(Project VIC VICS JSON 1.3 and 2.0), ``icse`` (Interpol ICSE CSV), ``hashdeep``.
Zero-length files, and the well-known digests of empty content, never become entries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from filters.errors import ImportFailed

Priority = Literal["priority", "other"]
PRIORITIES: tuple[Priority, ...] = ("priority", "other")
FORMATS = ("folder", "list", "vics", "icse", "hashdeep")


@dataclass(frozen=True)
class DigestEntry:
    """One digest of one known item.

    ``from_content`` is True when the digest was computed from the item's bytes by a folder input,
    which computes every requested kind for every file: sets built only from such entries, with the
    same category and priority, describe the same items (see ``FilterSet.item_group``).
    """

    kind: str
    digest: bytes
    category: str
    priority: Priority
    from_content: bool = False


@dataclass(frozen=True)
class DigestBatch:
    """Many digests of one kind, category and priority (big lists go through in these)."""

    kind: str
    category: str
    priority: Priority
    digests: list[bytes]
    from_content: bool = False

    def entries(self) -> list[DigestEntry]:
        return [
            DigestEntry(self.kind, d, self.category, self.priority, self.from_content) for d in self.digests
        ]


@dataclass(frozen=True)
class BlockItem:
    """The 4 KiB blocks of one known file, for a ``block`` set (``filters/blocks.py``).

    ``digests``: the BLAKE3 of every whole 4 KiB block at a file offset that is a multiple of 4096,
    in file order (the final partial block is left out); ``patterns``: one byte per block, 1 when
    the block is one repeated byte or a short repeating pattern (never probative); ``identity``:
    equal for exact copies of one file, which are one item.
    """

    category: str
    priority: Priority
    digests: list[bytes]
    patterns: bytes
    identity: bytes
    source: str = ""


Item = DigestEntry | DigestBatch | BlockItem


def entries_of(items: Iterable[Item]) -> Iterator[DigestEntry]:
    """Every entry of a reader's output, batches unpacked (block items are not entries)."""
    for item in items:
        if isinstance(item, DigestBatch):
            yield from item.entries()
        elif isinstance(item, DigestEntry):
            yield item


@dataclass
class ImportOptions:
    """What the command line says about the inputs."""

    category: str = "known"
    priority: Priority = "priority"
    digests: tuple[str, ...] = ("sample", "blake3")
    list_kind: str | None = None
    vics_priority_categories: frozenset[str] = frozenset({"1", "2"})
    vics_other_categories: frozenset[str] = frozenset({"3"})
    strict: bool = False


@dataclass
class BadRecord:
    source: str
    location: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.location}: {self.reason}"


@dataclass
class ImportReport:
    """What went in: accepted entries per (kind, category, priority), records skipped and why."""

    strict: bool = False
    accepted: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    records: Counter[str] = field(default_factory=Counter)
    left_out: Counter[str] = field(default_factory=Counter)
    blocks: Counter[str] = field(default_factory=Counter)  # 4 KiB blocks read per input (block sets)
    bad_records: list[BadRecord] = field(default_factory=list)
    bad_count: int = 0
    max_kept: int = 1000

    def bad(self, source: str, location: str, reason: str) -> None:
        """Count a bad record; under strict, stop the build with it."""
        record = BadRecord(source, location, reason)
        if self.strict:
            raise ImportFailed(source, f"{location}: {reason}")
        self.bad_count += 1
        if len(self.bad_records) < self.max_kept:
            self.bad_records.append(record)

    def accept(self, source: str, entry: DigestEntry) -> None:
        self.accepted[(entry.kind, entry.category, entry.priority)] += 1
        self.records[source] += 1

    def accept_batch(self, source: str, batch: DigestBatch) -> None:
        self.accepted[(batch.kind, batch.category, batch.priority)] += len(batch.digests)
        self.records[source] += len(batch.digests)

    def accept_blocks(self, source: str, item: BlockItem) -> None:
        self.accepted[("block", item.category, item.priority)] += len(item.digests)
        self.blocks[source] += len(item.digests)

    def leave_out(self, reason: str) -> None:
        """Count a record deliberately not imported (for example VICS category 0)."""
        self.left_out[reason] += 1
