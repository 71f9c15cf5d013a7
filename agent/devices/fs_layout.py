"""Where a filesystem places file data: its allocation unit and the offset its units count from.

The block sample (``agent/scan/blocks.py``) reads a device at the offsets where a file's 4 KiB
blocks can lie. A filesystem stores a file's data in allocation units (clusters, blocks) of
``unit`` bytes counted from ``origin`` (an offset from the partition start): a file's data starts at
``origin + c * unit`` for some whole ``c``, so block ``i`` of a file stored contiguously lies at
``origin + c * unit + 4096 i``. ``read_layout`` reads that from the boot sector or superblock
itself (every field checked before use, never raising on hostile bytes); None when no filesystem it
knows is there, and the caller then uses the partition start and 4096.

Known: FAT12/16/32 (the BPB: reserved sectors, FATs, root directory, then the data area),
exFAT (cluster heap offset and cluster size), NTFS (clusters from the partition start), ext2/3/4
(blocks from the partition start), XFS, btrfs, HFS+/HFSX, APFS and F2FS (blocks from the partition
start).

Example::

    >>> boot = bytearray(512)
    >>> boot[0], boot[3:11], boot[13], boot[16] = 0xEB, b"mkfs.fat", 2, 2  # 2 sectors a cluster, 2 FATs
    >>> for at, value in ((11, 512), (14, 4), (17, 512), (19, 40000), (22, 40)):  # sector, reserved...
    ...     boot[at : at + 2] = value.to_bytes(2, "little")
    >>> layout = read_layout(lambda offset, n: bytes(boot[offset : offset + n]), 40000 * 512)
    >>> layout.fs_type, layout.unit, layout.origin  # 4 reserved + 2 FATs of 40 + root 32 sectors
    ('fat16', 1024, 59392)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

ReadAt = Callable[[int, int], bytes]
MAX_UNIT = 1 << 26  # 64 MiB: larger than any real allocation unit (exFAT allows 32 MiB)


@dataclass(frozen=True)
class FsLayout:
    """``unit``: the allocation unit in bytes (a power of two); ``origin``: the partition offset
    unit 0 counts from (files start at ``origin + c * unit``); ``data_start``: where file data can
    begin at all (the data area; 0 when anywhere)."""

    fs_type: str
    unit: int
    origin: int
    data_start: int = 0

    def describe(self) -> dict[str, object]:
        return {"fs": self.fs_type, "unit": self.unit, "origin": self.origin, "data_start": self.data_start}


def _u16(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "little")


def _u32(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "little")


def _power_of_two(value: int, low: int = 1, high: int = MAX_UNIT) -> bool:
    return low <= value <= high and value & (value - 1) == 0


def read_layout(read_at: ReadAt, size: int) -> FsLayout | None:
    """The layout of the filesystem at the start of a partition of ``size`` bytes, read through
    ``read_at(offset, length)`` (offsets from the partition start); None when unknown."""
    head = read_at(0, 4096)
    superblock = read_at(1024, 1024)
    readers: list[tuple[Callable[[bytes, int], FsLayout | None], bytes]] = [
        (_ntfs, head), (_exfat, head), (_fat, head), (_xfs, head), (_apfs, head),
        (_ext, superblock), (_hfs_plus, superblock), (_f2fs, superblock),
    ]  # fmt: skip
    for reader, data in readers:
        layout = reader(data, size)
        if layout is not None:
            return layout
    return _btrfs(read_at(0x10000, 4096), size)


def _checked(layout: FsLayout, size: int) -> FsLayout | None:
    if not _power_of_two(layout.unit, 512) or not 0 <= layout.origin < size or layout.data_start >= size:
        return None
    return layout


def _ntfs(boot: bytes, size: int) -> FsLayout | None:
    if len(boot) < 512 or boot[3:11] != b"NTFS    ":
        return None
    sector = _u16(boot, 11)
    per_cluster = boot[13]
    if not _power_of_two(sector, 256, 4096) or per_cluster == 0:
        return None
    # values above 0x80 are negative powers: 2 ** -(signed byte) sectors per cluster
    cluster = sector * per_cluster if per_cluster <= 0x80 else sector << (256 - per_cluster)
    return _checked(FsLayout("ntfs", cluster, 0), size)


def _exfat(boot: bytes, size: int) -> FsLayout | None:
    if len(boot) < 512 or boot[3:11] != b"EXFAT   ":
        return None
    sector_shift, cluster_shift = boot[108], boot[109]
    if not 9 <= sector_shift <= 12 or cluster_shift > 25 - sector_shift:
        return None
    heap = _u32(boot, 88) << sector_shift
    if heap == 0:
        return None
    return _checked(FsLayout("exfat", 1 << (sector_shift + cluster_shift), heap, heap), size)


def _fat(boot: bytes, size: int) -> FsLayout | None:
    """FAT12/16/32 from the BIOS parameter block: the data area (cluster 2) follows the reserved
    sectors, the FATs and (FAT12/16) the root directory."""
    if len(boot) < 512 or boot[0] not in (0xEB, 0xE9) or boot[3:11] in (b"NTFS    ", b"EXFAT   "):
        return None
    sector = _u16(boot, 11)
    per_cluster = boot[13]
    reserved = _u16(boot, 14)
    fats = boot[16]
    root_entries = _u16(boot, 17)
    total = _u16(boot, 19) or _u32(boot, 32)
    fat_sectors = _u16(boot, 22) or _u32(boot, 36)
    if not _power_of_two(sector, 512, 4096) or not _power_of_two(per_cluster, 1, 128):
        return None
    if reserved == 0 or not 1 <= fats <= 4 or fat_sectors == 0 or total == 0:
        return None
    root_sectors = (root_entries * 32 + sector - 1) // sector
    first_data = reserved + fats * fat_sectors + root_sectors
    if first_data >= total:
        return None
    clusters = (total - first_data) // per_cluster
    kind = "fat12" if clusters < 4085 else "fat16" if clusters < 65525 else "fat32"
    start = first_data * sector
    return _checked(FsLayout(kind, sector * per_cluster, start, start), size)


def _ext(superblock: bytes, size: int) -> FsLayout | None:
    if len(superblock) < 1024 or _u16(superblock, 56) != 0xEF53:
        return None
    log_block = _u32(superblock, 24)
    if log_block > 6:  # 1 KiB to 64 KiB
        return None
    return _checked(FsLayout("ext", 1024 << log_block, 0), size)


def _xfs(head: bytes, size: int) -> FsLayout | None:
    if len(head) < 8 or head[0:4] != b"XFSB":
        return None
    return _checked(FsLayout("xfs", int.from_bytes(head[4:8], "big"), 0), size)


def _apfs(head: bytes, size: int) -> FsLayout | None:
    if len(head) < 40 or head[32:36] != b"NXSB":
        return None
    return _checked(FsLayout("apfs", _u32(head, 36), 0), size)


def _hfs_plus(header: bytes, size: int) -> FsLayout | None:
    if len(header) < 44 or header[0:2] not in (b"H+", b"HX"):
        return None
    return _checked(FsLayout("hfsplus", int.from_bytes(header[40:44], "big"), 0), size)


def _f2fs(superblock: bytes, size: int) -> FsLayout | None:
    if len(superblock) < 20 or _u32(superblock, 0) != 0xF2F52010:
        return None
    log_block = _u32(superblock, 16)
    if not 9 <= log_block <= 16:
        return None
    return _checked(FsLayout("f2fs", 1 << log_block, 0), size)


def _btrfs(superblock: bytes, size: int) -> FsLayout | None:
    if len(superblock) < 0x94 or superblock[0x40:0x48] != b"_BHRfS_M":
        return None
    return _checked(FsLayout("btrfs", _u32(superblock, 0x90), 0), size)
