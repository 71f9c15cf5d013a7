"""The block sample: random 4 KiB blocks of a raw read-only device looked up in block sets.

After the file scan of a device, ``sample_device`` reads N blocks at random offsets of the raw
device (the mounter's read-only descriptor: deleted, unallocated and unmountable space included),
in passes sorted by offset, and looks every block up in the filters' ``block`` sets
(``filters/blocks.py``). A block found is a match: "known block of item set S at device offset X",
priority when the set is. The sample is sized so that a known item of at least ``target`` bytes
stored contiguously anywhere on the device is found with probability at least ``confidence``; the
maths is in docs/block-sampling.md and here:

* **Units.** Each region of the device (a partition, or space outside every partition) is read at
  the offsets where a file's 4 KiB blocks can lie: a filesystem places a file's data at
  ``origin + c * unit`` (``agent/devices/fs_layout.py``: the cluster size and the start of the data
  area; unknown: the partition start and 4096), so a file stored contiguously has its block ``i`` at
  ``origin + c * unit + 4096 i``. A unit of the sample is the stretch at ``origin + 4096 m``: one 4
  KiB read when ``unit`` is a multiple of 4096; with smaller clusters (FAT with 512-byte to 2 KiB
  clusters, ext4 with 1 KiB blocks) ``4096 + 4096 - step`` bytes (``step = gcd(unit, 4096)``), in
  which the ``4096 / step`` windows at ``origin + 4096 m + p * step`` are looked up, one for each
  place a file's block grid can have relative to 4096. Either way each block of a contiguous file
  falls in exactly one unit, and two blocks never in the same one.
* **Probability.** With ``M`` units on the device and ``n`` drawn uniformly without replacement, an
  item with ``h`` of its blocks in the filter (at least ``floor(floor(T / 4096) / k)`` for a dense
  item of ``T`` bytes, 1 in ``k`` kept) is missed with probability
  ``C(M - h, n) / C(M, n) <= (1 - h / M) ** n``; ``samples_needed`` gives the smallest ``n`` with a
  miss at most ``1 - P``.
* **Passes and budgets.** The ``n`` units are drawn in a random order and read in passes (sorted by
  offset within each pass); a sample stopped early (the time budget, a cancel) states its
  confidence for the passes completed, which are a uniform random sample of their own size. Blocks
  of an unfinished pass are still looked up: a hit there counts.

Example::

    result = sample_device(read_at, device_size, regions, filters, BlockSettings(), cancel)
    result.statement()   # 'a known item of at least 20 MiB stored contiguously anywhere ... 99%'
"""

from __future__ import annotations

import errno
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import blake3
import numpy as np

from agent.devices.fs_layout import FsLayout, read_layout
from filters.blocks import is_pattern_block
from filters.digests import BLOCK_KIND
from filters.model import ContrabandFilter

BLOCK = 4096
MiB = 1 << 20
ReadAt = Callable[[int, int], bytes]
PASS_MIN = 256  # units per pass, at least (each pass is read sorted by offset)
PASS_MAX = 8192
PASSES = 16  # a sample of n units is read in about this many passes
MAX_ERRORS_IN_A_ROW = 64  # reads failing one after another: the device is taken to be gone
LISTED_HITS = 10_000  # block hits listed in a report (all are counted)
GONE = (errno.ENODEV, errno.ENXIO, errno.ENOMEDIUM)


@dataclass(frozen=True)
class BlockSettings:
    """What the sample aims for: ``target`` bytes at ``confidence``, within ``time_budget_s``;
    ``seed`` None draws a random one (it is in the report, so a lab can repeat the sample)."""

    target: int = 20 * MiB
    confidence: float = 0.99
    time_budget_s: float = 1800.0
    seed: int | None = None


@dataclass(frozen=True)
class Region:
    """A byte range ``[start, end)`` of the device read on the grid of ``layout`` (offsets
    absolute: ``origin`` is where the filesystem's units count from)."""

    start: int
    end: int
    origin: int
    unit: int
    label: str
    partition: int | None = None
    fs: str = ""
    files: str = ""  # the file scan's part: "checked", or why not

    @property
    def step(self) -> int:
        return min(BLOCK, math.gcd(self.unit, BLOCK))

    @property
    def phases(self) -> int:
        """Windows looked up per unit: 4096 / step (1 when the unit is a multiple of 4096)."""
        return BLOCK // self.step

    @property
    def first(self) -> int:
        """The grid index of the first unit: its last window is the first that starts in the region."""
        return -(
            (self.origin - self.start + BLOCK - self.step) // BLOCK
        )  # ceil((start - origin - (4096 - step)) / 4096)

    @property
    def units(self) -> int:
        last = (self.end - BLOCK - self.origin) // BLOCK
        return max(0, last - self.first + 1)

    def windows(self, index: int) -> tuple[int, int, list[int]]:
        """For unit ``index`` (0-based in this region): the byte range to read and the offsets of
        its whole windows inside the region."""
        base = self.origin + BLOCK * (self.first + index)
        offsets = [base + p * self.step for p in range(self.phases)]
        offsets = [o for o in offsets if o >= self.start and o + BLOCK <= self.end]
        return offsets[0], offsets[-1] + BLOCK, offsets

    def describe(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "partition": self.partition,
            "start": self.start,
            "size": self.end - self.start,
            "fs": self.fs or None,
            "unit": self.unit,
            "origin": self.origin,
            "windows_per_unit": self.phases,
            "units": self.units,
            "files": self.files,
        }


def regions_of(size: int, partitions: Sequence[tuple[int, int, int, str]], read_at: ReadAt) -> list[Region]:
    """The regions of a device of ``size`` bytes: each partition ``(number, start, size, files)``
    on its filesystem's grid (read here from its boot sector or superblock), and the space outside
    every partition on the device's own 4 KiB grid (offset 0)."""
    regions = []
    for number, start, length, files in partitions:
        end = min(size, start + length)
        if end <= start:
            continue

        def within(offset: int, n: int, start: int = start, end: int = end) -> bytes:
            if not 0 <= offset < end - start:
                return b""
            return read_at(start + offset, min(n, end - start - offset))

        layout = read_layout(within, end - start)
        label = f"partition {number}" if number else "whole device"
        if layout is None:
            layout = FsLayout("", BLOCK, 0)
        regions.append(
            Region(start, end, start + layout.origin, layout.unit, label, number, layout.fs_type, files)
        )
    covered = sorted((r.start, r.end) for r in regions)
    position = 0
    for start, end in [*covered, (size, size)]:
        if start > position:
            regions.append(Region(position, start, 0, BLOCK, f"outside partitions {position}-{start}"))
        position = max(position, end)
    return sorted(regions, key=lambda r: (r.start, r.end))


# -- the maths --------------------------------------------------------------------------------------


def miss_probability(units: int, samples: int, hit_units: int) -> float:
    """``C(M - h, n) / C(M, n)``: the chance that ``n`` units drawn without replacement from ``M``
    miss all ``h`` units holding a known item's kept blocks."""
    if hit_units <= 0:
        return 1.0
    if samples <= 0:
        return 1.0
    if samples + hit_units > units:
        return 0.0
    lg = math.lgamma
    log_miss = (
        lg(units - hit_units + 1)
        + lg(units - samples + 1)
        - lg(units - hit_units - samples + 1)
        - lg(units + 1)
    )
    return min(1.0, math.exp(log_miss))


def hit_units_for(target: int, subsample: int) -> int:
    """The kept blocks a dense item of ``target`` bytes has at least: ``floor(floor(T / 4096) / k)``."""
    return (target // BLOCK) // max(1, subsample)


def samples_needed(units: int, hit_units: int, confidence: float) -> int:
    """The smallest ``n`` with ``1 - miss_probability(M, n, h) >= confidence`` (``M`` when even
    reading every unit would not do, which happens only for ``h = 0``)."""
    if hit_units <= 0 or units <= 0:
        return units
    allowed = 1.0 - confidence
    low, high = 0, max(0, units - hit_units + 1)
    while low < high:
        middle = (low + high) // 2
        if miss_probability(units, middle, hit_units) <= allowed:
            high = middle
        else:
            low = middle + 1
    return low


def size_for(units: int, samples: int, subsample: int, confidence: float) -> int | None:
    """The smallest item size (bytes, a multiple of 4096 k) that ``samples`` units find with
    ``confidence``; None when no size does (nothing read)."""
    if samples <= 0 or units <= 0:
        return None
    allowed = 1.0 - confidence
    low, high = 1, units
    if miss_probability(units, samples, high) > allowed:
        return None
    while low < high:
        middle = (low + high) // 2
        if miss_probability(units, samples, middle) <= allowed:
            high = middle
        else:
            low = middle + 1
    return low * max(1, subsample) * BLOCK


def percent(probability: float) -> str:
    """``99%``, ``99.5%``: rounded down to 0.1%, so that 0.98996 never reads 99%."""
    tenths = math.floor(probability * 1000 + 1e-9)
    return f"{tenths // 10}%" if tenths % 10 == 0 else f"{tenths / 10:.1f}%"


def mib(size: int) -> str:
    """``20 MiB``, ``1.5 MiB``, ``256 KiB``: a size for the statement."""
    if size < MiB:
        return f"{size / 1024:g} KiB"
    return f"{size / MiB:g} MiB" if size % (MiB // 16) == 0 else f"{size / MiB:.2f} MiB"


SIZE_UNITS = {
    "": MiB, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": MiB, "mib": MiB, "g": 1 << 30, "gib": 1 << 30,
}  # fmt: skip


def parse_size(text: str) -> int:
    """``20MiB``, ``20M``, ``512KiB``, ``1GiB``, ``20`` (MiB) -> bytes; ValueError otherwise.

    >>> parse_size("20MiB"), parse_size("1.5 GiB"), parse_size("64k")
    (20971520, 1610612736, 65536)
    """
    number = text.strip().lower()
    digits = number.rstrip("kmgib ")
    unit = number[len(digits) :].strip()
    try:
        value = float(digits)
    except ValueError as err:
        raise ValueError(f"not a size: {text!r} (say 20MiB)") from err
    if unit not in SIZE_UNITS or not math.isfinite(value) or value <= 0:
        raise ValueError(f"not a size: {text!r} (say 20MiB)")
    return int(value * SIZE_UNITS[unit])


# -- the result -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockHit:
    """A sampled block of the device found in a block set."""

    offset: int
    region: str
    partition: int | None
    filter_id: str
    filter_name: str
    set_index: int
    category: str
    priority: str
    digest: bytes

    @property
    def is_priority(self) -> bool:
        return self.priority == "priority"

    def describe(self) -> str:
        where = f"{self.filter_name} set {self.set_index} ({self.category}, {self.priority})"
        return f"known block of item set {where} at device offset {self.offset:,}"

    def to_json(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "region": self.region,
            "partition": self.partition,
            "filter_id": self.filter_id,
            "filter_name": self.filter_name,
            "set": self.set_index,
            "category": self.category,
            "priority": self.priority,
            "digest": self.digest.hex(),
        }


@dataclass
class BlockSampleResult:
    """What the sample did and what it can say (``to_json`` is the report's ``blocks`` section)."""

    settings: BlockSettings
    seed: int = 0
    subsample: int = 1
    block_sets: int = 0
    items: int = 0
    dense_items: int = 0
    regions: list[Region] = field(default_factory=list)
    units: int = 0
    planned: int = 0
    units_read: int = 0
    units_counted: int = 0  # units of the completed passes: the sample the confidence is for
    windows_looked_up: int = 0
    blank: int = 0  # windows of one repeated byte or a short pattern (never in a block set)
    read_errors: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    stopped: str | None = None  # why the sample ended before its planned units
    skipped: str | None = None  # why no sample was taken at all
    hits: list[BlockHit] = field(default_factory=list)

    @property
    def hit_units(self) -> int:
        return hit_units_for(self.settings.target, self.subsample)

    @property
    def probability(self) -> float:
        """The probability that a dense known item of at least the target size, stored contiguously
        anywhere on the device, was found (by the completed passes)."""
        if self.units == 0:
            return 1.0  # nothing of that size fits: the statement holds vacuously
        if self.hit_units > self.units:
            return 1.0
        return 1.0 - miss_probability(self.units, self.units_counted, self.hit_units)

    @property
    def size_at_confidence(self) -> int | None:
        return size_for(self.units, self.units_counted, self.subsample, self.settings.confidence)

    @property
    def priority(self) -> bool:
        return any(hit.is_priority for hit in self.hits)

    def short(self) -> str:
        """``blocks 99% for 20 MiB`` (the device verdict's words)."""
        if self.skipped:
            return f"blocks not sampled ({self.skipped})"
        text = f"blocks {percent(self.probability)} for {mib(self.settings.target)}"
        if self.stopped:
            text += f" ({self.stopped})"
        return text

    def statement(self) -> str:
        if self.skipped:
            return f"no block sample: {self.skipped}"
        text = (
            f"a known item of at least {mib(self.settings.target)} stored contiguously anywhere on this "
            f"device would have been found with probability at least {percent(self.probability)}"
        )
        if self.probability < self.settings.confidence:
            size = self.size_at_confidence
            reach = f"{percent(self.settings.confidence)} for {mib(size)}" if size else "no size"
            text += f" ({reach}; {self.stopped or 'sample cut short'})"
        return text

    def to_json(self) -> dict[str, Any]:
        by_set: dict[str, int] = {}
        for hit in self.hits:
            key = f"{hit.filter_id}:{hit.set_index}"
            by_set[key] = by_set.get(key, 0) + 1
        size = self.size_at_confidence if not self.skipped else None
        return {
            "skipped": self.skipped,
            "target_bytes": self.settings.target,
            "confidence_target": self.settings.confidence,
            "time_budget_s": self.settings.time_budget_s,
            "subsample": self.subsample,
            "block_sets": self.block_sets,
            "items": self.items,
            "dense_items": self.dense_items,
            "seed": self.seed,
            "units": self.units,
            "hit_units_at_target": self.hit_units,
            "planned": self.planned,
            "sampled": self.units_read,
            "counted": self.units_counted,
            "windows_looked_up": self.windows_looked_up,
            "blank": self.blank,
            "read_errors": self.read_errors,
            "bytes_read": self.bytes_read,
            "seconds": round(self.seconds, 3),
            "stopped": self.stopped,
            "probability": None if self.skipped else self.probability,
            "size_at_confidence": size,
            "statement": self.statement(),
            "short": self.short(),
            "hits": len(self.hits),
            "priority_hits": sum(hit.is_priority for hit in self.hits),
            "hits_by_set": dict(sorted(by_set.items())),
            "hits_not_listed": max(0, len(self.hits) - LISTED_HITS),
            "regions": [r.describe() for r in self.regions],
        }

    def hits_json(self) -> list[dict[str, Any]]:
        return [
            hit.to_json()
            for hit in sorted(self.hits, key=lambda h: (h.offset, h.filter_id, h.set_index))[:LISTED_HITS]
        ]


# -- the sample -------------------------------------------------------------------------------------


def block_sets_of(filters: Sequence[ContrabandFilter]) -> list[tuple[ContrabandFilter, Any]]:
    return [(f, s) for f in filters for s in f.block_sets]


def sample_device(
    read_at: ReadAt,
    regions: Sequence[Region],
    filters: Sequence[ContrabandFilter],
    settings: BlockSettings,
    cancel: threading.Event | None = None,
    on_hit: Callable[[BlockHit], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> BlockSampleResult:
    """Sample ``regions`` through ``read_at(offset, length)`` (which raises OSError on a read error)
    and look the blocks up in the block sets of ``filters``."""
    started = clock()
    result = BlockSampleResult(settings, regions=list(regions))
    sets = block_sets_of(filters)
    if not sets:
        result.skipped = "no filter has a block set"
        return result
    infos = [s.block for _, s in sets if s.block is not None]
    result.block_sets = len(sets)
    result.subsample = max((info.subsample for info in infos), default=1)
    result.items = sum(info.items for info in infos)
    result.dense_items = sum(info.dense_items for info in infos)
    counts = np.array([r.units for r in regions], dtype=np.int64)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    result.units = units = int(bounds[-1])
    if units == 0:
        result.seconds = clock() - started
        return result
    result.seed = settings.seed if settings.seed is not None else int.from_bytes(os.urandom(8), "little")
    wanted = samples_needed(units, result.hit_units, settings.confidence)
    result.planned = planned = min(units, wanted)
    rng = np.random.default_rng(result.seed)
    order = (
        rng.permutation(units)[:planned]
        if planned * 4 >= units
        else rng.choice(units, planned, replace=False)
    )
    pass_size = min(PASS_MAX, max(PASS_MIN, -(-planned // PASSES)))
    deadline = started + settings.time_budget_s
    in_a_row = 0
    for first in range(0, planned, pass_size):
        chosen = np.sort(order[first : first + pass_size])
        region_of = np.searchsorted(bounds, chosen, side="right") - 1
        digests: list[bytes] = []
        where: list[tuple[int, Region]] = []
        finished = True
        for unit, index in zip(chosen.tolist(), region_of.tolist(), strict=True):
            if cancel is not None and cancel.is_set():
                result.stopped, finished = "cancelled", False
                break
            if clock() > deadline:
                result.stopped, finished = "time budget reached", False
                break
            region = regions[index]
            low, high, offsets = region.windows(unit - int(bounds[index]))
            try:
                data = read_at(low, high - low)
            except OSError as err:
                result.read_errors += 1
                in_a_row += 1
                if err.errno in GONE or in_a_row >= MAX_ERRORS_IN_A_ROW:
                    result.stopped, finished = f"the device stopped answering ({err.strerror or err})", False
                    break
                continue
            in_a_row = 0
            result.units_read += 1
            result.bytes_read += len(data)
            for offset in offsets:
                window = data[offset - low : offset - low + BLOCK]
                if len(window) < BLOCK:
                    continue
                if is_pattern_block(window):
                    result.blank += 1
                    continue
                digests.append(blake3.blake3(window).digest())
                where.append((offset, region))
        result.windows_looked_up += len(digests)
        for hit in lookup_blocks(filters, digests, where):
            result.hits.append(hit)
            if on_hit is not None:
                on_hit(hit)
        if on_progress is not None:
            on_progress(result.units_read, planned)
        if not finished:
            break
        result.units_counted += int(chosen.size)
    result.seconds = clock() - started
    return result


def lookup_blocks(
    filters: Sequence[ContrabandFilter], digests: list[bytes], where: list[tuple[int, Region]]
) -> list[BlockHit]:
    """The hits among ``digests`` (read at ``where``), in every block set of every filter."""
    hits = []
    for contraband in filters:
        if not contraband.block_sets or not digests:
            continue
        meta = contraband.metadata
        for filter_set, indices in contraband.lookup_many(BLOCK_KIND, digests):
            for i in indices:
                offset, region = where[i]
                hits.append(
                    BlockHit(
                        offset, region.label, region.partition, meta.filter_id, meta.name,
                        filter_set.index, filter_set.category, filter_set.priority, digests[i],
                    )
                )  # fmt: skip
    return hits


def advise_random(fd: int) -> None:
    """No readahead on ``fd`` while sampling (a 4 KiB read would otherwise fetch the device's
    readahead, 128 KiB on a USB disk); ``advise_normal`` undoes it."""
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    except OSError:
        pass


def advise_normal(fd: int) -> None:
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_NORMAL)
    except OSError:
        pass


def fd_reader(fd: int) -> ReadAt:
    """``read_at`` over a read-only descriptor: ``os.pread``; a short read at the end is returned
    as it is (its windows are not looked up), an error raises OSError."""

    def read_at(offset: int, length: int) -> bytes:
        return os.pread(fd, length, offset)

    return read_at
