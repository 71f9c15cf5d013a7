"""The exhibit link in the daemon, every piece of hardware a fake: a scanned label becomes the
pending reference, idle bays acknowledge it, the next device plugged into a bay takes it (scan,
not_scanned and phone_state records, the status file), a reference no device takes is dropped and
journaled, a new label replaces the pending one, a phone that re-enumerates keeps its own."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from agent.config import parse_config
from agent.daemon import bay as bay_module
from agent.daemon.cli import lights_for
from agent.daemon.main import EXHIBIT_ACK_SECONDS, Daemon
from agent.device_scan import DeviceScanResult
from agent.devices.identity import DeviceIdentity
from agent.devices.source import FakeDeviceSource
from agent.exhibit.reader import FakeLabelSource
from agent.lights.signals import Signal, levels_at
from agent.phones.detect import phone_identity
from agent.phones.fake import FakePhone, FakePhoneBackend
from filters.errors import ConfigError
from tests.agent.daemon import fake_kiosk
from tests.agent.scan.conftest import FilterFactory, write_random

FRONT, BACK = "pci-0000:00:14.0-usb-0:1:1.0", "pci-0000:00:14.0-usb-0:2:1.0"
PHONE = {"ID_VENDOR_ID": "18d1", "ID_MODEL_ID": "4ee1", "ID_VENDOR": "Google", "ID_MODEL": "Pixel_7",
         "ID_SERIAL_SHORT": "FT0PIXEL7", "ID_USB_INTERFACES": ":060101:", "BUSNUM": "001",
         "DEVNUM": "007"}  # fmt: skip
CHARGING = PHONE | {"ID_USB_INTERFACES": ":ff4201:", "DEVNUM": "006"}


def stick(number: int, port: str = FRONT) -> DeviceIdentity:
    return DeviceIdentity(
        f"/dev/sd{'xyz'[number]}", f"/devices/test/sd{number}", f"sd{number}", 1 << 30,
        vendor="Test", model="Stick", serial=f"FT{number:04d}", port_path=port, diskseq=str(number + 1),
    )  # fmt: skip


class ListJournal(fake_kiosk.ListJournal):
    def of(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["type"] == kind]


class FakeMounter:
    def mount(self, source: str) -> Any:
        return self

    def close(self) -> None:
        pass


@dataclass
class Kiosk:
    daemon: Daemon
    source: FakeDeviceSource
    labels: FakeLabelSource
    journal: ListJournal
    thread: threading.Thread
    release: threading.Event  # a disk's scan ends when it is set

    def bay(self, name: str = "front") -> Any:
        return next(b for b in self.daemon.bays if b.name == name)

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = json.loads((self.daemon.status_path).read_text())
        return status


def wait(condition: Callable[[], Any], seconds: float = 10) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "timed out"
        time.sleep(0.005)
    return time.monotonic() - started


@pytest.fixture
def kiosk_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Kiosk]]:
    started: list[Kiosk] = []
    release = threading.Event()
    release.set()

    def scan_mounted(mounted: Any, scanner: Any, *, identity: Any, on_event: Any) -> DeviceScanResult:
        release.wait(20)
        return DeviceScanResult(identity.devnode, "no_match", identity)

    monkeypatch.setattr(bay_module, "Scanner", lambda *args, **kwargs: object())
    monkeypatch.setattr(bay_module, "scan_mounted", scan_mounted)

    def make(
        *, with_filter: bool = True, timeout: float = 300.0, phones: FakePhoneBackend | None = None
    ) -> Kiosk:
        for name in ("filters", "trust", "run", "journal"):
            (tmp_path / name).mkdir(exist_ok=True)
        if with_filter:
            factory = FilterFactory(tmp_path / "made")
            shutil.copy(factory.path([write_random(tmp_path / "known.jpg", 50_000, 3)]), tmp_path / "filters")
            shutil.copy(factory.pub_path, tmp_path / "trust" / "lab.pub")
        config = parse_config(
            {
                "paths": {n: str(tmp_path / n) for n in ("filters", "trust", "journal")}
                | {"runtime": str(tmp_path / "run")},
                "lights": {"backend": "mock"},
                "exhibit": {"scanner": ["ID_VENDOR_ID=05e0"], "timeout_seconds": timeout},
                "bays": [
                    {"name": "front", "red": 5, "amber": 6, "green": 13, "port": "*-usb-0:1:*"},
                    {"name": "back", "red": 17, "amber": 27, "green": 22, "port": "*-usb-0:2:*"},
                ],
            },
            "test.toml",
        )
        source, labels, journal = FakeDeviceSource(), FakeLabelSource(), ListJournal()
        daemon = Daemon(
            config, source=source, mounter=FakeMounter(), lights=lights_for(config, MockFactory()),  # type: ignore[arg-type]
            journal=journal, ticker=False, phones=phones, labels=labels,
        )  # fmt: skip
        thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
        thread.start()
        kiosk = Kiosk(daemon, source, labels, journal, thread, release)
        started.append(kiosk)
        wait(lambda: daemon.state == "running" and kiosk.bay().lights.signal.value in ("ready", "fault"))
        return kiosk

    yield make
    release.set()
    for kiosk in started:
        kiosk.daemon.request_stop()
        kiosk.thread.join(10)
        kiosk.source.close()


def test_a_scanned_label_goes_into_the_next_devices_records(kiosk_factory: Callable[..., Kiosk]) -> None:
    kiosk = kiosk_factory()
    kiosk.labels.scan("EXH-2024-0001")
    wait(lambda: kiosk.daemon.exhibits.pending is not None)
    kiosk.source.plug(stick(0))
    wait(lambda: kiosk.bay().verdict == "no_match")
    (scan,) = kiosk.journal.of("scan")
    assert scan["exhibit"] == "EXH-2024-0001" and scan["bay"] == "front"
    assert kiosk.daemon.exhibits.pending is None
    wait(lambda: kiosk.status()["bays"][0]["exhibit"] == "EXH-2024-0001")
    assert kiosk.status()["exhibit"] == {"pending": None, "scanners": ["fake scanner"]}
    kiosk.source.plug(stick(1, BACK))  # the next device has none: a label is taken once
    wait(lambda: kiosk.bay("back").verdict == "no_match")
    assert "exhibit" not in kiosk.journal.of("scan")[1]
    assert kiosk.journal.of("exhibit_dropped") == []
    kiosk.source.unplug(stick(0).devpath)  # the bay free again: its status shows no exhibit
    wait(lambda: kiosk.status()["bays"][0]["phase"] == "ready")
    assert kiosk.status()["bays"][0]["exhibit"] is None


def test_idle_bays_acknowledge_a_label_and_a_busy_one_does_not(kiosk_factory: Callable[..., Kiosk]) -> None:
    kiosk = kiosk_factory()
    kiosk.release.clear()  # the front bay's scan goes on until released
    kiosk.source.plug(stick(0))
    wait(lambda: kiosk.bay().lights.signal.value == "scanning")
    back = kiosk.bay("back")
    shown_before = len(back.lights.shown)
    scanned = time.monotonic()
    kiosk.labels.scan("EXH-7")
    latency = wait(lambda: back.lights.signal.value == "exhibit_scanned", 2)
    print(f"\nlabel -> ack signal: {latency * 1000:.1f} ms")
    assert latency < 0.2 and kiosk.bay().lights.signal.value == "scanning"
    wait(lambda: back.lights.signal.value == "ready", 3)
    shown = time.monotonic() - scanned
    assert EXHIBIT_ACK_SECONDS <= shown < EXHIBIT_ACK_SECONDS + 0.5, shown
    assert back.lights.shown[shown_before:] == ["exhibit_scanned", "ready"]
    assert kiosk.status()["exhibit"]["pending"]["exhibit"] == "EXH-7"
    kiosk.release.set()
    wait(lambda: kiosk.bay().verdict == "no_match")
    assert "exhibit" not in kiosk.journal.of("scan")[0]  # plugged before the label was scanned


def test_a_label_no_device_takes_is_dropped_and_journaled(kiosk_factory: Callable[..., Kiosk]) -> None:
    kiosk = kiosk_factory(timeout=1.0)
    kiosk.labels.scan("EXH-LATE")
    waited = wait(lambda: kiosk.journal.of("exhibit_dropped"), 5)
    (dropped,) = kiosk.journal.of("exhibit_dropped")
    assert dropped["exhibit"] == "EXH-LATE" and dropped["reason"] == "no device within 1 s"
    assert dropped["scanned"] < dropped["dropped"]
    assert 0.9 <= waited < 3.0  # the loop wakes for it (REFRESH_SECONDS at most)
    kiosk.source.plug(stick(0))
    wait(lambda: kiosk.bay().verdict == "no_match")
    assert "exhibit" not in kiosk.journal.of("scan")[0]


def test_a_new_label_replaces_the_pending_one(kiosk_factory: Callable[..., Kiosk]) -> None:
    kiosk = kiosk_factory()
    kiosk.labels.scan("EXH-A")
    wait(lambda: kiosk.daemon.exhibits.pending is not None)
    kiosk.labels.scan("EXH-B")
    wait(lambda: kiosk.journal.of("exhibit_dropped"))
    (dropped,) = kiosk.journal.of("exhibit_dropped")
    assert (dropped["exhibit"], dropped["reason"]) == ("EXH-A", "replaced by a new label")
    kiosk.source.plug(stick(0))
    wait(lambda: kiosk.bay().verdict == "no_match")
    assert kiosk.journal.of("scan")[0]["exhibit"] == "EXH-B"


def test_a_phone_that_re_enumerates_keeps_its_exhibit(
    kiosk_factory: Callable[..., Kiosk], tmp_path: Path
) -> None:
    phone = FakePhone({"Internal shared storage": {"DCIM/a.jpg": b"x" * 9000}})
    kiosk = kiosk_factory(phones=FakePhoneBackend({"usb:001,007": phone}))
    kiosk.labels.scan("EXH-PHONE")
    wait(lambda: kiosk.daemon.exhibits.pending is not None)
    charging = phone_identity(CHARGING, FRONT, "/devices/pci/usb1/1-1")
    kiosk.source.plug(charging)
    wait(lambda: kiosk.bay().lights.signal.value == "phone_unlock")
    wait(lambda: kiosk.status()["bays"][0]["exhibit"] == "EXH-PHONE")
    kiosk.source.unplug(charging.devpath)  # File transfer chosen: it leaves the bus and comes back
    kiosk.source.plug(phone_identity(PHONE, FRONT, "/devices/pci/usb1/1-1"))
    wait(lambda: kiosk.bay().verdict == "no_match")
    records = [r for r in kiosk.journal.records if r["type"] in ("phone_state", "scan")]
    assert [(r["type"], r.get("state"), r.get("exhibit")) for r in records] == [
        ("phone_state", "unlock", "EXH-PHONE"),
        ("phone_state", "ready", "EXH-PHONE"),
        ("scan", None, "EXH-PHONE"),
    ]


def test_another_phone_in_the_bay_does_not_take_a_pulled_phones_exhibit(
    kiosk_factory: Callable[..., Kiosk],
) -> None:
    kiosk = kiosk_factory(phones=FakePhoneBackend({}))
    kiosk.labels.scan("EXH-LOCKED")
    wait(lambda: kiosk.daemon.exhibits.pending is not None)
    locked = phone_identity(CHARGING, FRONT, "/devices/pci/usb1/1-1")
    kiosk.source.plug(locked)
    wait(lambda: kiosk.bay().lights.signal.value == "phone_unlock")
    kiosk.source.unplug(locked.devpath)
    other = phone_identity(
        CHARGING | {"ID_SERIAL_SHORT": "OTHER", "DEVNUM": "009"}, FRONT, "/devices/pci/usb1/1-1"
    )
    kiosk.source.plug(other)
    wait(lambda: len(kiosk.journal.of("phone_state")) == 2)
    first, second = kiosk.journal.of("phone_state")
    assert first["exhibit"] == "EXH-LOCKED" and "exhibit" not in second


def test_a_kiosk_in_fault_shows_no_acknowledgement_but_records_the_label(
    kiosk_factory: Callable[..., Kiosk],
) -> None:
    kiosk = kiosk_factory(with_filter=False)
    kiosk.labels.scan("EXH-F")
    wait(lambda: kiosk.daemon.exhibits.pending is not None)
    time.sleep(0.2)
    assert "exhibit_scanned" not in kiosk.bay().lights.shown
    kiosk.source.plug(stick(0))
    wait(lambda: kiosk.journal.of("not_scanned"))
    (refused,) = kiosk.journal.of("not_scanned")
    assert refused["exhibit"] == "EXH-F" and refused["reason"].startswith("no valid filter")


def test_a_label_pending_at_stop_is_journaled(kiosk_factory: Callable[..., Kiosk]) -> None:
    kiosk = kiosk_factory()
    kiosk.labels.scan("EXH-STOP")
    wait(lambda: kiosk.daemon.exhibits.pending is not None)
    kiosk.daemon.request_stop()
    kiosk.thread.join(10)
    (dropped,) = kiosk.journal.of("exhibit_dropped")
    assert (dropped["exhibit"], dropped["reason"]) == ("EXH-STOP", "the kiosk stopped")
    assert kiosk.labels.closed


def test_the_exhibit_configuration() -> None:
    bays = [{"name": "front", "red": 5, "amber": 6, "green": 13}]
    config = parse_config({"bays": bays}, "a.toml", check_folders=False)
    assert config.exhibit.scanner == () and config.exhibit.timeout_seconds == 300.0  # off by default
    config = parse_config(
        {"bays": bays, "exhibit": {"scanner": ["ID_PATH=*-usb-0:3:*"], "timeout_seconds": 60}},
        "a.toml",
        check_folders=False,
    )
    assert config.exhibit.scanner == ("ID_PATH=*-usb-0:3:*",) and config.exhibit.timeout_seconds == 60.0
    for exhibit, message in [
        ({"scanner": ["vendor"]}, "exhibit.scanner[0]: "),
        ({"scanner": "ID_BUS=usb"}, "exhibit.scanner: must be a list of text"),
        ({"timeout_seconds": 0}, "exhibit.timeout_seconds: must be a finite number between 1 and 86400"),
        ({"timeout": 5}, "exhibit.timeout: unknown key"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_config({"bays": bays, "exhibit": exhibit}, "a.toml", check_folders=False)


def test_the_acknowledgement_is_three_quick_green_flashes_and_one_short_beep() -> None:
    steps = [levels_at(Signal.EXHIBIT_SCANNED, t / 100) for t in range(100)]
    green = "".join("G" if s.green else "." for s in steps)
    assert green == ("G" * 10 + "." * 10) * 3 + "." * 40
    assert [s.buzzer for s in steps] == [True] * 15 + [False] * 85
    assert not any(s.red or s.amber for s in steps)
    assert EXHIBIT_ACK_SECONDS > 0.6  # the whole pattern plays before the bay is ready again
