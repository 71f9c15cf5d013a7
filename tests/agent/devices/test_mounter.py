"""Read-only mounting against the real kernel: loop devices, kernel and FUSE drivers, zero writes."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from agent.devices.mounter import NOT_AN_IMAGE, MountedDevice, Mounter

from .conftest import ImageFactory, leftovers, random_files
from .images import PartitionSpec, evidence_loop, image_digest, make_filesystem, pullable_device

pytestmark = [pytest.mark.root]

EXPECTED_OPTIONS = {
    "vfat": {"ro", "nosuid", "nodev", "noexec"},
    "ntfs": {"ro", "nosuid", "nodev", "noexec"},
    "exfat": {"ro", "nosuid", "nodev", "noexec"},
    "ext4": {"ro", "nosuid", "nodev", "noexec", "noatime"},
    "xfs": {"ro", "nosuid", "nodev", "noexec", "noatime", "norecovery"},
}


def assert_sound(mounted: MountedDevice, expected: dict[int, tuple[str, dict[str, bytes]]]) -> None:
    """Every expected partition is mounted read-only with the right options and shows its files."""
    by_number = {p.partition.number: p for p in mounted.partitions}
    for number, (fs_type, files) in expected.items():
        part = by_number[number]
        assert part.mounted, f"partition {number}: {part.problem}"
        assert part.probe.fs_type == fs_type
        assert part.mountpoint is not None
        live = set(mounted.backend.mount_options(part.mountpoint) or [])
        assert EXPECTED_OPTIONS[fs_type] <= live, (fs_type, live)
        if fs_type == "ext4":
            assert "noload" in part.options
        for name, data in files.items():
            found = _find_case_insensitive(part.mountpoint, name)
            assert found.read_bytes() == data
        with pytest.raises(OSError):
            (part.mountpoint / "new-file").write_bytes(b"x")


def _find_case_insensitive(root: Path, name: str) -> Path:
    current = root
    for piece in name.split("/"):
        matches = [p for p in current.iterdir() if p.name.lower() == piece.lower()]
        assert matches, f"{piece} not in {current}"
        current = matches[0]
    return current


def test_mbr_disk_with_four_filesystems(disk_image: ImageFactory, mounter: Mounter, runtime: Path) -> None:
    specs = {
        1: PartitionSpec("vfat", random_files(3)),
        2: PartitionSpec("ntfs", {"Users/photo.jpg": os.urandom(70_000)}),
        3: PartitionSpec("ext4", random_files(4)),
        4: PartitionSpec("xfs", {"home/pic.png": os.urandom(50_000)}),
    }
    image = disk_image("dos", list(specs.values()))
    before = image_digest(image)
    with evidence_loop(image) as evidence:
        with mounter.mount(evidence.path) as mounted:
            assert mounted.table.scheme == "mbr"
            assert mounted.block_device
            assert mounted.problems() == []
            assert_sound(mounted, {n: (s.kind, s.files) for n, s in specs.items()})
            assert Path(f"/sys/block/{evidence.name}/ro").read_text().strip() == "1"
        assert evidence.sectors_written() == 0
        assert mounted.cleanup_problems == []
    assert image_digest(image) == before
    assert leftovers(runtime) == []


def test_gpt_disk_with_exfat_and_ext4(disk_image: ImageFactory, mounter: Mounter, runtime: Path) -> None:
    specs = {1: PartitionSpec("exfat", random_files(2)), 2: PartitionSpec("ext4", random_files(2)),
             3: PartitionSpec("vfat", {"a.txt": b"hello"})}  # fmt: skip
    image = disk_image("gpt", list(specs.values()))
    before = image_digest(image)
    with evidence_loop(image) as evidence, mounter.mount(evidence.path) as mounted:
        assert mounted.table.scheme == "gpt"
        assert_sound(mounted, {n: (s.kind, s.files) for n, s in specs.items()})
    assert evidence.sectors_written() == 0
    assert image_digest(image) == before
    assert leftovers(runtime) == []


@pytest.mark.parametrize("kind", ["ext4", "xfs"])
def test_log_needing_recovery_is_not_replayed(disk_image: ImageFactory, mounter: Mounter, kind: str) -> None:
    files = {"kept.bin": os.urandom(10_000)} if kind == "ext4" else {}
    image = disk_image("dos", [PartitionSpec(kind, files, dirty=True)])
    before = image_digest(image)
    with evidence_loop(image) as evidence, mounter.mount(evidence.path) as mounted:
        assert_sound(mounted, {1: (kind, files)})
        written = evidence.sectors_written()
    assert written == 0
    assert image_digest(image) == before


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (PartitionSpec("raw"), "no filesystem recognised"),
        (PartitionSpec("luks"), "encrypted volume (LUKS)"),
        (PartitionSpec("ext4", corrupt=True), "could not mount ext4 read-only"),
    ],
)
def test_what_cannot_be_mounted_is_recorded(
    disk_image: ImageFactory, mounter: Mounter, runtime: Path, spec: PartitionSpec, reason: str
) -> None:
    image = disk_image("dos", [PartitionSpec("vfat", {"ok.txt": b"fine"}), spec])
    before = image_digest(image)
    with evidence_loop(image) as evidence, mounter.mount(evidence.path) as mounted:
        assert [p.mounted for p in mounted.partitions] == [True, False]
        assert not mounted.complete
        (problem,) = mounted.problems()
        assert problem.startswith("partition 2: ") and reason in problem, problem
    assert evidence.sectors_written() == 0
    assert image_digest(image) == before
    assert leftovers(runtime) == []


def test_unformatted_disk_without_table(tmp_path: Path, mounter: Mounter, runtime: Path) -> None:
    image = tmp_path / "fieldtriage-test-blank.img"
    image.write_bytes(os.urandom(4 << 20))
    with evidence_loop(image) as evidence, mounter.mount(evidence.path) as mounted:
        assert mounted.table.scheme == "none"
        assert mounted.problems() == [NOT_AN_IMAGE]
        assert NOT_AN_IMAGE.startswith(
            "no partition table or filesystem found (not a disk or partition image"
        )
    assert evidence.sectors_written() == 0
    assert leftovers(runtime) == []


def test_image_file_is_mounted_through_the_same_path(disk_image: ImageFactory, mounter: Mounter) -> None:
    image = disk_image("gpt", [PartitionSpec("ext4", {"x.bin": b"x" * 5000})])
    before = image_digest(image)
    with mounter.mount(image) as mounted:
        assert not mounted.block_device
        assert_sound(mounted, {1: ("ext4", {"x.bin": b"x" * 5000})})
    assert image_digest(image) == before


def test_device_pulled_out_while_read(disk_image: ImageFactory, mounter: Mounter, runtime: Path) -> None:
    """Reads fail quickly once the device is gone; everything is cleaned up; the next device works."""
    big = {f"v{i}.bin": os.urandom(4 << 20) for i in range(6)}
    image = disk_image("dos", [PartitionSpec("ext4", big, size=40 << 20)])
    errors: list[BaseException] = []
    with pullable_device(image) as evidence:
        mounted = mounter.mount(evidence.path)
        part = mounted.mounted_partitions()[0]
        assert part.mountpoint is not None

        def read_everything() -> None:
            try:
                for name in sorted(big):
                    with (part.mountpoint / name).open("rb", buffering=0) as f:  # type: ignore[operator]
                        while f.read(1 << 16):
                            time.sleep(0.001)
            except OSError as err:
                errors.append(err)

        os.system("echo 3 > /proc/sys/vm/drop_caches")
        reader = threading.Thread(target=read_everything)
        reader.start()
        time.sleep(0.2)
        evidence.pull()
        pulled = time.monotonic()
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert time.monotonic() - pulled < 2.0
    assert errors, "reading a pulled device must fail, not return data"
    mounted.close()
    assert leftovers(runtime) == []
    image2 = disk_image("dos", [PartitionSpec("vfat", {"next.txt": b"next"})])
    with evidence_loop(image2) as evidence2, mounter.mount(evidence2.path) as mounted2:
        assert_sound(mounted2, {1: ("vfat", {"next.txt": b"next"})})


def test_two_devices_at_once(disk_image: ImageFactory, mounter: Mounter, runtime: Path) -> None:
    first = disk_image("dos", [PartitionSpec("ext4", {"one.bin": b"1" * 999})])
    second = disk_image("gpt", [PartitionSpec("vfat", {"two.bin": b"2" * 999})])
    with evidence_loop(first) as a, evidence_loop(second) as b:
        with mounter.mount(a.path) as mounted_a, mounter.mount(b.path) as mounted_b:
            assert_sound(mounted_a, {1: ("ext4", {"one.bin": b"1" * 999})})
            assert_sound(mounted_b, {1: ("vfat", {"two.bin": b"2" * 999})})
            assert mounted_a.folder != mounted_b.folder
        assert a.sectors_written() == b.sectors_written() == 0
    assert leftovers(runtime) == []


def test_mbr_disk_with_4096_byte_sectors(tmp_path: Path, mounter: Mounter, runtime: Path) -> None:
    """A 4Kn disk counts MBR sectors in 4096-byte units: the partition is found where it is."""
    files = {"DCIM/IMG_0001.JPG": os.urandom(30_000)}
    image = tmp_path / "fieldtriage-test-4kn.img"
    with image.open("wb") as f:
        f.truncate(64 << 20)
    done = subprocess.run(
        ["losetup", "--sector-size", "4096", "-f", "--show", image],
        capture_output=True,
        text=True,
        check=True,
    )
    disk = done.stdout.strip()
    try:
        subprocess.run(["blockdev", "--setrw", disk], check=True)
        subprocess.run(
            ["sfdisk", "-q", disk], input=b"label: dos\n2048,8192,83\n", check=True, capture_output=True
        )
        part = tmp_path / "part.img"
        make_filesystem(PartitionSpec("ext4", files, size=32 << 20), part)
        subprocess.run(
            ["dd", f"if={part}", f"of={disk}", "bs=1M", f"seek={2048 * 4096}", "oflag=seek_bytes",
             "conv=notrunc", "status=none"],
            check=True,
        )  # fmt: skip
        before = image_digest(image)
        with mounter.mount(disk) as mounted:
            assert mounted.table.sector_size == 4096 and mounted.problems() == []
            (mounted_part,) = mounted.partitions
            assert (mounted_part.partition.start, mounted_part.partition.size) == (2048 * 4096, 8192 * 4096)
            assert mounted_part.mountpoint is not None
            assert (mounted_part.mountpoint / "DCIM" / "IMG_0001.JPG").read_bytes() == files[
                "DCIM/IMG_0001.JPG"
            ]
        assert image_digest(image) == before
    finally:
        subprocess.run(["blockdev", "--setrw", disk], capture_output=True)
        subprocess.run(["losetup", "-d", disk], capture_output=True)
    assert [x for x in leftovers(runtime) if not x.startswith("loop")] == []
