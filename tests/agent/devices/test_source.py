"""The udev device source against the real udevd, and its state logic against a fake."""

from __future__ import annotations

import errno
import select
import subprocess
import time
from pathlib import Path

import pytest

from agent.devices.identity import DeviceIdentity
from agent.devices.mounter import Mounter
from agent.devices.selection import DeviceSelector, parse_rule
from agent.devices.source import DeviceEvent, FakeDeviceSource, UdevDeviceSource, compare_states

from ..conftest import TEST_MATCH
from .conftest import ImageFactory, leftovers
from .images import PartitionSpec

TEST_SELECTOR = [parse_rule(TEST_MATCH)]


def identity(devpath: str, diskseq: str = "1", size: int = 1000) -> DeviceIdentity:
    return DeviceIdentity.from_properties(
        {"DEVPATH": devpath, "DEVNAME": "/dev/" + devpath.rsplit("/", 1)[-1], "DISKSEQ": diskseq}, size=size
    )


def test_state_comparison() -> None:
    reported: dict[str, DeviceIdentity] = {}
    a1 = identity("/d/sdb", "1")
    assert [e.kind for e in compare_states(reported, "/d/sdb", a1)] == ["plugged"]
    assert compare_states(reported, "/d/sdb", a1) == []
    swapped = compare_states(reported, "/d/sdb", identity("/d/sdb", "2"))
    assert [(e.kind, e.identity.diskseq) for e in swapped] == [("unplugged", "1"), ("plugged", "2")]
    gone = compare_states(reported, "/d/sdb", None)
    assert [(e.kind, e.old_state, e.new_state) for e in gone] == [("unplugged", "present", "absent")]
    assert compare_states(reported, "/d/sdb", None) == []


def test_fake_source_is_pollable() -> None:
    fake = FakeDeviceSource()
    try:
        assert select.select([fake], [], [], 0)[0] == []
        fake.plug(identity("/d/sdc"))
        assert select.select([fake], [], [], 0)[0] == [fake]
        assert [e.kind for e in fake.poll()] == ["plugged"]
        fake.unplug("/d/sdc")
        assert [e.kind for e in fake.poll()] == ["unplugged"]
    finally:
        fake.close()


def collect(source: UdevDeviceSource, seconds: float, until: int = 0) -> list[DeviceEvent]:
    events: list[DeviceEvent] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        wait = source.timeout()
        select.select(
            [source], [], [], min(wait if wait is not None else 0.2, max(0.0, deadline - time.monotonic()))
        )
        events.extend(source.poll())
        if until and len(events) >= until:
            break
    return events


def attach(image: Path) -> str:
    return subprocess.run(
        ["losetup", "-f", "--show", str(image)], capture_output=True, text=True, check=True
    ).stdout.strip()


def detach(loop: str) -> None:
    subprocess.run(["blockdev", "--setrw", loop], check=False)
    subprocess.run(["losetup", "-d", loop], check=True)


@pytest.mark.root
@pytest.mark.udev
def test_plug_unplug_and_devices_present_at_start(udev_test_rule: None, tmp_path: Path) -> None:
    first = tmp_path / "fieldtriage-test-a.img"
    second = tmp_path / "fieldtriage-test-b.img"
    for image in (first, second):
        with image.open("wb") as f:
            f.truncate(8 << 20)
    before_start = attach(first)
    subprocess.run(["udevadm", "settle"], check=False)
    try:
        with UdevDeviceSource(DeviceSelector(TEST_SELECTOR, set()), settle_seconds=0.1) as source:
            events = collect(source, 3, until=1)
            assert [(e.kind, e.identity.devnode) for e in events] == [("plugged", before_start)]
            assert events[0].identity.backing_file.endswith("fieldtriage-test-a.img")
            plugged = attach(second)
            events = collect(source, 5, until=1)
            assert [(e.kind, e.identity.devnode, e.identity.size) for e in events] == [
                ("plugged", plugged, 8 << 20)
            ]
            detach(plugged)
            events = collect(source, 5, until=1)
            assert [(e.kind, e.identity.devnode) for e in events] == [("unplugged", plugged)]
    finally:
        detach(before_start)


@pytest.mark.root
@pytest.mark.udev
def test_monitor_error_never_stops_hotplug(udev_test_rule: None, tmp_path: Path) -> None:
    image = tmp_path / "fieldtriage-test-c.img"
    with image.open("wb") as f:
        f.truncate(8 << 20)
    with UdevDeviceSource(DeviceSelector(TEST_SELECTOR, set()), settle_seconds=0.1) as source:
        assert collect(source, 0.5) == []
        broken = source.monitor

        def overflow(timeout: float | None = None) -> None:
            raise OSError(errno.ENOBUFS, "No buffer space available")

        broken.poll = overflow
        loop = attach(image)  # its event is lost with the broken monitor
        try:
            events = collect(source, 5, until=1)
            assert source.monitor_restarts == 1 and source.monitor is not broken
            assert [(e.kind, e.identity.devnode) for e in events] == [("plugged", loop)]
        finally:
            detach(loop)
        assert [e.kind for e in collect(source, 5, until=1)] == ["unplugged"]


@pytest.mark.root
@pytest.mark.udev
@pytest.mark.slow
def test_hundred_plug_cycles_leave_nothing_behind(
    udev_test_rule: None, disk_image: ImageFactory, runtime: Path
) -> None:
    image = disk_image("dos", [PartitionSpec("ext4", {"a.bin": b"a" * 4096})])
    mounter = Mounter(runtime)
    with UdevDeviceSource(DeviceSelector(TEST_SELECTOR, set()), settle_seconds=0.05) as source:
        for cycle in range(100):
            loop = attach(image)
            try:
                (plugged,) = collect(source, 5, until=1)
                assert plugged.kind == "plugged", cycle
                with mounter.mount(plugged.identity.devnode) as mounted:
                    assert mounted.complete and (mounted.partitions[0].mountpoint / "a.bin").exists()  # type: ignore[operator]
            finally:  # a failed cycle must not leave a read-only loop device for later tests
                detach(loop)
            (unplugged,) = collect(source, 5, until=1)
            assert unplugged.kind == "unplugged", cycle
    assert leftovers(runtime) == []
    assert list((runtime / "mounts").iterdir()) == []
