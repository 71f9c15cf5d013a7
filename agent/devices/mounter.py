"""Turn a device (or image) into read-only mounted trees, and back to nothing.

In this order: open the device read-only and set it read-only (BLKROSET) along with any partition
nodes the kernel made; read its partition table ourselves; for each partition attach a read-only
loop device at its offset, probe it, and mount that loop device (never the device itself) with the
options of ``mount_rules``; read the options back from the kernel and refuse a mount that is not
read-only. Everything that could not be mounted is recorded with its reason: such a device can only
be ``incomplete`` (or a match found elsewhere on it), never ``no_match``.

A filesystem whose journal or log needs recovery (``recovery``) is mounted twice: as it is on the
device (``pN``, no replay) and replayed onto a copy-on-write layer (``pN-replayed``, ``overlay``),
so that both what only the journal holds and what the replay would delete are scanned. Where no
replay is possible the partition is recorded as "journal needs recovery": never ``no_match``.

Example (root)::

    with Mounter(Path("/run/fieldtriage")).mount("/dev/sdb") as mounted:
        for part in mounted.mounted_partitions():
            scan(part.mountpoint)
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from agent.devices.mount_rules import (
    MountPlan,
    available_fuse_programs,
    kernel_filesystems,
    mount_plans,
    replay_plan,
)
from agent.devices.ntfs_names import NAMES_VIEW, names_view_problem
from agent.devices.overlay import Layer, Overlay, available_overlay
from agent.devices.partitions import Partition, PartitionTable, logical_sector_size, read_partition_table
from agent.devices.probe import FilesystemProbe
from agent.devices.recovery import ASK_THE_KERNEL, needs_recovery, why_not_replayable
from agent.devices.system import LoopHandle, MountBackend, SystemBackend, set_block_device_read_only, size_of
from agent.scan.estimate import UNKNOWN, filesystem_estimate
from agent.scan.events import ScanEstimate
from filters.errors import DeviceError

DETACH_TIMEOUT = 5.0
# a device (or image file) with neither a partition table nor a filesystem on the whole of it: a
# file that is not a disk image, or a blank or wiped disk; never green, and said so in these words
NO_TABLE_OR_FILESYSTEM = "no partition table or filesystem found"
NOT_AN_IMAGE = f"{NO_TABLE_OR_FILESYSTEM} (not a disk or partition image, or unformatted or damaged)"


@dataclass
class ReplayedView:
    """A partition's journal replayed onto a copy-on-write layer, mounted read-only."""

    mountpoint: Path | None
    options: str
    layer: Layer | None = field(default=None, repr=False)

    def describe(self) -> dict[str, object]:
        return {
            "mountpoint": str(self.mountpoint) if self.mountpoint else None,
            "options": self.options,
            "layer": self.layer.method if self.layer else None,
        }


@dataclass
class PartitionMount:
    """One partition and what became of it. ``recovery``: why its journal needs recovery ('' when
    it does not, None when the type keeps no journal we know of)."""

    partition: Partition
    probe: FilesystemProbe = field(default_factory=FilesystemProbe)
    mountpoint: Path | None = None
    driver: str = ""
    options: str = ""
    problem: str = ""
    recovery: str | None = None
    replayed: ReplayedView | None = None
    loop: LoopHandle | None = field(default=None, repr=False)

    @property
    def mounted(self) -> bool:
        return self.mountpoint is not None

    def roots(self) -> list[Path]:
        """The trees to scan: the on-disk view and, when there is one, the replayed view."""
        views = [self.mountpoint, self.replayed.mountpoint if self.replayed else None]
        return [view for view in views if view is not None]

    def add_problem(self, problem: str) -> None:
        if problem:
            self.problem = f"{self.problem}; {problem}" if self.problem else problem

    def describe(self) -> dict[str, object]:
        return {
            "number": self.partition.number,
            "start": self.partition.start,
            "size": self.partition.size,
            "type_id": self.partition.type_id,
            "type_name": self.partition.type_name,
            "name": self.partition.name,
            "fs_type": self.probe.fs_type,
            "uuid": self.probe.uuid,
            "label": self.probe.label,
            "mounted": self.mounted,
            "mountpoint": str(self.mountpoint) if self.mountpoint else None,
            "driver": self.driver,
            "options": self.options,
            "needs_recovery": bool(self.recovery),
            "recovery": self.recovery,
            "replayed": self.replayed.describe() if self.replayed else None,
            "problem": self.problem,
        }


@dataclass
class MountedDevice:
    """A device's read-only mounts; ``close()`` unmounts, detaches and removes every folder."""

    source: str
    size: int
    table: PartitionTable
    partitions: list[PartitionMount]
    folder: Path
    block_device: bool
    backend: MountBackend = field(repr=False)
    _fd: int | None = field(default=None, repr=False)
    cleanup_problems: list[str] = field(default_factory=list)
    # what the mounted trees hold (statvfs: used inodes and bytes), taken once they are mounted: the
    # scan's progress fraction before its walk is done (agent/scan/estimate.py)
    estimate: ScanEstimate = UNKNOWN

    def mounted_partitions(self) -> list[PartitionMount]:
        return [p for p in self.partitions if p.mounted]

    @property
    def fd(self) -> int | None:
        """The device's read-only descriptor (BLKROSET set), open until ``close()``: the block
        sample reads the raw device through it (agent/scan/blocks.py)."""
        return self._fd

    def roots(self) -> list[Path]:
        """Every mounted tree of the device, on-disk and replayed views, in partition order."""
        return [root for p in self.partitions for root in p.roots()]

    def problems(self) -> list[str]:
        """Why the device cannot be checked completely (empty: every partition is mounted)."""
        found = list(self.table.problems)
        if not self.partitions:
            found.append(f"{NO_TABLE_OR_FILESYSTEM} (empty: 0 bytes)")
        found.extend(
            p.problem if p.problem == NOT_AN_IMAGE else f"partition {p.partition.number}: {p.problem}"
            for p in self.partitions
            if p.problem
        )
        return found

    @property
    def complete(self) -> bool:
        return not self.problems()

    def close(self) -> None:
        for part in reversed(self.partitions):
            if part.replayed is not None:
                self._close_replayed(part.replayed)
            if part.mountpoint is not None:
                try:
                    self.backend.unmount(part.mountpoint)
                except OSError as err:
                    self.cleanup_problems.append(f"unmount {part.mountpoint}: {err.strerror or err}")
                part.mountpoint = None
        for part in self.partitions:
            if part.loop is not None:
                part.loop.close()
        for part in self.partitions:
            if part.loop is not None and not part.loop.wait_detached(DETACH_TIMEOUT):
                self.cleanup_problems.append(f"{part.loop.path} still attached")
            part.loop = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        shutil.rmtree(self.folder, ignore_errors=True) if not _has_mounts(self.folder) else None

    def _close_replayed(self, view: ReplayedView) -> None:
        if view.mountpoint is not None:
            try:
                self.backend.unmount(view.mountpoint)
            except OSError as err:
                self.cleanup_problems.append(f"unmount {view.mountpoint}: {err.strerror or err}")
            view.mountpoint = None
        if view.layer is not None:
            self.cleanup_problems.extend(view.layer.close())
            view.layer = None

    def __enter__(self) -> MountedDevice:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _has_mounts(folder: Path) -> bool:
    try:
        return any(os.path.ismount(path) for path in folder.iterdir())
    except OSError:
        return False


class Mounter:
    """Mounts devices read-only under ``runtime_folder/mounts``."""

    def __init__(
        self,
        runtime_folder: Path,
        backend: MountBackend | None = None,
        kernel_types: set[str] | None = None,
        fuse_programs: set[str] | None = None,
        overlay: Overlay | Literal["auto"] | None = "auto",
    ) -> None:
        self.mount_root = runtime_folder / "mounts"
        self.overlay_root = runtime_folder / "overlays"
        self.backend: MountBackend = backend or SystemBackend()
        self.kernel_types = kernel_filesystems() if kernel_types is None else kernel_types
        self.fuse_programs = available_fuse_programs() if fuse_programs is None else fuse_programs
        self._overlay = overlay

    @property
    def overlay(self) -> Overlay | None:
        """The copy-on-write layer for replays, found on first use ("auto")."""
        if self._overlay == "auto":
            self._overlay = available_overlay()
        return self._overlay

    def mount(self, source: str | os.PathLike[str]) -> MountedDevice:
        """Mount every partition of a block device or image file read-only."""
        source = os.fspath(source)
        try:
            fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as err:
            raise DeviceError(source, f"cannot open read-only: {err.strerror}") from err
        try:
            block_device = set_block_device_read_only(fd)
            if block_device:
                _set_partition_nodes_read_only(source)
            size = size_of(fd)
            sector = logical_sector_size(fd)
            table = read_partition_table(lambda offset, n: _pread(fd, n, offset), size, sector)
            self.mount_root.mkdir(parents=True, exist_ok=True, mode=0o700)
            folder = self.mount_root / f"{_safe_name(source)}-{secrets.token_hex(4)}"
            folder.mkdir(mode=0o700)
        except BaseException:
            os.close(fd)
            raise
        mounted = MountedDevice(source, size, table, [], folder, block_device, self.backend, fd)
        try:
            for partition in table.partitions:
                part = PartitionMount(partition)
                mounted.partitions.append(part)  # first: whatever it gets is undone by close()
                try:
                    self._mount_partition(fd, part, folder)
                except Exception as err:  # a bug or a device not foreseen: never green, no traceback
                    part.add_problem(f"internal error while mounting: {type(err).__name__}: {err}")
            mounted.estimate = filesystem_estimate(mounted.roots())
        except BaseException:
            mounted.close()
            raise
        return mounted

    def _mount_partition(self, fd: int, result: PartitionMount, folder: Path) -> None:
        partition = result.partition
        try:
            result.loop = self.backend.attach_loop(fd, partition.start, partition.size)
        except DeviceError as err:
            result.problem = f"cannot map read-only: {err.reason}"
            return
        result.probe = self.backend.probe(result.loop.path)
        if result.probe.error:
            result.problem = result.probe.error
            return
        fs_type = result.probe.fs_type
        plans = mount_plans(fs_type, self.kernel_types, self.fuse_programs)
        if plans[0].driver == "none":
            whole = partition.type_id == "none" and not fs_type  # no table, no filesystem
            result.problem = NOT_AN_IMAGE if whole else plans[0].reason
            return

        def read_at(offset: int, length: int) -> bytes:
            if not 0 <= offset < partition.size:  # a hostile field can point anywhere (2**70...)
                return b""
            return _pread(fd, max(0, min(length, partition.size - offset)), partition.start + offset)

        target = folder / f"p{partition.number}"
        target.mkdir(mode=0o700, exist_ok=True)
        result.recovery = needs_recovery(fs_type, read_at)
        if fs_type in ASK_THE_KERNEL and plans[0].driver == "kernel":
            result.recovery = self._kernel_recovery_check(fs_type, result.loop.path, target)
        failures = []
        for plan in plans:
            error = self._try_plan(plan, result.loop.path, target)
            if error is None:
                result.mountpoint, result.driver, result.options = target, plan.driver, plan.options
                result.add_problem(plan.unread)
                if plan.program == NAMES_VIEW.program:  # the streams view hides names with ':'
                    names = folder / f"p{partition.number}-names"
                    result.add_problem(names_view_problem(self.backend, fd, partition, names, self._try_plan))
                break
            failures.append(f"{plan.program or plan.fstype}: {error}")
        else:
            if _has_mounts(folder) and os.path.ismount(target):
                failures.append(f"{target} still mounted")
            else:
                with contextlib.suppress(OSError):
                    target.rmdir()
            result.problem = f"could not mount {fs_type} read-only ({'; '.join(failures)})"
        if result.recovery:
            self._mount_replayed(result, folder)

    def _kernel_recovery_check(self, fs_type: str, device_path: str, target: Path) -> str:
        """Let the kernel say whether the log needs recovery: a recovering mount of the read-only
        loop device succeeds when the log is clean, and is refused (EROFS) when it would replay."""
        plan = replay_plan(fs_type, self.kernel_types)
        if plan.driver == "none":
            return f"cannot tell whether the {fs_type} log needs recovery: {plan.reason}"
        try:
            self.backend.mount_kernel(device_path, target, plan.fstype, plan.options)
        except OSError as err:
            if err.errno == errno.EROFS:
                return f"{fs_type} log needs recovery (the kernel refuses to mount it without replaying)"
            return f"cannot tell whether the {fs_type} log needs recovery ({err.strerror or err})"
        with contextlib.suppress(OSError):
            self.backend.unmount(target)
        return ""

    def _mount_replayed(self, result: PartitionMount, folder: Path) -> None:
        """Mount the partition with its journal replayed onto a copy-on-write layer; a problem
        naming why when that cannot be done (then what only the journal holds is not checked)."""
        assert result.loop is not None
        number = result.partition.number

        def cannot(why: str) -> None:
            result.add_problem(f"journal needs recovery, could not check the replayed state: {why}")

        not_here = why_not_replayable(result.recovery or "")
        if not_here:
            cannot(not_here)
            return
        plan = replay_plan(result.probe.fs_type, self.kernel_types)
        overlay = self.overlay if plan.driver == "kernel" else None
        if plan.driver == "none":
            cannot(plan.reason)
            return
        if overlay is None:
            cannot("no copy-on-write layer on this kiosk (needs device-mapper snapshot or xmount)")
            return
        try:
            self.overlay_root.mkdir(parents=True, exist_ok=True, mode=0o700)
            layer = overlay.create(result.loop.path, self.overlay_root / f"{folder.name}-p{number}")
        except (OSError, DeviceError) as err:
            cannot(err.reason if isinstance(err, DeviceError) else (err.strerror or str(err)))
            return
        result.replayed = view = ReplayedView(None, plan.options, layer)  # close() takes it down
        target = folder / f"p{number}-replayed"
        target.mkdir(mode=0o700, exist_ok=True)
        error = self._try_plan(plan, layer.path, target)
        if error is not None:
            target.rmdir()
            cannot(f"{plan.fstype} on a {layer.method} layer: {error}")
            result.replayed = None
            problems = layer.close()
            if problems:
                result.add_problem(f"replay layer not taken down: {'; '.join(problems)}")
            return
        view.mountpoint = target

    def _try_plan(self, plan: MountPlan, device_path: str, target: Path) -> str | None:
        try:
            if plan.driver == "kernel":
                self.backend.mount_kernel(device_path, target, plan.fstype, plan.options)
            else:
                self.backend.mount_fuse(plan.program, device_path, target, plan.options)
        except OSError as err:
            return err.strerror or str(err)
        try:
            options = self.backend.mount_options(target)
        except BaseException:
            with contextlib.suppress(OSError):
                self.backend.unmount(target)
            raise
        if options is None or "ro" not in options:
            with contextlib.suppress(OSError):
                self.backend.unmount(target)
            return f"kernel reports the mount is not read-only ({options})"
        return None


def _pread(fd: int, length: int, offset: int) -> bytes:
    try:
        return os.pread(fd, length, offset)
    except OSError as err:
        if err.errno in (errno.EIO, errno.EINVAL, errno.ENXIO):
            return b""
        raise


def _safe_name(source: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", Path(source).name)[:40] or "device"


def _set_partition_nodes_read_only(source: str) -> None:
    """BLKROSET on the kernel's own partition nodes of a disk (a Pi kernel makes them)."""
    name = Path(os.path.realpath(source)).name
    sys_folder = Path("/sys/class/block") / name
    try:
        children = [
            p.name for p in sys_folder.iterdir() if p.name.startswith(name) and (p / "partition").exists()
        ]
    except OSError:
        return
    for child in children:
        try:
            fd = os.open(f"/dev/{child}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            set_block_device_read_only(fd)
        finally:
            os.close(fd)
