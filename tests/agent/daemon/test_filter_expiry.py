"""A filter in use that expires soon (issue 14, item 9): the kiosk says so before it goes to fault on
scene. Idle bays show "ready, a filter expires soon" instead of "ready", and the status file gives
each filter its expiry (``expires``, ``expires_in_days``, ``expiring_soon``) and a warning line
(``filter_warnings``). A fake device source: no root, no udev."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from agent.daemon.status import read_status
from agent.devices.mounter import Mounter
from filters.builder import FilterBuilder
from filters.container import SECONDS_PER_DAY, write_filter
from filters.importers import DigestEntry
from filters.keys import generate_key_pair, load_private_key
from filters.model import iso_time
from tests.agent.daemon.fake_kiosk import kiosk_config, running_daemon, wait


def run_kiosk(tmp_path: Path, expires: int, **sections: Any) -> dict[str, Any]:
    """Start the daemon with one filter expiring at ``expires``; the idle signal and the status."""
    key, public = generate_key_pair(tmp_path / "lab")
    builder = FilterBuilder(name="lab", expires=expires)
    builder.add(DigestEntry("md5", os.urandom(16), "known", "priority"))
    write_filter(tmp_path / "lab.ftf", builder.build_unsigned(), load_private_key(key))
    config = kiosk_config(tmp_path / "kiosk", tmp_path / "lab.ftf", public, **sections)
    status_path = tmp_path / "kiosk" / "run" / "status.json"
    with running_daemon(config, Mounter(tmp_path / "kiosk" / "run")) as (daemon, _, _):
        wait(lambda: daemon.state == "running" and status_path.exists())
        wait(lambda: read_status(status_path)["state"] == "running")
        return {"signal": daemon.bays[0].lights.signal.value, "status": read_status(status_path)}


def test_a_filter_expiring_within_the_warning_days_is_shown_and_said(tmp_path: Path) -> None:
    expires = int(time.time()) + 3 * SECONDS_PER_DAY + 3600
    seen = run_kiosk(tmp_path, expires)
    assert seen["signal"] == "ready_filter_expiring"
    status = seen["status"]
    (entry,) = status["filters"]
    assert (entry["expires"], entry["expires_in_days"], entry["expiring_soon"]) == (
        iso_time(expires),
        3,
        True,
    )
    assert status["filter_warnings"] == [
        f"{tmp_path / 'kiosk' / 'filters' / 'lab.ftf'} (lab): expires in 3 days ({iso_time(expires)})"
    ]
    assert status["fault"] is None, "a warning, not a fault: the kiosk scans as before"


def test_a_filter_outside_the_warning_days_is_plain_ready(tmp_path: Path) -> None:
    expires = int(time.time()) + 3 * SECONDS_PER_DAY + 3600
    seen = run_kiosk(tmp_path, expires, filters={"expiry_warning_days": 3})
    assert seen["signal"] == "ready"
    (entry,) = seen["status"]["filters"]
    assert (entry["expires_in_days"], entry["expiring_soon"]) == (3, False)
    assert seen["status"]["filter_warnings"] == []


def test_quick_mode_with_no_sample_set_in_any_filter_is_a_fault(tmp_path: Path) -> None:
    """``scan.mode = "quick"`` consults only sample sets: with filters of whole-file digests alone
    (a VICS import) it could check nothing, so the kiosk is in fault and says why (it used to
    light "could not check" per device, with a traceback in the log, and refuse its sync sticks)."""
    seen = run_kiosk(tmp_path, int(time.time()) + 90 * SECONDS_PER_DAY, scan={"mode": "quick"})
    assert seen["signal"] == "fault"
    assert seen["status"]["fault"] == (
        "scan.mode = 'quick': quick mode needs a sample set, and no loaded filter has one; use \"auto\""
    )
