"""The operating-system side of mounting, behind one small interface with a real implementation.

``MountBackend`` is what the mounter needs from the system: read-only loop devices, filesystem
probing, mounting and unmounting, and reading back the options a mount really got. ``SystemBackend``
does it for real (ioctl, mount(2), FUSE programs); tests of the mounter's policy inject a fake.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import struct
import subprocess
from pathlib import Path
from typing import Protocol

from agent.devices.loop import LoopDevice
from agent.devices.mount_rules import fuse_command
from agent.devices.probe import FilesystemProbe, probe_filesystem

BLKROSET = 0x125D
BLKGETSIZE64 = 0x80081272
MS_FLAGS = {"ro": 1, "nosuid": 2, "nodev": 4, "noexec": 8, "noatime": 1024}
MNT_DETACH = 2
MS_REMOUNT = 32
MS_BIND = 4096
FUSE_MOUNT_TIMEOUT = 30.0


class LoopHandle(Protocol):
    path: str
    name: str

    def close(self) -> None: ...

    def wait_detached(self, timeout: float = ...) -> bool: ...


class MountBackend(Protocol):
    def attach_loop(
        self, backing_fd: int, offset: int, size: int, *, read_only: bool = True
    ) -> LoopHandle: ...

    def probe(self, device_path: str) -> FilesystemProbe: ...

    def mount_kernel(self, device_path: str, target: Path, fstype: str, options: str) -> None: ...

    def mount_fuse(self, program: str, device_path: str, target: Path, options: str) -> None: ...

    def unmount(self, target: Path) -> None: ...

    def mount_options(self, target: Path) -> list[str] | None: ...


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def split_options(options: str) -> tuple[int, str]:
    """Generic options as mount(2) flags; the rest as the filesystem's data string."""
    flags, data = 0, []
    for option in options.split(","):
        if option in MS_FLAGS:
            flags |= MS_FLAGS[option]
        elif option:
            data.append(option)
    return flags, ",".join(data)


def mountinfo_options(target: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> list[str] | None:
    """The per-mount and superblock options of the mount at ``target`` (None: not mounted)."""
    wanted = os.fsencode(str(target)).replace(b"\\", b"\\134").replace(b" ", b"\\040")
    try:
        lines = mountinfo.read_bytes().splitlines()
    except OSError:
        return None
    found: list[str] | None = None
    for line in lines:
        fields = line.split()
        if len(fields) > 6 and fields[4] == wanted:
            separator = fields.index(b"-")
            per_mount = fields[5].decode().split(",")
            per_superblock = fields[separator + 3].decode().split(",") if len(fields) > separator + 3 else []
            found = per_mount + per_superblock
    return found


class SystemBackend:
    """Real loop devices, blkid, mount(2) and FUSE drivers (needs root)."""

    def __init__(self) -> None:
        self._libc = _libc()

    def attach_loop(self, backing_fd: int, offset: int, size: int, *, read_only: bool = True) -> LoopHandle:
        return LoopDevice.attach(backing_fd, offset, size, read_only=read_only)

    def probe(self, device_path: str) -> FilesystemProbe:
        return probe_filesystem(device_path)

    def mount_kernel(self, device_path: str, target: Path, fstype: str, options: str) -> None:
        flags, data = split_options(options)
        result = self._libc.mount(
            os.fsencode(device_path), os.fsencode(str(target)), fstype.encode(), flags, data.encode() or None
        )
        if result != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    def mount_fuse(self, program: str, device_path: str, target: Path, options: str) -> None:
        try:
            done = subprocess.run(
                fuse_command(program, device_path, str(target), options),
                capture_output=True,
                text=True,
                errors="replace",
                timeout=FUSE_MOUNT_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            self._take_down(target)
            raise OSError(errno.ETIMEDOUT, f"{program} did not finish mounting") from err
        if done.returncode != 0 or self.mount_options(target) is None:
            self._take_down(target)  # a driver that failed after mounting leaves its mount behind
            lines = [line.strip() for line in (done.stderr + "\n" + done.stdout).splitlines() if line.strip()]
            message = "; ".join(lines[-3:]) if lines else f"exit {done.returncode}"
            raise OSError(errno.EIO, f"{program}: {message[:300]}")
        # FUSE drivers pass on only some generic options (fuse-exfat drops noexec): set every one of
        # them on the mount itself with a bind remount, which touches no superblock.
        flags, _ = split_options(options)
        target_bytes = os.fsencode(str(target))
        if self._libc.mount(None, target_bytes, None, MS_REMOUNT | MS_BIND | flags, None) != 0:
            code = ctypes.get_errno()
            self.unmount(target)
            raise OSError(code, f"cannot restrict the FUSE mount: {os.strerror(code)}")

    def _take_down(self, target: Path) -> None:
        if self.mount_options(target) is not None:
            with contextlib.suppress(OSError):
                self.unmount(target)

    def unmount(self, target: Path) -> None:
        path = os.fsencode(str(target))
        if self._libc.umount2(path, 0) == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EINVAL:
            return  # not mounted
        if code == errno.EBUSY and self._libc.umount2(path, MNT_DETACH) == 0:
            return
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))

    def mount_options(self, target: Path) -> list[str] | None:
        return mountinfo_options(target)


def set_block_device_read_only(fd: int, read_only: bool = True) -> bool:
    """BLKROSET on a block device; False when ``fd`` is not one (an image file)."""
    try:
        fcntl.ioctl(fd, BLKROSET, struct.pack("i", 1 if read_only else 0))
    except OSError:
        return False
    return True


def size_of(fd: int) -> int:
    try:
        buffer = fcntl.ioctl(fd, BLKGETSIZE64, b"\x00" * 8)
        size: int = struct.unpack("Q", buffer)[0]
        return size
    except OSError:
        return os.fstat(fd).st_size
