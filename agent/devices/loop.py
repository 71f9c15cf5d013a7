"""Read-only loop devices over a byte range of an open device or image (LOOP_CONFIGURE ioctl).

The loop driver refuses every write and discard to a read-only loop device, whatever the filesystem
on top tries, which is why the kiosk mounts partitions only through one. Loop devices are created
with autoclear: the kernel detaches one when its last user (our descriptor, a mount, a FUSE driver)
lets go, so a crash cannot leave one attached for long.

Example (root)::

    with LoopDevice.attach(device_fd, offset=1 << 20, size_limit=64 << 20) as loop:
        print(loop.path)    # /dev/loop7, read-only, until closed and unmounted
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import time
from pathlib import Path
from types import TracebackType

from filters.errors import DeviceError

LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LOOP_CLR_FD = 0x4C01
BLKROSET = 0x125D
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
LOOP_INFO64 = "=QQQQQIIII64s64s32sQQ"
LOOP_CONFIG = "=II" + LOOP_INFO64[1:] + "8Q"
ATTACH_ATTEMPTS = 20


class LoopDevice:
    """A read-only loop device; ``close()`` releases our hold (autoclear then detaches it)."""

    def __init__(self, number: int, fd: int) -> None:
        self.number = number
        self.path = f"/dev/loop{number}"
        self.name = f"loop{number}"
        self._fd: int | None = fd

    @classmethod
    def attach(
        cls, backing_fd: int, offset: int = 0, size_limit: int = 0, *, read_only: bool = True
    ) -> LoopDevice:
        """Map ``size_limit`` bytes (0: to the end) of ``backing_fd`` from ``offset``, read-only
        unless ``read_only`` is False (only ever for a verified sync stick)."""
        flags = LO_FLAGS_AUTOCLEAR | (LO_FLAGS_READ_ONLY if read_only else 0)
        info = struct.pack(
            LOOP_INFO64, 0, 0, 0, offset, size_limit, 0, 0, 0, flags, b"fieldtriage", b"", b"", 0, 0
        )
        config = struct.pack("=II", backing_fd, 0) + info + bytes(64)
        try:
            control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        except OSError as err:
            raise DeviceError("/dev/loop-control", f"cannot open: {err.strerror}") from err
        try:
            for _ in range(ATTACH_ATTEMPTS):
                number = fcntl.ioctl(control, LOOP_CTL_GET_FREE)
                try:
                    # the loop driver makes a device opened read-only a read-only loop, whatever flags say
                    fd = os.open(
                        f"/dev/loop{number}", (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC
                    )
                except FileNotFoundError:
                    time.sleep(0.01)  # the node appears a moment after GET_FREE creates it
                    continue
                try:
                    fcntl.ioctl(fd, LOOP_CONFIGURE, config)
                except OSError as err:
                    os.close(fd)
                    if err.errno == errno.EBUSY:
                        continue  # another process took this one between GET_FREE and CONFIGURE
                    raise DeviceError(f"/dev/loop{number}", f"cannot attach: {err.strerror}") from err
                if not read_only:
                    # BLKROSET outlives a detach: an earlier user's read-only mark would refuse our
                    # writes (a copy-on-write layer's, a sync stick's)
                    fcntl.ioctl(fd, BLKROSET, struct.pack("i", 0))
                return cls(number, fd)
        finally:
            os.close(control)
        raise DeviceError("/dev/loop-control", "no free loop device after repeated attempts")

    @property
    def attached(self) -> bool:
        return Path(f"/sys/block/{self.name}/loop/backing_file").exists()

    def close(self) -> None:
        """Release our descriptor; the loop detaches once nothing else holds it."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                fcntl.ioctl(fd, LOOP_CLR_FD)
            except OSError:
                pass  # busy (still mounted) or already cleared: autoclear finishes the job
            os.close(fd)

    def wait_detached(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.attached:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def __enter__(self) -> LoopDevice:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LoopDevice({self.path})"
