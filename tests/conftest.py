"""Markers for tests against the real system: they skip with the reason when they cannot run.

- ``root``: needs root (loop devices, mounts, BLKROSET). CI runs as root.
- ``udev``: needs a running udevd; started here when missing and we are root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

UDEVD_PATHS = ("/lib/systemd/systemd-udevd", "/usr/lib/systemd/systemd-udevd")


def udevd_running() -> bool:
    if shutil.which("udevadm") is None:
        return False
    ping = subprocess.run(["udevadm", "control", "--ping", "--timeout=2"], capture_output=True)
    return ping.returncode == 0


def ensure_udevd() -> str:
    """'' when udevd runs (started if needed), else why it cannot."""
    if udevd_running():
        return ""
    if os.geteuid() != 0:
        return "needs a running udevd (not running, and only root can start it)"
    daemon = next((p for p in UDEVD_PATHS if os.path.exists(p)), None)
    if daemon is None:
        return "needs udevd (apt package udev is not installed)"
    subprocess.run([daemon, "--daemon"], capture_output=True, check=False)
    for _ in range(50):
        if udevd_running():
            return ""
        time.sleep(0.1)
    return "udevd did not start"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") and os.geteuid() != 0:
        pytest.skip("needs root: loop devices, mounts and BLKROSET")
    if item.get_closest_marker("udev"):
        reason = ensure_udevd()
        if reason:
            pytest.skip(reason)
