"""The kiosk demo: the real daemon, real udevd, loop devices and mounts, lights in the terminal.

Three demo devices are plugged in one after another as loop devices (udev sees them as it sees a
card inserted in a reader): a phone-like stick holding two known pictures among many, a clean stick,
and an encrypted one. Each is mounted read-only, scanned and shown on the bay's lights; the encrypted
journal is then exported, imported at a demo station, and reported.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import threading
import time
from pathlib import Path

from agent.config import parse_config
from agent.daemon.main import Daemon
from agent.demo.images import PartitionSpec, make_disk_image, missing_tools
from agent.demo.pictures import generated_picture
from agent.devices.mounter import Mounter
from agent.devices.selection import DeviceSelector, parse_rule
from agent.devices.source import UdevDeviceSource
from agent.journal import EncryptedJournal
from agent.journal.sync import export_segments
from agent.lights.bay import TerminalLights
from filters.errors import FieldtriageError, UsageError

DEMO_RULE = Path("/run/udev/rules.d/61-fieldtriage-demo.rules")
DEMO_MATCH = "FIELDTRIAGE_DEMO=1"
VERDICT_WORDS = {
    "priority_match": "PRIORITY MATCH (red)",
    "match": "MATCH (red, blinking)",
    "no_match": "NO MATCH (green)",
    "incomplete": "COULD NOT CHECK (amber)",
}


def demo_devices(folder: Path, known: list[Path], rng: random.Random) -> list[tuple[str, Path]]:
    """The three demo devices as disk images."""
    phone = {f"DCIM/Camera/IMG_2026{n:04}.jpg": generated_picture(rng) for n in range(40)}
    phone |= {f"Android/data/app{n}/cache.bin": rng.randbytes(rng.randrange(100, 20_000)) for n in range(60)}
    phone["DCIM/Camera/IMG_20269003.jpg"] = known[3].read_bytes()
    phone["WhatsApp/Media/WhatsApp Images/IMG-20261101-WA0007.jpg"] = known[17].read_bytes()
    clean = {f"Pictures/holiday_{n:03}.jpg": generated_picture(rng) for n in range(30)}
    clean |= {f"Documents/report_{n}.txt": rng.randbytes(rng.randrange(100, 5000)) for n in range(20)}
    return [
        ("phone with 2 known pictures among 100 files (GPT, FAT)", make_disk_image(
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


def wait_for(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def run_kiosk_demo(base: Path, filter_path: Path, trust_folder: Path, known: list[Path], seed: int) -> int:
    check_can_run()
    rng = random.Random(seed + 1)
    station_home = base / "station"
    from station.home import StationHome

    StationHome(station_home).init()
    folders = {name: base / "kiosk" / name for name in ("filters", "journal", "run")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    shutil.copy(filter_path, folders["filters"] / filter_path.name)
    raw = {
        "paths": {
            "runtime": str(folders["run"]),
            "filters": str(folders["filters"]),
            "trust": str(trust_folder),
            "journal": str(folders["journal"]),
            "device_key": str(base / "kiosk" / "device.key"),
            "station_key": str(station_home / "journal.pub"),
        },
        "devices": {"match": [DEMO_MATCH], "settle_seconds": 0.2},
        "lights": {"backend": "terminal"},
        "bays": [{"name": "bay 1", "red": 17, "amber": 27, "green": 22, "buzzer": 23}],
    }
    config = parse_config(raw, "demo")
    print("\nmaking three demo devices (disk images with generated content)...")
    (base / "devices").mkdir()
    devices = demo_devices(base / "devices", known, rng)
    from agent.daemon.provision import provision_kiosk

    provision_kiosk(config.paths.device_key)  # first boot: the kiosk's key and its enrollment file
    journal = EncryptedJournal.open(folders["journal"], config.paths.device_key, station_home / "journal.pub")
    install_demo_rule()
    source = UdevDeviceSource(DeviceSelector([parse_rule(DEMO_MATCH)], set()), settle_seconds=0.2)
    daemon = Daemon(
        config,
        source=source,
        mounter=Mounter(folders["run"]),
        lights={"bay 1": TerminalLights("bay 1")},
        journal=journal,
        journal_health=lambda: None if journal.healthy else str(journal.last_error),
    )
    runner = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, name="daemon")
    runner.start()
    bay = daemon.bays[0]
    try:
        wait_for(lambda: daemon.state == "running", 10)
        print("\nkiosk ready: the bay flashes green every 3 s")
        time.sleep(1.0)
        for description, image in devices:
            print(f"\nplugging in: {description}")
            loop = subprocess.run(
                ["losetup", "-f", "--show", str(image)], capture_output=True, text=True, check=True
            ).stdout.strip()
            try:
                if not wait_for(lambda: bay.verdict is not None and not bay.busy, 60):
                    print("  (no verdict within 60 s)")
                time.sleep(2.5)  # let the result be seen
                print(f"\n  verdict: {VERDICT_WORDS.get(bay.verdict or '', bay.verdict)}; pulling it out")
            finally:
                subprocess.run(["blockdev", "--setrw", loop], check=False)
                subprocess.run(["losetup", "-d", loop], check=False)
            wait_for(lambda: bay.lights.signal.value == "ready", 10)
            time.sleep(0.3)  # the terminal line follows at the next render
    finally:
        daemon.request_stop()
        runner.join(15)
        remove_demo_rule()
    return station_part(base, folders["journal"], station_home)


def station_part(base: Path, journal_folder: Path, station_home: Path) -> int:
    main = station_command

    stick = base / "sync-stick"
    stick.mkdir()
    copied = export_segments(journal_folder, stick)
    print(f"\njournal: {len(copied)} encrypted segment(s) copied to {stick} (the kiosk cannot read them)")
    enrollment = journal_folder.parent / "enrollment.json"  # agent/daemon/provision.py wrote it
    print("station: enrolling the kiosk from its enrollment file (only enrolled kiosks are imported)")
    print("station: importing, verifying signatures and chains, decrypting...")
    try:
        main(
            ["station", "kiosks", "add", str(enrollment), "--name", "demo kiosk, bay 1",
             "--location", "this computer", "--home", str(station_home)]
        )  # fmt: skip
        main(["station", "import", "--home", str(station_home), str(stick)])
        report = base / "report"
        main(["station", "report", "--home", str(station_home), "--format", "html", "-o", str(report)])
        main(["station", "report", "--home", str(station_home), "--format", "csv"])
    except FieldtriageError as err:
        print(f"station: {err}")
        return 2
    print(f"\nreport for the analyst: {report / 'index.html'}")
    return 0


def station_command(argv: list[str]) -> int:
    """``fieldtriage station ...`` run in this process, through the station's own parser (not
    agent.cli, which imports this module: no import circle)."""
    from station import cli as station_cli

    parser = argparse.ArgumentParser(prog="fieldtriage")
    station_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    status: int = args.handler(args)
    return status
