"""Small disk images with generated content, for the demo and the tests (root for some types).

Filesystems are populated without mounting where a tool allows it (mtools for FAT, ``mkfs.ext4 -d``,
an ISO 9660 image from a folder); exFAT, NTFS, XFS and btrfs are populated through a read-write
mount of the scratch file before it becomes a demo or test device. ``dirty`` leaves a journal or log
to replay; ``journal_only`` files are written and fsync'd (not synced) just before the image is
copied while still mounted, as a stick pulled without unmounting leaves them: only the journal or
log has them. ``prepare`` runs on the mounted filesystem (subvolumes, streams...); ``corrupt``
damages a superblock.

Example (root)::

    make_disk_image(Path("stick.img"), "dos", [PartitionSpec("vfat", {"DCIM/a.jpg": picture})])
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.journal.copying import fsync_folder

MiB = 1 << 20
MIN_SIZE = {
    "xfs": 320 * MiB, "btrfs": 128 * MiB, "f2fs": 64 * MiB,
    "ntfs": 8 * MiB, "exfat": 8 * MiB, "vfat": 8 * MiB, "ext4": 8 * MiB,
}  # fmt: skip
MBR_TYPES = {
    "vfat": "c", "ntfs": "7", "exfat": "7", "ext4": "83", "xfs": "83", "btrfs": "83", "f2fs": "83",
    "iso9660": "83", "luks": "83", "raw": "83",
}  # fmt: skip
GPT_TYPES = {
    "vfat": "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
    "ntfs": "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
    "exfat": "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
    "ext4": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
    "xfs": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
    "btrfs": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
    "f2fs": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
    "iso9660": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
    "luks": "CA7D7CCB-63ED-4C53-861C-1742536059CC",
    "raw": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
}
TOOLS = {
    "vfat": ["mkfs.vfat", "mcopy"],
    "ntfs": ["mkntfs", "ntfs-3g"],
    "exfat": ["mkfs.exfat", "mount.exfat-fuse"],
    "ext4": ["mkfs.ext4"],
    "xfs": ["mkfs.xfs", "xfs_io"],
    "btrfs": ["mkfs.btrfs", "btrfs"],
    "f2fs": ["mkfs.f2fs", "sload.f2fs"],
    "iso9660": ["genisoimage"],
    "luks": ["cryptsetup"],
    "raw": [],
}


def run(*args: str | os.PathLike[str]) -> None:
    subprocess.run([os.fspath(a) for a in args], check=True, capture_output=True)


def missing_tools(kinds: list[str]) -> list[str]:
    return [tool for kind in kinds for tool in TOOLS[kind] if shutil.which(tool) is None]


@dataclass
class PartitionSpec:
    """``kind``: a filesystem, 'luks', or 'raw' (no filesystem); ``dirty``: leave a log to replay."""

    kind: str
    files: dict[str, bytes] = field(default_factory=dict)
    size: int = 0
    dirty: bool = False
    corrupt: bool = False
    uuid: str = ""  # ext4 only: a chosen filesystem UUID (sync-stick tokens are bound to it)
    journal_only: dict[str, bytes] = field(default_factory=dict)
    journal_deletes: tuple[str, ...] = ()  # on disk, deleted in the journal only (a replay removes them)
    prepare: Callable[[Path], None] | None = None

    def byte_size(self) -> int:
        return max(self.size, MIN_SIZE.get(self.kind, 8 * MiB))


def make_filesystem(spec: PartitionSpec, path: Path) -> None:
    with path.open("wb") as f:
        f.truncate(spec.byte_size())
    staging = Path(tempfile.mkdtemp(prefix="fieldtriage-stage-"))
    try:
        for name, data in spec.files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)
        _populate(spec, path, staging)
    finally:
        shutil.rmtree(staging)
    if spec.corrupt:
        _corrupt(spec.kind, path)


def _populate(spec: PartitionSpec, path: Path, staging: Path) -> None:
    kind = spec.kind
    if kind == "vfat":
        run("mkfs.vfat", "-n", "EVIDENCE", path)
        for item in sorted(staging.rglob("*")):
            relative = item.relative_to(staging).as_posix()
            run(
                "mmd" if item.is_dir() else "mcopy",
                "-i",
                path,
                *([] if item.is_dir() else [item]),
                f"::/{relative}",
            )
    elif kind == "ext4":
        chosen = ["-U", spec.uuid] if spec.uuid else []
        run("mkfs.ext4", "-q", "-F", "-L", "evidence", *chosen, "-d", staging, path)
        if spec.dirty or spec.journal_only or spec.journal_deletes or spec.prepare:
            _copy_through_mount(path, "ext4", staging, spec, copy=False)
    elif kind == "ntfs":
        run("mkntfs", "-q", "-F", "-Q", "-L", "EVIDENCE", path)
        _copy_through_mount(path, "ntfs", staging, spec)
    elif kind == "xfs":
        run("mkfs.xfs", "-q", "-f", "-L", "evidence", path)
        _copy_through_mount(path, "xfs", staging, spec)
    elif kind == "btrfs":
        run("mkfs.btrfs", "-q", "-f", "-L", "evidence", path)
        _copy_through_mount(path, "btrfs", staging, spec)
    elif kind == "f2fs":  # populated without a mount (this VM's kernel has no f2fs)
        run("mkfs.f2fs", "-q", "-l", "evidence", path)
        run("sload.f2fs", "-f", staging, path)
    elif kind == "iso9660":
        run("genisoimage", "-quiet", "-R", "-J", "-V", "EVIDENCE", "-o", path, staging)
    elif kind == "exfat":
        run("mkfs.exfat", "-L", "EVIDENCE", path)
        _copy_through_mount(path, "exfat", staging, spec)
    elif kind == "luks":
        key = path.with_suffix(".key")
        key.write_bytes(os.urandom(32))
        run(
            "cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
            "--pbkdf-force-iterations", "1000", "--key-file", key, path,
        )  # fmt: skip
        key.unlink()
    elif kind != "raw":
        raise ValueError(kind)


def _copy_through_mount(
    path: Path, fstype: str, staging: Path, spec: PartitionSpec, *, copy: bool = True
) -> None:
    mountpoint = Path(tempfile.mkdtemp(prefix="fieldtriage-populate-"))
    pulled = path.with_name(path.name + ".pulled")
    try:
        loop = ""
        if fstype == "exfat":  # fuse-exfat run as root wants a block device
            loop = _writable_loop(path)
            run("mount.exfat-fuse", loop, mountpoint)
        elif fstype == "ntfs":  # file:stream names create named data streams
            run("ntfs-3g", "-o", "streams_interface=windows", path, mountpoint)
        else:
            loop = _writable_loop(path)
            run("mount", "-t", fstype, loop, mountpoint)
        try:
            if copy:
                shutil.copytree(staging, mountpoint, dirs_exist_ok=True)
            if spec.prepare is not None:
                spec.prepare(mountpoint)
            if spec.journal_only or spec.journal_deletes:
                os.sync()  # everything before is on disk; what follows reaches only the journal
                for name, data in spec.journal_only.items():
                    _write_fsynced(mountpoint / name, data)
                for name in spec.journal_deletes:
                    (mountpoint / name).unlink()
                    fsync_folder((mountpoint / name).parent)
                shutil.copyfile(path, pulled)  # the stick as pulled: mounted, journal not checkpointed
            if spec.dirty:
                (mountpoint / "written-before-crash.bin").write_bytes(os.urandom(300_000))
                run("xfs_io", "-x", "-c", "shutdown -f", mountpoint)
        finally:
            run("umount", mountpoint)
            if loop:
                time.sleep(0.2)  # the FUSE daemon lets go of the loop device as it exits
                run("losetup", "-d", loop)
        if spec.journal_only or spec.journal_deletes:
            os.replace(pulled, path)
    finally:
        pulled.unlink(missing_ok=True)
        mountpoint.rmdir()


def _writable_loop(path: Path) -> str:
    """A loop device over ``path``, read-write even if an earlier user left it marked read-only
    (BLKROSET outlives a detach)."""
    loop = subprocess.run(
        ["losetup", "-f", "--show", path], capture_output=True, text=True, check=True
    ).stdout.strip()
    run("blockdev", "--setrw", loop)
    return loop


def _write_fsynced(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_folder(path.parent)


def _corrupt(kind: str, path: Path) -> None:
    """Keep the signature blkid recognises, destroy what the driver needs to mount."""
    with path.open("r+b") as f:
        if kind == "ext4":
            f.seek(1024 + 0x04)  # s_blocks_count_lo and friends: the superblock stops making sense
            f.write(b"\xff" * 20)
            f.seek(1024 + 0x18)  # s_log_block_size: an absurd block size
            f.write(b"\x40\x00\x00\x00")
        else:
            f.seek(4096)
            f.write(os.urandom(1 << 20))


def make_disk_image(path: Path, scheme: str, partitions: list[PartitionSpec]) -> Path:
    """A disk image with an MBR ('dos') or GPT table; each partition made separately and copied in."""
    sizes = [spec.byte_size() for spec in partitions]
    total = MiB + sum(sizes) + len(sizes) * MiB + (MiB if scheme == "gpt" else 0)
    with path.open("wb") as f:
        f.truncate(total)
    types = GPT_TYPES if scheme == "gpt" else MBR_TYPES
    script = f"label: {scheme}\n" + "".join(
        f",{size // 512},{types[s.kind]}\n" for s, size in zip(partitions, sizes, strict=True)
    )
    subprocess.run(["sfdisk", "-q", os.fspath(path)], input=script.encode(), check=True, capture_output=True)
    layout = subprocess.run(
        ["sfdisk", "-J", os.fspath(path)], capture_output=True, check=True, text=True
    ).stdout
    starts = [p["start"] * 512 for p in json.loads(layout)["partitiontable"]["partitions"]]
    for spec, start in zip(partitions, starts, strict=True):
        part = path.with_name(path.name + f".part{start}")
        make_filesystem(spec, part)
        run(
            "dd",
            f"if={part}",
            f"of={path}",
            "bs=1M",
            f"seek={start}",
            "oflag=seek_bytes",
            "conv=notrunc,sparse",
            "status=none",
        )
        part.unlink()
    return path
