"""How each filesystem type is mounted so that it writes nothing (one declarative table).

Every mount is read-only through a read-only loop device, with ``nosuid,nodev,noexec,noatime``, plus
the type's own options that stop log replay and repair: ext2/3/4 ``noload`` (plain ``ro`` replays a
dirty journal), xfs ``norecovery``, btrfs ``rescue=nologreplay``, f2fs ``norecovery`` (no
roll-forward of fsync'd data). ext2/3/4 also get
``errors=remount-ro``: the superblock chooses what an error does unless the mount says, and a device's
``errors=panic`` would make the kiosk's kernel panic at the first damaged inode it reads, read-only
mount or not. btrfs is mounted at its top level (``subvolid=5``), where every subvolume and snapshot
is reachable whatever the default subvolume; xfs with ``nouuid``, so that its replayed view can be
mounted beside it; ntfs-3g with ``streams_interface=windows``, so that named data streams open as
``file:stream``. The kernel driver is used when the running kernel has one, else a FUSE driver,
read-only. Types that must not or cannot
be mounted say why, and that reason goes into the device's record. NTFS is the exception: ntfs-3g
comes first, because the kernel's ntfs3 shows no named data streams (a partition mounted with ntfs3
has that as its problem, never complete).

A filesystem whose journal or log needs recovery is also mounted a second time, replayed onto a
copy-on-write layer (``agent.devices.overlay``), with the options of ``REPLAY_RULES``: the same
restricting options without the one that stops the replay.

Example::

    >>> plan = mount_plan("ext4", kernel_types={"ext4"}, fuse_available=set())
    >>> plan.driver, plan.fstype, plan.options
    ('kernel', 'ext4', 'ro,nosuid,nodev,noexec,noatime,noload,errors=remount-ro')
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

COMMON_OPTIONS = "ro,nosuid,nodev,noexec,noatime"
# ext2/3/4: never what the device's superblock says an error should do (errors=panic panics the kiosk)
EXT_ERRORS = "errors=remount-ro"
NTFS3_UNREAD = "named data streams not read (the ntfs3 driver shows none; ntfs-3g is not installed)"
# types whose FUSE driver shows more than the kernel's: the FUSE driver first
FUSE_FIRST = {"ntfs"}


@dataclass(frozen=True)
class KernelRule:
    """``unread``: what the driver does not show (a partition mounted so is never complete)."""

    fstype: str
    extra: str = ""
    unread: str = ""


@dataclass(frozen=True)
class FuseRule:
    program: str
    extra: str = ""


# blkid TYPE -> kernel drivers to try in order, and the FUSE fallback
KERNEL_RULES: dict[str, tuple[KernelRule, ...]] = {
    "ext2": (KernelRule("ext4", f"noload,{EXT_ERRORS}"), KernelRule("ext2", EXT_ERRORS)),
    "ext3": (KernelRule("ext4", f"noload,{EXT_ERRORS}"), KernelRule("ext3", f"noload,{EXT_ERRORS}")),
    "ext4": (KernelRule("ext4", f"noload,{EXT_ERRORS}"),),
    "xfs": (KernelRule("xfs", "norecovery,nouuid"),),
    "btrfs": (KernelRule("btrfs", "rescue=nologreplay,subvolid=5"),),
    "f2fs": (KernelRule("f2fs", "norecovery"),),
    "vfat": (KernelRule("vfat"),),
    "exfat": (KernelRule("exfat"),),
    "ntfs": (KernelRule("ntfs3", unread=NTFS3_UNREAD),),
    "iso9660": (KernelRule("iso9660"),),
    "udf": (KernelRule("udf"),),
    "hfsplus": (KernelRule("hfsplus"),),
    "squashfs": (KernelRule("squashfs"),),
    "erofs": (KernelRule("erofs"),),
}
FUSE_RULES: dict[str, FuseRule] = {
    "vfat": FuseRule("fusefat"),
    "exfat": FuseRule("mount.exfat-fuse"),
    "ntfs": FuseRule("ntfs-3g", "streams_interface=windows"),
    "iso9660": FuseRule("fuseiso"),
}
# fuseiso 20070708 takes FUSE options only after the mount point, and -n keeps it from writing
# ~/.mtab.fuseiso
FUSE_OPTIONS_AFTER_TARGET = {"fuseiso"}
FUSE_LEADING_ARGUMENTS: dict[str, tuple[str, ...]] = {"fuseiso": ("-n",)}
# A replayed view: mounted read-only on a writable copy-on-write device, so the kernel replays the
# journal or log into the layer (never the evidence) and mounts the result.
REPLAY_RULES: dict[str, KernelRule] = {
    "ext3": KernelRule("ext4", EXT_ERRORS),
    "ext4": KernelRule("ext4", EXT_ERRORS),
    "xfs": KernelRule("xfs", "nouuid"),
    "btrfs": KernelRule("btrfs", "subvolid=5"),
    "f2fs": KernelRule("f2fs"),
}
NOT_MOUNTED: dict[str, str] = {
    "crypto_LUKS": "encrypted volume (LUKS): cannot be read without its key",
    "BitLocker": "encrypted volume (BitLocker): cannot be read without its key",
    "apfs": "APFS volume (FileVault or not): no read-only driver on this kiosk",
    "swap": "swap space: not a filesystem, its contents are not checked",
    "LVM2_member": "LVM physical volume: activating it could write to the device",
    "linux_raid_member": "RAID member: assembling it could write to the device",
    "zfs_member": "ZFS member: importing it could write to the device",
}


@dataclass(frozen=True)
class MountPlan:
    """``driver`` is 'kernel', 'fuse' or 'none' (then ``reason`` says why)."""

    driver: str
    fstype: str = ""
    program: str = ""
    options: str = ""
    reason: str = ""
    unread: str = ""  # a mount this way is not complete: why


def kernel_filesystems(proc: Path = Path("/proc/filesystems")) -> set[str]:
    try:
        return {line.split()[-1] for line in proc.read_text().splitlines() if line.strip()}
    except OSError:
        return set()


def available_fuse_programs() -> set[str]:
    if not Path("/dev/fuse").exists():
        return set()
    return {rule.program for rule in FUSE_RULES.values() if shutil.which(rule.program)}


def _options(extra: str) -> str:
    return f"{COMMON_OPTIONS},{extra}" if extra else COMMON_OPTIONS


def mount_plans(fs_type: str, kernel_types: set[str], fuse_available: set[str]) -> list[MountPlan]:
    """Every way to mount ``fs_type`` here, best first; one 'none' plan when there is none."""
    if not fs_type:
        return [MountPlan("none", reason="no filesystem recognised (unformatted, unknown or damaged)")]
    if fs_type in NOT_MOUNTED:
        return [MountPlan("none", reason=NOT_MOUNTED[fs_type])]
    plans = [
        MountPlan("kernel", fstype=rule.fstype, options=_options(rule.extra), unread=rule.unread)
        for rule in KERNEL_RULES.get(fs_type, ())
        if rule.fstype in kernel_types
    ]
    fuse = FUSE_RULES.get(fs_type)
    if fuse and fuse.program in fuse_available:
        plan = MountPlan("fuse", fstype=fs_type, program=fuse.program, options=_options(fuse.extra))
        plans.insert(0 if fs_type in FUSE_FIRST else len(plans), plan)
    if not plans:
        plans.append(MountPlan("none", reason=f"no read-only driver for {fs_type} on this kiosk"))
    return plans


def replay_plan(fs_type: str, kernel_types: set[str]) -> MountPlan:
    """How to mount the replayed view of ``fs_type`` (a 'none' plan saying why there is none)."""
    rule = REPLAY_RULES.get(fs_type)
    if rule is None:
        return MountPlan("none", reason=f"no journal replay for {fs_type} on this kiosk")
    if rule.fstype not in kernel_types:
        return MountPlan("none", reason=f"no {rule.fstype} kernel driver to replay the journal")
    return MountPlan("kernel", fstype=rule.fstype, options=_options(rule.extra))


def fuse_command(program: str, device_path: str, target: str, options: str) -> list[str]:
    """The command line that mounts ``device_path`` on ``target`` with a FUSE driver."""
    leading = list(FUSE_LEADING_ARGUMENTS.get(program, ()))
    if program in FUSE_OPTIONS_AFTER_TARGET:
        return [program, *leading, device_path, target, "-o", options]
    return [program, *leading, "-o", options, device_path, target]


def mount_plan(fs_type: str, kernel_types: set[str], fuse_available: set[str]) -> MountPlan:
    return mount_plans(fs_type, kernel_types, fuse_available)[0]
