"""Binary fuse filter with 32-bit fingerprints (Graf & Lemire, "Binary Fuse Filters", JEA 2022).

An approximate-membership structure: ``contains(key)`` is always True for a key that was built in,
and True for any other 64-bit key with probability about 2^-32. It stores 32 bits per slot and
``1.125 * n`` slots (plus rounding to whole segments), about 4.5 bytes per key.

The layout and hashing follow the reference C implementation (xor_singleheader, arity 3), widened
to 32-bit fingerprints, so that docs/filter-format.md can point at a known algorithm. Construction
is vectorised with numpy: peeling runs in rounds (every slot holding exactly one key is peeled in
the same round), which is equivalent to the sequential queue because keys peeled in one round never
share their peeling slot.

Example::

    >>> import numpy as np
    >>> keys = np.arange(1, 1001, dtype=np.uint64)
    >>> fuse = FuseFilter.build(keys)
    >>> fuse.contains(17), fuse.contains(10**12)
    (True, False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
U32 = npt.NDArray[np.uint32]

MASK64 = (1 << 64) - 1
MAX_SEGMENT_LENGTH = 1 << 18
MAX_CONSTRUCTION_ATTEMPTS = 100
ARITY = 3


class FuseBuildError(Exception):
    """Construction failed (only for pathological inputs; random keys always succeed)."""


def murmur64(h: int) -> int:
    """The murmur3 64-bit finaliser on a Python int (used per lookup)."""
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & MASK64
    h ^= h >> 33
    return h


def murmur64_array(keys: U64) -> U64:
    """The murmur3 64-bit finaliser, vectorised (uint64 arithmetic wraps like C)."""
    h = keys.copy()
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


def mulhi_array(a: U64, b: int) -> U64:
    """High 64 bits of a * b for b < 2^32, without 128-bit integers (no overflow: see tests)."""
    lo = a & np.uint64(0xFFFFFFFF)
    hi = a >> np.uint64(32)
    bb = np.uint64(b)
    return (hi * bb + ((lo * bb) >> np.uint64(32))) >> np.uint64(32)


@dataclass(frozen=True)
class FuseGeometry:
    """The sizes that, with the seed, fix where a key's three slots are."""

    segment_length: int
    segment_count_length: int
    array_length: int

    @classmethod
    def for_size(cls, size: int) -> FuseGeometry:
        if size <= 1:
            segment_length = 4
            capacity = 0
        else:
            exponent = math.floor(math.log(size) / math.log(3.33) + 2.25)
            segment_length = min(1 << exponent, MAX_SEGMENT_LENGTH)
            factor = max(1.125, 0.875 + 0.25 * math.log(1_000_000) / math.log(size))
            capacity = math.floor(size * factor + 0.5)  # C's round(): halves go up
        init_segment_count = (capacity + segment_length - 1) // segment_length - (ARITY - 1)
        array_length = (init_segment_count + ARITY - 1) * segment_length
        segment_count = (array_length + segment_length - 1) // segment_length
        segment_count = 1 if segment_count <= ARITY - 1 else segment_count - (ARITY - 1)
        array_length = (segment_count + ARITY - 1) * segment_length
        return cls(segment_length, segment_count * segment_length, array_length)

    def is_consistent(self) -> bool:
        """True when the numbers could have come from ``for_size`` of some size (untrusted input)."""
        length = self.segment_length
        return (
            4 <= length <= MAX_SEGMENT_LENGTH
            and length & (length - 1) == 0
            and self.segment_count_length > 0
            and self.segment_count_length % length == 0
            and self.array_length == self.segment_count_length + (ARITY - 1) * length
            and self.segment_count_length < (1 << 32)
        )


def _slots(hashes: U64, geometry: FuseGeometry) -> tuple[U64, U64, U64]:
    mask = np.uint64(geometry.segment_length - 1)
    h0 = mulhi_array(hashes, geometry.segment_count_length)
    h1 = h0 + np.uint64(geometry.segment_length)
    h2 = h1 + np.uint64(geometry.segment_length)
    h1 ^= (hashes >> np.uint64(18)) & mask
    h2 ^= hashes & mask
    return h0, h1, h2


def _fingerprints(hashes: U64) -> U32:
    return ((hashes ^ (hashes >> np.uint64(32))) & np.uint64(0xFFFFFFFF)).astype(np.uint32)


class FuseFilter:
    """A built or loaded binary fuse filter over 64-bit keys."""

    def __init__(self, seed: int, geometry: FuseGeometry, fingerprints: U32) -> None:
        if fingerprints.shape != (geometry.array_length,):
            raise ValueError("fingerprint array does not match the geometry")
        self.seed = seed
        self.geometry = geometry
        self.fingerprints = fingerprints
        # memoryview indexing is several times faster than numpy scalar indexing per lookup.
        self._table = memoryview(fingerprints.data).cast("B").cast("I") if fingerprints.size else None

    @classmethod
    def build(cls, keys: U64, seed: int | None = None, *, unique: bool = False) -> FuseFilter:
        """Build over ``keys`` (duplicates are removed unless ``unique`` says there are none);
        ``seed`` fixes the first attempt."""
        keys = np.asarray(keys, dtype=np.uint64)
        if not unique:
            keys = np.unique(keys)
        geometry = FuseGeometry.for_size(int(keys.size))
        rng = np.random.default_rng(seed)
        for _ in range(MAX_CONSTRUCTION_ATTEMPTS):
            attempt_seed = int(rng.integers(0, 1 << 63, dtype=np.int64)) * 2 + 1
            table = _try_build(keys, geometry, attempt_seed)
            if table is not None:
                return cls(attempt_seed, geometry, table)
        raise FuseBuildError(f"could not build a filter over {keys.size} keys")

    def contains(self, key: int) -> bool:
        """True when ``key`` may be in the set (always, when it was built in)."""
        if self._table is None:
            return False
        g = self.geometry
        h = murmur64((key + self.seed) & MASK64)
        h0 = (h * g.segment_count_length) >> 64
        h1 = h0 + g.segment_length
        h2 = h1 + g.segment_length
        mask = g.segment_length - 1
        h1 ^= (h >> 18) & mask
        h2 ^= h & mask
        table = self._table
        f = (h ^ (h >> 32)) & 0xFFFFFFFF
        return (f ^ table[h0] ^ table[h1] ^ table[h2]) == 0

    def contains_many(self, keys: U64, fingerprint_bits: int = 32) -> npt.NDArray[np.bool_]:
        """Vectorised ``contains``; ``fingerprint_bits`` < 32 compares only the low bits (tests)."""
        keys = np.asarray(keys, dtype=np.uint64)
        if self.fingerprints.size == 0:
            return np.zeros(keys.shape, dtype=np.bool_)
        hashes = murmur64_array(keys + np.uint64(self.seed))
        h0, h1, h2 = _slots(hashes, self.geometry)
        table = self.fingerprints
        residue = _fingerprints(hashes) ^ table[h0] ^ table[h1] ^ table[h2]
        if fingerprint_bits < 32:
            residue &= np.uint32((1 << fingerprint_bits) - 1)
        result: npt.NDArray[np.bool_] = residue == 0
        return result


def _try_build(keys: U64, geometry: FuseGeometry, seed: int) -> U32 | None:
    """One construction attempt; None when peeling got stuck (retry with another seed)."""
    n = int(keys.size)
    table = np.zeros(geometry.array_length, dtype=np.uint32)
    if n == 0:
        return table
    hashes = murmur64_array(keys + np.uint64(seed))
    slots = [s.astype(np.int64) for s in _slots(hashes, geometry)]
    all_slots = np.concatenate(slots)
    key_ids = np.tile(np.arange(n, dtype=np.float64), ARITY)
    counts = np.bincount(all_slots, minlength=geometry.array_length).astype(np.int32)
    # Sum of the ids of the keys in each slot: when a slot holds one key, the sum is its id.
    # float64 is exact here (sums stay far below 2^53).
    id_sums = np.bincount(all_slots, weights=key_ids, minlength=geometry.array_length)
    id_sums = id_sums.astype(np.int64)
    del all_slots, key_ids

    # Which entry of this round's frontier peels each key (a key may be alone in two slots).
    last_seen = np.full(n, -1, dtype=np.int64)
    rounds: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = []
    peeled = 0
    frontier = np.flatnonzero(counts == 1)
    while frontier.size:
        frontier = frontier[counts[frontier] == 1]
        if frontier.size == 0:
            break
        ids = id_sums[frontier]
        positions = np.arange(ids.size)
        last_seen[ids] = positions
        keep = last_seen[ids] == positions
        ids = ids[keep]
        rounds.append((ids, frontier[keep]))
        peeled += int(ids.size)
        touched = np.concatenate([slot_of[ids] for slot_of in slots])
        np.subtract.at(counts, touched, 1)
        np.subtract.at(id_sums, touched, np.tile(ids, ARITY))
        frontier = touched
    if peeled != n:
        return None

    fingerprints = _fingerprints(hashes)
    for ids, peel_slots in reversed(rounds):
        value = fingerprints[ids]
        for slot_of in slots:
            value = value ^ table[slot_of[ids]]
        table[peel_slots] = value
    return table
