"""Empty devices (issue 14, item 4): a device with no regular file at all is still "no match" (green),
and the status (the bay's ``describe``, the status file and ``agent status``), the journal (the
scan record's ``empty``) and the summaries say "empty (0 files)", so that the analyst sees it.

Real empty filesystems (an ext4 image mounted read-only by the ``Mounter``; a phone that shows an
empty storage), a real scanner and filter, the bay's worker run to its end."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from agent.config import BayConfig, ScanConfig
from agent.daemon.bay import Bay, BayWorker
from agent.daemon.phone import PhoneWorker
from agent.daemon.status import format_status
from agent.demo.images import PartitionSpec, make_disk_image
from agent.device_scan import DeviceScanResult, scan_device
from agent.devices.identity import DeviceIdentity
from agent.devices.mounter import Mounter
from agent.lights.bay import BayLights, RecordingLights
from agent.lights.signals import Signal
from agent.phones.detect import phone_identity
from agent.phones.fake import FakePhone, FakePhoneBackend
from agent.scan import Scanner
from agent.scan.summary import print_device_summary, print_summary
from filters.model import ContrabandFilter
from tests.agent.daemon.fake_kiosk import ListJournal
from tests.agent.scan.conftest import FilterFactory, write_random

EMPTY = "empty (0 files)"
ANDROID = {"ID_VENDOR_ID": "18d1", "ID_MODEL_ID": "4ee1", "ID_VENDOR": "Google", "ID_MODEL": "Pixel_7",
           "ID_SERIAL_SHORT": "P7SERIAL", "ID_USB_INTERFACES": ":060101:", "BUSNUM": "001", "DEVNUM": "007",
           "DEVNAME": "/dev/bus/usb/001/007"}  # fmt: skip


@pytest.fixture
def known(tmp_path: Path) -> ContrabandFilter:
    return FilterFactory(tmp_path / "filters").make([write_random(tmp_path / "known.jpg", 40_000, 3)])


def stick(tmp_path: Path, files: dict[str, bytes]) -> Path:
    return make_disk_image(
        tmp_path / f"fieldtriage-test-{len(files)}.img", "mbr", [PartitionSpec("ext4", files)]
    )


def run_bay(tmp_path: Path, image: Path, flt: ContrabandFilter) -> tuple[Bay, ListJournal]:
    lights = BayLights("front", RecordingLights())
    bay = Bay(BayConfig("front", red=17, amber=27, green=22), lights)
    identity = DeviceIdentity(str(image), "/devices/test/stick", "stick", image.stat().st_size, vendor="Test")
    journal = ListJournal()
    BayWorker(bay, identity, Mounter(tmp_path / "run"), [flt], ScanConfig(), journal).run()
    return bay, journal


@pytest.mark.root
def test_an_empty_stick_is_green_and_said_to_be_empty(tmp_path: Path, known: ContrabandFilter) -> None:
    bay, journal = run_bay(tmp_path, stick(tmp_path, {}), known)  # ext4: only lost+found
    assert bay.verdict == "no_match" and bay.lights.signal is Signal.NO_MATCH  # green, as before
    status = bay.describe()
    assert status["verdict"] == "no_match" and status["empty"] is True
    text = format_status({"state": "ready", "bays": [status]})
    assert f"verdict no_match, {EMPTY}" in text
    (record,) = journal.records
    assert record["verdict"] == "no_match" and record["empty"] is True
    assert record["scan"]["counts"]["files_seen"] == 0
    assert record["scan"]["counts"]["directories"] >= 2  # the root and lost+found: walked, no file


@pytest.mark.root
def test_a_stick_with_a_file_is_not_empty(tmp_path: Path, known: ContrabandFilter) -> None:
    bay, journal = run_bay(tmp_path, stick(tmp_path, {"notes.txt": os.urandom(3000)}), known)
    assert bay.verdict == "no_match" and bay.describe()["empty"] is False
    assert EMPTY not in format_status({"state": "ready", "bays": [bay.describe()]})
    (record,) = journal.records
    assert record["empty"] is False


@pytest.mark.root
def test_a_stick_of_empty_files_is_not_empty(tmp_path: Path, known: ContrabandFilter) -> None:
    """Zero-length files are regular files: the device is not "empty (0 files)"."""
    bay, journal = run_bay(tmp_path, stick(tmp_path, {"a.txt": b"", "b/c.txt": b""}), known)
    assert bay.verdict == "no_match" and journal.records[0]["empty"] is False
    assert journal.records[0]["scan"]["counts"]["files_empty"] == 2


@pytest.mark.root
def test_the_device_summary_says_empty(tmp_path: Path, known: ContrabandFilter) -> None:
    result = scan_device(str(stick(tmp_path, {})), Mounter(tmp_path / "run"), Scanner([known]))
    assert result.verdict == "no_match" and result.empty and result.to_json()["empty"] is True
    out = io.StringIO()
    print_device_summary(result, out)
    assert f"device verdict: NO MATCH: {EMPTY}" in out.getvalue()
    assert f"verdict: NO MATCH: {EMPTY}" in out.getvalue()  # the scan's own line


def test_an_empty_folder_summary_says_empty(tmp_path: Path, known: ContrabandFilter) -> None:
    (tmp_path / "case" / "sub").mkdir(parents=True)
    report = Scanner([known]).scan([tmp_path / "case"])
    out = io.StringIO()
    print_summary(report, out)
    assert report.verdict == "no_match" and f"verdict: NO MATCH: {EMPTY}" in out.getvalue()
    write_random(tmp_path / "case" / "sub" / "x.bin", 100, 1)
    out = io.StringIO()
    print_summary(Scanner([known]).scan([tmp_path / "case"]), out)
    assert "verdict: NO MATCH (every file read)" in out.getvalue() and EMPTY not in out.getvalue()


def test_only_a_complete_no_match_is_empty() -> None:
    """An unreadable device that showed no file is "could not check", never "empty"."""
    assert not DeviceScanResult("/dev/sdz", "incomplete").empty
    assert not DeviceScanResult("/dev/sdz", "no_match").empty  # (no scan report at all)


def test_an_empty_phone_is_green_and_said_to_be_empty(known: ContrabandFilter) -> None:
    phone = FakePhone({"Internal shared storage": {"DCIM/": b"", "Download/": b""}})
    lights = BayLights("front", RecordingLights())
    bay = Bay(BayConfig("front", red=17, amber=27, green=22), lights)
    journal = ListJournal()
    identity = phone_identity(ANDROID, "pci-0000:00:14.0-usb-0:1:1.0", "/devices/pci/usb1/1-1")
    worker = PhoneWorker(
        bay,
        identity,
        FakePhoneBackend({"usb:001,007": phone}),
        [known],
        ScanConfig(),
        journal,
        poll_seconds=0.05,
    )
    worker.start()
    worker.join(30)
    assert not worker.is_alive()
    assert bay.verdict == "no_match" and lights.signal is Signal.NO_MATCH
    assert bay.describe()["empty"] is True
    [record] = [r for r in journal.records if r["type"] == "scan"]
    assert record["empty"] is True and record["scan"]["counts"]["directories"] == 3
