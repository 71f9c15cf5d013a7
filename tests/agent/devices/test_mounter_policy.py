"""The mounter's policy with a fake system: fallbacks, and a mount that is not read-only is undone."""

from __future__ import annotations

import errno
from pathlib import Path

from agent.devices.mount_rules import NTFS3_UNREAD
from agent.devices.mounter import NOT_AN_IMAGE, Mounter
from agent.devices.probe import FilesystemProbe


class FakeLoop:
    def __init__(self, number: int) -> None:
        self.path = f"/dev/fakeloop{number}"
        self.name = f"fakeloop{number}"
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def wait_detached(self, timeout: float = 5.0) -> bool:
        return self.closed


class FakeBackend:
    """Records what the mounter asks; ``kernel_error``/``fuse_error`` make those mounts fail,
    ``options_after`` is what the kernel reports for a mount."""

    def __init__(
        self, fs_type: str, *, kernel_error: int = 0, options_after: list[str] | None = None
    ) -> None:
        self.fs_type = fs_type
        self.kernel_error = kernel_error
        self.options_after = options_after
        self.calls: list[str] = []
        self.mounted: set[Path] = set()
        self.loops: list[FakeLoop] = []

    def attach_loop(self, backing_fd: int, offset: int, size: int, *, read_only: bool = True) -> FakeLoop:
        assert read_only, "evidence is only ever mapped read-only"
        self.loops.append(FakeLoop(len(self.loops)))
        return self.loops[-1]

    def probe(self, device_path: str) -> FilesystemProbe:
        return FilesystemProbe(fs_type=self.fs_type, uuid="1234")

    def mount_kernel(self, device_path: str, target: Path, fstype: str, options: str) -> None:
        self.calls.append(f"kernel {fstype} {options}")
        if self.kernel_error:
            raise OSError(self.kernel_error, "refused")
        self.mounted.add(target)

    def mount_fuse(self, program: str, device_path: str, target: Path, options: str) -> None:
        self.calls.append(f"fuse {program} {options}")
        self.mounted.add(target)

    def unmount(self, target: Path) -> None:
        self.calls.append(f"unmount {target.name}")
        self.mounted.discard(target)

    def mount_options(self, target: Path) -> list[str] | None:
        if target not in self.mounted:
            return None
        return self.options_after if self.options_after is not None else ["ro", "nosuid", "nodev"]


def image(tmp_path: Path) -> Path:
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(1 << 20))  # no table: one whole-device "partition"
    return path


def test_kernel_failure_falls_back_to_fuse_and_everything_is_undone(tmp_path: Path) -> None:
    backend = FakeBackend("vfat", kernel_error=errno.ENODEV)
    mounter = Mounter(tmp_path / "run", backend, kernel_types={"vfat"}, fuse_programs={"fusefat"})
    with mounter.mount(image(tmp_path)) as mounted:
        (part,) = mounted.partitions
        assert part.mounted and part.driver == "fuse"
        assert backend.calls == [
            "kernel vfat ro,nosuid,nodev,noexec,noatime",
            "fuse fusefat ro,nosuid,nodev,noexec,noatime",
        ]
    assert backend.mounted == set() and all(loop.closed for loop in backend.loops)
    assert list((tmp_path / "run" / "mounts").iterdir()) == []


def test_a_mount_the_kernel_reports_writable_is_undone(tmp_path: Path) -> None:
    backend = FakeBackend("ext4", options_after=["rw", "relatime"])
    mounter = Mounter(tmp_path / "run", backend, kernel_types={"ext4"}, fuse_programs=set())
    with mounter.mount(image(tmp_path)) as mounted:
        (part,) = mounted.partitions
        assert not part.mounted
        assert "not read-only" in part.problem
        assert backend.mounted == set(), "the writable mount was taken down at once"
        assert not mounted.complete


def test_no_driver_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    backend = FakeBackend("hfsplus")
    mounter = Mounter(tmp_path / "run", backend, kernel_types=set(), fuse_programs=set())
    with mounter.mount(image(tmp_path)) as mounted:
        assert mounted.problems() == ["partition 0: no read-only driver for hfsplus on this kiosk"]
        assert backend.calls == []


def test_an_unforeseen_error_in_one_partition_is_its_problem_and_is_undone(tmp_path: Path) -> None:
    """What a bug (or a device nobody foresaw) raises while a partition is mounted neither escapes
    as a traceback nor leaves the partition's loop device and mounts behind."""

    class Failing(FakeBackend):
        def mount_options(self, target: Path) -> list[str] | None:
            if target in self.mounted:
                raise RuntimeError("options unreadable")
            return None

    backend = Failing("ext4")
    mounter = Mounter(tmp_path / "run", backend, kernel_types={"ext4"}, fuse_programs=set())
    with mounter.mount(image(tmp_path)) as mounted:
        assert mounted.problems() == [
            "partition 0: internal error while mounting: RuntimeError: options unreadable"
        ]
    assert backend.mounted == set() and backend.loops and all(loop.closed for loop in backend.loops)
    assert list((tmp_path / "run" / "mounts").iterdir()) == []


def test_ntfs_is_mounted_with_ntfs3_only_without_ntfs3g_and_then_is_never_complete(tmp_path: Path) -> None:
    """ntfs3 shows no named data streams: ntfs-3g comes first, and a partition ntfs3 mounts says
    what it did not read."""
    backend = FakeBackend("ntfs")
    mounter = Mounter(tmp_path / "run", backend, kernel_types={"ntfs3"}, fuse_programs={"ntfs-3g"})
    with mounter.mount(image(tmp_path)) as mounted:
        (part,) = mounted.partitions
        assert part.driver == "fuse" and backend.calls[0].startswith("fuse ntfs-3g ")
    backend = FakeBackend("ntfs")
    mounter = Mounter(tmp_path / "run", backend, kernel_types={"ntfs3"}, fuse_programs=set())
    with mounter.mount(image(tmp_path)) as mounted:
        (part,) = mounted.partitions
        assert part.mounted and part.driver == "kernel"
        (problem,) = mounted.problems()  # besides: its zeroed boot sector cannot say if it is dirty
        assert problem.startswith(f"partition 0: {NTFS3_UNREAD}; ")


def test_a_file_that_is_not_a_disk_image_says_so(tmp_path: Path) -> None:
    """``scan --image notes.txt``: no partition table and no filesystem on the whole of it. Said in
    those words (before: "partition 0: no filesystem recognised", of a partition 0 that is not
    there); still not complete, so never green."""
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"synthetic notes, not a disk image\n" * 100)
    backend = FakeBackend("")  # blkid finds nothing
    mounter = Mounter(tmp_path / "run", backend, kernel_types={"vfat"}, fuse_programs=set())
    with mounter.mount(notes) as mounted:
        assert mounted.table.scheme == "none"
        assert mounted.problems() == [NOT_AN_IMAGE]
        assert NOT_AN_IMAGE.startswith("no partition table or filesystem found (")
        assert not mounted.complete
        (part,) = mounted.partitions
        assert part.describe()["problem"] == NOT_AN_IMAGE
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    with mounter.mount(empty) as mounted:
        assert mounted.problems() == ["no partition table or filesystem found (empty: 0 bytes)"]
