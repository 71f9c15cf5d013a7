"""The daemon with a phone: plugged in a bay, locked, re-enumerating when set to File transfer
(remove, then add on the same port while the old worker is still ending): scanned by itself."""

from __future__ import annotations

import random
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory

from agent.config import parse_config
from agent.daemon.cli import lights_for
from agent.daemon.main import Daemon
from agent.devices.mounter import Mounter
from agent.devices.source import FakeDeviceSource
from agent.phones.detect import phone_identity
from agent.phones.fake import FakePhone, FakePhoneBackend
from tests.agent.scan.conftest import FilterFactory, write_random

PROPERTIES = {"ID_VENDOR_ID": "18d1", "ID_MODEL_ID": "4ee1", "ID_VENDOR": "Google", "ID_MODEL": "Pixel_7",
              "ID_USB_INTERFACES": ":060101:", "BUSNUM": "001", "DEVNUM": "007"}  # fmt: skip
CHARGING = PROPERTIES | {"ID_USB_INTERFACES": ":ff4201:", "DEVNUM": "006"}


class ListJournal:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def close(self) -> None:
        pass


def wait(condition: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_phone_set_to_file_transfer_re_enumerates_and_is_scanned(tmp_path: Path) -> None:
    known = write_random(tmp_path / "known.jpg", 100_000, 11)
    factory = FilterFactory(tmp_path / "made")
    for name in ("filters", "trust", "run", "journal"):
        (tmp_path / name).mkdir()
    shutil.copy(factory.path([known]), tmp_path / "filters" / "lab.ftf")
    shutil.copy(factory.pub_path, tmp_path / "trust" / "lab.pub")
    config = parse_config(
        {
            "paths": {n: str(tmp_path / n) for n in ("filters", "trust", "journal")}
            | {"runtime": str(tmp_path / "run")},
            "lights": {"backend": "mock"},
            "bays": [{"name": "front", "red": 5, "amber": 6, "green": 13, "port": "*-usb-0:1:*"}],
        },
        "test.toml",
    )
    source = FakeDeviceSource()
    journal = ListJournal()
    phone = FakePhone(
        {
            "Internal shared storage": {
                "DCIM/a.jpg": random.Random(1).randbytes(9000),
                "DCIM/k.jpg": known.read_bytes(),
            }
        }
    )
    backend = FakePhoneBackend({"usb:001,007": phone})
    daemon = Daemon(
        config, source=source, mounter=Mounter(tmp_path / "run"), lights=lights_for(config, MockFactory()),
        journal=journal, ticker=False, phones=backend,
    )  # fmt: skip
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        bay = daemon.bays[0]
        port = "pci-0000:00:14.0-usb-0:1:1.0"
        charging = phone_identity(CHARGING, port, "/devices/pci/usb1/1-1")
        source.plug(charging)
        wait(lambda: bay.lights.signal.value == "phone_unlock")
        # File transfer chosen: the phone leaves the bus and comes back with MTP, at once
        source.unplug(charging.devpath)
        source.plug(phone_identity(PROPERTIES, port, "/devices/pci/usb1/1-1"))
        wait(lambda: bay.verdict == "priority_match")
        types = [(r["type"], r.get("state")) for r in journal.records if r["type"] != "filters"]
        assert types == [("phone_state", "unlock"), ("phone_state", "ready"), ("scan", None)]
        assert not [r for r in journal.records if r.get("reason") == "no free bay"]
    finally:
        daemon.request_stop()
        thread.join(10)
        source.close()


def test_a_phone_pulled_mid_scan_keeps_could_not_check_lit(tmp_path: Path) -> None:
    """The read fails the moment the phone goes, so its worker ends before udev's remove reaches the
    daemon: the amber must still be held as for any device pulled out early."""
    known = write_random(tmp_path / "known.jpg", 100_000, 11)
    factory = FilterFactory(tmp_path / "made")
    for name in ("filters", "trust", "run", "journal"):
        (tmp_path / name).mkdir()
    shutil.copy(factory.path([known]), tmp_path / "filters" / "lab.ftf")
    shutil.copy(factory.pub_path, tmp_path / "trust" / "lab.pub")
    config = parse_config(
        {
            "paths": {n: str(tmp_path / n) for n in ("filters", "trust", "journal")}
            | {"runtime": str(tmp_path / "run")},
            "lights": {"backend": "mock"},
            "bays": [{"name": "front", "red": 5, "amber": 6, "green": 13, "port": "*-usb-0:1:*"}],
        },
        "test.toml",
    )
    source = FakeDeviceSource()
    tree = {f"DCIM/f{i}.jpg": random.Random(i).randbytes(9000) for i in range(40)}
    phone = FakePhone({"Internal shared storage": tree}, gone_after_calls=20)
    daemon = Daemon(
        config, source=source, mounter=Mounter(tmp_path / "run"), lights=lights_for(config, MockFactory()),
        journal=ListJournal(), ticker=False, phones=FakePhoneBackend({"usb:001,007": phone}),
    )  # fmt: skip
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        bay = daemon.bays[0]
        identity = phone_identity(PROPERTIES, "pci-0000:00:14.0-usb-0:1:1.0", "/devices/pci/usb1/1-1")
        source.plug(identity)
        wait(lambda: bay.verdict == "incomplete" and not bay.busy)  # the worker ended first
        source.unplug(identity.devpath)  # then udev's remove
        wait(lambda: bay.phase == "removed early")
        time.sleep(0.5)
        assert bay.lights.signal.value == "could_not_check"
    finally:
        daemon.request_stop()
        thread.join(10)
        source.close()
