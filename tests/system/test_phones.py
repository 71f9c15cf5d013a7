"""Phones in the bays: QEMU's usb-mtp is a virtual MTP phone on the kiosk's xhci bus, exporting a
folder of this host read-only (``Guest.plug_phone``). The guest's udev sees a ``usb_device`` with a
still-image interface (``ID_USB_INTERFACES=:060101:``; no ``ID_MTP_DEVICE`` or ``ID_GPHOTO2``: the
image has neither libmtp's nor libgphoto2's udev rules), the agent reads it through libgphoto2
under its hardened unit and lights the bay like a stick's. The exported folder is the phone's
storage: its tree, bytes, modes and mtimes are compared before and after every test.

Runs after test_appliance (alphabetical order) and before test_power, which reboots the kiosk.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.journal.segment_format import SEGMENT_PREFIX, SEGMENT_SUFFIX
from station.importer import import_sources
from station.kiosks import enroll_kiosk, read_enrollment
from station.scans import Scan, load_scans
from station.store import Store, body_from_json

from .conftest import Lab
from .guest import PHONE_STORAGE, Guest, GuestError, Plugged
from .phone_trees import PhoneTree, phone_tree, sized_tree, snapshot, stalls_usb_mtp
from .test_appliance import SCAN_TIMEOUT, VERDICT_LIGHTS, blinked_amber_after, uptime

JOURNAL = "/var/lib/fieldtriage/journal"
FIELDTRIAGE = "/opt/fieldtriage/.venv/bin/fieldtriage"
KNOWN_PATH = "DCIM/Camera/IMG_0001.jpg"
FINISHED = ("done", "removed early", "not journaled")  # bay phases that follow a verdict


@pytest.fixture(autouse=True)
def unplug_afterwards(kiosk: Guest) -> Iterator[None]:
    """Whatever a test leaves plugged in is pulled out, so that the next one finds its ports free."""
    yield
    for device in list(kiosk.plugged.values()):
        kiosk.unplug(device)


def settled_light(
    guest: Guest, bay: str, since: float, started_before: str | None = None, hold: float = 2.5
) -> tuple[int, int, int] | None:
    """The light ``bay`` ends on: a scan that started after the plug (the status file's ``started``
    is not ``started_before``) is over, and the light has not changed for ``hold`` seconds. Under
    TCG a busy guest can leave the scanning light unchanged for seconds, which ``steady_after``
    alone could take for a verdict. A light that did not change at all is the verdict's too: a bay
    still amber from the last device (held "could not check") that scans a phone in a blink and
    ends "could not check" again shows no change."""
    status = guest.bay(bay)
    if status["phase"] not in FINISHED or status.get("started") == started_before:
        return None
    start, state = guest.bay_lights(bay)[-1]
    if uptime(guest) - max(start, since) < hold or state == (0, 0, 0):
        return None
    return state


def phone_verdict(guest: Guest, tree: PhoneTree, bay: str = "front", port: int = 1) -> tuple[Plugged, Any]:
    since, started_before = uptime(guest), guest.bay(bay).get("started")
    phone = guest.plug_phone(tree.root, port)
    try:
        state = guest.wait(
            lambda: settled_light(guest, bay, since, started_before), SCAN_TIMEOUT, f"a verdict in bay {bay}"
        )
    except GuestError as err:  # what the bay showed instead (a phone re-enumerating after a stall?)
        lights = [(round(t - since, 1), s) for t, s in guest.bay_lights(bay) if t >= since - 1]
        raise AssertionError(
            f"{err}\nbay {bay}: {guest.bay(bay)}\nlights since the plug: {lights}\n"
            f"light recorder: {guest.recorder_state()}"
        ) from None
    return phone, state


def imported_journal(guest: Guest, lab: Lab, folder: Path) -> Store:
    """The kiosk's journal as the station reads it: its segments copied out through the guest agent
    (nothing on the kiosk changes: no export, no sync state) and imported into a store of our own,
    so that the session's station sees the journal only when test_power's sync stick brings it."""
    names = guest.sh(f"ls {JOURNAL}").out.split()
    copies = folder / "fieldtriage-journal" / "copied"
    copies.mkdir(parents=True, exist_ok=True)
    for name in names:
        if name.startswith(SEGMENT_PREFIX) and name.endswith(SEGMENT_SUFFIX):
            (copies / name).write_bytes(guest.read_file(f"{JOURNAL}/{name}"))
    store = Store.open(folder / "station.sqlite")
    try:
        enrollment = folder / "enrollment.json"  # only enrolled kiosks are imported (issue 13)
        enrollment.write_bytes(guest.read_file("/var/lib/fieldtriage/enrollment.json"))
        if read_enrollment(enrollment).kiosk_id not in store.kiosk_ids():
            enroll_kiosk(store, read_enrollment(enrollment), "system test kiosk", "QEMU")
        import_sources(lab.station, [folder], store=store)
    except BaseException:
        store.close()
        raise
    return store


def journal_scans(guest: Guest, lab: Lab, folder: Path) -> list[Scan]:
    store = imported_journal(guest, lab, folder)
    try:
        return load_scans(store)
    finally:
        store.close()


def journal_records(guest: Guest, lab: Lab, folder: Path) -> list[dict[str, Any]]:
    """Every record of the kiosk's journal, decrypted, oldest first."""
    store = imported_journal(guest, lab, folder)
    try:
        return [body_from_json(b) for (b,) in store.query("SELECT body FROM records ORDER BY segment, idx")]
    finally:
        store.close()


def test_a_phone_holding_a_known_picture_lights_red(kiosk: Guest, lab: Lab, tmp_path: Path) -> None:
    known = {KNOWN_PATH: lab.known["known_0.jpg"]}
    tree = phone_tree(tmp_path / "phone", random.Random(11), files=200, scale=0.2, known=known)
    before = snapshot(tree.root)
    since = uptime(kiosk)
    phone, state = phone_verdict(kiosk, tree)
    bay = kiosk.bay("front")
    assert state == VERDICT_LIGHTS["priority_match"], (bay, kiosk.journal_tail())
    assert blinked_amber_after(kiosk, "front", since), kiosk.bay_lights("front")  # scanning, then red
    assert bay["verdict"] == "priority_match", bay
    assert bay["device"]["kind"] == "phone", bay
    serial = bay["device"]["serial"]
    kiosk.unplug(phone)
    assert snapshot(tree.root) == before
    scans = [s for s in journal_scans(kiosk, lab, tmp_path / "journal") if s.device.get("serial") == serial]
    assert [s.verdict for s in scans] == ["priority_match"], scans
    hits = [hit["path"] for hit in scans[0].hits]
    assert hits == [f"{PHONE_STORAGE}/{KNOWN_PATH}"], scans[0].hits
    assert scans[0].device.get("kind") == "phone", scans[0].device


def test_a_clean_phone_lights_green(kiosk: Guest, tmp_path: Path) -> None:
    tree = phone_tree(tmp_path / "phone", random.Random(12), files=300, scale=0.2)
    before = snapshot(tree.root)
    phone, state = phone_verdict(kiosk, tree)
    bay = kiosk.bay("front")
    assert state == VERDICT_LIGHTS["no_match"], (bay, kiosk.journal_tail())
    assert bay["verdict"] == "no_match" and bay["device"]["kind"] == "phone", bay
    kiosk.unplug(phone)
    assert snapshot(tree.root) == before


def test_fieldtriage_devices_lists_the_phone(kiosk: Guest, tmp_path: Path) -> None:
    tree = phone_tree(tmp_path / "phone", random.Random(13), files=10, scale=0.05)
    before = snapshot(tree.root)
    phone = kiosk.plug_phone(tree.root, 2, serial="FTLISTED1")
    listed = kiosk.wait(
        lambda: [line for line in kiosk.sh(f"{FIELDTRIAGE} devices").out.splitlines() if "FTLISTED1" in line],
        60,
        "the phone in fieldtriage devices",
    )
    assert listed[0].startswith("taken") and " phone (" in listed[0], listed
    assert "-usb-0:2:1.0" in listed[0], listed  # the back bay's port, in the form its glob matches
    kiosk.wait(lambda: kiosk.bay("back")["verdict"] == "no_match", SCAN_TIMEOUT, "the back bay's verdict")
    kiosk.unplug(phone)
    assert snapshot(tree.root) == before


def test_a_phone_pulled_mid_scan_is_never_green(kiosk: Guest, tmp_path: Path) -> None:
    tree = sized_tree(tmp_path / "phone", random.Random(14), files=6_000, total_bytes=6_000 * 20_000)
    before = snapshot(tree.root)
    since = uptime(kiosk)
    phone = kiosk.plug_phone(tree.root, 1)
    kiosk.wait(lambda: kiosk.bay("front")["phase"] == "scanning", SCAN_TIMEOUT, "the scan to start")
    scanning = uptime(kiosk)  # the idle bay's green flash (ready) came before this
    time.sleep(1.0)  # into the reads, past the first listing
    kiosk.unplug(phone)
    kiosk.wait(lambda: kiosk.bay("front")["phase"] != "scanning", SCAN_TIMEOUT, "the scan to end")
    # as a stick pulled mid-scan; when the reads failed (PTP No Device) before udev's remove
    # arrived, the scan ends "done" and the remove, within PULLED_SECONDS, makes it "removed early"
    try:
        kiosk.wait(lambda: kiosk.bay("front")["phase"] == "removed early", 15, "removed early")
    except GuestError:
        raise AssertionError((kiosk.bay("front"), kiosk.journal_tail())) from None
    state = kiosk.wait(lambda: settled_light(kiosk, "front", since), 30, "the could-not-check light")
    assert state == VERDICT_LIGHTS["could_not_check"], (kiosk.bay("front"), kiosk.journal_tail())
    history = kiosk.bay_lights("front")
    ends = [t for t, _ in history[1:]] + [uptime(kiosk)]
    green = [
        (start, end)
        for (start, state), end in zip(history, ends, strict=True)
        if state[2] and start >= scanning
    ]
    assert all(end - start < 0.5 for start, end in green), f"green lit steady: {green}, lights {history}"
    assert snapshot(tree.root) == before


def test_a_phone_that_stops_answering_is_never_green(kiosk: Guest, tmp_path: Path) -> None:
    """A read that never completes and a phone that answers nothing more (usb-mtp wedged on
    purpose: a file of a size it cannot send to its end, phone_trees.stalls_usb_mtp)."""
    tree = phone_tree(tmp_path / "phone", random.Random(15), files=40, scale=0.1)
    stalling = tree.root / "DCIM/Camera/IMG_20240101_120000.jpg"
    stalling.write_bytes(random.Random(16).randbytes(80 * 512 + 505))
    assert stalls_usb_mtp(stalling.stat().st_size)
    before = snapshot(tree.root)
    phone, state = phone_verdict(kiosk, tree)
    bay = kiosk.bay("front")
    assert state == VERDICT_LIGHTS["could_not_check"], (bay, kiosk.journal_tail())
    assert bay["verdict"] == "incomplete", bay
    kiosk.unplug(phone)
    assert snapshot(tree.root) == before


def test_a_file_larger_than_mtp_sizes_is_never_green(kiosk: Guest, tmp_path: Path) -> None:
    """MTP's object info holds 32-bit sizes: usb-mtp reports a 5 GiB video as 4 GiB - 1 bytes and
    has no 64-bit partial read, so the file cannot be read to its end (nor past the size it gave)."""
    tree = phone_tree(tmp_path / "phone", random.Random(17), files=20, scale=0.1)
    video = tree.root / "DCIM/Camera/VID_20240101_120000.mp4"
    with video.open("wb") as f:  # sparse: costs nothing on this host
        f.write(b"\x00\x00\x00\x20ftypisom")
        f.truncate(5 << 30)
    before = snapshot(tree.root)
    phone, state = phone_verdict(kiosk, tree)
    bay = kiosk.bay("front")
    assert state == VERDICT_LIGHTS["could_not_check"], (bay, kiosk.journal_tail())
    assert bay["verdict"] == "incomplete", bay
    kiosk.unplug(phone)
    assert snapshot(tree.root) == before
