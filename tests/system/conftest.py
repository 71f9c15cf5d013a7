"""The system test: the amd64 kiosk image under QEMU, driven from the host (``make system-test``).

One kiosk for the whole session: the image is built (or reused) with a station made for the session,
copied, its data partition seeded with a filter and the provider's key, and booted. Sticks are disk
images made here with the real mkfs tools and plugged over QMP into the xhci root ports of the bays.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.demo.pictures import generated_picture
from filters.builder import FilterBuilder
from filters.container import write_filter
from filters.digests import digest_path
from filters.importers import DigestEntry
from filters.keys import generate_key_pair, load_private_key
from station.home import StationHome

from .guest import Guest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("FIELDTRIAGE_BUILD", REPO / "build"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = [tool for tool in ("qemu-system-x86_64", "mmdebstrap") if shutil.which(tool) is None]
    reason = "the system test builds and boots an image: needs root" if os.geteuid() != 0 else ""
    reason = reason or (f"needs {', '.join(missing)} (make system-test installs them)" if missing else "")
    for item in items:
        item.add_marker(pytest.mark.system)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def accelerator(image: Path) -> str:
    """KVM when it really runs a guest here (it may exist and never start one), else TCG."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    probe = subprocess.Popen(
        ["qemu-system-x86_64", "-M", "q35", "-accel", "kvm", "-m", "256", "-nodefaults", "-display", "none",
         "-kernel", str(image / "vmlinuz"), "-append", "console=ttyS0 panic=-1", "-serial", "stdio",
         "-no-reboot"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        out, _ = probe.communicate(timeout=8)
    except subprocess.TimeoutExpired:
        probe.kill()
        out, _ = probe.communicate()
    return "kvm" if b"Linux version" in out else "tcg"


@dataclass
class Lab:
    """The session's station, provider key, filter and the known pictures it holds: ``known`` in
    a priority set, ``flagged`` in a set of the other class (a match, not a priority match)."""

    folder: Path
    station: StationHome
    provider_key: Path
    provider_public: Path
    filter_path: Path
    known: dict[str, bytes]
    flagged: dict[str, bytes] = field(default_factory=dict)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    folder = tmp_path_factory.mktemp("lab")
    station = StationHome(folder / "station")
    station.init()
    key, public = generate_key_pair(folder / "provider")
    known = {f"known_{i}.jpg": generated_picture(random.Random(1000 + i), 320, 240) for i in range(3)}
    builder = FilterBuilder(name="system test")
    for name, data in known.items():
        (folder / name).write_bytes(data)
        for kind, digest in digest_path(folder / name, ["sample", "blake3"]).items():
            builder.add(DigestEntry(kind, digest, "known", "priority", from_content=True))
    flagged = {"flagged_0.jpg": generated_picture(random.Random(2000), 320, 240)}
    for name, data in flagged.items():
        (folder / name).write_bytes(data)
        for kind, digest in digest_path(folder / name, ["sample", "blake3"]).items():
            builder.add(DigestEntry(kind, digest, "flagged", "other", from_content=True))
    filter_path = folder / "system-test.ftf"
    write_filter(filter_path, builder.build_unsigned(), load_private_key(key))
    return Lab(folder, station, key, public, filter_path, known, flagged)


@pytest.fixture(scope="session")
def image(lab: Lab) -> Path:
    """The amd64 image (base stage cached under build/cache: only the assemble stage runs again)."""
    given = os.environ.get("FIELDTRIAGE_IMAGE")
    if given:
        return Path(given)
    out = BUILD / "system-test-image"
    subprocess.run(
        [sys.executable, REPO / "image-build" / "build.py", "--arch", "amd64", "--out", out,
         "--cache", BUILD / "cache", "--station", lab.station.folder],
        check=True,
    )  # fmt: skip
    return out


def seed_data_partition(disk: Path, lab: Lab) -> None:
    """The provider's key and the filter, as a sync stick would have left them on the kiosk."""
    layout = json.loads(
        subprocess.run(["sfdisk", "-J", disk], capture_output=True, text=True, check=True).stdout
    )
    data = layout["partitiontable"]["partitions"][-1]
    start, size = str(data["start"] * 512), str(data["size"] * 512)
    loop = subprocess.run(
        ["losetup", "-f", "--show", "-o", start, "--sizelimit", size, disk],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    mountpoint = disk.parent / "data-mount"
    mountpoint.mkdir(exist_ok=True)
    try:
        subprocess.run(["blockdev", "--setrw", loop], check=True)
        subprocess.run(["mount", loop, mountpoint], check=True)
        try:
            for sub in ("trust", "filters"):
                (mountpoint / sub).mkdir(mode=0o700, exist_ok=True)
            shutil.copy(lab.provider_public, mountpoint / "trust" / "provider.pub")
            shutil.copy(lab.filter_path, mountpoint / "filters" / lab.filter_path.name)
        finally:
            subprocess.run(["umount", mountpoint], check=True)
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)
        mountpoint.rmdir()


@pytest.fixture(scope="session")
def kiosk(image: Path, lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    work = tmp_path_factory.mktemp("kiosk")
    disk = work / "kiosk.img"
    subprocess.run(["cp", "--sparse=always", image / "fieldtriage-amd64.img", disk], check=True)
    seed_data_partition(disk, lab)
    guest = Guest(image, work, disk, accelerator(image))
    started = time.monotonic()
    try:
        guest.boot()
        print(f"\nkiosk booted to READY in {time.monotonic() - started:.1f} s ({guest.accel})")
        yield guest
    finally:
        guest.shutdown()
        shutil.copy(
            guest.serial_path, BUILD / "system-test-serial.log"
        ) if guest.serial_path.exists() else None
