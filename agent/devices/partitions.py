"""Read MBR and GPT partition tables ourselves, from a read-only file descriptor.

The kiosk never asks the kernel to parse a seized device's partition table (a Pi kernel would, and
this VM's cannot): it reads the table here and maps each partition through its own read-only loop
device. Every field read from the device is checked before use, and whatever a table describes that
is not returned as a partition is a problem (so the device can never be "no match"): partitions past
the end of the device (clipped to it when they start inside), damaged headers and records, chains
cut by a loop or by the bounds on work (1,024 records a chain, 1,024 partitions a device), entries
outside the extended partition, a protective MBR whose GPT is not found, a GPT beside an MBR that
does not protect it (or, its primary header missing, behind a volume's boot sector), hybrid MBR
entries that are not GPT partitions. MBR entries are read as Linux reads them (any type with
sectors, 0x00 included; logical partitions numbered from 5 across every extended partition), in the
device's logical sector size; GPT is looked for in that size and then in the other of 512 and 4096
(an image file of a 4Kn disk), from the backup header when the primary is damaged or missing. A disk
with no table is one "partition" spanning the whole device (a superfloppy).

Example::

    >>> disk = bytearray(2 << 20)
    >>> entry = bytes([0, 0, 0, 0, 0x0C, 0, 0, 0]) + (2048).to_bytes(4, "little") + (8).to_bytes(4, "little")
    >>> disk[446:462] = entry
    >>> disk[510:512] = b"\\x55\\xaa"
    >>> table = read_partition_table(lambda offset, n: bytes(disk[offset:offset + n]), len(disk))
    >>> table.scheme, [(p.number, p.start, p.size, p.type_id) for p in table.partitions]
    ('mbr', [(1, 1048576, 4096, '0x0c')])
"""

from __future__ import annotations

import fcntl
import os
import stat
import struct
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

ReadAt = Callable[[int, int], bytes]
Scheme = Literal["gpt", "mbr", "none"]
Entry = tuple[int, int, int]  # MBR entry: type, start sector, sectors

MAX_PARTITIONS = 1024  # returned per device, and extended boot records followed per chain
MAX_GPT_ENTRY_ARRAY = 4 << 20  # bytes, as Linux (KMALLOC_MAX_SIZE); 32768 entries of 128 bytes
BLKSSZGET = 0x1268
EXTENDED_TYPES = {0x05, 0x0F, 0x85}
GPT_PROTECTIVE = 0xEE
BOOT_SIGNATURE = b"\x55\xaa"
VOLUME_OEM_IDS = (b"NTFS    ", b"EXFAT   ")
NO_SIGNATURE = "no signature"

GPT_TYPE_NAMES = {
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "EFI system",
    "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7": "Microsoft basic data",
    "e3c9e316-0b5c-4db8-817d-f92df00215ae": "Microsoft reserved",
    "de94bba4-06d1-4d40-a16a-bfd50179d6ac": "Windows recovery",
    "0fc63daf-8483-4772-8e79-3d69d8477de4": "Linux filesystem",
    "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "Linux swap",
    "ca7d7ccb-63ed-4c53-861c-1742536059cc": "Linux LUKS",
    "7c3457ef-0000-11aa-aa11-00306543ecac": "Apple APFS",
    "48465300-0000-11aa-aa11-00306543ecac": "Apple HFS+",
}


@dataclass(frozen=True)
class Partition:
    """A byte range of the device; ``number`` as the kernel would number it (logical from 5)."""

    number: int
    start: int
    size: int
    type_id: str
    name: str = ""
    type_name: str = ""


@dataclass(frozen=True)
class PartitionTable:
    scheme: Scheme
    partitions: tuple[Partition, ...]
    sector_size: int = 512
    disk_id: str = ""
    problems: tuple[str, ...] = field(default=())
    notes: tuple[str, ...] = field(default=())  # read soundly, but worth the analyst's eye


def logical_sector_size(fd: int) -> int:
    """The logical sector size of a block device (BLKSSZGET); 512 for a file or when unknown."""
    try:
        if not stat.S_ISBLK(os.fstat(fd).st_mode):
            return 512
        size: int = struct.unpack("i", fcntl.ioctl(fd, BLKSSZGET, bytes(4)))[0]
    except OSError:
        return 512
    return size if _valid_sector_size(size) else 512


def _valid_sector_size(size: int) -> bool:
    return 512 <= size <= 65536 and size & (size - 1) == 0


def read_partition_table(read_at: ReadAt, device_size: int, sector_size: int = 512) -> PartitionTable:
    """Parse the table of a device of ``device_size`` bytes with logical sectors of ``sector_size``
    bytes (a power of two, 512 to 65536); never raises on malformed content."""
    if not _valid_sector_size(sector_size):
        raise ValueError(f"sector size {sector_size} is not a power of two from 512 to 65536")
    sector0 = read_at(0, 512)
    entries = _mbr_entries(sector0)
    protective = any(kind == GPT_PROTECTIVE for kind, _, _ in entries or ())
    plain = not protective and any(sectors for _, _, sectors in entries or ())
    volume = entries is None and sector0[510:512] == BOOT_SIGNATURE  # a volume's boot sector
    sizes = (sector_size, *(size for size in (512, 4096) if size != sector_size))
    gpt = _find_gpt(read_at, device_size, sizes)
    if gpt is not None and gpt.backup_only and gpt.header is None and (plain or volume):
        gpt = None  # a damaged backup header alone, beside a table or a volume: debris
    if gpt is not None and not plain and not (volume and gpt.backup_only):
        return _gpt_table(gpt, entries or [], device_size)
    found = _Found(device_size)
    if gpt is not None:  # Linux and libblkid read no GPT without a protective MBR
        why = "the MBR has no protective (0xee) entry" if plain else "sector 0 is a volume's boot sector"
        found.problems.append(f"a GPT header is at sector {gpt.lba} but {why}; the GPT is not read")
    if entries is None or not (plain or protective):
        whole = Partition(number=0, start=0, size=device_size, type_id="none", type_name="whole device")
        return PartitionTable("none", (whole,) if device_size else (), problems=tuple(found.problems))
    _read_mbr(read_at, entries, sector_size, found)
    disk_id = sector0[440:444][::-1].hex()
    return PartitionTable("mbr", tuple(found.partitions), sector_size, disk_id, tuple(found.problems))


@dataclass
class _Found:
    """Partitions found so far, and the problems: everything described and not returned."""

    device_size: int
    partitions: list[Partition] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def full(self) -> bool:
        return len(self.partitions) >= MAX_PARTITIONS

    def add(
        self, number: int, start: int, size: int, type_id: str, name: str = "", type_name: str = ""
    ) -> None:
        if start >= self.device_size:
            self.problems.append(f"partition {number} starts past the end of the device; not read")
            return
        if self.full:
            if not any(p.startswith(f"more than {MAX_PARTITIONS} partitions") for p in self.problems):
                self.problems.append(
                    f"more than {MAX_PARTITIONS} partitions: "
                    f"partition {number} and those after it are not read"
                )
            return
        if start + size > self.device_size:
            self.problems.append(
                f"partition {number} extends past the end of the device; only its start is read"
            )
            size = self.device_size - start
        self.partitions.append(Partition(number, start, size, type_id, name, type_name))


def _slots(sector: bytes) -> list[Entry]:
    raw = [sector[446 + 16 * i : 462 + 16 * i] for i in range(4)]
    return [(e[4], int.from_bytes(e[8:12], "little"), int.from_bytes(e[12:16], "little")) for e in raw]


def _mbr_entries(sector: bytes) -> list[Entry] | None:
    """The four entries of an MBR, or None when sector 0 is not one (no signature, a volume)."""
    if len(sector) < 512 or sector[510:512] != BOOT_SIGNATURE or sector[3:11] in VOLUME_OEM_IDS:
        return None
    if any(sector[446 + 16 * i] not in (0x00, 0x80) for i in range(4)):
        return None  # boot code of a volume (a FAT superfloppy), not a partition table
    return _slots(sector)


def _read_mbr(read_at: ReadAt, entries: list[Entry], sector_size: int, found: _Found) -> None:
    next_logical = 5
    for slot, (kind, start, sectors) in enumerate(entries, 1):
        if kind == GPT_PROTECTIVE:
            found.problems.append(
                f"partition {slot} (type 0xee) stands for a GPT, but no GPT header was found; not read"
            )
        elif sectors and kind in EXTENDED_TYPES:
            next_logical = _read_logical(read_at, sector_size, slot, start, sectors, next_logical, found)
        elif sectors:
            found.add(slot, start * sector_size, sectors * sector_size, f"0x{kind:02x}")


def _read_logical(
    read_at: ReadAt, sector_size: int, slot: int, first: int, first_size: int, number: int, found: _Found
) -> int:
    """Follow the extended boot records of the extended partition in ``slot`` as Linux does
    (block/partitions/msdos.c); returns the number the next logical partition gets."""
    if first * sector_size >= found.device_size:
        found.problems.append(f"partition {slot} (extended) starts past the end of the device; not read")
        return number
    this, this_size, seen = first, first_size, set[int]()
    while True:
        where = f"extended boot record at sector {this}"
        if this in seen:
            found.problems.append(
                f"extended partition chain loops back to sector {this}; stopped following it"
            )
            return number
        if len(seen) >= MAX_PARTITIONS or found.full:
            found.problems.append(
                f"extended partition chain is cut at sector {this} "
                f"(over {MAX_PARTITIONS} records or partitions); not read"
            )
            return number
        seen.add(this)
        sector = read_at(this * sector_size, 512)
        if len(sector) < 512 or sector[510:512] != BOOT_SIGNATURE:
            found.problems.append(f"{where} is not valid; not read")
            return number
        link: Entry | None = None
        for index, (kind, offset, sectors) in enumerate(_slots(sector)):
            start = this + offset
            if not sectors:
                continue
            if kind in EXTENDED_TYPES:
                if link is not None:
                    found.problems.append(f"{where}: entry {index + 1} is a second link; not read")
                link = link or (kind, offset, sectors)
            elif index >= 2 and (
                offset + sectors > this_size or start < first or start + sectors > first + first_size
            ):  # Linux takes these for garbage and gives them no number
                found.problems.append(
                    f"{where}: entry {index + 1} lies outside the extended partition; not read"
                )
            else:
                found.add(number, start * sector_size, sectors * sector_size, f"0x{kind:02x}")
                number += 1
        if link is None or link[1] == 0:  # a link to the first record is no link (libblkid)
            return number
        if (first + link[1]) * sector_size >= found.device_size:
            found.problems.append(
                f"{where} links to sector {first + link[1]}, past the end of the device; not read"
            )
            return number
        this, this_size = first + link[1], link[2]


@dataclass(frozen=True)
class _GptHeader:
    disk_guid: str
    entry_count: int
    entry_size: int
    entries: bytes
    first_usable: int = 0  # LBA: where the primary's array area ends at the latest


@dataclass(frozen=True)
class _Gpt:
    lba: int  # of the header found
    sector_size: int
    header: _GptHeader | None  # None: damaged, and so is the backup
    problems: tuple[str, ...]
    backup_only: bool = False  # no primary header at all
    notes: tuple[str, ...] = ()


def _find_gpt(read_at: ReadAt, device_size: int, sizes: tuple[int, ...]) -> _Gpt | None:
    """The first GPT found at LBA 1 or, when that is damaged or missing, at the last LBA; None
    when there is no GPT signature in either place for any of ``sizes``."""
    for size in sizes:
        last = device_size // size - 1
        if last < 2:
            continue
        primary = _gpt_header(read_at, 1, size, device_size)
        if isinstance(primary, _GptHeader):
            return _Gpt(1, size, primary, ())
        backup = _gpt_header(read_at, last, size, device_size)
        if isinstance(backup, _GptHeader):
            why = (
                "primary GPT header missing"
                if primary == NO_SIGNATURE
                else f"primary GPT header is damaged ({primary})"
            )
            if primary == NO_SIGNATURE and _primary_array_agrees(read_at, size, backup):
                # only the header was wiped, its entry array is the backup's: all it described is read
                note = f"{why}; read from the backup header (the entry arrays agree)"
                return _Gpt(last, size, backup, (), True, (note,))
            if primary == NO_SIGNATURE:
                why += " and its entry array differs from the backup's"
            return _Gpt(last, size, backup, (f"{why}; used the backup",), primary == NO_SIGNATURE)
        if primary != NO_SIGNATURE:
            return _Gpt(
                1, size, None, (f"GPT header is damaged ({primary}) and so is its backup ({backup})",)
            )
        if backup != NO_SIGNATURE:
            why = f"primary GPT header missing and its backup is damaged ({backup})"
            return _Gpt(last, size, None, (why,), backup_only=True)
    return None


def _primary_array_agrees(read_at: ReadAt, sector_size: int, backup: _GptHeader) -> bool:
    """The primary entry array (at LBA 2) is the backup's byte for byte, and the rest of the area
    before the first usable LBA holds no entry either (a wiped header could have counted more)."""
    length = len(backup.entries)
    if read_at(2 * sector_size, length) != backup.entries:
        return False
    rest = max(
        0,
        min(backup.first_usable * sector_size, 2 * sector_size + MAX_GPT_ENTRY_ARRAY)
        - 2 * sector_size
        - length,
    )
    return not any(read_at(2 * sector_size + length, rest)) if rest else True


def _gpt_table(gpt: _Gpt, entries: list[Entry], device_size: int) -> PartitionTable:
    found = _Found(device_size, problems=list(gpt.problems))
    header, size = gpt.header, gpt.sector_size
    if header is None:
        return PartitionTable("gpt", (), size, problems=tuple(found.problems))
    for index in range(header.entry_count):
        entry = header.entries[index * header.entry_size : (index + 1) * header.entry_size]
        type_guid = entry[0:16]
        if type_guid == bytes(16):
            continue
        first_lba = int.from_bytes(entry[32:40], "little")
        last_lba = int.from_bytes(entry[40:48], "little")
        if last_lba < first_lba:
            found.problems.append(f"partition {index + 1} ends before it starts; not read")
            continue
        name = entry[56:128].decode("utf-16-le", errors="replace").split("\x00", 1)[0]
        type_id = str(uuid.UUID(bytes_le=type_guid))
        start, length = first_lba * size, (last_lba - first_lba + 1) * size
        found.add(index + 1, start, length, type_id, name, GPT_TYPE_NAMES.get(type_id, ""))
    ranges = {(p.start, p.size) for p in found.partitions}
    for slot, (kind, start, sectors) in enumerate(entries, 1):
        hybrid = kind != GPT_PROTECTIVE and sectors
        if hybrid and (kind in EXTENDED_TYPES or (start * size, sectors * size) not in ranges):
            found.problems.append(
                f"MBR partition {slot} (type 0x{kind:02x}) is not a GPT partition; not read"
            )
    partitions = tuple(found.partitions)
    return PartitionTable("gpt", partitions, size, header.disk_guid, tuple(found.problems), gpt.notes)


def _gpt_header(read_at: ReadAt, lba: int, sector_size: int, device_size: int) -> _GptHeader | str:
    """The header at ``lba`` with its entry array, or why not (NO_SIGNATURE when it is absent)."""
    sector = read_at(lba * sector_size, sector_size)
    if len(sector) < 92 or sector[0:8] != b"EFI PART":
        return NO_SIGNATURE
    header_size = int.from_bytes(sector[12:16], "little")
    if not 92 <= header_size <= sector_size:
        return "bad header size"
    stored_crc = int.from_bytes(sector[16:20], "little")
    if zlib.crc32(sector[:16] + b"\x00\x00\x00\x00" + sector[20:header_size]) != stored_crc:
        return "header checksum mismatch"
    entries_lba = int.from_bytes(sector[72:80], "little")
    entry_count = int.from_bytes(sector[80:84], "little")
    entry_size = int.from_bytes(sector[84:88], "little")
    length = entry_count * entry_size
    if not entry_count or entry_size < 128 or entry_size % 8 or length > MAX_GPT_ENTRY_ARRAY:
        return "implausible partition entry array"
    if entries_lba * sector_size + length > device_size:
        return "partition entry array past the end of the device"
    entries = read_at(entries_lba * sector_size, length)
    if len(entries) != length or zlib.crc32(entries) != int.from_bytes(sector[88:92], "little"):
        return "partition entry array checksum mismatch"
    first_usable = int.from_bytes(sector[40:48], "little")
    return _GptHeader(str(uuid.UUID(bytes_le=sector[56:72])), entry_count, entry_size, entries, first_usable)
