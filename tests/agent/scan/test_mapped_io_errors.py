"""A medium that fails under a reader process's mapping: SIGBUS ends the process, the scanning thread
reads its batches again with ``read``, and the failure becomes named EIO errors (real loop device)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from agent.demo.images import PartitionSpec, make_filesystem, missing_tools
from agent.scan.reader_processes import ReaderPool

from ..devices.images import pullable_device
from .conftest import FilterFactory, scan, warm, write_random

pytestmark = [pytest.mark.root]


def test_an_io_error_in_a_mapped_file_ends_the_process_and_is_reported(
    tmp_path: Path, filters: FilterFactory, reader_pools: list[ReaderPool]
) -> None:
    if missing_tools(["ext4"]):
        pytest.skip("needs mkfs.ext4")
    files = {f"DCIM/Camera/IMG_{i:03d}.jpg": os.urandom((2 << 20) + i) for i in range(12)}
    image = tmp_path / "fieldtriage-test-mapped.img"
    make_filesystem(PartitionSpec("ext4", files, size=64 << 20), image)
    outside = write_random(tmp_path / "outside" / "known", 5000, 1)
    contraband = filters.make([outside], ("md5",))
    mount = Path(tempfile.mkdtemp(prefix="fieldtriage-mapped-"))
    with pullable_device(image) as device:
        subprocess.run(["mount", "-o", "ro,noload", device.path, mount], check=True)
        try:
            for folder, _, names in os.walk(mount):  # metadata cached; file contents never read
                for name in names:
                    os.stat(os.path.join(folder, name))
            warm(1)  # a process ready at once: the batch goes to it, not to the scanning thread
            device.pull()  # from now on every read of the medium fails
            report = scan(contraband, mount, 2)
        finally:
            subprocess.run(["umount", "-l", mount], check=False)
            mount.rmdir()
    assert report.verdict == "incomplete" and not report.complete
    assert {p.code for p in report.errors} == {"EIO"}, report.errors
    assert len(report.errors) == len(files)
    assert report.counts.files_read == 0
    pool = reader_pools[-1]
    assert pool.deaths and all(code == -7 for code in pool.deaths), pool.deaths  # SIGBUS
