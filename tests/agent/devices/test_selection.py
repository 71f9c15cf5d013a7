"""Which disks are taken: rules on udev properties, and never the system's own disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.devices.selection import DeviceSelector, parse_rule, system_disk_numbers
from filters.errors import UsageError

USB_STICK = {"ID_BUS": "usb", "ID_MODEL": "Cruzer_Blade", "DEVNAME": "/dev/sdb"}


def test_rules_globs_and_negation() -> None:
    selector = DeviceSelector([parse_rule("ID_BUS=usb"), parse_rule("ID_MODEL!=Kiosk*")], system_disks=set())
    assert selector.refusal(USB_STICK, "8:16") == ""
    assert selector.refusal({**USB_STICK, "ID_BUS": "ata"}, "8:16") == "does not match ID_BUS=usb"
    assert (
        selector.refusal({**USB_STICK, "ID_MODEL": "Kiosk_Sync"}, "8:16") == "does not match ID_MODEL!=Kiosk*"
    )
    assert selector.refusal({"ID_BUS": "usb"}, "8:16") == "", "a missing property is empty text"


def test_the_system_disk_is_never_taken_whatever_the_rules() -> None:
    selector = DeviceSelector([parse_rule("DEVNAME=*")], system_disks={"179:0"})
    assert selector.refusal({"DEVNAME": "/dev/mmcblk0"}, "179:0") == "holds this system's own filesystems"


@pytest.mark.parametrize("text", ["ID_BUS", "=usb", "ID BUS=usb", ""])
def test_bad_rules_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="KEY=PATTERN"):
        parse_rule(text)


def test_system_disks_come_from_system_mount_points_only(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 179:2 / / rw,relatime - ext4 /dev/mmcblk0p2 rw\n"
        "23 22 179:1 / /boot/firmware rw - vfat /dev/mmcblk0p1 rw\n"
        "40 22 8:17 / /media/evidence ro - vfat /dev/sdb1 ro\n"
        "41 22 0:5 / /dev rw - devtmpfs udev rw\n"
    )
    swaps = tmp_path / "swaps"
    swaps.write_text("Filename Type Size Used Priority\n")
    numbers = system_disk_numbers(mountinfo, swaps)
    assert {"179:2", "179:1"} <= numbers
    assert "8:17" not in numbers, "a seized device someone else mounted is still evidence"
    assert "0:5" not in numbers


def test_this_machines_root_disk_is_excluded() -> None:
    root = Path("/").stat().st_dev
    if os.major(root) == 0:
        pytest.skip("the root filesystem is not on a block device here (overlay or tmpfs)")
    assert f"{os.major(root)}:{os.minor(root)}" in system_disk_numbers()
