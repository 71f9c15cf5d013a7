"""Sound and the acknowledge button in the appliance (issue 14, items 3 and 11), read from the
gpio-sim lines the agent drives: the front bay's buzzer is BCM line 18 and its acknowledge button
line 26 (image-build/rootfs-test/etc/fieldtriage/agent.toml). The button is pressed as a finger
would: the line's simulated pull goes down (``sim_gpio26/pull``), which the agent, holding the line
as an input with its pull-up through lgpio, sees as a falling edge; then up again.

A priority match sounds its alarm over and over (bursts of quick beeps), until the button is
pressed: then the buzzer is silent and the red light stays, the status file says so, the agent logs
it; or until the device is pulled. A match (a set of the other class) blinks red and beeps twice
slowly every 6 s, until the button is pressed. A clean device ends with one short beep, a device
that cannot be checked with a long and a short beep, three times. The status file names the kiosk.
With its filters moved away the kiosk is in fault: one long beep, once."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.demo.images import PartitionSpec, make_disk_image

from .conftest import Lab
from .guest import Guest
from .test_appliance import SCAN_TIMEOUT, VERDICT_LIGHTS, scan_verdict, uptime

BUZZER, BUTTON, RED = 18, 26, 17  # the front bay's (BCM lines)
SIM = "/sys/devices/platform/$(cat /run/fieldtriage-test/device)/$(cat /run/fieldtriage-test/chip)"
KIOSK = {"name": "System test kiosk", "location": "QEMU q35, gpio-sim bank 0"}
FIELDTRIAGE = "/opt/fieldtriage/.venv/bin/fieldtriage"


@pytest.fixture(autouse=True)
def unplug_afterwards(kiosk: Guest) -> Iterator[None]:
    yield
    for device in list(kiosk.plugged.values()):
        kiosk.unplug(device)


def line(guest: Guest, number: int) -> list[tuple[float, int]]:
    """Each change of one gpio-sim line: (guest monotonic s, level)."""
    changes: list[tuple[float, int]] = []
    for moment, levels in guest.light_history():
        if not changes or changes[-1][1] != levels[number]:
            changes.append((moment, levels[number]))
    return changes


def beeps(guest: Guest, since: float, until: float | None = None) -> list[tuple[float, float]]:
    """(start, length) of each beep of the front buzzer that began in [since, until]."""
    changes = line(guest, BUZZER)
    now = uptime(guest)
    ends = [t for t, _ in changes[1:]] + [now]
    return [
        (start, round(end - start, 3))
        for (start, level), end in zip(changes, ends, strict=True)
        if level and since <= start <= (now if until is None else until)
    ]


def verdict_at(guest: Guest, state: tuple[int, int, int], since: float) -> float:
    """When the front bay's lights last turned to ``state`` (its verdict), after ``since``."""
    return max(t for t, shown in guest.bay_lights("front") if shown == state and t >= since)


def press_button(guest: Guest) -> float:
    """Press the front bay's button for 0.3 s; the guest's time of the press."""
    pressed = uptime(guest)
    pull = f'"{SIM}/sim_gpio{BUTTON}/pull"'
    done = guest.sh(f"echo pull-down > {pull}; sleep 0.3; echo pull-up > {pull}")
    assert done.status == 0, done.err
    return pressed


def known_stick(lab: Lab, tmp_path: Path, name: str) -> Path:
    files = {
        "DCIM/Camera/IMG_0001.JPG": lab.known["known_0.jpg"],
        "DCIM/Camera/IMG_0002.JPG": os.urandom(30_000),
    }
    return make_disk_image(tmp_path / f"{name}.img", "dos", [PartitionSpec("vfat", files)])


def test_the_priority_alarm_repeats_until_the_button_silences_it(
    kiosk: Guest, lab: Lab, tmp_path: Path
) -> None:
    assert kiosk.status()["kiosk"] == KIOSK
    shown = kiosk.run([FIELDTRIAGE, "agent", "status"])
    assert f"kiosk: {KIOSK['name']} ({KIOSK['location']})" in shown.out.splitlines(), shown.out
    assert line(kiosk, BUTTON)[-1][1] == 1, "the agent holds the button's line with its pull-up"
    since = uptime(kiosk)
    stick, state = scan_verdict(kiosk, known_stick(lab, tmp_path, "alarm"))
    assert state == VERDICT_LIGHTS["priority_match"], kiosk.journal_tail()
    verdict = verdict_at(kiosk, state, since)
    kiosk.wait(lambda: uptime(kiosk) > verdict + 5.0, 30, "5 s of the alarm")
    alarm = beeps(kiosk, verdict - 0.2, verdict + 5.0)
    # 4 quick beeps every 1.5 s: 12 or more in 5 s (the old signal: 3 beeps, then silence)
    assert len(alarm) >= 10, alarm
    short = [length for _, length in alarm if length < 0.35]
    assert len(short) >= 0.8 * len(alarm), f"quick beeps (a slow guest may stretch one): {alarm}"
    bursts = [b for a, b in itertools.pairwise(alarm) if b[0] - a[0] > 0.5]
    assert len(bursts) >= 2, f"bursts with pauses between them: {alarm}"
    assert any(start > verdict + 3.5 for start, _ in alarm), "still sounding after 3.5 s"

    pressed = press_button(kiosk)
    bay = kiosk.wait(lambda: kiosk.bay("front")["silenced"] and kiosk.bay("front"), 20, "the alarm silenced")
    seen = uptime(kiosk)  # the buzzer went off before the status said so
    print(f"\nbutton pressed -> alarm silenced in the status file: {seen - pressed:.2f} s (guest clock)")
    assert bay["signal"] == "priority_match" and bay["verdict"] == "priority_match"
    log = kiosk.journal_tail(200)
    assert "bay front: priority_match silenced by the bay's acknowledge button" in log, log
    kiosk.wait(lambda: uptime(kiosk) > seen + 5.0, 30, "5 s after the press")
    assert beeps(kiosk, seen) == [], f"beeps after the press: {beeps(kiosk, pressed)}"
    assert line(kiosk, BUZZER)[-1][1] == 0
    reds = [(t, level) for t, level in line(kiosk, RED) if t >= verdict]
    assert reds == [] or all(level == 1 for _, level in reds), "the red light stayed on"
    assert kiosk.bay_lights("front")[-1][1] == VERDICT_LIGHTS["priority_match"]
    assert "(alarm silenced)" in kiosk.run([FIELDTRIAGE, "agent", "status"]).out
    kiosk.unplug(stick)


def test_pulling_the_device_ends_the_alarm(kiosk: Guest, lab: Lab, tmp_path: Path) -> None:
    since = uptime(kiosk)
    stick, state = scan_verdict(kiosk, known_stick(lab, tmp_path, "pulled"))
    assert state == VERDICT_LIGHTS["priority_match"]
    assert beeps(kiosk, verdict_at(kiosk, state, since) - 0.2), "the alarm sounds"
    kiosk.unplug(stick)
    pulled = uptime(kiosk)
    kiosk.wait(lambda: kiosk.bay("front")["phase"] == "ready", 30, "the bay ready again")
    ready = uptime(kiosk)
    time.sleep(4.0)
    assert beeps(kiosk, ready) == [], beeps(kiosk, pulled)


def test_a_clean_device_ends_with_one_short_beep(kiosk: Guest, tmp_path: Path) -> None:
    files = {f"DCIM/IMG_{i:04d}.JPG": os.urandom(20_000 + i) for i in range(3)}
    image = make_disk_image(tmp_path / "clean.img", "dos", [PartitionSpec("vfat", files)])
    since = uptime(kiosk)
    stick, state = scan_verdict(kiosk, image)
    assert state == VERDICT_LIGHTS["no_match"], kiosk.journal_tail()
    verdict = verdict_at(kiosk, state, since)
    kiosk.wait(lambda: uptime(kiosk) > verdict + 4.0, 30, "4 s of green")
    heard = beeps(kiosk, since)  # a scan is silent: the one beep is the verdict's
    assert len(heard) == 1, heard
    ((start, length),) = heard
    # 0.1 s as the agent renders it; a loaded TCG guest has stretched it to 0.4 s (its lights ticker
    # late): still short beside the fault's 1 s and could-not-check's 0.6 s
    assert abs(start - verdict) < 0.5 and length < 0.55, (start, length, verdict)
    kiosk.unplug(stick)


def test_could_not_check_sounds_long_short_three_times(kiosk: Guest, tmp_path: Path) -> None:
    image = make_disk_image(tmp_path / "luks.img", "gpt", [PartitionSpec("luks")])
    since = uptime(kiosk)
    stick, state = scan_verdict(kiosk, image)
    assert state == VERDICT_LIGHTS["could_not_check"], kiosk.bay("front")
    verdict = verdict_at(kiosk, state, since)
    kiosk.wait(lambda: uptime(kiosk) > verdict + 11.0, 40, "11 s of could not check")
    heard = beeps(kiosk, verdict - 0.2)
    long = [start for start, length in heard if length > 0.4]
    # long (0.6 s) and short (0.15 s) 0.2 s apart, three times 3 s apart: six beeps (a slow guest
    # may run a pair's two together, or miss a short one); each pair starts with the long one
    assert len(long) == 3 and len(heard) - len(long) >= 2 and len(heard) <= 6 and heard[0][1] > 0.4, heard
    assert 5.0 < long[2] - long[0] < 7.0 and heard[-1][0] < verdict + 9.5, heard
    kiosk.unplug(stick)


def test_a_match_blinks_red_and_beeps_twice_slowly_until_the_button(
    kiosk: Guest, lab: Lab, tmp_path: Path
) -> None:
    files = {"Download/IMG_0007.JPG": lab.flagged["flagged_0.jpg"], "Download/notes.bin": os.urandom(30_000)}
    image = make_disk_image(tmp_path / "match.img", "dos", [PartitionSpec("vfat", files)])
    since = uptime(kiosk)
    stick = kiosk.plug(image, 1)
    kiosk.wait(
        lambda: kiosk.bay("front")["verdict"] == "match" and kiosk.bay("front")["phase"] == "done",
        SCAN_TIMEOUT,
        "a match in bay front",
    )
    verdict = min(t for t, level in line(kiosk, RED) if t >= since and level)  # scanning is amber only
    kiosk.wait(lambda: uptime(kiosk) > verdict + 6.5, 30, "6.5 s of the match")
    heard = beeps(kiosk, verdict - 0.2, verdict + 5.5)
    # 2 beeps of 0.4 s, 0.8 s apart, then silence until 6 s (a loaded guest may stretch a beep)
    assert len(heard) == 2 and all(0.25 < length < 0.8 for _, length in heard), heard
    assert 0.5 < heard[1][0] - heard[0][0] < 1.2, heard
    assert beeps(kiosk, verdict + 5.5, verdict + 6.4), "the pair again after 6 s"
    reds = [t for t, level in line(kiosk, RED) if verdict <= t <= verdict + 6.5]
    assert len(reds) >= 5, f"red blinks (1 s on, 1 s off): {reds}"
    assert VERDICT_LIGHTS["priority_match"] not in [
        s for t, s in kiosk.bay_lights("front") if t >= since and t < verdict - 0.1
    ], "a match is not a priority match while it scans"

    press_button(kiosk)
    kiosk.wait(lambda: kiosk.bay("front")["silenced"], 20, "the match's beeps silenced")
    seen = uptime(kiosk)
    kiosk.wait(lambda: uptime(kiosk) > seen + 7.0, 30, "7 s after the press")
    assert beeps(kiosk, seen) == [], beeps(kiosk, seen)
    assert [t for t, level in line(kiosk, RED) if t > seen], "the red light still blinks"
    assert kiosk.bay("front")["verdict"] == "match"
    kiosk.unplug(stick)


def test_a_fault_sounds_one_long_beep(kiosk: Guest) -> None:
    """No valid filter (the kiosk's filters moved away for the test): every bay shows the fault
    signal with one long beep (1 s), once; the filter back, the kiosk is ready again."""
    held = "/run/fieldtriage-test/held-filters"
    since = uptime(kiosk)
    moved = kiosk.sh(f"mkdir -p {held} && mv /var/lib/fieldtriage/filters/*.ftf {held}/")
    assert moved.status == 0, moved.err
    try:
        kiosk.wait(lambda: kiosk.status().get("fault"), 30, "the fault")
        kiosk.wait(lambda: kiosk.bay("front")["signal"] == "fault", 30, "the fault signal")
        fault = uptime(kiosk)
        kiosk.wait(lambda: uptime(kiosk) > fault + 4.0, 30, "4 s of the fault")
        heard = beeps(kiosk, since)
        assert len(heard) == 1 and 0.8 < heard[0][1] < 1.5, heard  # 1 s as rendered; a busy guest stretches
        assert "no valid filter" in kiosk.status()["fault"], kiosk.status()["fault"]
    finally:
        kiosk.sh(f"mv {held}/*.ftf /var/lib/fieldtriage/filters/")
    kiosk.wait(lambda: kiosk.status().get("fault") is None, 30, "no fault once the filter is back")
    kiosk.wait(lambda: kiosk.bay("front")["phase"] == "ready", 30, "the bay ready again")
