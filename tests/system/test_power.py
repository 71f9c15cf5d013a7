"""Power cuts (QEMU killed during scans and journal appends) and the sync stick: at every boot the
agent starts and its journal reopens; every verdict the lights showed reaches the station; the root
is intact; a new filter from the station is taken and used. Runs after test_appliance (it reboots
the session's kiosk)."""

from __future__ import annotations

import os
import random
import subprocess
import uuid
from pathlib import Path

from agent.demo.images import PartitionSpec, make_disk_image, make_filesystem
from agent.demo.pictures import generated_picture
from filters.builder import FilterBuilder
from filters.container import write_filter
from filters.digests import digest_path
from filters.importers import DigestEntry
from filters.keys import load_private_key
from station.importer import import_sources
from station.kiosks import enroll_kiosk, read_enrollment
from station.scans import load_scans
from station.stick import prepare_stick
from station.store import Store

from .conftest import Lab
from .guest import Guest, GuestError
from .test_appliance import SCAN_TIMEOUT, VERDICT_LIGHTS, steady_after, uptime

CUTS = 3


def lit(guest: Guest, image: Path, port: int, serial: str) -> tuple[int, int, int]:
    bay = "front" if port == 1 else "back"
    since = uptime(guest)
    stick = guest.plug(image, port, serial=serial)
    state: tuple[int, int, int] = guest.wait(lambda: steady_after(guest, bay, since), SCAN_TIMEOUT, serial)
    guest.unplug(stick)
    return state


def root_is_intact(guest: Guest) -> None:
    assert guest.sh("findmnt -n -o OPTIONS /").out.split(",")[0] == "ro"
    assert "EXT4-fs error" not in guest.sh("dmesg").out


def test_power_cuts_then_a_sync_stick_carries_every_lit_verdict(
    kiosk: Guest, lab: Lab, tmp_path: Path
) -> None:
    rng = random.Random(7)
    known = make_disk_image(
        tmp_path / "known.img", "dos", [PartitionSpec("vfat", {"a.jpg": lab.known["known_0.jpg"]})]
    )
    clean = make_disk_image(
        tmp_path / "clean.img", "dos", [PartitionSpec("ext4", {"b.jpg": os.urandom(20_000)})]
    )
    slow_files = {f"DCIM/{i // 100:03d}/{i:05d}.jpg": os.urandom(2_000) for i in range(6_000)}
    slow = make_disk_image(tmp_path / "slow.img", "dos", [PartitionSpec("ext4", slow_files, size=256 << 20)])
    lit_verdicts: dict[str, str] = {}
    for cut in range(CUTS):
        assert lit(kiosk, known, 1, f"PCK{cut}") == VERDICT_LIGHTS["priority_match"]
        lit_verdicts[f"PCK{cut}"] = "priority_match"
        assert lit(kiosk, clean, 2, f"PCC{cut}") == VERDICT_LIGHTS["no_match"]
        lit_verdicts[f"PCC{cut}"] = "no_match"
        kiosk.plug(slow, 1, serial=f"PCS{cut}")
        kiosk.wait(lambda: kiosk.bay("front")["phase"] == "scanning", SCAN_TIMEOUT, "the slow scan")
        kiosk.sh(f"sleep {rng.uniform(0, 1.5):.2f}")
        kiosk.power_cut()
        kiosk.boot()  # the agent reaches READY: its journal reopened
        root_is_intact(kiosk)

    # a sync stick: the journal out, a new filter in
    newly_known = generated_picture(random.Random(4242), 320, 240)
    (tmp_path / "new.jpg").write_bytes(newly_known)
    builder = FilterBuilder(name="system test, new find")
    for kind, digest in digest_path(tmp_path / "new.jpg", ["sample", "blake3"]).items():
        builder.add(DigestEntry(kind, digest, "known", "priority", from_content=True))
    new_filter = tmp_path / "new-find.ftf"
    write_filter(new_filter, builder.build_unsigned(), load_private_key(lab.provider_key))
    stick_folder = tmp_path / "stick"
    stick_folder.mkdir()
    fs_uuid = str(uuid.uuid4())
    prepare_stick(lab.station, stick_folder, fs_uuid=fs_uuid, filters=[new_filter])
    files = {
        p.relative_to(stick_folder).as_posix(): p.read_bytes() for p in stick_folder.rglob("*") if p.is_file()
    }
    stick_image = tmp_path / "sync.img"
    make_filesystem(PartitionSpec("ext4", files, size=64 << 20, uuid=fs_uuid), stick_image)
    since = uptime(kiosk)
    stick = kiosk.plug(stick_image, 1, serial="SYNC")
    kiosk.wait(lambda: kiosk.bay("front")["verdict"] == "synced", SCAN_TIMEOUT, "the sync")
    assert steady_after(kiosk, "front", since, hold=0.0) is not None
    kiosk.unplug(stick)

    journal_out = tmp_path / "journal-out"
    journal_out.mkdir()
    subprocess.run(["debugfs", "-R", f"rdump fieldtriage-journal {journal_out}", str(stick_image)],
                   check=True, capture_output=True)  # fmt: skip
    enrollment = tmp_path / "enrollment.json"  # what the engineer took from the kiosk to the station
    enrollment.write_bytes(kiosk.read_file("/var/lib/fieldtriage/enrollment.json"))
    store = Store.open(lab.station.database_path)
    try:
        if read_enrollment(enrollment).kiosk_id not in store.kiosk_ids():
            enroll_kiosk(store, read_enrollment(enrollment), "system test kiosk", "QEMU")
    finally:
        store.close()
    summary = import_sources(lab.station, [journal_out])
    alarms = [f.line() for f in summary.findings if f.severity == "alarm"]
    assert alarms == [], alarms
    store = Store.open(lab.station.database_path)
    try:
        scans = [(str(s.device.get("serial")), s.verdict) for s in load_scans(store)]
    finally:
        store.close()
    for serial, verdict in lit_verdicts.items():
        matching = [v for k, v in scans if serial in k]
        assert matching == [verdict], (serial, scans)

    try:  # reloaded within the daemon's refresh (2 s) once the sync has put it in place
        kiosk.wait(lambda: "system test, new find" in kiosk.sh("cat /run/fieldtriage/status.json").out,
                   30, "the new filter in use")  # fmt: skip
    except GuestError as err:
        agent = kiosk.sh("journalctl -b --no-pager -u fieldtriage-agent | grep -i -e filter -e sync -e clock")
        folders = kiosk.sh("ls -l --full-time /var/lib/fieldtriage/filters /var/lib/fieldtriage/trust; date")
        raise AssertionError(f"{err}\n{agent.out}\n{folders.out}") from None
    found = make_disk_image(tmp_path / "found.img", "dos", [PartitionSpec("vfat", {"n.jpg": newly_known})])
    assert lit(kiosk, found, 2, "NEW") == VERDICT_LIGHTS["priority_match"]
