"""Read MBR and GPT partition tables ourselves, from a read-only file descriptor.

The kiosk never asks the kernel to parse a seized device's partition table (a Pi kernel would, and
this VM's cannot): it reads the table here and maps each partition through its own read-only loop
device. Every field read from the device is checked before use: entry counts and sizes are bounded,
CRCs are verified (a damaged primary GPT falls back to the backup), extended-partition chains are
followed with loop protection, and partitions reaching past the end of the device are clipped and
reported. A disk with no table is one "partition" spanning the whole device (a superfloppy).

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

import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

ReadAt = Callable[[int, int], bytes]
Scheme = Literal["gpt", "mbr", "none"]

MAX_GPT_ENTRIES = 1024
MAX_LOGICAL_PARTITIONS = 128
EXTENDED_TYPES = {0x05, 0x0F, 0x85}
GPT_PROTECTIVE = 0xEE
BOOT_SIGNATURE = b"\x55\xaa"
VOLUME_OEM_IDS = (b"NTFS    ", b"EXFAT   ")

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


def read_partition_table(read_at: ReadAt, device_size: int) -> PartitionTable:
    """Parse the table of a device of ``device_size`` bytes; never raises on malformed content."""
    problems: list[str] = []
    for sector_size in (512, 4096):
        gpt = _read_gpt(read_at, device_size, sector_size, problems)
        if gpt is not None:
            return gpt
    mbr = _read_mbr(read_at, device_size, problems)
    if mbr is not None:
        return mbr
    whole = Partition(number=0, start=0, size=device_size, type_id="none", type_name="whole device")
    return PartitionTable("none", (whole,) if device_size else (), problems=tuple(problems))


def _clip(
    number: int, start: int, size: int, device_size: int, problems: list[str]
) -> tuple[int, int] | None:
    if size <= 0:
        return None
    if start >= device_size:
        problems.append(f"partition {number} starts past the end of the device; not read")
        return None
    if start + size > device_size:
        problems.append(f"partition {number} extends past the end of the device; only its start is read")
        size = device_size - start
    return start, size


def _read_mbr(read_at: ReadAt, device_size: int, problems: list[str]) -> PartitionTable | None:
    sector = read_at(0, 512)
    if len(sector) < 512 or sector[510:512] != BOOT_SIGNATURE or sector[3:11] in VOLUME_OEM_IDS:
        return None
    entries = [sector[446 + 16 * i : 462 + 16 * i] for i in range(4)]
    if any(entry[0] not in (0x00, 0x80) for entry in entries):
        return None  # boot code of a volume (a FAT superfloppy), not a partition table
    disk_id = sector[440:444][::-1].hex()
    partitions: list[Partition] = []
    for index, entry in enumerate(entries, 1):
        kind = entry[4]
        start_lba = int.from_bytes(entry[8:12], "little")
        sectors = int.from_bytes(entry[12:16], "little")
        if kind == 0 or sectors == 0:
            continue
        if kind in EXTENDED_TYPES:
            partitions.extend(_read_logical(read_at, device_size, start_lba, problems))
            continue
        clipped = _clip(index, start_lba * 512, sectors * 512, device_size, problems)
        if clipped:
            partitions.append(Partition(index, clipped[0], clipped[1], f"0x{kind:02x}"))
    if not partitions and not any(entry[4] for entry in entries):
        return None
    return PartitionTable("mbr", tuple(partitions), 512, disk_id, tuple(problems))


def _read_logical(
    read_at: ReadAt, device_size: int, extended_lba: int, problems: list[str]
) -> list[Partition]:
    logical: list[Partition] = []
    seen: set[int] = set()
    ebr_lba = extended_lba
    while len(logical) < MAX_LOGICAL_PARTITIONS:
        if ebr_lba in seen or ebr_lba * 512 >= device_size:
            if ebr_lba in seen:
                problems.append("extended partition chain loops; stopped following it")
            break
        seen.add(ebr_lba)
        sector = read_at(ebr_lba * 512, 512)
        if len(sector) < 512 or sector[510:512] != BOOT_SIGNATURE:
            problems.append(f"extended boot record at sector {ebr_lba} is not valid")
            break
        first, second = sector[446:462], sector[462:478]
        sectors = int.from_bytes(first[12:16], "little")
        if first[4] and sectors:
            number = 5 + len(logical)
            start = (ebr_lba + int.from_bytes(first[8:12], "little")) * 512
            clipped = _clip(number, start, sectors * 512, device_size, problems)
            if clipped:
                logical.append(Partition(number, clipped[0], clipped[1], f"0x{first[4]:02x}"))
        next_offset = int.from_bytes(second[8:12], "little")
        if second[4] not in EXTENDED_TYPES or next_offset == 0:
            break
        ebr_lba = extended_lba + next_offset
    return logical


def _read_gpt(
    read_at: ReadAt, device_size: int, sector_size: int, problems: list[str]
) -> PartitionTable | None:
    total_sectors = device_size // sector_size
    if total_sectors < 3:
        return None
    primary = _gpt_header(read_at, 1, sector_size, device_size)
    if isinstance(primary, str) and primary == "absent":
        return None
    header = primary
    if isinstance(primary, str):
        backup = _gpt_header(read_at, total_sectors - 1, sector_size, device_size)
        if isinstance(backup, str):
            problems.append(f"GPT header is damaged ({primary}) and so is its backup ({backup})")
            return PartitionTable("gpt", (), sector_size, problems=tuple(problems))
        problems.append(f"primary GPT header is damaged ({primary}); used the backup")
        header = backup
    assert isinstance(header, _GptHeader)
    partitions: list[Partition] = []
    for index in range(header.entry_count):
        entry = header.entries[index * header.entry_size : (index + 1) * header.entry_size]
        type_guid = entry[0:16]
        if type_guid == bytes(16):
            continue
        first_lba = int.from_bytes(entry[32:40], "little")
        last_lba = int.from_bytes(entry[40:48], "little")
        if last_lba < first_lba:
            problems.append(f"partition {index + 1} ends before it starts; not read")
            continue
        name = entry[56:128].decode("utf-16-le", errors="replace").split("\x00", 1)[0]
        type_id = str(uuid.UUID(bytes_le=type_guid))
        clipped = _clip(
            index + 1,
            first_lba * sector_size,
            (last_lba - first_lba + 1) * sector_size,
            device_size,
            problems,
        )
        if clipped:
            partitions.append(
                Partition(index + 1, clipped[0], clipped[1], type_id, name, GPT_TYPE_NAMES.get(type_id, ""))
            )
    return PartitionTable("gpt", tuple(partitions), sector_size, header.disk_guid, tuple(problems))


@dataclass(frozen=True)
class _GptHeader:
    disk_guid: str
    entry_count: int
    entry_size: int
    entries: bytes


def _gpt_header(read_at: ReadAt, lba: int, sector_size: int, device_size: int) -> _GptHeader | str:
    """The header at ``lba``, or a string saying why not ("absent" when there is no signature)."""
    sector = read_at(lba * sector_size, sector_size)
    if len(sector) < 92 or sector[0:8] != b"EFI PART":
        return "absent"
    header_size = int.from_bytes(sector[12:16], "little")
    if not 92 <= header_size <= sector_size:
        return "bad header size"
    stored_crc = int.from_bytes(sector[16:20], "little")
    if zlib.crc32(sector[:16] + b"\x00\x00\x00\x00" + sector[20:header_size]) != stored_crc:
        return "header checksum mismatch"
    entries_lba = int.from_bytes(sector[72:80], "little")
    entry_count = int.from_bytes(sector[80:84], "little")
    entry_size = int.from_bytes(sector[84:88], "little")
    if not 0 < entry_count <= MAX_GPT_ENTRIES or entry_size < 128 or entry_size > 4096 or entry_size % 8:
        return "implausible partition entry array"
    length = entry_count * entry_size
    if entries_lba * sector_size + length > device_size:
        return "partition entry array past the end of the device"
    entries = read_at(entries_lba * sector_size, length)
    if len(entries) != length or zlib.crc32(entries) != int.from_bytes(sector[88:92], "little"):
        return "partition entry array checksum mismatch"
    return _GptHeader(str(uuid.UUID(bytes_le=sector[56:72])), entry_count, entry_size, entries)
