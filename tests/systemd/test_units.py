"""The systemd unit verifies and is hardened to an exposure of 3.0 or lower; the files parse."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD / "fieldtriage-agent.service"

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")


def unit_with_real_binary(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's command, so verify can check it."""
    command = Path(sys.executable).with_name("fieldtriage")
    if not command.exists():
        pytest.skip("the fieldtriage command is not installed in this environment")
    text = UNIT.read_text().replace("/opt/fieldtriage/.venv/bin/fieldtriage", str(command))
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    return copy


@needs_analyze
def test_unit_verifies(tmp_path: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit_with_real_binary(tmp_path))], capture_output=True, text=True
    )
    problems = [line for line in done.stderr.splitlines() if UNIT.name in line]
    assert done.returncode == 0 and problems == [], done.stderr


@needs_analyze
def test_unit_exposure_is_at_most_three(tmp_path: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit_with_real_binary(tmp_path))],
        capture_output=True,
        text=True,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= 3.0


def test_unit_keeps_hotplug_working() -> None:
    text = UNIT.read_text()
    assert not re.search(r"^PrivateNetwork=", text, re.M), "PrivateNetwork cuts the service off from uevents"
    assert re.search(r"^RestrictAddressFamilies=.*AF_NETLINK", text, re.M)
    assert re.search(r"^Type=notify$", text, re.M) and re.search(r"^WatchdogSec=", text, re.M)


def test_udev_rule_sets_usb_disks_read_only_and_keeps_udisks_away() -> None:
    rules = (SYSTEMD / "60-fieldtriage-readonly.rules").read_text()
    assert 'RUN+="/sbin/blockdev --setro $devnode"' in rules
    assert 'ENV{UDISKS_IGNORE}="1"' in rules


@pytest.mark.root
@pytest.mark.udev
def test_udev_rule_loads_without_errors(tmp_path: Path) -> None:
    target = Path("/run/udev/rules.d/60-fieldtriage-readonly.rules")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(SYSTEMD / "60-fieldtriage-readonly.rules", target)
    try:
        done = subprocess.run(["udevadm", "control", "--reload"], capture_output=True, text=True)
        assert done.returncode == 0 and done.stderr == ""
        test = subprocess.run(["udevadm", "test", "/sys/class/block/loop0"], capture_output=True, text=True)
        assert "60-fieldtriage-readonly.rules" in test.stderr + test.stdout
        assert "Invalid" not in test.stderr
    finally:
        target.unlink()
        subprocess.run(["udevadm", "control", "--reload"], check=False)
