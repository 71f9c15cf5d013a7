"""The clock in the kiosk: a guest clock set back two days is stepped forward by a sync stick to the
station's signed time (by fieldtriage-clock.service, not by the agent, whose unit keeps ProtectClock),
never back by an older stick; the step is journaled and reaches the station, which dates the boot
from it. The guest's RTC (QEMU's, the host's time) is trusted while the system clock agrees with it.
Runs after test_appliance (the session's kiosk); the guest's clock is put right afterwards."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from agent.demo.images import PartitionSpec, make_filesystem
from agent.journal.sync_token import TOKEN_NAME, SyncToken, verify_sync_token
from station.clock_estimate import KioskClock
from station.stick import prepare_stick
from station.verify import verify_segment

from .conftest import Lab
from .guest import Guest
from .test_appliance import SCAN_TIMEOUT

DAY = 86_400
SECOND = 10**9


def guest_seconds(kiosk: Guest) -> int:
    return int(kiosk.sh("date -u +%s").out.strip())


def sync_stick(lab: Lab, tmp_path: Path, name: str, prepared_at: float) -> tuple[Path, SyncToken]:
    """A sync stick the station prepared at ``prepared_at`` (host seconds)."""
    folder = tmp_path / name
    folder.mkdir()
    fs_uuid = str(uuid.uuid4())
    moment = dt.datetime.fromtimestamp(prepared_at, dt.UTC)
    prepare_stick(lab.station, folder, fs_uuid=fs_uuid, now=moment, exclusions=False, shared=False)
    token = verify_sync_token(folder, fs_uuid, lab.station.signing_public_key(), moment)
    assert isinstance(token, SyncToken) and (folder / TOKEN_NAME).exists()
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    image = tmp_path / f"{name}.img"
    make_filesystem(PartitionSpec("ext4", files, size=64 << 20, uuid=fs_uuid), image)
    return image, token


def sync(kiosk: Guest, image: Path, serial: str) -> None:
    kiosk.wait(lambda: kiosk.bay("front")["phase"] == "ready", SCAN_TIMEOUT, "a free front bay")
    stick = kiosk.plug(image, 1, serial=serial)
    try:
        kiosk.wait(lambda: kiosk.bay("front")["verdict"] == "synced", SCAN_TIMEOUT, f"the sync of {serial}")
    finally:
        kiosk.unplug(stick)


def helper_answer(kiosk: Guest) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(kiosk.sh("cat /run/fieldtriage-clock/answer.json").out)
    return answer


def exported_records(images: list[Path], lab: Lab, tmp_path: Path) -> list[dict[str, Any]]:
    """Every record of the journal copies on used sync sticks, verified and decrypted as the
    station does (the import itself is test_power's), each once, in journal order."""
    key, key_id = lab.station.journal_private_key(), bytes.fromhex(lab.station.journal_key_id())
    records: dict[tuple[int, int], dict[str, Any]] = {}
    for image in images:
        out = tmp_path / f"{image.stem}-journal"
        out.mkdir()
        subprocess.run(["debugfs", "-R", f"rdump fieldtriage-journal {out}", str(image)],
                       check=True, capture_output=True)  # fmt: skip
        for path in sorted(out.glob("fieldtriage-journal/*/segment-*.ftj")):
            segment, findings = verify_segment(path, path.read_bytes(), key, key_id, path.parent.name)
            assert segment is not None, [f.line() for f in findings]
            assert [f.line() for f in findings if f.severity == "alarm"] == []
            for record in segment.records:
                records[(segment.header.number, record.index)] = record.body
    return [records[place] for place in sorted(records)]


def test_the_clock_helper_is_armed_and_the_agent_still_cannot_set_the_clock(kiosk: Guest) -> None:
    assert kiosk.sh("systemctl is-active fieldtriage-clock.path").out.strip() == "active"
    assert kiosk.sh("test -d /run/fieldtriage-clock && echo yes").out.strip() == "yes"
    for unit, limit in (("fieldtriage-clock.service", 1.5), ("fieldtriage-agent.service", 3.0)):
        score = kiosk.sh(f"systemd-analyze security {unit} --no-pager").out
        found = re.search(rf"Overall exposure level for {re.escape(unit)}: ([0-9.]+)", score)
        assert found and float(found.group(1)) <= limit, score[-600:]
        print(f"\n{unit}: exposure {found.group(1)}")
    agent = kiosk.sh("systemctl show -p ProtectClock -p CapabilityBoundingSet fieldtriage-agent").out
    assert "ProtectClock=yes" in agent and "cap_sys_time" not in agent.lower()


def test_a_sync_stick_steps_a_clock_behind_forward_and_an_older_one_never_back(
    kiosk: Guest, lab: Lab, tmp_path: Path
) -> None:
    boot_id = kiosk.sh("cat /proc/sys/kernel/random/boot_id").out.strip()
    host = time.time()
    first, first_token = sync_stick(lab, tmp_path, "clock-first", host - 3600)  # prepared an hour ago
    second, second_token = sync_stick(lab, tmp_path, "clock-second", host - 7200)  # older still
    set_back = int(host) - 2 * DAY
    try:
        kiosk.sh(f"date -u -s @{set_back}")  # the RTC (QEMU's) keeps the host's time
        assert guest_seconds(kiosk) < first_token.created - DAY

        sync(kiosk, first, "CLOCK1")
        stepped = guest_seconds(kiosk)
        assert first_token.created <= stepped < time.time(), (stepped, first_token.created)
        answer = helper_answer(kiosk)
        assert answer["outcome"] == "stepped" and answer["to_ns"] == first_token.created * SECOND, answer
        assert answer["token_id"] == first_token.token_id and answer["boot_id"] == boot_id
        log = kiosk.sh("journalctl -b --no-pager -u fieldtriage-clock.service").out
        assert "clock stepped forward" in log, log[-1500:]
        assert kiosk.sh("test -e /run/fieldtriage/clock/request || echo taken").out.strip() == "taken"

        sync(kiosk, second, "CLOCK2")  # an hour behind the kiosk's clock now: not stepped back
        assert guest_seconds(kiosk) >= stepped
        answer = helper_answer(kiosk)
        assert answer["outcome"] == "not_behind" and answer["token_id"] == second_token.token_id, answer
    finally:
        kiosk.sh(f"date -u -s @{int(time.time())}")  # the next tests' clock: the host's again

    # the step is journaled before the first stick's copy, its sync record after: on the second
    records = exported_records([first, second], lab, tmp_path)
    (step,) = [r for r in records if r.get("type") == "clock_step" and r["token_id"] == first_token.token_id]
    assert step["to_ns"] == first_token.created * SECOND and step["time"]["boot_id"] == boot_id
    assert set_back * SECOND <= step["from_ns"] < step["to_ns"] - DAY * SECOND
    assert abs(step["observed_step_ns"] - (step["to_ns"] - step["from_ns"])) < 5 * SECOND
    (first_sync,) = [r for r in records if r.get("type") == "sync" and r["token_id"] == first_token.token_id]
    assert first_sync["clock"]["outcome"] == "stepped"
    assert first_sync["time"]["clock_source"] == "sync_stick"
    assert first_sync["time"]["clock_synchronised"] is False
    before = [r["time"] for r in records if r["time"]["boot_id"] == boot_id]
    before = [t for t in before if t["monotonic_ns"] < step["monotonic_ns"]]
    with_host_time = [t for t in before if t["wall_ns"] >= step["to_ns"]]  # before the clock went back
    set_back_time = [t for t in before if t["wall_ns"] < step["to_ns"]]
    assert all(t["clock_source"] == "rtc" and t["clock_synchronised"] for t in with_host_time), before
    assert all(t["clock_source"] == "none" and not t["clock_synchronised"] for t in set_back_time), before
    print(f"\nrecords of this boot before the step: {len(with_host_time)} trusting the RTC, "
          f"{len(set_back_time)} written while the clock was set back")  # fmt: skip

    # the station dates the whole boot from the step: the first sync's record no earlier than the
    # station's time at the step plus the monotonic time since
    estimate = KioskClock({}, {boot_id: [(step["monotonic_ns"], step["to_ns"])]}, None).estimate(
        boot_id, first_sync["time"]["monotonic_ns"], first_sync["time"]["wall_ns"], False
    )
    assert estimate.method == "sync_stick" and estimate.at_least_ns is not None
    assert abs(estimate.at_least_ns - first_sync["time"]["wall_ns"]) < 2 * SECOND
