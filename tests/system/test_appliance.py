"""The kiosk as it runs in the field: systemd as PID 1, the hardened unit, real USB hotplug, the
guest kernel's own filesystem drivers, lights on GPIO lines, power cuts (``make system-test``)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.demo.images import PartitionSpec, make_disk_image
from tests.agent.devices.images import fat_with_a_folder_loop, image_digest

from .conftest import Lab
from .guest import Guest, Plugged

# steady lights per verdict: (red, amber, green)
VERDICT_LIGHTS = {"priority_match": (1, 0, 0), "no_match": (0, 0, 1), "could_not_check": (0, 1, 0)}
SCAN_TIMEOUT = 240.0


@pytest.fixture(autouse=True)
def unplug_afterwards(kiosk: Guest) -> Iterator[None]:
    """Whatever a test leaves plugged in is pulled out, so that the next one finds its ports free."""
    yield
    for stick in list(kiosk.plugged.values()):
        kiosk.unplug(stick)


def uptime(guest: Guest) -> float:
    return float(guest.sh("cut -d' ' -f1 /proc/uptime").out)


def steady_after(guest: Guest, bay: str, since: float, hold: float = 2.5) -> tuple[int, int, int] | None:
    """The first light state of ``bay`` that began after ``since`` and lasted ``hold`` seconds."""
    history = guest.bay_lights(bay)
    now = uptime(guest)
    for (start, state), end in zip(history, [t for t, _ in history[1:]] + [now], strict=True):
        if start >= since and end - start >= hold and state != (0, 0, 0):
            return state
    return None


def blinked_amber_after(guest: Guest, bay: str, since: float) -> bool:
    """The scanning signal (amber) was shown after ``since``, before anything else steady."""
    return any(state[1] == 1 for t, state in guest.bay_lights(bay) if t >= since)


def scan_verdict(
    guest: Guest, image: Path, bay: str = "front", port: int = 1
) -> tuple[Plugged, tuple[int, int, int]]:
    since = uptime(guest)
    stick = guest.plug(image, port)
    state = guest.wait(lambda: steady_after(guest, bay, since), SCAN_TIMEOUT, f"a steady light in bay {bay}")
    return stick, state


def test_the_agent_is_ready_under_its_hardened_unit(kiosk: Guest) -> None:
    assert kiosk.sh("systemctl is-active fieldtriage-agent").out.strip() == "active"
    assert kiosk.sh("findmnt -n -o OPTIONS /").out.split(",")[0] == "ro"
    score = kiosk.sh("systemd-analyze security fieldtriage-agent.service --no-pager").out
    found = re.search(r"Overall exposure level for fieldtriage-agent.service: ([0-9.]+)", score)
    assert found and float(found.group(1)) <= 3.0, score[-400:]
    assert kiosk.sh("cat /run/fieldtriage-test/chip").out.strip() == "gpiochip0"


def test_a_known_device_lights_red_and_writes_nothing(kiosk: Guest, lab: Lab, tmp_path: Path) -> None:
    files = {
        "DCIM/Camera/IMG_0001.JPG": lab.known["known_0.jpg"],
        "DCIM/Camera/IMG_0002.JPG": os.urandom(40_000),
    }
    image = make_disk_image(tmp_path / "known.img", "dos", [PartitionSpec("vfat", files)])
    since = uptime(kiosk)
    stick, state = scan_verdict(kiosk, image)
    assert state == VERDICT_LIGHTS["priority_match"], kiosk.journal_tail()
    assert blinked_amber_after(kiosk, "front", since), kiosk.bay_lights("front")  # scanning, then red
    assert kiosk.writes(stick) == 0
    kiosk.unplug(stick)


@pytest.mark.parametrize("kind", ["vfat", "exfat", "ntfs", "iso9660", "f2fs", "ext4"])
def test_clean_sticks_of_every_filesystem_light_green(kiosk: Guest, tmp_path: Path, kind: str) -> None:
    """The guest kernel's own drivers (vfat, exfat, iso9660, f2fs), which the build VM lacks."""
    files = {f"DCIM/IMG_{i:04d}.JPG": os.urandom(20_000 + i) for i in range(5)}
    image = make_disk_image(tmp_path / f"{kind}.img", "dos", [PartitionSpec(kind, files)])
    before = image_digest(image)
    stick, state = scan_verdict(kiosk, image)
    assert state == VERDICT_LIGHTS["no_match"], (kind, kiosk.bay("front"), kiosk.journal_tail())
    assert kiosk.bay("front")["verdict"] == "no_match"
    assert kiosk.writes(stick) == 0
    kiosk.unplug(stick)
    assert image_digest(image) == before


def test_an_encrypted_stick_is_could_not_check(kiosk: Guest, tmp_path: Path) -> None:
    image = make_disk_image(tmp_path / "luks.img", "gpt", [PartitionSpec("luks")])
    stick, state = scan_verdict(kiosk, image)
    assert state == VERDICT_LIGHTS["could_not_check"], kiosk.bay("front")
    kiosk.unplug(stick)


def test_a_stick_pulled_without_unmounting_is_replayed(kiosk: Guest, lab: Lab, tmp_path: Path) -> None:
    """The known picture reached only the ext4 journal: found in the replayed view, inside the unit."""
    spec = PartitionSpec(
        "ext4", {"DCIM/old.jpg": os.urandom(9000)}, journal_only={"DCIM/new.jpg": lab.known["known_1.jpg"]}
    )
    image = make_disk_image(tmp_path / "pulled.img", "dos", [spec])
    before = image_digest(image)
    stick, state = scan_verdict(kiosk, image)
    assert state == VERDICT_LIGHTS["priority_match"], (kiosk.bay("front"), kiosk.journal_tail())
    assert kiosk.writes(stick) == 0
    kiosk.unplug(stick)
    assert image_digest(image) == before


def test_two_bays_at_once(kiosk: Guest, lab: Lab, tmp_path: Path) -> None:
    known = make_disk_image(
        tmp_path / "a.img", "dos", [PartitionSpec("vfat", {"a.jpg": lab.known["known_2.jpg"]})]
    )
    clean = make_disk_image(tmp_path / "b.img", "dos", [PartitionSpec("ext4", {"b.jpg": os.urandom(30_000)})])
    since = uptime(kiosk)
    front = kiosk.plug(known, 1)
    back = kiosk.plug(clean, 2)
    assert kiosk.wait(lambda: steady_after(kiosk, "front", since), SCAN_TIMEOUT, "front") == (1, 0, 0)
    assert kiosk.wait(lambda: steady_after(kiosk, "back", since), SCAN_TIMEOUT, "back") == (0, 0, 1)
    kiosk.unplug(front)
    kiosk.unplug(back)


def test_a_stick_pulled_mid_scan_is_never_green(kiosk: Guest, tmp_path: Path) -> None:
    files = {f"DCIM/{i // 100:03d}/{i:05d}.jpg": os.urandom(2_000) for i in range(8_000)}
    image = make_disk_image(tmp_path / "big.img", "dos", [PartitionSpec("ext4", files, size=256 << 20)])
    since = uptime(kiosk)
    stick = kiosk.plug(image, 1)
    kiosk.wait(lambda: kiosk.bay("front")["phase"] == "scanning", SCAN_TIMEOUT, "the scan to start")
    kiosk.unplug(stick)
    state = kiosk.wait(lambda: steady_after(kiosk, "front", since), SCAN_TIMEOUT, "a verdict")
    assert state == VERDICT_LIGHTS["could_not_check"]
    assert kiosk.bay("front")["phase"] == "removed early", kiosk.bay("front")
    history = kiosk.bay_lights("front")
    ends = [t for t, _ in history[1:]] + [uptime(kiosk)]
    green = [
        (start, end) for (start, state), end in zip(history, ends, strict=True) if state[2] and start >= since
    ]
    assert all(end - start < 0.5 for start, end in green), f"green lit steady: {green}"
    mounts = kiosk.in_agent_namespace("findmnt -rn -o TARGET").out
    assert "/run/fieldtriage/mounts/" not in mounts, mounts
    assert "/dev/sd" not in kiosk.sh("losetup -l -n -O BACK-FILE").out


def test_a_fat_folder_loop_ends_with_the_kernel_driver(kiosk: Guest, tmp_path: Path) -> None:
    """Folders cross-linked to their parent: through fusefat the walk never ends (the xfail in
    tests/agent/devices/test_hostile_filesystems.py); the image's kernel vfat gives one inode per
    directory entry, so the walk meets each folder again, skips it, and ends with a verdict."""
    image = tmp_path / "fat-loop.img"
    fat_with_a_folder_loop(image)
    stick, state = scan_verdict(kiosk, image)
    assert state in (VERDICT_LIGHTS["no_match"], VERDICT_LIGHTS["could_not_check"]), kiosk.bay("front")
    assert kiosk.writes(stick) == 0
