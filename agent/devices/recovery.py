"""Does a filesystem's journal or log need recovery? Read from its own superblock, never written.

A stick pulled without unmounting is the normal case in the field. Its newest files may exist only
through the journal: a no-replay mount (``noload``, ``norecovery``, ``rescue=nologreplay``) is safe
for the evidence but shows an older tree. The mounter asks this module which partitions are in that
state, records it, and scans a replayed view beside the on-disk one (``agent.devices.overlay``).

* ext3/ext4: the ``needs_recovery`` incompat flag of a journalled filesystem. An external journal
  (``s_journal_uuid`` set, no journal inode) lives on another device: the kernel would replay from
  whatever block device the kiosk has at the number the superblock names (and write there), so it
  is never replayed here (``why_not_replayable`` says so) and such a partition needs recovery, unchecked;
* btrfs: a log tree (``log_root`` != 0) in the primary superblock;
* NTFS: the volume's dirty flag (``$Volume``) or a ``$LogFile`` whose restart area is not clean;
* HFS+: a journaled volume not cleanly unmounted (a Mac's stick pulled without ejecting) whose
  journal header has transactions (start != end); the kernel never replays an HFS+ journal, so
  such a partition is "journal needs recovery" (it used to be read as if complete);
* xfs keeps no such flag, and f2fs keeps it in whichever of two checkpoints is current: the kernel
  tells by refusing a recovering mount of a read-only device (``agent.devices.mounter``), which is
  why ``needs_recovery`` answers ``None`` ("ask the kernel") for them.

Example::

    >>> sb = bytearray(4096)
    >>> sb[1024 + 0x38:1024 + 0x3A] = (0xEF53).to_bytes(2, "little")
    >>> sb[1024 + 0x5C] = 0x04           # has_journal
    >>> sb[1024 + 0x60] = 0x04 | 0x02    # needs_recovery, filetype
    >>> sb[1024 + 0xE0] = 8              # the journal in inode 8 (0 and a journal UUID: external)
    >>> needs_recovery("ext4", lambda offset, n: bytes(sb[offset:offset + n]))
    'ext4 journal needs recovery (needs_recovery flag set)'
"""

from __future__ import annotations

from collections.abc import Callable

ReadAt = Callable[[int, int], bytes]

ASK_THE_KERNEL = ("xfs", "f2fs")

EXT_SUPERBLOCK = 1024
EXT_MAGIC = 0xEF53
EXT_COMPAT_HAS_JOURNAL = 0x4
EXT_INCOMPAT_RECOVER = 0x4
EXT_INCOMPAT_JOURNAL_DEV = 0x8
EXT_JOURNAL_UUID = 0xD0
EXT_JOURNAL_INUM = 0xE0
EXTERNAL_JOURNAL = "ext4 journal needs recovery, and it is on another device (an external journal)"
JOURNAL_DEVICE = "ext journal is on another device: cannot be checked or replayed"
# reasons whose journal cannot be replayed onto a copy-on-write layer of this partition alone
NOT_REPLAYABLE = {
    EXTERNAL_JOURNAL: "its journal is on another device, which the kiosk does not have",
    JOURNAL_DEVICE: "its journal is on another device, which the kiosk does not have",
}

BTRFS_SUPERBLOCK = 0x10000
BTRFS_MAGIC = b"_BHRfS_M"

NTFS_MFT_VOLUME = 3
NTFS_MFT_LOGFILE = 2
NTFS_ATTR_DATA = 0x80
NTFS_ATTR_VOLUME_INFORMATION = 0x70
NTFS_ATTR_END = 0xFFFFFFFF
NTFS_VOLUME_IS_DIRTY = 0x0001
NTFS_RESTART_VOLUME_IS_CLEAN = 0x0002
NTFS_NO_CLIENT = 0xFFFF
NTFS_MAX_RECORD = 64 << 10
NTFS_FIXUP_STRIDE = 512

HFS_VOLUME_HEADER = 1024
HFS_SIGNATURES = (b"H+", b"HX")
HFS_UNMOUNTED = 1 << 8
HFS_JOURNALED = 1 << 13
HFS_JOURNAL_IN_FS = 1
HFS_JOURNAL_ON_OTHER_DEVICE = 2
HFS_JOURNAL_MAGIC = 0x4A4E4C78  # "JNLx"
HFS_JOURNAL_ENDIAN = 0x12345678
HFS_UNCLEAN = "HFS+ volume not cleanly unmounted"


def needs_recovery(fs_type: str, read_at: ReadAt) -> str | None:
    """Why ``fs_type`` at ``read_at`` needs recovery; '' when it does not; None when only the kernel
    can tell (xfs) or the type has no journal this module knows."""
    if fs_type in ("ext3", "ext4", "ext2"):
        return _ext(read_at)
    if fs_type == "btrfs":
        return _btrfs(read_at)
    if fs_type == "ntfs":
        return _ntfs(read_at)
    if fs_type == "hfsplus":
        return _hfsplus(read_at)
    return None


def why_not_replayable(reason: str) -> str:
    """'' when the journal that ``reason`` describes can be replayed onto a layer over this
    partition; else why not."""
    return NOT_REPLAYABLE.get(reason, "")


def _u(data: bytes, offset: int, size: int) -> int:
    return int.from_bytes(data[offset : offset + size], "little")


def _ext(read_at: ReadAt) -> str:
    sb = read_at(EXT_SUPERBLOCK, 1024)
    if len(sb) < EXT_JOURNAL_INUM + 4 or _u(sb, 0x38, 2) != EXT_MAGIC:
        return "ext superblock unreadable: cannot tell whether its journal needs recovery"
    compat, incompat = _u(sb, 0x5C, 4), _u(sb, 0x60, 4)
    if not compat & EXT_COMPAT_HAS_JOURNAL:
        return ""
    if incompat & EXT_INCOMPAT_JOURNAL_DEV:
        return JOURNAL_DEVICE
    if incompat & EXT_INCOMPAT_RECOVER:
        external = any(sb[EXT_JOURNAL_UUID : EXT_JOURNAL_UUID + 16]) or not _u(sb, EXT_JOURNAL_INUM, 4)
        return EXTERNAL_JOURNAL if external else "ext4 journal needs recovery (needs_recovery flag set)"
    return ""


def _btrfs(read_at: ReadAt) -> str:
    sb = read_at(BTRFS_SUPERBLOCK, 4096)
    if len(sb) < 0x68 or sb[0x40:0x48] != BTRFS_MAGIC:
        return "btrfs superblock unreadable: cannot tell whether it has a log to replay"
    log_root = _u(sb, 0x60, 8)
    return f"btrfs log tree to replay (log_root {log_root})" if log_root else ""


def _ntfs(read_at: ReadAt) -> str:
    """The volume's dirty flag and the $LogFile restart area, through the MFT (records 2 and 3)."""
    boot = read_at(0, 512)
    if len(boot) < 512 or boot[3:11] != b"NTFS    ":
        return "NTFS boot sector unreadable: cannot tell whether its log needs recovery"
    sector = _u(boot, 0x0B, 2)
    per_cluster = boot[0x0D]
    cluster = sector * (per_cluster if per_cluster <= 0x80 else 1 << (256 - per_cluster))
    raw_record = boot[0x40]
    record = cluster * raw_record if raw_record < 0x80 else 1 << (256 - raw_record)
    if sector not in (256, 512, 1024, 2048, 4096) or not 0 < cluster <= 2 << 20:
        return "NTFS boot sector has impossible sizes: cannot tell whether its log needs recovery"
    if not 256 <= record <= NTFS_MAX_RECORD:
        return "NTFS boot sector has an impossible MFT record size"
    mft = _u(boot, 0x30, 8) * cluster
    volume = _mft_attribute(read_at, mft + NTFS_MFT_VOLUME * record, record, NTFS_ATTR_VOLUME_INFORMATION)
    if volume is None or volume[0] or len(volume[1]) < 12:
        return "NTFS $Volume unreadable: cannot tell whether the volume is dirty"
    reasons = []
    if _u(volume[1], 10, 2) & NTFS_VOLUME_IS_DIRTY:
        reasons.append("volume dirty flag set")
    logfile = _mft_attribute(read_at, mft + NTFS_MFT_LOGFILE * record, record, NTFS_ATTR_DATA)
    state = _logfile_state(read_at, logfile, cluster)
    if state:
        reasons.append(state)
    return f"NTFS needs recovery ({'; '.join(reasons)})" if reasons else ""


def _fixed_up(data: bytes, magic: bytes) -> bytes | None:
    """A multi-sector record with its update sequence (one entry per 512 bytes) applied; None when
    damaged."""
    sector = NTFS_FIXUP_STRIDE
    if len(data) < 8 or data[:4] != magic:
        return None
    usa_offset, usa_count = _u(data, 4, 2), _u(data, 6, 2)
    if usa_count < 1 or usa_offset + 2 * usa_count > len(data) or (usa_count - 1) * sector > len(data):
        return None
    fixed = bytearray(data)
    usn = data[usa_offset : usa_offset + 2]
    for i in range(1, usa_count):
        end = i * sector
        if fixed[end - 2 : end] != usn:
            return None
        fixed[end - 2 : end] = data[usa_offset + 2 * i : usa_offset + 2 * i + 2]
    return bytes(fixed)


def _mft_attribute(read_at: ReadAt, offset: int, size: int, wanted: int) -> tuple[bool, bytes] | None:
    """(non-resident, value or mapping pairs) of the first attribute ``wanted`` of an MFT record."""
    record = _fixed_up(read_at(offset, size), b"FILE")
    if record is None:
        return None
    position = _u(record, 0x14, 2)
    for _ in range(64):
        if position + 16 > len(record):
            return None
        kind, length = _u(record, position, 4), _u(record, position + 4, 4)
        if kind == NTFS_ATTR_END or length < 16 or position + length > len(record):
            return None
        attribute = record[position : position + length]
        if kind == wanted:
            if attribute[8]:  # non-resident: its mapping pairs
                return True, attribute[_u(attribute, 0x20, 2) :]
            value_length, value_offset = _u(attribute, 0x10, 4), _u(attribute, 0x14, 2)
            return False, attribute[value_offset : value_offset + value_length]
        position += length
    return None


def _first_run_lcn(mapping_pairs: bytes) -> int | None:
    if not mapping_pairs or mapping_pairs[0] == 0:
        return None
    header = mapping_pairs[0]
    length_size, offset_size = header & 0x0F, header >> 4
    if not offset_size or 1 + length_size + offset_size > len(mapping_pairs):
        return None
    start = 1 + length_size
    return int.from_bytes(mapping_pairs[start : start + offset_size], "little", signed=True)


def _logfile_state(read_at: ReadAt, logfile: tuple[bool, bytes] | None, cluster: int) -> str:
    if logfile is None or not logfile[0]:
        return "$LogFile unreadable"
    lcn = _first_run_lcn(logfile[1])
    if lcn is None or lcn <= 0:
        return "$LogFile unreadable"
    page = read_at(lcn * cluster, 4096)
    page_size = _u(page, 0x10, 4)
    if page[:4] in (b"RSTR", b"CHKD") and page_size in (8192, 16384, 32768, 65536):
        page = read_at(lcn * cluster, page_size)
    if page[:4] == b"\xff\xff\xff\xff" and page.count(0xFF) == len(page):
        return ""  # emptied by a clean unmount (ntfs-3g and chkdsk leave it so)
    if page[:4] == b"CHKD":
        return "$LogFile marked by chkdsk"
    restart = _fixed_up(page, b"RSTR") if len(page) >= 4096 else None
    if restart is None:
        return "$LogFile restart page damaged"
    area = _u(restart, 0x18, 2)
    if area + 16 > len(restart):
        return "$LogFile restart area damaged"
    in_use, flags = _u(restart, area + 0x0C, 2), _u(restart, area + 0x0E, 2)
    if in_use != NTFS_NO_CLIENT and not flags & NTFS_RESTART_VOLUME_IS_CLEAN:
        return "$LogFile not clean: transactions to replay"
    return ""


def _hfsplus(read_at: ReadAt) -> str:
    """A journaled HFS+ volume left mounted: is its journal empty (start == end)? (TN1150)"""
    header = read_at(HFS_VOLUME_HEADER, 512)
    if len(header) < 0x2C or header[:2] not in HFS_SIGNATURES:
        return "HFS+ volume header unreadable: cannot tell whether its journal needs recovery"
    attributes = int.from_bytes(header[4:8], "big")
    if not attributes & HFS_JOURNALED or attributes & HFS_UNMOUNTED:
        return ""
    block_size = int.from_bytes(header[0x28:0x2C], "big")
    info = read_at(int.from_bytes(header[0x0C:0x10], "big") * block_size, 52)
    flags = int.from_bytes(info[0:4], "big") if len(info) == 52 else 0
    if flags & HFS_JOURNAL_ON_OTHER_DEVICE:
        return f"{HFS_UNCLEAN}: its journal is on another device"
    if not flags & HFS_JOURNAL_IN_FS:
        return f"{HFS_UNCLEAN}: its journal info block is unreadable"
    journal = read_at(int.from_bytes(info[0x24:0x2C], "big"), 24)
    for order in ("big", "little"):  # the journal header is in the writing machine's byte order
        if len(journal) == 24 and (
            int.from_bytes(journal[0:4], order),
            int.from_bytes(journal[4:8], order),
        ) == (HFS_JOURNAL_MAGIC, HFS_JOURNAL_ENDIAN):
            start, end = int.from_bytes(journal[8:16], order), int.from_bytes(journal[16:24], order)
            return "" if start == end else f"{HFS_UNCLEAN}: its journal holds transactions to replay"
    return f"{HFS_UNCLEAN}: its journal header is damaged"
