"""A loaded contraband filter: metadata, sets, and lookups by digest.

A filter holds sets; each set has a digest kind, a category label, a priority class (``priority`` or
``other``), an entry count and a binary fuse structure over 64-bit keys. A key is the first 8 bytes
(little-endian) of BLAKE3 keyed with the filter's random salt over ``kind || 0x00 || digest``, so a
filter reveals no digest: it can only answer "is this one in?".

Sets with the same ``item_group`` describe the same items (built from the same files): a ``sample``
set then covers the whole-file sets of its group, and a scanner may read only samples, confirming a
sample hit with a whole-file digest. A ``block`` set (format version 3, ``filters/blocks.py``) holds
keys of 4 KiB blocks of known files, looked up by a kiosk's block sample of a raw device, never per
file; ``FilterSet.block`` says how it was built (1-in-k subsampling, items).

Example::

    >>> from filters.builder import FilterBuilder
    >>> from filters.importers import DigestEntry
    >>> builder = FilterBuilder(name="demo")
    >>> builder.add(DigestEntry("md5", bytes(range(16)), "known", "priority"))
    >>> demo = builder.build_unsigned()
    >>> [s.category for s in demo.lookup_digest("md5", bytes(range(16)))]
    ['known']
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import blake3
import numpy as np
import numpy.typing as npt

from filters.digests import BLOCK_KIND, SAMPLE_KIND
from filters.fuse import FuseFilter
from filters.importers import Priority

SALT_BYTES = 32
KEY_BYTES = 8
VECTOR_LOOKUP_MIN = 32  # below this many digests, per-key probes beat numpy's fixed cost (~80 us)


def derive_key(salt: bytes, kind: str, digest: bytes) -> int:
    """The 64-bit filter key of a digest (see the module docstring)."""
    material = kind.encode("ascii") + b"\x00" + digest
    return int.from_bytes(blake3.blake3(material, key=salt).digest(KEY_BYTES), "little")


def derive_keys(salt: bytes, kind: str, digests: Sequence[bytes]) -> npt.NDArray[np.uint64]:
    """``derive_key`` of many digests of one kind, as a uint64 array (about 1 us per digest)."""
    prefix = blake3.blake3(kind.encode("ascii") + b"\x00", key=salt)
    packed = b"".join([prefix.copy().update(d).digest(KEY_BYTES) for d in digests])
    return np.frombuffer(packed, dtype="<u8").astype(np.uint64, copy=False)


@dataclass(frozen=True)
class BlockSetInfo:
    """How a ``block`` set was built: 1 in ``subsample`` blocks of each file kept (the first
    probative block of each window of that many), from ``items`` known files with at least one
    whole block, of which ``dense_items`` have a kept block in every window (docs/block-sampling.md:
    the confidence statement holds for those)."""

    subsample: int
    items: int
    dense_items: int
    block_size: int = 4096


@dataclass(frozen=True)
class FilterSet:
    index: int
    kind: str
    category: str
    priority: Priority
    count: int
    item_group: int | None
    fuse: FuseFilter = field(repr=False, compare=False)
    block: BlockSetInfo | None = None  # set for (and only for) a block set

    def describe(self) -> str:
        return f"set {self.index} ({self.kind}, {self.category}, {self.priority})"


@dataclass(frozen=True)
class FilterMetadata:
    filter_id: str
    name: str
    provider: str
    description: str
    created: int
    not_before: int | None
    expires: int | None
    format_version: int
    builder: str

    def validity_problem(self, now: dt.datetime) -> str | None:
        """Why the filter is not valid at ``now`` (None when it is)."""
        stamp = now.timestamp()
        if self.not_before is not None and stamp < self.not_before:
            return f"not valid before {iso_time(self.not_before)} (clock says {iso_time(int(stamp))})"
        if self.expires is not None and stamp >= self.expires:
            return f"expired at {iso_time(self.expires)}"
        return None


def iso_time(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class SetMatch:
    """A digest of a file found in a set."""

    filter_set: FilterSet
    kind: str
    digest: bytes


class ContrabandFilter:
    """Metadata, sets and the salt of one filter file; immutable once loaded."""

    def __init__(
        self,
        metadata: FilterMetadata,
        salt: bytes,
        sets: list[FilterSet],
        *,
        signer_key_id: str | None = None,
        source: str = "<memory>",
        size: int = 0,
    ) -> None:
        self.metadata = metadata
        self.salt = salt
        self.sets = sets
        self.signer_key_id = signer_key_id
        self.source = source
        self.size = size
        self._sets_by_kind: dict[str, list[FilterSet]] = {}
        for filter_set in sets:
            self._sets_by_kind.setdefault(filter_set.kind, []).append(filter_set)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The file digest kinds some set of this filter needs (block sets are looked up by block
        samples of a device, never by a file's digests)."""
        return tuple(kind for kind in self._sets_by_kind if kind != BLOCK_KIND)

    @property
    def block_sets(self) -> list[FilterSet]:
        return self._sets_by_kind.get(BLOCK_KIND, [])

    def sets_of_kind(self, kind: str) -> list[FilterSet]:
        return self._sets_by_kind.get(kind, [])

    def lookup_digest(self, kind: str, digest: bytes) -> list[FilterSet]:
        """The sets that (probably) hold ``digest`` of ``kind``."""
        candidates = self._sets_by_kind.get(kind)
        if not candidates:
            return []
        key = derive_key(self.salt, kind, digest)
        return [s for s in candidates if s.fuse.contains(key)]

    def lookup_many(self, kind: str, digests: Sequence[bytes]) -> list[tuple[FilterSet, list[int]]]:
        """For each set of ``kind`` that (probably) holds some of ``digests``: the set and the
        indices of those digests, in order. The same answers as ``lookup_digest`` per digest, with
        one key derivation pass (``derive_keys``) and, for many digests, one vectorised probe per
        set (``FuseFilter.contains_many``); used by the scanner to look up a batch of files."""
        candidates = self._sets_by_kind.get(kind)
        if not candidates or not digests:
            return []
        keys = derive_keys(self.salt, kind, digests)
        scalar = keys.tolist() if len(digests) < VECTOR_LOOKUP_MIN else None
        found: list[tuple[FilterSet, list[int]]] = []
        for filter_set in candidates:
            if scalar is not None:
                contains = filter_set.fuse.contains
                indices = [i for i, key in enumerate(scalar) if contains(key)]
            else:
                indices = np.flatnonzero(filter_set.fuse.contains_many(keys)).tolist()
            if indices:
                found.append((filter_set, indices))
        return found

    def lookup(self, digests: Mapping[str, bytes]) -> list[SetMatch]:
        """Every set match of a file's digests (kinds no set needs are ignored)."""
        matches: list[SetMatch] = []
        for kind, digest in digests.items():
            matches.extend(SetMatch(s, kind, digest) for s in self.lookup_digest(kind, digest))
        return matches

    def sample_cover(self) -> dict[int, int]:
        """Whole-file set index -> index of the sample set that covers it (same item group)."""
        samples = {
            s.item_group: s.index for s in self.sets if s.kind == SAMPLE_KIND and s.item_group is not None
        }
        return {
            s.index: samples[s.item_group]
            for s in self.sets
            if s.kind not in (SAMPLE_KIND, BLOCK_KIND) and s.item_group in samples
        }

    def fully_covered_by_samples(self) -> bool:
        """True when every whole-file set is covered by a sample set of the same items (block sets
        are no file's business)."""
        cover = self.sample_cover()
        return all(s.kind in (SAMPLE_KIND, BLOCK_KIND) or s.index in cover for s in self.sets)

    @property
    def entry_count(self) -> int:
        return sum(s.count for s in self.sets)
