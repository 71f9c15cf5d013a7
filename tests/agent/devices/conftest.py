"""Fixtures for device tests: generated images, evidence loop devices, a runtime folder."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.devices.mounter import Mounter

from .images import PartitionSpec, make_disk_image, missing_tools


@pytest.fixture
def runtime(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    folder.mkdir()
    return folder


@pytest.fixture
def mounter(runtime: Path) -> Mounter:
    return Mounter(runtime)


ImageFactory = Callable[[str, list[PartitionSpec]], Path]


@pytest.fixture
def disk_image(tmp_path: Path) -> ImageFactory:
    def make(scheme: str, partitions: list[PartitionSpec]) -> Path:
        missing = missing_tools([p.kind for p in partitions])
        if missing:
            pytest.skip(f"needs {', '.join(missing)} to build the test image")
        return make_disk_image(
            tmp_path / f"fieldtriage-test-{len(list(tmp_path.iterdir()))}.img", scheme, partitions
        )

    return make


def leftovers(runtime: Path) -> list[str]:
    """Mounts under the runtime folder, the agent's own loop devices (backed by another loop
    device, or by a test image at an offset) and folders left behind; the tests' own evidence loops
    do not count."""
    found = []
    mounts = Path("/proc/self/mountinfo").read_text()
    found += [f"mount {line.split()[4]}" for line in mounts.splitlines() if str(runtime) in line.split()[4]]
    listing = subprocess.run(
        ["losetup", "-l", "-n", "-O", "NAME,OFFSET,BACK-FILE"], capture_output=True, text=True
    )
    for line in listing.stdout.splitlines():
        fields = line.split(None, 2)
        # backed by another loop device, by a test image at an offset, or by a file in the runtime
        # folder (a copy-on-write layer's top loop device, over xmount's image)
        backed = fields[2] if len(fields) == 3 else ""
        if backed.startswith(("/dev/loop", str(runtime))) or (backed and fields[1] != "0"):
            found.append(f"loop {line.strip()}")
    mount_root = runtime / "mounts"
    if mount_root.exists():
        found += [f"folder {p}" for p in mount_root.iterdir()]
    return found


@pytest.fixture
def clean_after(runtime: Path) -> Iterator[None]:
    yield
    assert [x for x in leftovers(runtime) if not x.startswith("loop")] == []


def random_files(count: int, seed: int = 0) -> dict[str, bytes]:
    return {f"DCIM/IMG_{i:04}.JPG": os.urandom(20_000 + i * 1000) for i in range(count)}
