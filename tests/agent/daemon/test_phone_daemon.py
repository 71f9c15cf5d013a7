"""The daemon with a phone: plugged in a bay, locked, re-enumerating when set to File transfer
(remove, then add on the same port while the old worker is still ending): scanned by itself."""

from __future__ import annotations

import random
import time
from pathlib import Path

from agent.config import AgentConfig
from agent.devices.mounter import Mounter
from agent.phones.detect import phone_identity
from agent.phones.fake import FakePhone, FakePhoneBackend
from tests.agent.daemon.fake_kiosk import kiosk_config, running_daemon, wait
from tests.agent.scan.conftest import FilterFactory, write_random

PROPERTIES = {"ID_VENDOR_ID": "18d1", "ID_MODEL_ID": "4ee1", "ID_VENDOR": "Google", "ID_MODEL": "Pixel_7",
              "ID_USB_INTERFACES": ":060101:", "BUSNUM": "001", "DEVNUM": "007"}  # fmt: skip
CHARGING = PROPERTIES | {"ID_USB_INTERFACES": ":ff4201:", "DEVNUM": "006"}


def phone_kiosk(tmp_path: Path) -> tuple[AgentConfig, bytes]:
    """A kiosk whose filter knows one generated picture (returned), its bay on USB port 1."""
    known = write_random(tmp_path / "known.jpg", 100_000, 11)
    factory = FilterFactory(tmp_path / "made")
    config = kiosk_config(tmp_path, factory.path([known]), factory.pub_path, bay_port="*-usb-0:1:*")
    return config, known.read_bytes()


def test_a_phone_set_to_file_transfer_re_enumerates_and_is_scanned(tmp_path: Path) -> None:
    config, known = phone_kiosk(tmp_path)
    storage = {"DCIM/a.jpg": random.Random(1).randbytes(9000), "DCIM/k.jpg": known}
    backend = FakePhoneBackend({"usb:001,007": FakePhone({"Internal shared storage": storage})})
    with running_daemon(config, Mounter(tmp_path / "run"), phones=backend) as (daemon, source, journal):
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


def test_a_phone_pulled_mid_scan_keeps_could_not_check_lit(tmp_path: Path) -> None:
    """The read fails the moment the phone goes, so its worker ends before udev's remove reaches the
    daemon: the amber must still be held as for any device pulled out early."""
    config, _ = phone_kiosk(tmp_path)
    tree = {f"DCIM/f{i}.jpg": random.Random(i).randbytes(9000) for i in range(40)}
    phone = FakePhone({"Internal shared storage": tree}, gone_after_calls=20)
    backend = FakePhoneBackend({"usb:001,007": phone})
    with running_daemon(config, Mounter(tmp_path / "run"), phones=backend) as (daemon, source, _):
        bay = daemon.bays[0]
        identity = phone_identity(PROPERTIES, "pci-0000:00:14.0-usb-0:1:1.0", "/devices/pci/usb1/1-1")
        source.plug(identity)
        wait(lambda: bay.verdict == "incomplete" and not bay.busy)  # the worker ended first
        source.unplug(identity.devpath)  # then udev's remove
        wait(lambda: bay.phase == "removed early")
        time.sleep(0.5)
        assert bay.lights.signal.value == "could_not_check"
