"""The kiosk demo: the field flow end to end with the real daemon, real udevd, loop devices and
mounts, the bay's lights in the terminal, and the station's own commands (agent/demo/station.py).

1. The station is initialised; the kiosk is provisioned (its key and enrollment file) and the
   station enrolls it, then prepares a sync stick (a disk image: ext4 with the token's UUID).
2. Kiosk: three demo devices are plugged in one after another as loop devices (udev sees them as it
   sees a card inserted in a reader): a phone-like stick holding two known pictures among many, a
   clean stick and an encrypted one; each is mounted read-only, scanned and shown on the bay's
   lights. Then the sync stick: its token verifies, the daemon remounts it read-write and exports
   the encrypted journal onto it.
3. Station: the stick is read, imported and reported; the analyst confirms one hit, marks the other
   a false positive to exclude, shares a filter of the confirmed finds and prepares the stick again.
4. Kiosk again: the stick brings the shared filter and the exclusion list; the phone plugged in
   again is still red from the confirmed picture, now found by both filters, while the false
   positive is excluded; the stick takes the journal once more and the station imports it.

The kiosk never steps the clock in the demo (its clock stepper has no helper to ask): the host's
clock is not the demo's to set.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, parse_config
from agent.daemon.clock_step import ClockStepper
from agent.daemon.main import Daemon
from agent.daemon.provision import ENROLLMENT_NAME, provision_kiosk
from agent.daemon.sync import SyncSetup
from agent.demo import station
from agent.demo.images import PartitionSpec, make_disk_image, missing_tools
from agent.demo.pictures import generated_picture
from agent.devices.mounter import Mounter
from agent.devices.selection import DeviceSelector, parse_rule
from agent.devices.source import UdevDeviceSource
from agent.journal import EncryptedJournal
from agent.lights.bay import TerminalLights
from filters.errors import UsageError
from filters.keys import load_public_key

DEMO_RULE = Path("/run/udev/rules.d/61-fieldtriage-demo.rules")
DEMO_MATCH = "FIELDTRIAGE_DEMO=1"
VERDICT_WORDS = {
    "priority_match": "PRIORITY MATCH (red)",
    "match": "MATCH (red, blinking)",
    "no_match": "NO MATCH (green)",
    "incomplete": "COULD NOT CHECK (amber)",
}
SYNC_WORDS = {"synced": "SYNC DONE (green, 2 short flashes)", "sync failed": "SYNC FAILED (fault)"}
PHONE = "phone with 2 known pictures among 100 files (GPT, FAT)"


def demo_devices(folder: Path, known: list[Path], rng: random.Random) -> list[tuple[str, Path]]:
    """The three demo devices as disk images."""
    phone = {f"DCIM/Camera/IMG_2026{n:04}.jpg": generated_picture(rng) for n in range(40)}
    phone |= {f"Android/data/app{n}/cache.bin": rng.randbytes(rng.randrange(100, 20_000)) for n in range(60)}
    phone[station.CONFIRMED_PATH] = known[3].read_bytes()
    phone[station.BENIGN_PATH] = known[17].read_bytes()
    clean = {f"Pictures/holiday_{n:03}.jpg": generated_picture(rng) for n in range(30)}
    clean |= {f"Documents/report_{n}.txt": rng.randbytes(rng.randrange(100, 5000)) for n in range(20)}
    return [
        (PHONE, make_disk_image(
            folder / "fieldtriage-demo-phone.img", "gpt", [PartitionSpec("vfat", phone, size=48 << 20)])),
        ("clean USB stick (MBR, ext4)", make_disk_image(
            folder / "fieldtriage-demo-clean.img", "dos", [PartitionSpec("ext4", clean, size=16 << 20)])),
        ("encrypted USB stick (LUKS)", make_disk_image(
            folder / "fieldtriage-demo-encrypted.img", "dos", [PartitionSpec("luks")])),
    ]  # fmt: skip


def install_demo_rule() -> None:
    DEMO_RULE.parent.mkdir(parents=True, exist_ok=True)
    DEMO_RULE.write_text(
        'SUBSYSTEM=="block", KERNEL=="loop*", ATTR{loop/backing_file}=="*fieldtriage-demo-*", '
        'ENV{FIELDTRIAGE_DEMO}="1"\n'
    )
    subprocess.run(["udevadm", "control", "--reload"], check=True)


def remove_demo_rule() -> None:
    DEMO_RULE.unlink(missing_ok=True)
    subprocess.run(["udevadm", "control", "--reload"], check=False)


def check_can_run() -> None:
    if os.geteuid() != 0:
        raise UsageError(
            "demo", "the kiosk part needs root (loop devices and mounts): run `make demo` as root"
        )
    if subprocess.run(["udevadm", "control", "--ping"], capture_output=True).returncode != 0:
        raise UsageError(
            "udevd", "not running: `make demo` starts it, or run /lib/systemd/systemd-udevd --daemon"
        )
    missing = missing_tools(["vfat", "ext4", "luks"])
    if missing:
        raise UsageError("demo", f"needs {', '.join(missing)}: `make demo` installs them")


def wait_for(condition: Callable[[], object], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class RecordingJournal:
    """The kiosk's encrypted journal, remembering what this run appended: the demo says what the
    kiosk recorded, which the kiosk itself cannot read back (the journal is sealed to the station)."""

    def __init__(self, journal: EncryptedJournal) -> None:
        self.journal = journal
        self.records: list[dict[str, Any]] = []

    def append(self, record: dict[str, Any]) -> None:
        self.journal.append(record)
        self.records.append(record)

    def rotate(self) -> None:
        self.journal.rotate()

    def close(self) -> None:
        self.journal.close()


def kiosk_config(base: Path, filter_path: Path, provider_keys: Path, station_home: Path) -> AgentConfig:
    """The kiosk's folders (its filter, the provider's public key) and configuration."""
    folders = {name: base / "kiosk" / name for name in ("filters", "trust", "journal", "run")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    shutil.copy(filter_path, folders["filters"] / filter_path.name)
    for public in provider_keys.glob("*.pub"):
        shutil.copy(public, folders["trust"] / public.name)
    raw = {
        "paths": {name: str(folder) for name, folder in folders.items() if name != "run"}
        | {
            "runtime": str(folders["run"]),
            "device_key": str(base / "kiosk" / "device.key"),
            "station_key": str(station_home / "journal.pub"),
            "station_signing_key": str(station_home / "signing.pub"),
        },
        "devices": {"match": [DEMO_MATCH], "settle_seconds": 0.2},
        "lights": {"backend": "terminal"},
        "bays": [{"name": "bay 1", "red": 17, "amber": 27, "green": 22, "buzzer": 23}],
    }
    return parse_config(raw, "demo")


class DemoKiosk:
    """The real daemon on the demo's configuration and journal, one bay; devices plugged in as loop
    devices of their disk images."""

    def __init__(self, config: AgentConfig) -> None:
        paths = config.paths
        assert paths.station_key is not None and paths.station_signing_key is not None
        inner = EncryptedJournal.open(paths.journal, paths.device_key, paths.station_key)
        self.journal = RecordingJournal(inner)
        clock = ClockStepper(paths.runtime / "clock", answer_folder=paths.runtime / "no-clock-helper")
        source = UdevDeviceSource(DeviceSelector([parse_rule(DEMO_MATCH)], set()), settle_seconds=0.2)
        self.daemon = Daemon(
            config,
            source=source,
            mounter=Mounter(paths.runtime),
            lights={"bay 1": TerminalLights("bay 1")},
            journal=self.journal,
            journal_health=lambda: None if inner.healthy else str(inner.last_error),
            sync=SyncSetup(load_public_key(paths.station_signing_key), self.journal, paths, clock=clock),
        )
        self.bay = self.daemon.bays[0]
        self.runner = threading.Thread(target=self.daemon.run, kwargs={"install_signals": False})

    def plug(self, description: str, image: Path) -> list[dict[str, Any]]:
        """Plug ``image`` in until its bay has ended (60 s at most), say what the kiosk showed and
        recorded, pull it out; the records the kiosk journaled for it."""
        print(f"\nplugging in: {description}")
        bay, before, started = self.bay, len(self.journal.records), self.bay.started
        done = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
        if done.returncode != 0:
            raise UsageError(image, f"cannot attach a loop device: {done.stderr.strip()}")
        loop = done.stdout.strip()
        try:  # bay.started changes when the bay takes the device: an earlier verdict is not this one
            if not wait_for(lambda: bay.started != started and bay.verdict is not None and not bay.busy, 60):
                print("  (nothing shown within 60 s)")
            verdict = bay.verdict
            pause = 1.0 if verdict in SYNC_WORDS else 2.5  # let the result be seen
            time.sleep(pause)
            shown = SYNC_WORDS.get(verdict or "") or VERDICT_WORDS.get(verdict or "", str(verdict))
            print(f"\n  {'kiosk shows' if verdict in SYNC_WORDS else 'verdict'}: {shown}; pulling it out")
            records = self.journal.records[before:]
            show_records(records)
        finally:
            subprocess.run(["blockdev", "--setrw", loop], check=False)
            subprocess.run(["losetup", "-d", loop], check=False)
        if not wait_for(lambda: bay.lights.signal.value == "ready", 10):
            print(f"  (the bay shows {bay.lights.signal.value}, not ready, 10 s after)")
        time.sleep(0.3)  # the terminal line follows at the next render
        return records


@contextmanager
def kiosk_running(config: AgentConfig) -> Iterator[DemoKiosk]:
    """The daemon started (and the demo's udev rule in place) until the block ends, whatever happens."""
    install_demo_rule()
    kiosk = None
    try:
        kiosk = DemoKiosk(config)
        kiosk.runner.start()
        if wait_for(lambda: kiosk is not None and kiosk.daemon.state == "running", 10):
            print("\nkiosk ready: the bay flashes green every 3 s")
        else:
            print(f"\nkiosk: the daemon is still {kiosk.daemon.state} after 10 s")
        time.sleep(1.0)
        yield kiosk
    finally:
        if kiosk is not None and kiosk.runner.is_alive():
            kiosk.daemon.request_stop()
            kiosk.runner.join(15)
        remove_demo_rule()
        print("kiosk: stopped")


def show_records(records: list[dict[str, Any]]) -> None:
    """What the kiosk recorded for a device: its hits and exclusions, or what a sync did."""
    for record in records:
        if record.get("type") == "scan":
            scan = record.get("scan") or {}
            for hit in scan.get("hits", []):
                names = sorted({m["filter_name"] for m in hit.get("matches", [])})
                print(f"  kiosk: hit {hit['path']}: known to {len(names)} filter(s): {', '.join(names)}")
            for skipped in scan.get("skipped", []):
                if skipped.get("code") == "excluded":
                    print(f"  kiosk: not a hit: {skipped['path']}: {skipped['reason']}")
        elif record.get("type") == "sync":
            if record.get("error"):
                print(f"  kiosk: sync failed: {record['error']}")
                continue
            copied = record.get("segments_copied", [])
            print(f"  kiosk: {len(copied)} encrypted journal segment(s) written to the stick")
            taken = [f"filter {name}" for name in record.get("filters_taken", [])]
            taken += [f"trust key {name}" for name in record.get("trust_keys_taken", [])]
            print(f"  kiosk: took from the stick: {', '.join(taken) or 'no new filter or key'}")
            exclusions = record.get("exclusions_taken")
            if exclusions:
                print(
                    f"  kiosk: took exclusion list {exclusions['list_id']} "
                    f"({exclusions['count']} reviewed false positive(s))"
                )
            for refused in record.get("refused", []):
                print(f"  kiosk: refused from the stick: {refused}")


def kiosk_filters(kiosk: DemoKiosk) -> None:
    """Wait (10 s at most) for the daemon to load what the stick brought, and say what is in use."""
    store = kiosk.daemon.filters
    wait_for(lambda: len(store.filters) >= 2 and bool(store.exclusions and store.exclusions.exclusions), 10)
    names = ", ".join(f.metadata.name for f in store.filters)
    excluded = store.exclusions
    count = len(excluded.exclusions) if excluded is not None else 0
    listed = f" (list {excluded.list_id})" if excluded is not None else ""
    print(f"kiosk: filters in use: {names}; {count} reviewed false positive(s) excluded{listed}")


def run_kiosk_demo(base: Path, filter_path: Path, trust_folder: Path, known: list[Path], seed: int) -> int:
    check_can_run()
    rng = random.Random(seed + 1)
    station_home = base / "station"
    from station.home import StationHome

    StationHome(station_home).init()
    print(f"\nstation: initialised in {station_home} (a journal key kiosks seal to, a key signing sticks)")
    config = kiosk_config(base, filter_path, trust_folder, station_home)
    provision_kiosk(config.paths.device_key)  # first boot: the kiosk's key and its enrollment file
    print("kiosk: provisioned: its own signing key and an enrollment file for the station")
    station.enroll(station_home, config.paths.device_key.with_name(ENROLLMENT_NAME))
    print("\nmaking three demo devices (disk images with generated content)...")
    (base / "devices").mkdir()
    devices = demo_devices(base / "devices", known, rng)
    stick = base / "devices" / "fieldtriage-demo-sync-stick.img"
    fs_uuid = station.make_sync_stick(station_home, stick)

    with kiosk_running(config) as kiosk:
        for description, image in devices:
            kiosk.plug(description, image)
        kiosk.plug("the sync stick from the station", stick)
    statuses = [station.import_stick(station_home, stick)]
    station.report(station_home, base / "report")
    station.review(station_home)
    station.share(station_home)
    station.refresh_stick(station_home, stick, fs_uuid)

    print("\nback at the kiosk, with the same journal and configuration:")
    with kiosk_running(config) as kiosk:
        kiosk.plug("the sync stick, prepared again by the station", stick)
        kiosk_filters(kiosk)
        kiosk.plug(f"{PHONE}, again", devices[0][1])
        kiosk.plug("the sync stick, to take the journal out", stick)
    statuses.append(station.import_stick(station_home, stick))
    station.report(station_home, base / "report")
    station.station(station_home, "report", "--format", "csv")
    return 0 if statuses == [0, 0] else 1
