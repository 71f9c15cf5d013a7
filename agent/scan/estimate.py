"""How much a scan will find, known before its walk has found it, so that the bay's light and the
progress line show a fraction from the first second (docs/report.md, "Counts and progress").

``filesystem_estimate(roots)``: what the roots' filesystems hold, from ``statvfs`` (used inodes:
``f_files - f_ffree``; used bytes: ``(f_blocks - f_bfree) * f_frsize``), taken when a device is
mounted (``MountedDevice.estimate``) or when ``Scanner.scan`` starts; a phone's comes from its
storages (``agent.phones.scan.storage_estimate``: capacity minus free space, no file count).
``refined``: the estimate as the walk goes, never below what it found, and the real count once it
is done.

Example::

    >>> refined(ScanEstimate(entries=120), walk_done=False, files_found=40, entries_found=45,
    ...         bytes_found=0, files_sized=0)
    (115, None)
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence

from agent.scan.events import ScanEstimate

UNKNOWN = ScanEstimate()


def filesystem_estimate(roots: Sequence[str | bytes | os.PathLike[str]]) -> ScanEstimate:
    """The used inodes and bytes of the filesystems under ``roots`` (each filesystem once).

    A root that is a regular file counts as itself (1 entry, its size); one that cannot be read or
    is neither a file nor a folder holds nothing the walk will find. A folder counts only when it is
    the top of its filesystem (a mount point): for any other folder the filesystem's figures would
    be those of everything else on it too, so the estimate is unknown. Figures a filesystem does
    not report are unknown (None) for the whole estimate (a part known and a part not would be an
    estimate too low): the kernel's vfat and exFAT drivers and btrfs give no inode counts
    (``f_files`` 0), and FAT's FUSE drivers (fusefat, exfat-fuse) give cluster counts in their
    place, recognised by inodes that follow the blocks (``inode_counts_are_blocks``).
    """
    entries: int | None = 0
    used: int | None = 0
    block: int | None = None
    filesystems: set[int] = set()
    for root in roots:
        path = os.fsencode(root)
        try:
            info = os.lstat(path)
        except OSError:
            continue  # the walk records it as an error: nothing of it is found
        if stat.S_ISREG(info.st_mode):
            entries = None if entries is None else entries + 1
            used = None if used is None else used + info.st_size
            continue
        if not stat.S_ISDIR(info.st_mode):
            continue  # a symbolic link, a FIFO...: skipped by the walk
        if not os.path.ismount(path):
            return UNKNOWN
        if info.st_dev in filesystems:
            continue
        filesystems.add(info.st_dev)
        try:
            fs = os.statvfs(path)
        except OSError:
            return UNKNOWN
        inodes = fs.f_files - fs.f_ffree
        counted = fs.f_files > 0 and inodes > 0 and not inode_counts_are_blocks(fs)
        entries = entries + inodes if entries is not None and counted else None
        blocks = (fs.f_blocks - fs.f_bfree) * fs.f_frsize
        used = None if used is None or fs.f_blocks <= 0 or blocks < 0 else used + blocks
        if fs.f_frsize > 0:
            block = fs.f_frsize if block is None else min(block, fs.f_frsize)
    return ScanEstimate(entries, used, block)


def inode_counts_are_blocks(fs: os.statvfs_result) -> bool:
    """True when a filesystem's "inodes" are its clusters (exfat-fuse: as many free as the free
    blocks; fusefat: in the same proportion), not its files and folders: FAT keeps no inodes."""
    return fs.f_ffree == fs.f_bfree or fs.f_ffree * fs.f_blocks == fs.f_bfree * fs.f_files


def refined(
    estimate: ScanEstimate,
    *,
    walk_done: bool,
    files_found: int,
    entries_found: int,
    bytes_found: int,
    files_sized: int,
) -> tuple[int | None, int | None]:
    """``(files_estimated, bytes_estimated)`` for a ``ScanProgress``.

    ``entries_found``: what the walk found that takes an inode (folders, regular files, entries
    skipped or in error); ``bytes_found`` the sizes of ``files_sized`` files. Files: once the walk
    is done, the files found; else, from used inodes, the files found plus the entries not found yet
    (each counted as a file: folders not reached yet and the filesystem's own inodes make it a bit
    high, so the fraction is a bit low, never ahead); from used bytes alone, the used bytes over
    what a file takes so far (the mean size of the files sized, plus half a block of slack); never
    below the files found. Bytes: the used bytes, never below ``bytes_found``, and ``bytes_found``
    once every file found is sized.
    """
    used = None if estimate.bytes is None else max(estimate.bytes, bytes_found)
    if walk_done:
        return files_found, bytes_found if files_sized >= files_found else used
    files: int | None = None
    if estimate.entries is not None:
        files = files_found + max(0, estimate.entries - entries_found)
    elif estimate.bytes is not None and bytes_found > 0 and files_sized > 0:
        per_file = bytes_found / files_sized + (estimate.block_size or 0) / 2
        files = max(files_found, int(estimate.bytes / per_file))
    return files, used
