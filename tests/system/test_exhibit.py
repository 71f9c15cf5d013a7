"""The exhibit link in the appliance: a barcode scanner is a USB keyboard (QEMU's usb-kbd, hotplugged
on the xhci root port 3, which the test image's ``exhibit.scanner`` rule names; the bays are ports 1
and 2), its keys sent by QMP ``input-send-event``. The agent grabs it through evdev under its hardened
unit; the label is acknowledged by the idle bays, taken by the next stick (status file, agent log),
never reaches the console (tty1's getty, read back from /dev/vcs1: a keyboard on another port, which
no rule names, types there, so the check can see keys), and a label no device takes is dropped."""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.demo.images import PartitionSpec, make_disk_image

from .conftest import Lab
from .guest import Guest, Plugged
from .test_appliance import VERDICT_LIGHTS, scan_verdict, uptime
from .test_phones import journal_records

SCANNER_PORT, CONSOLE_PORT = 3, 4
DROP_SECONDS = 30  # exhibit.timeout_seconds in image-build/rootfs-test/etc/fieldtriage/agent.toml


@pytest.fixture(autouse=True)
def unplug_afterwards(kiosk: Guest) -> Iterator[None]:
    yield
    for device in list(kiosk.plugged.values()):
        kiosk.unplug(device)


def exhibit(guest: Guest) -> dict[str, Any]:
    status: dict[str, Any] = guest.status()["exhibit"]
    return status


def console(guest: Guest) -> str:
    """What tty1 shows (its getty's login prompt and what was typed at it)."""
    return guest.sh("cat /dev/vcs1").out


def plug_scanner(guest: Guest) -> tuple[Plugged, str]:
    """The scanner, once the agent holds it: the event node it grabbed (a scanner pulled before
    is let go first: keys typed before the grab would go to the console)."""
    guest.wait(lambda: exhibit(guest)["scanners"] == [], 60, "no scanner attached")
    scanner = guest.plug_keyboard(SCANNER_PORT)
    attached = guest.wait(lambda: exhibit(guest)["scanners"], 60, "the agent to grab the scanner")
    found = re.search(r"\((/dev/input/event\d+)\)$", attached[0])
    assert found, attached
    return scanner, found.group(1)


def label() -> str:
    return f"EXH-2026-{random.randrange(10**6):06d}/a"


def acknowledged(guest: Guest, since: float) -> tuple[float, int, bool] | None:
    """When an idle bay began "exhibit scanned" after ``since``, how many green flashes the
    recorder saw and whether it heard the beep. Ready shows one green flash every 3 s and never
    beeps; the recorder samples the lines every 20 ms when the guest keeps up (under TCG on a
    loaded host it can miss a 0.1 s flash): two flashes within 0.9 s, or one and the beep."""
    history = guest.light_history()
    for green, buzzer in ((22, 18), (13, 19)):  # front, back
        rises = [t for (t, levels), (_, before) in zip(history[1:], history, strict=False)
                 if t >= since and levels[green] and not before[green]]  # fmt: skip
        for first in rises:
            flashes = len([t for t in rises if first <= t <= first + 0.9])
            beeped = any(first - 0.3 <= t <= first + 0.9 and levels[buzzer] for t, levels in history)
            if flashes >= 2 or beeped:
                return first, flashes, beeped
    return None


def acknowledged_within(guest: Guest, since: float, seconds: float) -> tuple[float, int, bool]:
    deadline = time.monotonic() + seconds
    while (found := acknowledged(guest, since)) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    if found is not None:
        return found
    history = guest.light_history()
    ready = [t for (t, levels), (_, b) in zip(history[1:], history, strict=False)
             if since - 30 <= t < since and levels[22] and not b[22]]  # fmt: skip
    after = [(t, levels[22], levels[18], levels[13], levels[19]) for t, levels in history if t >= since - 1]
    raise AssertionError(
        f"no acknowledgement after {since:.3f}: the recorder saw {len(ready)} ready flashes in the 30 s "
        f"before (10 shown); after: {after[:40]}\n{guest.journal_tail(30)}"
    )


def test_a_scanned_label_goes_with_the_next_stick_and_never_reaches_the_console(
    kiosk: Guest, lab: Lab, tmp_path: Path
) -> None:
    scanner, node = plug_scanner(kiosk)
    # the control: a keyboard on a port no rule names is the console's, and /dev/vcs1 shows its keys
    control = kiosk.plug_keyboard(CONSOLE_PORT)
    kiosk.wait(
        lambda: kiosk.sh("ls /dev/input/by-path/ | grep -q 'usb-0:4:.*-event-kbd'").status == 0,
        60,
        "the console keyboard in the guest",
    )
    kiosk.type_keys("ctl4", enter=False)  # QEMU gives keys to the keyboard plugged last
    kiosk.wait(lambda: "ctl4" in console(kiosk), 30, "the console keyboard's keys on tty1")
    kiosk.unplug(control)  # from here on the keys go to the scanner

    files = {f"DCIM/IMG_{i:04d}.JPG": os.urandom(20_000 + i) for i in range(3)}
    image = make_disk_image(tmp_path / "exhibit.img", "dos", [PartitionSpec("vfat", files)])
    reference = label()
    kiosk.type_keys(reference, enter=False)
    before = uptime(kiosk)
    kiosk.type_keys("")  # Enter: the last key
    pending = kiosk.wait(lambda: exhibit(kiosk)["pending"], 15, "the pending reference")
    assert pending["exhibit"] == reference
    ack = acknowledged_within(kiosk, before, 15)  # the recorder's log can lag the lines
    stick, state = scan_verdict(kiosk, image)  # within exhibit.timeout_seconds of the label
    assert state == VERDICT_LIGHTS["no_match"], kiosk.journal_tail()
    lit, flashes, beeped = ack
    print(f"\nlast key -> acknowledgement lit: at most {lit - before:.2f} s (guest clock; the recorder "
          f"saw {flashes} of 3 flashes{', the beep' if beeped else ''})")  # fmt: skip
    shown = console(kiosk)
    assert reference not in shown and reference.upper() not in shown and "EXH" not in shown.upper(), shown
    grab = kiosk.sh(f"python3 -c 'import evdev; evdev.InputDevice(\"{node}\").grab()'")
    assert grab.status != 0 and "Device or resource busy" in grab.err, grab
    bay = kiosk.wait(lambda: kiosk.bay("front")["exhibit"] == reference and kiosk.bay("front"), 10, "status")
    assert bay["verdict"] == "no_match" and exhibit(kiosk)["pending"] is None
    log = kiosk.journal_tail(400)
    assert f"exhibit {reference} scanned (acknowledged by front, back)" in log, log
    assert re.search(rf"bay front: .*: no_match, .*exhibit {re.escape(reference)}$", log, re.M), log
    scans = [r for r in journal_records(kiosk, lab, tmp_path / "journal") if r.get("exhibit") == reference]
    assert [(r["type"], r["verdict"]) for r in scans] == [("scan", "no_match")], scans  # as journaled
    kiosk.unplug(stick)
    kiosk.unplug(scanner)
    kiosk.wait(lambda: exhibit(kiosk)["scanners"] == [], 30, "the scanner let go")


def test_a_label_no_device_takes_is_dropped(kiosk: Guest, lab: Lab, tmp_path: Path) -> None:
    plug_scanner(kiosk)
    reference = label()
    kiosk.type_keys(reference)
    scanned = kiosk.wait(lambda: exhibit(kiosk)["pending"], 30, "the pending reference")
    assert scanned["exhibit"] == reference
    kiosk.wait(lambda: exhibit(kiosk)["pending"] is None, DROP_SECONDS + 30, "the reference dropped")
    expected = f"exhibit {reference} dropped: no device within {DROP_SECONDS} s"
    assert expected in kiosk.journal_tail(400), kiosk.journal_tail()
    records = journal_records(kiosk, lab, tmp_path / "journal")
    dropped = [r for r in records if r.get("type") == "exhibit_dropped" and r.get("exhibit") == reference]
    assert len(dropped) == 1, [r for r in records if r.get("type") == "exhibit_dropped"]
