"""Block sets: the 4 KiB blocks of known files, for finding them in deleted and unmounted space.

A ``block`` set holds a key (``filters.model.derive_key`` of kind ``block``) for 4 KiB blocks of
known files: the block at every file offset that is a multiple of 4096, the final partial block
left out; the digest of a block is its BLAKE3. A kiosk reads blocks at random offsets of a raw
device and looks them up (``agent/scan/blocks.py``); docs/block-sampling.md has the maths.

Blocks that would match ordinary data are not probative (Garfinkel et al.) and never enter a set:

* a block of one repeated byte or of a short repeating pattern (a period of at most 512 bytes:
  zeros, 0xff fill, a repeated word or line);
* a block that occurs in more than one known item (exact copies of one file are one item);
* a block found in a corpus of ordinary files that the provider names
  (``fieldtriage filter build --common-blocks DIR``).

Subsampling 1 in ``k`` keeps filters small: each file's blocks are cut into windows of ``k``
consecutive blocks (block indices ``[j k, (j + 1) k)``) and the first probative block of each window
is kept, so an item whose every window holds a probative block ("dense") has at least
``floor(b / k)`` of its ``b`` blocks in the set; the set records ``k``, its items and its dense
items. Example::

    >>> collector = BlockCollector(salt=bytes(32), subsample=2)
    >>> blocks = [bytes([i]) * 8 + bytes(range(256)) * 15 + bytes(248) for i in range(6)]
    >>> collector.add(block_item_of_bytes(b"".join(blocks), "known", "priority"), ("known", "priority"))
    >>> built = collector.finish()
    >>> built.sets[("known", "priority")].keys.size, built.sets[("known", "priority")].dense_items
    (3, 1)
"""

from __future__ import annotations

import os
import stat
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import blake3
import numpy as np
import numpy.typing as npt

from filters.digests import (
    BLOCK_KIND,
    HASHER_FACTORIES,
    READ_BLOCK,
    SAMPLE_KIND,
    FileChangedError,
    Hasher,
    _SampleCollector,
    normalise_kinds,
)
from filters.errors import FilterBuildError, ImportFailed
from filters.importers import BlockItem, Priority
from filters.model import derive_keys

BLOCK_SIZE = 4096
MAX_PATTERN_PERIOD = 512  # a block repeating a pattern of at most this many bytes is not probative
PATTERN_PROBE = 16
MAX_SUBSAMPLE = 1 << 16
IDENTITY_DOMAIN = b"fieldtriage block item v1\x00"
U64 = npt.NDArray[np.uint64]
Slot = tuple[str, str]  # (category, priority)

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def block_digest(block: bytes | memoryview) -> bytes:
    """The digest of one 4 KiB block: its BLAKE3 (32 bytes)."""
    return blake3.blake3(block).digest()


def is_pattern_block(block: bytes) -> bool:
    """True when ``block`` repeats a pattern of at most ``MAX_PATTERN_PERIOD`` bytes (one byte over
    and over included): ``block[p:] == block[:-p]`` for such a period ``p``.

    >>> is_pattern_block(bytes(4096)), is_pattern_block(b"abc" * 1365 + b"a")
    (True, True)
    >>> is_pattern_block(os.urandom(4096))
    False
    """
    head = block[:PATTERN_PROBE]
    limit = MAX_PATTERN_PERIOD + PATTERN_PROBE
    period = block.find(head, 1, limit)
    while period != -1:
        if block[period:] == block[:-period]:
            return True
        period = block.find(head, period + 1, limit)
    return False


class BlockCutter:
    """Cuts a file's bytes, fed in order in chunks of any size, into whole 4 KiB blocks and keeps
    each block's digest and whether it is a pattern; ``item`` then describes the file."""

    def __init__(self) -> None:
        self.digests: list[bytes] = []
        self.patterns = bytearray()
        self._carry = b""
        self._identity = blake3.blake3(IDENTITY_DOMAIN)

    def feed(self, chunk: bytes | memoryview) -> None:
        data = self._carry + bytes(chunk) if self._carry else bytes(chunk)
        whole = len(data) - len(data) % BLOCK_SIZE
        digests, patterns = self.digests, self.patterns
        for offset in range(0, whole, BLOCK_SIZE):
            block = data[offset : offset + BLOCK_SIZE]
            digests.append(blake3.blake3(block).digest())
            patterns.append(is_pattern_block(block))
        self._carry = data[whole:]

    def item(self, size: int, category: str, priority: Priority, source: str = "") -> BlockItem:
        identity = self._identity.copy()
        identity.update(size.to_bytes(8, "little"))
        identity.update(b"".join(self.digests))
        identity.update(self._carry)  # the final partial block tells copies from near-copies
        return BlockItem(category, priority, self.digests, bytes(self.patterns), identity.digest(), source)


def block_item_of_bytes(data: bytes, category: str, priority: Priority, source: str = "") -> BlockItem:
    """The block item of a file holding ``data`` (tests, benchmarks)."""
    cutter = BlockCutter()
    cutter.feed(data)
    return cutter.item(len(data), category, priority, source)


def digest_fd_with_blocks(fd: int, size: int, kinds: Iterable[str]) -> tuple[dict[str, bytes], BlockCutter]:
    """The file digests of ``kinds`` (``block`` left out) of an open regular file of ``size``
    bytes and its blocks (``BlockCutter``), in one sequential read. ``FileChangedError`` when
    the file is not ``size`` bytes long any more."""
    wanted = normalise_kinds(k for k in kinds if k != BLOCK_KIND)
    whole = [k for k in wanted if k != SAMPLE_KIND]
    hashers: list[Hasher] = [HASHER_FACTORIES[k]() for k in whole]
    sample = _SampleCollector(size) if SAMPLE_KIND in wanted else None
    cutter = BlockCutter()
    done = 0
    buffer = bytearray(min(READ_BLOCK, max(size, 1)))
    view = memoryview(buffer)
    while True:
        n = os.readv(fd, [view])
        if n == 0:
            break
        chunk = view[:n]
        for hasher in hashers:
            hasher.update(chunk)
        if sample is not None:
            sample.feed(done, chunk)
        cutter.feed(chunk)
        done += n
        if done > size:
            raise FileChangedError(f"file grew while read (expected {size} bytes)")
    if done != size:
        raise FileChangedError(f"file changed size while read ({done} of {size} bytes)")
    result = {k: h.digest() for k, h in zip(whole, hashers, strict=True)}
    if sample is not None:
        result[SAMPLE_KIND] = sample.digest()
    return {k: result[k] for k in wanted}, cutter


def common_block_files(folder: str | os.PathLike[str]) -> Iterator[str]:
    """The regular files under ``folder`` (never through a symbolic link), in a fixed order."""
    top = os.fspath(folder)
    try:
        if not stat.S_ISDIR(os.stat(top).st_mode):
            raise ImportFailed(top, "--common-blocks needs a folder of ordinary files")
    except OSError as err:
        raise ImportFailed(top, err.strerror or str(err)) from err
    for parent, folders, files in os.walk(top, followlinks=False):
        folders.sort()
        for name in sorted(files):
            yield os.path.join(parent, name)


def read_common_digests(folder: str | os.PathLike[str]) -> Iterator[list[bytes]]:
    """Per readable regular file of the corpus, the digests of its whole 4 KiB blocks (patterns
    included: they are never probative anyway). Unreadable files are skipped."""
    for path in common_block_files(folder):
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError:
            continue
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size < BLOCK_SIZE:
                continue
            digests: list[bytes] = []
            carry = b""
            while True:
                chunk = os.read(fd, READ_BLOCK)
                if not chunk:
                    break
                data = carry + chunk if carry else chunk
                whole = len(data) - len(data) % BLOCK_SIZE
                digests.extend(
                    blake3.blake3(data[o : o + BLOCK_SIZE]).digest() for o in range(0, whole, BLOCK_SIZE)
                )
                carry = data[whole:]
            yield digests
        except OSError:
            continue
        finally:
            os.close(fd)


@dataclass(frozen=True)
class BuiltBlockSet:
    """The keys of one (category, priority) block set and what its items are."""

    keys: U64
    items: int  # distinct known items with at least one whole block
    dense_items: int  # items with a probative block in every window of k blocks


@dataclass
class BlockStats:
    """What happened to the blocks of a build (each removed block counted under one reason)."""

    blocks: int = 0  # whole blocks of distinct items
    items: int = 0
    copies: int = 0  # items left out as exact copies of another
    pattern: int = 0  # one repeated byte or a short pattern
    common: int = 0  # found in the common-blocks corpus
    shared: int = 0  # in more than one known item
    not_sampled: int = 0  # probative, left out by 1-in-k subsampling
    kept: int = 0
    common_corpus_blocks: int = 0


@dataclass(frozen=True)
class BuiltBlocks:
    sets: dict[Slot, BuiltBlockSet]
    stats: BlockStats


@dataclass
class _Item:
    start: int
    slots: set[Slot] = field(default_factory=set)


class BlockCollector:
    """Collects block items (keys derived as they come, 8 bytes a block; about 30 bytes a block of
    temporary memory at ``finish``), the common-blocks corpus, and makes the block sets."""

    def __init__(self, salt: bytes, subsample: int = 1) -> None:
        if not 1 <= subsample <= MAX_SUBSAMPLE:
            raise FilterBuildError("--block-subsample", f"must be 1 to {MAX_SUBSAMPLE}, not {subsample}")
        self.salt = salt
        self.subsample = subsample
        self._keys: array[int] = array("Q")
        self._patterns = bytearray()
        self._items: list[_Item] = []
        self._by_identity: dict[bytes, int] = {}
        self._common: array[int] = array("Q")
        self.copies = 0

    def __bool__(self) -> bool:
        return bool(self._items)

    @property
    def slots(self) -> set[Slot]:
        return {slot for item in self._items for slot in item.slots}

    def blocks_of(self, slot: Slot) -> int:
        """Whole blocks added for ``slot`` so far (before any removal)."""
        bounds = [item.start for item in self._items] + [len(self._keys)]
        return sum(bounds[i + 1] - bounds[i] for i, item in enumerate(self._items) if slot in item.slots)

    def add(self, item: BlockItem, slot: Slot | None = None) -> None:
        slot = slot or (item.category, item.priority)
        if len(item.patterns) != len(item.digests) or any(len(d) != 32 for d in item.digests):
            raise FilterBuildError(
                item.source or "block item", "block digests and pattern flags do not match"
            )
        known = self._by_identity.get(item.identity)
        if known is not None:
            self._items[known].slots.add(slot)
            self.copies += 1
            return
        self._by_identity[item.identity] = len(self._items)
        self._items.append(_Item(len(self._keys), {slot}))
        if item.digests:
            self._keys.frombytes(derive_keys(self.salt, BLOCK_KIND, item.digests).tobytes())
            self._patterns += item.patterns

    def add_common(self, digests: list[bytes]) -> None:
        """Blocks of an ordinary file (the provider's corpus): never in a block set."""
        if digests:
            self._common.frombytes(derive_keys(self.salt, BLOCK_KIND, digests).tobytes())

    def finish(self) -> BuiltBlocks:
        keys = np.frombuffer(self._keys, dtype=np.uint64) if len(self._keys) else np.zeros(0, np.uint64)
        total, k = int(keys.size), self.subsample
        starts = np.array([item.start for item in self._items] + [total], dtype=np.int64)
        lengths = np.diff(starts)
        item_of = np.repeat(np.arange(len(self._items), dtype=np.uint32), lengths)
        stats = BlockStats(blocks=total, items=int(np.count_nonzero(lengths)), copies=self.copies)
        pattern = np.frombuffer(bytes(self._patterns), dtype=np.uint8).astype(bool)
        common = np.unique(np.frombuffer(self._common, dtype=np.uint64)) if len(self._common) else None
        stats.common_corpus_blocks = 0 if common is None else int(common.size)
        in_common = _members(keys, common) & ~pattern if common is not None else np.zeros(total, bool)
        shared = _shared_between_items(keys, item_of) & ~pattern & ~in_common
        removed = pattern | in_common | shared
        stats.pattern = int(np.count_nonzero(pattern))
        stats.common = int(np.count_nonzero(in_common))
        stats.shared = int(np.count_nonzero(shared))
        del in_common, shared, pattern

        # windows of k blocks per item; the first probative block of each window is kept
        windows = (lengths + k - 1) // k
        base = np.concatenate([[0], np.cumsum(windows)[:-1]]).astype(np.int64)
        local = np.arange(total, dtype=np.int64) - np.repeat(starts[:-1], lengths)
        window_of = np.repeat(base, lengths) + local // k
        del local
        probative = np.flatnonzero(~removed)
        _, first = np.unique(window_of[probative], return_index=True)
        selected = probative[first]
        del window_of, probative, removed
        stats.kept = int(selected.size)
        stats.not_sampled = total - stats.pattern - stats.common - stats.shared - stats.kept
        kept_per_item = np.bincount(item_of[selected], minlength=len(self._items))
        dense = (kept_per_item == windows) & (lengths > 0)

        sets: dict[Slot, BuiltBlockSet] = {}
        for slot in sorted(self.slots):
            in_slot = np.array([slot in item.slots for item in self._items], dtype=bool)
            chosen = selected[in_slot[item_of[selected]]]
            sets[slot] = BuiltBlockSet(
                np.unique(keys[chosen]),
                int(np.count_nonzero(in_slot & (lengths > 0))),
                int(np.count_nonzero(in_slot & dense)),
            )
        return BuiltBlocks(sets, stats)


def _members(keys: U64, sorted_unique: U64) -> npt.NDArray[np.bool_]:
    if sorted_unique.size == 0:
        return np.zeros(keys.shape, dtype=bool)
    where = np.minimum(np.searchsorted(sorted_unique, keys), sorted_unique.size - 1)
    found: npt.NDArray[np.bool_] = sorted_unique[where] == keys
    return found


def _shared_between_items(keys: U64, item_of: npt.NDArray[np.uint32]) -> npt.NDArray[np.bool_]:
    """True for each block whose key occurs in another item too (not only again in its own)."""
    total = int(keys.size)
    if total == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    run_starts = np.concatenate([[0], np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1])
    del sorted_keys
    items_sorted = item_of[order]
    spread = np.maximum.reduceat(items_sorted, run_starts) != np.minimum.reduceat(items_sorted, run_starts)
    del items_sorted
    run_lengths = np.diff(np.concatenate([run_starts, [total]]))
    shared = np.zeros(total, dtype=bool)
    shared[order] = np.repeat(spread, run_lengths)
    return shared
