"""Filesystems pulled without unmounting: what only the journal or log holds is found, replayed onto a
copy-on-write layer, and nothing is written to the evidence; where no replay is possible, the
partition is "journal needs recovery", never complete."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.devices.mounter import MountedDevice, Mounter
from agent.devices.overlay import XmountOverlay, xmount_available

from .conftest import ImageFactory, leftovers
from .images import PartitionSpec, evidence_loop, image_digest, make_filesystem, missing_tools
from .ntfs_state import set_dirty_flag, set_unclean_logfile, volume_flags_forced

pytestmark = [pytest.mark.root]

needs_xmount = pytest.mark.skipif(not xmount_available(), reason="needs xmount and /dev/fuse")


def pulled_spec(kind: str, **kw: object) -> PartitionSpec:
    """A filesystem with one file on disk and one written with fsync just before the stick was pulled."""
    return PartitionSpec(
        kind,
        {"DCIM/old.jpg": os.urandom(30_000)},
        journal_only={"DCIM/new.jpg": os.urandom(40_000)},
        **kw,  # type: ignore[arg-type]
    )


def left_over(runtime: Path, evidence: str) -> list[str]:
    """What the agent left: mounts and folders in its runtime folder, loop devices over this test's
    evidence (other tests may run beside this one and have loop devices of their own)."""
    return [
        x
        for x in leftovers(runtime)
        if not x.startswith("loop") or x.endswith(f" {evidence}") or str(runtime) in x
    ]


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def replayed_part(mounted: MountedDevice) -> tuple[Path, Path]:
    (part,) = mounted.partitions
    assert part.mountpoint is not None and part.replayed is not None and part.replayed.mountpoint
    return part.mountpoint, part.replayed.mountpoint


@needs_xmount
@pytest.mark.parametrize("kind", ["ext4", "xfs", "btrfs"])
def test_journal_is_replayed_onto_a_copy_on_write_layer(
    disk_image: ImageFactory, runtime: Path, kind: str
) -> None:
    spec = pulled_spec(kind)
    image = disk_image("dos", [spec])
    before = image_digest(image)
    with evidence_loop(image) as evidence:
        with Mounter(runtime, overlay=XmountOverlay()).mount(evidence.path) as mounted:
            (part,) = mounted.partitions
            assert part.recovery, part.describe()
            on_disk, replayed = replayed_part(mounted)
            replayed_files = files_under(replayed)
            assert replayed_files["DCIM/new.jpg"] == spec.journal_only["DCIM/new.jpg"]
            assert replayed_files["DCIM/old.jpg"] == spec.files["DCIM/old.jpg"]
            assert "DCIM/new.jpg" not in files_under(on_disk)  # the no-replay view misses it
            assert mounted.complete, mounted.problems()
            assert mounted.roots() == [on_disk, replayed]
            assert {"ro", "nosuid", "nodev", "noexec"} <= set(mounted.backend.mount_options(replayed) or [])
            with pytest.raises(OSError):
                (replayed / "new-file").write_bytes(b"x")
            described = part.describe()
            assert described["needs_recovery"] is True and described["replayed"]["layer"] == "xmount"
        assert mounted.cleanup_problems == []
        assert evidence.sectors_written() == 0
        assert left_over(runtime, evidence.path) == []
    assert image_digest(image) == before
    assert not (runtime / "overlays").exists() or list((runtime / "overlays").iterdir()) == []


@pytest.mark.parametrize("kind", ["ext4", "xfs", "btrfs"])
def test_without_a_copy_on_write_layer_the_partition_needs_recovery(
    disk_image: ImageFactory, runtime: Path, kind: str
) -> None:
    image = disk_image("dos", [pulled_spec(kind)])
    before = image_digest(image)
    with evidence_loop(image) as evidence:
        with Mounter(runtime, overlay=None).mount(evidence.path) as mounted:
            (part,) = mounted.partitions
            assert part.mounted and part.replayed is None
            assert not mounted.complete
            (problem,) = mounted.problems()
            assert problem.startswith("partition 1: journal needs recovery"), problem
            assert "no copy-on-write layer" in problem
        assert evidence.sectors_written() == 0
        assert left_over(runtime, evidence.path) == []
    assert image_digest(image) == before


@pytest.mark.parametrize("kind", ["ext4", "xfs", "btrfs"])
def test_a_clean_filesystem_is_mounted_once(disk_image: ImageFactory, runtime: Path, kind: str) -> None:
    image = disk_image("dos", [PartitionSpec(kind, {"a.jpg": os.urandom(5000)})])
    with evidence_loop(image) as evidence, Mounter(runtime, overlay=None).mount(evidence.path) as mounted:
        (part,) = mounted.partitions
        assert part.recovery == "" and part.replayed is None and mounted.complete
        assert part.describe()["needs_recovery"] is False
        assert evidence.sectors_written() == 0


def _btrfs_with_subvolumes(root: Path) -> None:
    """Like an openSUSE or Ubuntu install: files in subvolumes @ and @home, a snapshot holding a
    file since deleted from its subvolume, and @ set as the default subvolume."""

    def btrfs(*args: str | Path) -> None:
        subprocess.run(["btrfs", *map(str, args)], check=True, capture_output=True)

    btrfs("subvolume", "create", root / "@")
    btrfs("subvolume", "create", root / "@home")
    (root / "@" / "etc.txt").write_bytes(b"root")
    (root / "@home" / "alice.jpg").write_bytes(b"home" * 5000)
    (root / "@home" / "deleted.jpg").write_bytes(b"gone" * 5000)
    os.mkdir(root / ".snapshots")
    btrfs("subvolume", "snapshot", "-r", root / "@home", root / ".snapshots" / "1")
    (root / "@home" / "deleted.jpg").unlink()
    listing = subprocess.run(
        ["btrfs", "subvolume", "list", root], check=True, capture_output=True, text=True
    ).stdout
    default = next(line.split()[1] for line in listing.splitlines() if line.endswith(" path @"))
    btrfs("subvolume", "set-default", default, root)


def test_btrfs_is_mounted_at_its_top_level(disk_image: ImageFactory, runtime: Path) -> None:
    image = disk_image("dos", [PartitionSpec("btrfs", prepare=_btrfs_with_subvolumes)])
    with evidence_loop(image) as evidence, Mounter(runtime, overlay=None).mount(evidence.path) as mounted:
        (part,) = mounted.partitions
        assert part.mountpoint is not None and "subvolid=5" in part.options
        found = files_under(part.mountpoint)
        assert set(found) == {
            "@/etc.txt",
            "@home/alice.jpg",
            ".snapshots/1/alice.jpg",
            ".snapshots/1/deleted.jpg",
        }
        assert mounted.complete
    assert evidence.sectors_written() == 0


def test_iso9660_is_mounted_with_fuseiso(disk_image: ImageFactory, runtime: Path) -> None:
    files = {"DCIM/a.jpg": os.urandom(20_000), "b.txt": b"bee"}
    image = disk_image("dos", [PartitionSpec("iso9660", files)])
    mounter = Mounter(runtime, kernel_types=set(), overlay=None)
    if "fuseiso" not in mounter.fuse_programs:
        pytest.skip("needs fuseiso")
    with evidence_loop(image) as evidence, mounter.mount(evidence.path) as mounted:
        (part,) = mounted.partitions
        assert part.mounted, part.problem
        assert part.driver == "fuse" and part.probe.fs_type == "iso9660"
        assert part.mountpoint is not None and files_under(part.mountpoint) == files
    assert [x for x in leftovers(runtime) if not x.startswith("loop")] == []


@pytest.mark.parametrize("state", ["logfile", "dirty", "clean"])
def test_ntfs_left_unclean_by_windows(tmp_path: Path, runtime: Path, state: str) -> None:
    """ntfs-3g cannot replay the NTFS log: an unclean $LogFile or a dirty volume is "journal needs
    recovery" (what Windows kept only in its log is not checked), the on-disk view is still read."""
    if missing_tools(["ntfs"]) or shutil.which("ntfsinfo") is None:
        pytest.skip("needs ntfs-3g and its tools")
    files = {"Users/photo.jpg": os.urandom(20_000)}
    image = tmp_path / "fieldtriage-test-ntfs.img"
    make_filesystem(PartitionSpec("ntfs", files), image)
    if state == "logfile":
        set_unclean_logfile(image)
        copy = tmp_path / "oracle.img"
        shutil.copyfile(image, copy)  # ntfs-3g's own judgement, on a copy it may change
        mounted_rw = subprocess.run(["ntfs-3g", copy, tmp_path], capture_output=True, text=True, timeout=30)
        subprocess.run(["umount", tmp_path], capture_output=True)
        assert "unclean file system" in mounted_rw.stderr, mounted_rw.stderr
    elif state == "dirty":
        set_dirty_flag(image)
        assert volume_flags_forced(image) & 0x0001
    before = image_digest(image)
    with evidence_loop(image) as evidence, Mounter(runtime).mount(evidence.path) as mounted:
        (part,) = mounted.partitions
        assert part.mounted and part.mountpoint is not None
        assert files_under(part.mountpoint) == files
        if state == "clean":
            assert part.recovery == "" and mounted.complete
        else:
            expected = "$LogFile not clean" if state == "logfile" else "volume dirty flag"
            assert part.recovery and expected in part.recovery
            (problem,) = mounted.problems()
            assert "journal needs recovery" in problem and "no journal replay for ntfs" in problem
        assert evidence.sectors_written() == 0
    assert image_digest(image) == before
    assert [x for x in leftovers(runtime) if not x.startswith("loop")] == []
