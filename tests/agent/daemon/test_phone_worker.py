"""A phone in a bay: its states (unlock, trust), the scan starting by itself once it is unlocked,
the verdict lit after its record, and each state journaled with the phone's identity."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.config import BayConfig, ScanConfig
from agent.daemon.bay import Bay
from agent.daemon.phone import PhoneWorker
from agent.lights.bay import BayLights, RecordingLights
from agent.phones.detect import phone_identity
from agent.phones.fake import FakePhone, FakePhoneBackend
from filters.model import ContrabandFilter
from tests.agent.scan.conftest import FilterFactory, write_random

ANDROID = {"ID_VENDOR_ID": "18d1", "ID_MODEL_ID": "4ee1", "ID_VENDOR": "Google", "ID_MODEL": "Pixel_7",
           "ID_SERIAL_SHORT": "P7SERIAL", "ID_USB_INTERFACES": ":060101:", "BUSNUM": "001", "DEVNUM": "007",
           "DEVNAME": "/dev/bus/usb/001/007"}  # fmt: skip
IPHONE = ANDROID | {
    "ID_VENDOR_ID": "05ac",
    "ID_MODEL_ID": "12a8",
    "ID_VENDOR": "Apple_Inc.",
    "ID_MODEL": "iPhone",
}
CHARGING = ANDROID | {"ID_USB_INTERFACES": ":ff4201:"}
PORT = "usb:001,007"


class ListJournal:
    def __init__(self, lights: BayLights) -> None:
        self.lights = lights
        self.records: list[dict[str, Any]] = []
        self.signals_at_append: list[str] = []

    def append(self, record: dict[str, Any]) -> None:
        self.signals_at_append.append(self.lights.signal.value)
        self.records.append(record)

    def close(self) -> None:
        pass


@pytest.fixture
def known(tmp_path: Path) -> bytes:
    return write_random(tmp_path / "known.jpg", 200_000, 7).read_bytes()


@pytest.fixture
def known_filter(tmp_path: Path, known: bytes) -> ContrabandFilter:
    return FilterFactory(tmp_path / "filters").make([tmp_path / "known.jpg"])


def start(
    phone: FakePhone, properties: dict[str, str], filters: list[ContrabandFilter]
) -> tuple[PhoneWorker, Bay, ListJournal]:
    lights = BayLights("front", RecordingLights())
    bay = Bay(BayConfig("front", red=17, amber=27, green=22), lights)
    journal = ListJournal(lights)
    identity = phone_identity(properties, "pci-0000:00:14.0-usb-0:1:1.0", "/devices/pci/usb1/1-1")
    worker = PhoneWorker(
        bay, identity, FakePhoneBackend({PORT: phone}), filters, ScanConfig(), journal, poll_seconds=0.05
    )
    bay.worker = worker
    worker.start()
    return worker, bay, journal


def wait(condition: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def tree(known: bytes | None = None) -> dict[str, bytes]:
    files = {f"DCIM/Camera/IMG_{i}.jpg": random.Random(i).randbytes(30_000) for i in range(10)}
    return files | ({"WhatsApp/Media/WhatsApp Images/IMG-1.jpg": known} if known else {})


def test_a_known_photo_on_a_phone_lights_red_after_its_record(
    known_filter: ContrabandFilter, known: bytes
) -> None:
    worker, bay, journal = start(FakePhone({"Internal shared storage": tree(known)}), ANDROID, [known_filter])
    worker.join(10)
    assert bay.verdict == "priority_match" and bay.lights.signal.value == "priority_match"
    scan = journal.records[-1]
    assert scan["type"] == "scan" and scan["device"]["kind"] == "phone"
    assert (
        scan["device"]["serial"] == "P7SERIAL"
        and scan["storages"][0]["description"] == "Internal shared storage"
    )
    assert (
        scan["scan"]["hits"][0]["path"] == "Internal shared storage/WhatsApp/Media/WhatsApp Images/IMG-1.jpg"
    )
    assert journal.signals_at_append[-1] != "priority_match"  # lit only once journaled
    assert [r["state"] for r in journal.records if r["type"] == "phone_state"] == ["ready"]


def test_a_locked_android_asks_to_unlock_then_scans_by_itself(known_filter: ContrabandFilter) -> None:
    phone = FakePhone({"Internal shared storage": tree()}, locked=True)
    worker, bay, journal = start(phone, ANDROID, [known_filter])
    wait(lambda: bay.lights.signal.value == "phone_unlock")
    assert bay.problem == "unlock the phone and choose File transfer" and bay.verdict is None
    time.sleep(0.3)
    phone.locked = False  # the officer unlocks it: the storage shows in the same session
    worker.join(10)
    assert bay.verdict == "no_match"
    states = [r["state"] for r in journal.records if r["type"] == "phone_state"]
    assert states == ["unlock", "ready"]  # each state once, however often it was looked at
    assert journal.records[0]["device"]["model"] == "Pixel 7"


def test_an_untrusted_iphone_asks_for_trust_and_unplugged_shows_no_verdict(
    known_filter: ContrabandFilter,
) -> None:
    phone = FakePhone({"x": {}}, untrusted=True)
    worker, bay, journal = start(phone, IPHONE, [known_filter])
    wait(lambda: bay.lights.signal.value == "phone_trust")
    assert bay.problem == "unlock the iPhone and tap Trust"
    worker.unplugged = True
    worker.cancel.set()
    worker.join(5)
    assert not worker.is_alive() and bay.verdict is None
    assert [r["type"] for r in journal.records] == ["phone_state"]
    assert journal.records[0]["device"]["phone_kind"] == "apple"


def test_charging_only_asks_for_file_transfer_without_opening(known_filter: ContrabandFilter) -> None:
    backend_phone = FakePhone({"Internal shared storage": tree()})
    worker, bay, _journal = start(backend_phone, CHARGING, [known_filter])
    wait(lambda: bay.lights.signal.value == "phone_unlock")
    worker.cancel.set()
    worker.join(5)
    assert backend_phone.calls == 0


def test_unplugged_mid_scan_is_never_green(known_filter: ContrabandFilter) -> None:
    phone = FakePhone(
        {"Internal shared storage": tree() | {f"Download/f{i}": b"y" * 20_000 for i in range(50)}}
    )
    phone.gone_after_calls = 25
    worker, bay, _journal = start(phone, ANDROID, [known_filter])
    worker.join(10)
    assert bay.verdict == "incomplete" and bay.lights.signal.value == "could_not_check"


def test_a_refused_phone_shows_the_fault(known_filter: ContrabandFilter) -> None:
    lights = BayLights("front", RecordingLights())
    bay = Bay(BayConfig("front", red=17, amber=27, green=22), lights)
    journal = ListJournal(lights)
    identity = phone_identity(ANDROID, "p", "/devices/x/1-1")
    worker = PhoneWorker(
        bay, identity, FakePhoneBackend(), [known_filter], ScanConfig(), journal, refusal="no valid filter"
    )
    worker.run()
    assert lights.signal.value == "fault" and journal.records[0]["type"] == "not_scanned"
    assert threading.active_count() >= 1
