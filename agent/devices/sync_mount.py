"""Read-write mounting of one partition, only ever for a sync stick whose token has verified.

Everything else the kiosk mounts is evidence and goes through ``Mounter``, read-only. A sync stick
is first mounted read-only like any device; only when the station-signed token on it matches its
filesystem UUID does the agent come here: the disk is set writable again (the udev rule and the
mounter set it read-only), the partition gets a writable loop device and a normal mount.

Example (root)::

    with mount_read_write("/dev/sdc", partition, "vfat", Path("/run/fieldtriage/sync")) as folder:
        export_segments(journal_folder, folder)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.devices.mount_rules import FUSE_RULES, KERNEL_RULES, available_fuse_programs, kernel_filesystems
from agent.devices.partitions import Partition
from agent.devices.system import MountBackend, SystemBackend, set_block_device_read_only
from filters.errors import MountError

RW_OPTIONS = "nosuid,nodev,noexec,noatime"
FUSE_RW_EXTRA = {"fusefat": "rw+"}


@contextmanager
def mount_read_write(
    source: str, partition: Partition, fs_type: str, target: Path, backend: MountBackend | None = None
) -> Iterator[Path]:
    backend = backend or SystemBackend()
    try:
        fd = os.open(source, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as err:
        raise MountError(source, f"cannot open the sync stick for writing: {err.strerror}") from err
    loop = None
    mounted = False
    try:
        set_block_device_read_only(fd, False)
        loop = backend.attach_loop(fd, partition.start, partition.size, read_only=False)
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        error = _mount(backend, fs_type, loop.path, target)
        if error:
            raise MountError(source, f"cannot mount the sync stick read-write: {error}")
        mounted = True
        yield target
    finally:
        if mounted:
            os.sync()
            try:
                backend.unmount(target)
            except OSError as err:
                raise MountError(target, f"cannot unmount the sync stick: {err.strerror}") from err
        if loop is not None:
            loop.close()
            loop.wait_detached()
        set_block_device_read_only(fd, True)
        os.close(fd)
        if target.exists() and not os.path.ismount(target):
            target.rmdir()


def _mount(backend: MountBackend, fs_type: str, device: str, target: Path) -> str:
    kernel = kernel_filesystems()
    failures = []
    for rule in KERNEL_RULES.get(fs_type, ()):
        if rule.fstype in kernel:
            try:
                backend.mount_kernel(device, target, rule.fstype, RW_OPTIONS)
                return ""
            except OSError as err:
                failures.append(f"{rule.fstype}: {err.strerror or err}")
    fuse = FUSE_RULES.get(fs_type)
    if fuse is not None and fuse.program in available_fuse_programs():
        extra = FUSE_RW_EXTRA.get(fuse.program)
        try:
            backend.mount_fuse(fuse.program, device, target, f"{RW_OPTIONS},{extra}" if extra else RW_OPTIONS)
            return ""
        except OSError as err:
            failures.append(f"{fuse.program}: {err.strerror or err}")
    return "; ".join(failures) or f"no driver for {fs_type}"
