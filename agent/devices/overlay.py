"""Copy-on-write layers: a writable block device whose reads come from the read-only evidence and
whose writes go to a store in the kiosk's runtime folder (RAM), never to the device.

A filesystem whose journal needs recovery is mounted on such a layer so that the kernel replays the
journal into the layer and shows the tree as the device's own system would have shown it. The
evidence stays below a read-only loop device, which refuses every write whatever the layer does.

* ``XmountOverlay``: xmount (Debian package ``xmount``) presents the read-only loop device as a
  FUSE file whose writes go to a cache file; a writable loop device over that file is the layer.
  Works wherever FUSE works (this VM has no device-mapper).
* ``DmSnapshotOverlay``: a device-mapper ``snapshot`` target (origin: a read-only loop device of
  its own over the partition's, which is mounted and so cannot be claimed; store: a loop device over
  a sparse file in the runtime folder), where the kernel has dm-snapshot and ``dmsetup`` is installed
  (Raspberry Pi and Debian kernels; run for real in tests/system/test_overlay.py).

``available_overlay()`` picks xmount where it is installed (the layer the test suite runs for real
on every machine), else dm-snapshot. Example (root)::

    overlay = available_overlay()
    with overlay.create("/dev/loop7", runtime / "overlay-p1") as layer:
        mount(layer.path, ...)   # writes land in runtime/overlay-p1, never on /dev/loop7
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

from agent.devices.loop import LoopDevice
from filters.errors import DeviceError

START_TIMEOUT = 30.0
DM_CHUNK_SECTORS = 8


class Layer(Protocol):
    """A writable device over read-only evidence; ``close()`` takes it down and frees its store."""

    path: str
    method: str

    def close(self) -> list[str]: ...


class Overlay(Protocol):
    name: str

    def create(self, source: str, store: Path) -> Layer: ...


def _run(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, errors="replace", timeout=START_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DeviceError(what, f"{argv[0]} failed: {err}") from err
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise DeviceError(what, f"{argv[0]}: {lines[-1] if lines else f'exit {done.returncode}'}")


def _unmount(target: Path) -> str | None:
    """Unmount a FUSE or kernel mount; a message when it stays."""
    for flags in ("", "-l"):
        done = subprocess.run(
            ["umount", *([flags] if flags else []), os.fspath(target)], capture_output=True, check=False
        )
        if done.returncode == 0 or not os.path.ismount(target):
            return None
    return f"{target} still mounted"


@dataclass
class LayerHandle:
    """What one layer holds, closed in reverse: the top loop device, then the pieces below it."""

    path: str
    method: str
    store: Path
    top: LoopDevice | None = None
    fuse_mount: Path | None = None
    dm_name: str = ""
    store_loop: LoopDevice | None = None
    origin_loop: LoopDevice | None = None  # dm-snapshot's own read-only view of the evidence
    problems: list[str] = field(default_factory=list)

    def close(self) -> list[str]:
        problems = list(self.problems)
        if self.top is not None:
            self.top.close()
            if not self.top.wait_detached(5.0):
                problems.append(f"{self.top.path} still attached")
            self.top = None
        if self.dm_name:
            for _ in range(10):
                done = subprocess.run(["dmsetup", "remove", self.dm_name], capture_output=True, check=False)
                if done.returncode == 0:
                    break
                time.sleep(0.1)
            else:
                problems.append(f"device-mapper {self.dm_name} not removed")
            self.dm_name = ""
        for loop in (self.store_loop, self.origin_loop):
            if loop is not None:
                loop.close()
        self.store_loop = self.origin_loop = None
        if self.fuse_mount is not None:
            left = _unmount(self.fuse_mount)
            if left:
                problems.append(left)
            self.fuse_mount = None
        shutil.rmtree(self.store, ignore_errors=True)
        return problems

    def __enter__(self) -> LayerHandle:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


class XmountOverlay:
    """xmount's virtual write support: the evidence read-only, writes to a cache file."""

    name = "xmount"

    def create(self, source: str, store: Path) -> LayerHandle:
        store.mkdir(mode=0o700)
        view = store / "view"
        view.mkdir(mode=0o700)
        handle = LayerHandle("", self.name, store)
        try:
            _run(
                ["xmount", "-o", "no_allow_other", "--in", "raw", source,
                 "--cache", os.fspath(store / "writes.xmc"), "--out", "raw", os.fspath(view)],
                source,
            )  # fmt: skip
            handle.fuse_mount = view
            images = _wait_for_image(view)
            fd = os.open(images, os.O_RDWR | os.O_CLOEXEC)
            try:
                handle.top = LoopDevice.attach(fd, read_only=False)
            finally:
                os.close(fd)
        except (OSError, DeviceError) as err:
            handle.close()
            if isinstance(err, DeviceError):
                raise
            raise DeviceError(source, f"copy-on-write layer: {err.strerror or err}") from err
        handle.path = handle.top.path
        return handle


def _wait_for_image(view: Path) -> Path:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        found = sorted(view.glob("*.dd"))
        if found:
            return found[0]
        time.sleep(0.02)
    raise OSError(errno.ETIMEDOUT, "xmount presented no image")


class DmSnapshotOverlay:
    """A non-persistent device-mapper snapshot of the read-only loop device."""

    name = "dm-snapshot"

    def create(self, source: str, store: Path) -> LayerHandle:
        sectors = _sectors(source)
        store.mkdir(mode=0o700)
        handle = LayerHandle("", self.name, store)
        try:
            backing = store / "writes.cow"
            with backing.open("wb") as f:
                f.truncate(max(sectors * 512, 64 << 20))  # sparse: RAM only for what is written
            fd = os.open(backing, os.O_RDWR | os.O_CLOEXEC)
            try:
                handle.store_loop = LoopDevice.attach(fd, read_only=False)
            finally:
                os.close(fd)
            # the origin is claimed exclusively, and ``source`` is mounted (the on-disk view): a
            # read-only loop device of its own over it (EBUSY otherwise)
            fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
            try:
                handle.origin_loop = LoopDevice.attach(fd, read_only=True)
            finally:
                os.close(fd)
            name = f"fieldtriage-{store.name}"
            origin = handle.origin_loop.path
            table = f"0 {sectors} snapshot {origin} {handle.store_loop.path} N {DM_CHUNK_SECTORS}"
            _run(["dmsetup", "create", name, "--table", table], source)
            handle.dm_name = name
            handle.path = f"/dev/mapper/{name}"
            subprocess.run(["udevadm", "settle", "--timeout=5"], capture_output=True, check=False)
        except (OSError, DeviceError) as err:
            handle.close()
            if isinstance(err, DeviceError):
                raise
            raise DeviceError(source, f"copy-on-write layer: {err.strerror or err}") from err
        return handle


def _sectors(device: str) -> int:
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.lseek(fd, 0, os.SEEK_END) // 512
    finally:
        os.close(fd)


def dm_snapshot_available() -> bool:
    if shutil.which("dmsetup") is None or not Path("/dev/mapper/control").exists():
        return False
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        done = subprocess.run(["dmsetup", "targets"], capture_output=True, text=True, timeout=5, check=False)
        # the snapshot target registers when dm-snapshot loads; modprobe it where modules exist
        if done.returncode == 0 and "snapshot" not in done.stdout and shutil.which("modprobe"):
            subprocess.run(["modprobe", "dm-snapshot"], capture_output=True, timeout=10, check=False)
            done = subprocess.run(
                ["dmsetup", "targets"], capture_output=True, text=True, timeout=5, check=False
            )
        return done.returncode == 0 and any(
            line.split()[:1] == ["snapshot"] for line in done.stdout.splitlines()
        )
    return False


def xmount_available() -> bool:
    return shutil.which("xmount") is not None and Path("/dev/fuse").exists()


def available_overlay() -> Overlay | None:
    """The copy-on-write layer this kiosk can make: xmount (tested wherever the suite runs), else
    dm-snapshot, else None."""
    if xmount_available():
        return XmountOverlay()
    if dm_snapshot_available():
        return DmSnapshotOverlay()
    return None
