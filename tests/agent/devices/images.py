"""Evidence loop devices that count writes, and devices a test can pull out.

Images come from ``agent.demo.images`` (shared with the demo).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import blake3

from agent.demo.images import MIN_SIZE, PartitionSpec, make_disk_image, make_filesystem, missing_tools, run

__all__ = [
    "MIN_SIZE", "EvidenceLoop", "PartitionSpec", "PullableDevice", "evidence_loop", "fat_with_a_folder_loop",
    "image_digest", "make_disk_image", "make_filesystem", "missing_tools", "pullable_device",
]  # fmt: skip


def image_digest(path: Path) -> str:
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    hasher.update_mmap(path)
    return hasher.hexdigest()


@dataclass
class EvidenceLoop:
    """A test image attached read-WRITE, as a real stick is: the agent alone must keep it unchanged."""

    path: str
    image: Path
    baseline: int = 0

    @property
    def name(self) -> str:
        return Path(self.path).name

    def _written_total(self) -> int:
        return int(Path(f"/sys/block/{self.name}/stat").read_text().split()[6])

    def sectors_written(self) -> int:
        """Field 7 of the block stat since attach (the counters survive a loop's reuse)."""
        return self._written_total() - self.baseline


@contextmanager
def evidence_loop(image: Path) -> Iterator[EvidenceLoop]:
    done = subprocess.run(
        ["losetup", "-f", "--show", os.fspath(image)], capture_output=True, text=True, check=True
    )
    loop = EvidenceLoop(done.stdout.strip(), image)
    # read-write as a real stick is, even if an earlier user of this loop left it marked read-only
    subprocess.run(["blockdev", "--setrw", loop.path], capture_output=True, check=True)
    loop.baseline = loop._written_total()
    try:
        yield loop
    finally:
        # BLKROSET outlives a loop's detach: undo it, or the next user of this loop gets a read-only disk
        subprocess.run(["blockdev", "--setrw", loop.path], capture_output=True, check=False)
        subprocess.run(["losetup", "-d", loop.path], capture_output=True, check=False)


@dataclass
class PullableDevice(EvidenceLoop):
    """Evidence that a test can pull out as a USB stick is pulled: every read fails from then on.

    The image lives on a scratch ext4 filesystem; pulling shuts that filesystem down (the
    EXT4_IOC_SHUTDOWN ioctl through ``xfs_io``), after which every read of the backing file, cached
    or not, returns EIO, as reads of a vanished USB device do.
    """

    container: Path = Path()

    def pull(self) -> None:
        run("xfs_io", "-x", "-c", "shutdown", self.container)


@contextmanager
def pullable_device(image: Path) -> Iterator[PullableDevice]:
    if shutil.which("xfs_io") is None:
        import pytest

        pytest.skip("needs xfs_io (xfsprogs) to pull a device out")
    container_image = image.with_name(f"pull-container-{os.getpid()}.img")  # must not look like evidence
    with container_image.open("wb") as f:
        f.truncate(image.stat().st_size + (64 << 20))
    run("mkfs.ext4", "-q", "-F", container_image)
    container = Path(tempfile.mkdtemp(prefix="fieldtriage-container-"))
    run("mount", "-o", "loop", container_image, container)
    try:
        inner = container / "fieldtriage-test-pullable.img"
        run("cp", "--sparse=always", image, inner)
        with evidence_loop(inner) as loop:
            yield PullableDevice(loop.path, inner, loop.baseline, container=container)
    finally:
        subprocess.run(["umount", "-l", container], capture_output=True, check=False)
        container.rmdir()
        container_image.unlink()


def fat_with_a_folder_loop(path: Path) -> None:
    """A/B1 and A/B2 both point at A's own cluster: every level doubles the tree (2**depth
    folders). A kernel driver gives B1 and A/B1/B1 one inode (its directory entry's position);
    fusefat numbers every path anew, so the walk never meets a folder twice."""
    with path.open("wb") as f:
        f.truncate(32 << 20)
    run("mkfs.vfat", "-F", "16", "-n", "EVIDENCE", path)
    for folder in ("::/A", "::/A/B1", "::/A/B2"):
        run("mmd", "-i", path, folder)
    data = bytearray(path.read_bytes())

    def u(offset: int, size: int) -> int:
        return int.from_bytes(data[offset : offset + size], "little")

    sector, per_cluster, reserved, fats = u(11, 2), data[13], u(14, 2), data[16]
    root = (reserved + fats * u(22, 2)) * sector
    first_data = root + u(17, 2) * 32
    a_entry = next(root + 32 * i for i in range(u(17, 2)) if data[root + 32 * i : root + 32 * i + 2] == b"A ")
    a_cluster = u(a_entry + 26, 2)
    a_folder = first_data + (a_cluster - 2) * per_cluster * sector
    for i in range(per_cluster * sector // 32):
        entry = a_folder + 32 * i
        if data[entry : entry + 2] in (b"B1", b"B2"):
            data[entry + 26 : entry + 28] = a_cluster.to_bytes(2, "little")
    path.write_bytes(bytes(data))
