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
    "MIN_SIZE", "EvidenceLoop", "PartitionSpec", "PullableDevice", "evidence_loop", "image_digest",
    "make_disk_image", "make_filesystem", "missing_tools", "pullable_device",
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
