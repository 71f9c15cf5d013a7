"""Collect digest entries into sets and build a filter (on the workstation).

Entries go into one set per (kind, category, priority); duplicate digests across inputs merge. Keys
are derived as they arrive (8 bytes each in a compact array, no per-entry objects kept), so memory
is about 8 bytes per entry while collecting plus the fuse construction's temporary arrays.

Example::

    >>> from filters.importers import DigestEntry
    >>> builder = FilterBuilder(name="demo", provider="lab")
    >>> builder.add(DigestEntry("sha1", bytes(20), "known", "priority"))
    >>> builder.build_unsigned().sets[0].count
    1
"""

from __future__ import annotations

import os
import time
import uuid
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from filters import __version__
from filters.blocks import BlockCollector, BlockStats
from filters.container import format_version_for
from filters.digests import BLOCK_KIND, DIGEST_SIZES, SAMPLE_KIND
from filters.errors import FilterBuildError
from filters.fuse import FuseFilter
from filters.importers import BlockItem, DigestBatch, DigestEntry, Priority
from filters.model import (
    SALT_BYTES,
    BlockSetInfo,
    ContrabandFilter,
    FilterMetadata,
    FilterSet,
    derive_key,
    derive_keys,
)

BUILDER_NAME = f"fieldtriage {__version__}"


@dataclass
class _PendingSet:
    kind: str
    category: str
    priority: Priority
    keys: array[int] = field(default_factory=lambda: array("Q"))
    all_from_content: bool = True


class FilterBuilder:
    """Accumulates entries; ``build_unsigned`` makes the filter (sign it with ``write_filter``)."""

    def __init__(
        self,
        *,
        name: str,
        provider: str = "",
        description: str = "",
        not_before: int | None = None,
        expires: int | None = None,
        salt: bytes | None = None,
        seed: int | None = None,
        block_subsample: int = 1,
    ) -> None:
        self.name = name
        self.provider = provider
        self.description = description
        self.not_before = not_before
        self.expires = expires
        self.salt = salt if salt is not None else os.urandom(SALT_BYTES)
        self.seed = seed
        self._pending: dict[tuple[str, str, str], _PendingSet] = {}
        self.blocks = BlockCollector(self.salt, block_subsample)  # block sets (filters/blocks.py)
        self.block_stats: BlockStats | None = None  # what the last build did with the blocks

    def add(self, entry: DigestEntry) -> None:
        if len(entry.digest) != DIGEST_SIZES.get(entry.kind, -1):
            raise FilterBuildError(entry.kind, f"digest of {len(entry.digest)} bytes is not a {entry.kind}")
        slot = (entry.kind, entry.category, entry.priority)
        pending = self._pending.get(slot)
        if pending is None:
            pending = self._pending[slot] = _PendingSet(entry.kind, entry.category, entry.priority)
        pending.keys.append(derive_key(self.salt, entry.kind, entry.digest))
        if not entry.from_content:
            pending.all_from_content = False

    def add_batch(self, batch: DigestBatch) -> None:
        size = DIGEST_SIZES.get(batch.kind, -1)
        wrong = next((d for d in batch.digests if len(d) != size), None)
        if wrong is not None:
            raise FilterBuildError(batch.kind, f"digest of {len(wrong)} bytes is not a {batch.kind}")
        slot = (batch.kind, batch.category, batch.priority)
        pending = self._pending.get(slot)
        if pending is None:
            pending = self._pending[slot] = _PendingSet(batch.kind, batch.category, batch.priority)
        pending.keys.frombytes(derive_keys(self.salt, batch.kind, batch.digests).tobytes())
        if not batch.from_content:
            pending.all_from_content = False

    def add_blocks(self, item: BlockItem) -> None:
        """The blocks of one known file, for the block set of its category and priority."""
        self.blocks.add(item)

    def add_common_blocks(self, digests: list[bytes]) -> None:
        """Block digests of an ordinary file (``--common-blocks``): left out of every block set."""
        self.blocks.add_common(digests)

    def add_all(self, items: Iterable[DigestEntry | DigestBatch | BlockItem]) -> None:
        for item in items:
            if isinstance(item, DigestBatch):
                self.add_batch(item)
            elif isinstance(item, BlockItem):
                self.add_blocks(item)
            else:
                self.add(item)

    def build_unsigned(self) -> ContrabandFilter:
        if not self._pending and not self.blocks:
            raise FilterBuildError(self.name, "no digests to build a filter from")
        groups = self._item_groups()
        built = self.blocks.finish() if self.blocks else None
        self.block_stats = built.stats if built is not None else None
        block_slots = {(BLOCK_KIND, c, p): s for (c, p), s in built.sets.items()} if built else {}
        sets = []
        for index, slot in enumerate(sorted([*self._pending, *block_slots])):
            kind, category, priority = slot
            block = block_slots.get(slot)
            if block is None:
                keys = np.unique(np.frombuffer(self._pending[slot].keys, dtype=np.uint64))
            else:
                keys = block.keys
            seed = None if self.seed is None else self.seed + index
            fuse = FuseFilter.build(keys, seed=seed, unique=True)
            info = None
            if block is not None:
                info = BlockSetInfo(self.blocks.subsample, block.items, block.dense_items)
            sets.append(
                FilterSet(
                    index=index,
                    kind=kind,
                    category=category,
                    priority="priority" if priority == "priority" else "other",
                    count=int(keys.size),
                    item_group=groups.get(slot),
                    fuse=fuse,
                    block=info,
                )
            )
        metadata = FilterMetadata(
            filter_id=uuid.uuid4().hex,
            name=self.name,
            provider=self.provider,
            description=self.description,
            created=int(time.time()),
            not_before=self.not_before,
            expires=self.expires,
            format_version=format_version_for(sets),
            builder=BUILDER_NAME,
        )
        return ContrabandFilter(metadata, self.salt, sets)

    def _item_groups(self) -> dict[tuple[str, str, str], int]:
        """Sets built only from folder content with a sample or block set beside them share an
        item group.

        A folder input computes every requested kind of every file, so within one (category,
        priority) those sets describe exactly the same files (a block set: the blocks of the files
        that have a whole 4 KiB block).
        """
        groups: dict[tuple[str, str, str], int] = {}
        by_class: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
        for slot, pending in sorted(self._pending.items()):
            if pending.all_from_content:
                by_class.setdefault((pending.category, pending.priority), []).append(slot)
        for category, priority in self.blocks.slots:
            by_class.setdefault((category, priority), []).append((BLOCK_KIND, category, priority))
        for number, (_, slots) in enumerate(sorted(by_class.items())):
            if any(kind in (SAMPLE_KIND, BLOCK_KIND) for kind, _, _ in slots) and len(slots) > 1:
                groups.update((slot, number) for slot in slots)
        return groups

    def summary(self) -> list[tuple[str, str, str, int]]:
        """(kind, category, priority, entries added before merging duplicates) per set (block
        sets: whole blocks added, before removals and subsampling)."""
        added = [(k, c, p, len(s.keys)) for (k, c, p), s in self._pending.items()]
        added += [(BLOCK_KIND, c, p, self.blocks.blocks_of((c, p))) for c, p in self.blocks.slots]
        return sorted(added)
