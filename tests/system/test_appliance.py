"""The kiosk as it runs in the field: systemd as PID 1, the hardened unit, real USB hotplug, the
guest kernel's own filesystem drivers, lights on GPIO lines, power cuts (``make system-test``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from agent.demo.images import PartitionSpec, make_disk_image

from .conftest import Lab
from .guest import Guest, Plugged

# steady lights per verdict: (red, amber, green)
VERDICT_LIGHTS = {"priority_match": (1, 0, 0), "no_match": (0, 0, 1), "could_not_check": (0, 1, 0)}
SCAN_TIMEOUT = 240.0


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
    return any(state == (0, 1, 0) for t, state in guest.bay_lights(bay) if t >= since) and any(
        state == (0, 0, 0) for t, state in guest.bay_lights(bay) if t >= since
    )


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
    stick, state = scan_verdict(kiosk, image)
    assert state == VERDICT_LIGHTS["priority_match"], kiosk.journal_tail()
    assert kiosk.writes(stick) == 0
    kiosk.unplug(stick)
