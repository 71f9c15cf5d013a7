"""The daemon end to end: real udevd, loop devices and mounts, the mock pin factory."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from agent.config import parse_config
from agent.daemon.cli import lights_for
from agent.daemon.main import Daemon
from agent.daemon.sync import SyncSetup
from agent.devices.mounter import Mounter
from agent.devices.selection import DeviceSelector, parse_rule
from agent.devices.source import UdevDeviceSource
from agent.journal import EncryptedJournal
from agent.journal.sync_token import TOKEN_NAME, write_sync_token
from agent.scan.reader_processes import ReaderPool
from filters.builder import FilterBuilder
from filters.container import write_filter
from filters.digests import digest_path
from filters.importers import DigestEntry
from filters.keys import generate_key_pair, load_private_key
from station.home import StationHome
from tests.agent.daemon.fake_kiosk import ListJournal

from ..conftest import TEST_MATCH
from ..devices.conftest import leftovers
from ..devices.images import PartitionSpec, make_disk_image, missing_tools, pullable_device

pytestmark = [pytest.mark.root, pytest.mark.udev]

PINS = {"front": (17, 27, 22, 23), "back": (5, 6, 13, None)}


@dataclass
class Kiosk:
    root: Path
    daemon: Daemon
    factory: MockFactory
    journal: ListJournal
    thread: threading.Thread
    loops: list[str] = field(default_factory=list)

    def bay(self, name: str = "front") -> Any:
        return next(b for b in self.daemon.bays if b.name == name)

    def pins(self, name: str = "front") -> tuple[bool, ...]:
        red, amber, green, _ = PINS[name]
        return tuple(bool(self.factory.pin(p).state) for p in (red, amber, green))

    def wait(self, condition: Callable[[], bool], seconds: float = 20) -> float:
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > seconds:
                raise AssertionError(f"timed out; bays: {[b.describe() for b in self.daemon.bays]}")
            time.sleep(0.02)
        return time.monotonic() - started

    def plug(self, image: Path) -> str:
        loop = subprocess.run(
            ["losetup", "-f", "--show", str(image)], capture_output=True, text=True, check=True
        )
        self.loops.append(loop.stdout.strip())
        return loop.stdout.strip()

    def unplug(self, loop: str) -> None:
        subprocess.run(["blockdev", "--setrw", loop], check=False)
        subprocess.run(["losetup", "-d", loop], check=True)
        self.loops.remove(loop)


def known_files(count: int = 3) -> dict[str, bytes]:
    return {f"known_{i}.jpg": os.urandom(60_000 + 5000 * i) for i in range(count)}


def build_filter(folder: Path, key: Path, files: dict[str, bytes], name: str = "daemon test") -> Path:
    staging = folder / f".{name}-staging"
    staging.mkdir()
    builder = FilterBuilder(name=name)
    for file_name, data in files.items():
        (staging / file_name).write_bytes(data)
        for kind, digest in digest_path(staging / file_name, ["sample", "blake3"]).items():
            builder.add(DigestEntry(kind, digest, "test-known", "priority", from_content=True))
    shutil.rmtree(staging)
    path = folder / f"{name.replace(' ', '-')}.ftf"
    write_filter(path, builder.build_unsigned(), load_private_key(key))
    return path


@pytest.fixture
def known() -> dict[str, bytes]:
    return known_files()


def start_kiosk(
    root: Path,
    *,
    with_filter: dict[str, bytes] | None,
    bays: tuple[str, ...] = ("front",),
    sync: bool = False,
    scan: dict[str, Any] | None = None,
    journal: Any = None,
    journal_health: Callable[[], str | None] = lambda: None,
) -> Kiosk:
    for folder in ("filters", "trust", "run", "journal", "keys"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    key, public = generate_key_pair(root / "keys" / "provider")
    shutil.copy(public, root / "trust" / "provider.pub")
    if with_filter is not None:
        build_filter(root / "filters", key, with_filter)
    raw = {
        "paths": {name: str(root / name) for name in ("filters", "trust", "journal")}
        | {"runtime": str(root / "run")},
        "devices": {"match": [TEST_MATCH], "settle_seconds": 0.1},
        "lights": {"backend": "mock"},
        "scan": scan or {},
        "bays": [
            {"name": name, "red": PINS[name][0], "amber": PINS[name][1], "green": PINS[name][2]}
            | ({"buzzer": PINS[name][3]} if PINS[name][3] is not None else {})
            for name in bays
        ],
    }
    config = parse_config(raw, "test.toml")
    factory = MockFactory()
    journal = ListJournal() if journal is None else journal
    setup = None
    if sync:
        station = StationHome(root / "station")
        station.init()
        journal = EncryptedJournal.open(
            root / "journal", root / "keys" / "device.key", station.journal_public_path
        )
        setup = SyncSetup(station.signing_public_key(), journal, config.paths)
    source = UdevDeviceSource(DeviceSelector([parse_rule(TEST_MATCH)], set()), settle_seconds=0.1)
    daemon = Daemon(
        config,
        source=source,
        mounter=Mounter(root / "run"),
        lights=lights_for(config, factory),
        journal=journal,
        journal_health=journal_health,
        sync=setup,
    )
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    kiosk = Kiosk(root, daemon, factory, journal, thread)
    kiosk.wait(lambda: daemon.state == "running")
    return kiosk


@pytest.fixture
def kiosk_factory(tmp_path: Path, udev_test_rule: None) -> Iterator[Callable[..., Kiosk]]:
    started: list[Kiosk] = []
    if missing_tools(["ext4"]):
        pytest.skip("needs mkfs.ext4")

    def start(**kwargs: Any) -> Kiosk:
        kiosk = start_kiosk(tmp_path / f"kiosk{len(started)}", **kwargs)
        started.append(kiosk)
        return kiosk

    yield start
    for kiosk in started:
        kiosk.daemon.request_stop()
        kiosk.thread.join(10)
        for loop in list(kiosk.loops):
            kiosk.unplug(loop)
        assert not kiosk.thread.is_alive()
        assert leftovers(kiosk.root / "run") == []


def image(tmp_path: Path, files: dict[str, bytes], name: str, kind: str = "ext4", size: int = 0) -> Path:
    return make_disk_image(
        tmp_path / f"fieldtriage-test-{name}.img", "dos", [PartitionSpec(kind, files, size=size)]
    )


def filler(count: int, size: int) -> dict[str, bytes]:
    return {f"Documents/file_{i:05}.bin": os.urandom(size) for i in range(count)}


def test_known_item_lights_red_early_and_the_scan_goes_on(
    kiosk_factory: Callable[..., Kiosk], known: dict[str, bytes], tmp_path: Path
) -> None:
    kiosk = kiosk_factory(with_filter=known)
    assert kiosk.pins() == (False, False, False) or kiosk.bay().lights.signal.value == "ready"
    files = filler(300, 200_000) | {"DCIM/Camera/IMG_0001.jpg": known["known_1.jpg"]}
    plugged_at = time.monotonic()
    kiosk.plug(image(tmp_path, files, "hit", size=120 << 20))
    kiosk.wait(lambda: kiosk.pins()[0])
    assert time.monotonic() - plugged_at < 2.0, "red within 2 s of the plug (udev settle and mount included)"
    kiosk.wait(lambda: kiosk.bay().verdict is not None)
    assert kiosk.bay().verdict == "priority_match"
    (record,) = [r for r in kiosk.journal.records if r["type"] == "scan"]
    assert record["scan"]["counts"]["files_read"] == len(files), "the scan went on to the end"
    # red came while the scan was still going (the scan's own clock: a 12 KiB-a-file auto scan of
    # this device takes a tenth of a second, too short to observe from here without a race)
    timings = record["scan"]["timings"]
    assert timings["first_priority_hit_s"] < timings["elapsed_s"], timings
    assert kiosk.bay().lights.shown == ["ready", "scanning", "scanning_priority_hit", "priority_match"]
    assert record["lights_shown"] == ["scanning", "scanning_priority_hit", "priority_match"]
    # the whole history of the red pin: off at start, on at the first hit, never off again
    assert [s.state for s in kiosk.factory.pin(PINS["front"][0]).states] == [False, True]
    kiosk.wait(lambda: kiosk.pins() == (True, False, False))


def test_clean_device_is_green_only_after_the_scan(
    kiosk_factory: Callable[..., Kiosk], known: dict[str, bytes], tmp_path: Path
) -> None:
    kiosk = kiosk_factory(with_filter=known)
    green = kiosk.factory.pin(PINS["front"][2])
    kiosk.plug(image(tmp_path, filler(50, 100_000), "clean"))
    kiosk.wait(lambda: kiosk.bay().verdict is not None)
    assert kiosk.bay().verdict == "no_match"
    assert kiosk.bay().lights.shown == ["ready", "scanning", "no_match"]
    assert [s.state for s in kiosk.factory.pin(PINS["front"][0]).states] == [False], "red never lit"
    kiosk.wait(lambda: kiosk.pins() == (False, False, True))
    (record,) = [r for r in kiosk.journal.records if r["type"] == "scan"]
    assert record["verdict"] == "no_match" and record["lights_shown"] == ["scanning", "no_match"]
    # The whole green history: every lit period before the last was a 0.1 s ready heartbeat (a mock
    # pin's timestamps are the times since its previous change); only the verdict holds it lit.
    states = green.states
    assert states[-1].state
    lit_before = [states[i + 1].timestamp for i in range(len(states) - 1) if states[i].state]
    assert all(period < 0.2 for period in lit_before), lit_before


def test_scan_workers_set_reads_with_reader_processes_in_the_daemon(
    kiosk_factory: Callable[..., Kiosk],
    known: dict[str, bytes],
    tmp_path: Path,
    reader_pools: list[ReaderPool],
) -> None:
    """``scan.workers = 3`` (full mode: nothing to confirm): reader processes started from the
    daemon's bay thread read a real read-only mount: every file read, the hit found, no errors."""
    kiosk = kiosk_factory(with_filter=known, scan={"workers": 3, "mode": "full"})
    files = filler(400, 3_000) | {"DCIM/Camera/IMG_0001.jpg": known["known_1.jpg"]}
    kiosk.plug(image(tmp_path, files, "procs"))
    kiosk.wait(lambda: kiosk.bay().verdict is not None)
    assert kiosk.bay().verdict == "priority_match"
    assert [pool.count for pool in reader_pools] == [2]
    (record,) = [r for r in kiosk.journal.records if r["type"] == "scan"]
    assert record["scan"]["counts"]["files_read"] == len(files)
    assert record["scan"]["errors"] == []


def test_encrypted_device_could_not_check(
    kiosk_factory: Callable[..., Kiosk], known: dict[str, bytes], tmp_path: Path
) -> None:
    if missing_tools(["luks"]):
        pytest.skip("needs cryptsetup")
    kiosk = kiosk_factory(with_filter=known)
    kiosk.plug(image(tmp_path, {}, "luks", kind="luks"))
    kiosk.wait(lambda: kiosk.bay().verdict is not None)
    assert kiosk.bay().verdict == "incomplete"
    assert kiosk.bay().lights.shown == ["ready", "scanning", "could_not_check"]
    kiosk.wait(lambda: kiosk.pins() == (False, True, False))
    assert [s.state for s in kiosk.factory.pin(PINS["front"][0]).states] == [False], "red never lit"
    (record,) = [r for r in kiosk.journal.records if r["type"] == "scan"]
    assert "encrypted volume (LUKS)" in " ".join(record["device_problems"])
    kiosk.unplug(kiosk.loops[-1])  # taken out at once: its scan was whole, so no hold as if pulled early
    kiosk.wait(lambda: kiosk.bay().phase == "ready", 10)


def test_pulled_out_mid_scan_then_next_device_works(
    kiosk_factory: Callable[..., Kiosk], known: dict[str, bytes], tmp_path: Path
) -> None:
    """Reads fail (EIO) from the moment of the pull, as on a real USB pull; then the device goes."""
    kiosk = kiosk_factory(with_filter=known)
    many = image(tmp_path, filler(12_000, 600), "many", size=256 << 20)
    with pullable_device(many) as device:
        kiosk.wait(lambda: kiosk.bay().phase == "scanning")
        device.pull()
        subprocess.run(["losetup", "-d", device.path], check=True)  # goes once the agent lets go
        kiosk.wait(lambda: kiosk.bay().verdict is not None)
        assert kiosk.bay().verdict == "incomplete"
        assert kiosk.bay().lights.shown == ["ready", "scanning", "could_not_check"]
        # pulled out early: "could not check" stays lit (docs/operations.md: 60 s or the next device),
        # whether udev's remove came before the worker ended or just after
        kiosk.wait(lambda: kiosk.bay().device is None and kiosk.bay().phase == "removed early")
        assert kiosk.bay().lights.signal.value == "could_not_check"
    (record,) = [r for r in kiosk.journal.records if r["type"] == "scan"]
    assert record["scan"]["errors"], "the failed reads are named in the record"
    kiosk.plug(image(tmp_path, {"DCIM/x.jpg": known["known_0.jpg"]}, "next"))
    kiosk.wait(lambda: kiosk.bay().verdict == "priority_match")


def test_two_bays_at_once(
    kiosk_factory: Callable[..., Kiosk], known: dict[str, bytes], tmp_path: Path
) -> None:
    kiosk = kiosk_factory(with_filter=known, bays=("front", "back"))
    kiosk.plug(image(tmp_path, {"a.jpg": known["known_2.jpg"]}, "one"))
    kiosk.plug(image(tmp_path, filler(20, 50_000), "two"))
    kiosk.wait(lambda: all(b.verdict is not None for b in kiosk.daemon.bays))
    assert sorted(b.verdict for b in kiosk.daemon.bays) == ["no_match", "priority_match"]
    kiosk.wait(
        lambda: (
            sorted([kiosk.pins("front"), kiosk.pins("back")]) == [(False, False, True), (True, False, False)]
        )
    )


def test_no_valid_filter_shows_fault_and_scans_nothing_then_a_new_filter_is_used(
    kiosk_factory: Callable[..., Kiosk], known: dict[str, bytes], tmp_path: Path
) -> None:
    kiosk = kiosk_factory(with_filter=None)
    kiosk.wait(lambda: kiosk.bay().lights.signal.value == "fault")
    first = kiosk.journal.records[0]
    assert first["type"] == "filters" and first["filters"] == [] and first["problems"]
    loop = kiosk.plug(image(tmp_path, {"a.jpg": known["known_0.jpg"]}, "nofilter"))
    kiosk.wait(lambda: any(r["type"] == "not_scanned" for r in kiosk.journal.records))
    assert kiosk.bay().verdict is None and kiosk.bay().lights.signal.value == "fault"
    assert not [r for r in kiosk.journal.records if r["type"] == "scan"]
    kiosk.unplug(loop)
    key = kiosk.root / "keys" / "provider.key"
    build_filter(kiosk.root / "filters", key, known, name="added later")
    kiosk.wait(lambda: kiosk.bay().lights.signal.value == "ready")
    carried = [r for r in kiosk.journal.records if r["type"] == "filters"][-1]
    assert [f["name"] for f in carried["filters"]] == ["added later"], "the station learns the new filter"
    kiosk.plug(image(tmp_path, {"a.jpg": known["known_0.jpg"]}, "withfilter"))
    kiosk.wait(lambda: kiosk.bay().verdict == "priority_match")


@pytest.mark.slow
def test_sigterm_stops_within_five_seconds_and_leaves_nothing(tmp_path: Path, udev_test_rule: None) -> None:
    root = tmp_path / "kiosk"
    for folder in ("filters", "trust", "run", "journal", "keys"):
        (root / folder).mkdir(parents=True)
    key, public = generate_key_pair(root / "keys" / "provider")
    shutil.copy(public, root / "trust" / "provider.pub")
    build_filter(root / "filters", key, known_files())
    config = root / "agent.toml"
    config.write_text(
        f'[paths]\nfilters = "{root}/filters"\ntrust = "{root}/trust"\nruntime = "{root}/run"\n'
        f'journal = "{root}/journal"\n[devices]\nmatch = ["FIELDTRIAGE_TEST=1"]\nsettle_seconds = 0.1\n'
        '[lights]\nbackend = "mock"\n[[bays]]\nname = "front"\nred = 17\namber = 27\ngreen = 22\n'
    )
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "agent", "--config", str(config)],
        cwd=Path(__file__).resolve().parents[3],
        stderr=subprocess.PIPE,
        text=True,
    )
    disk = image(tmp_path, filler(12_000, 600), "sigterm", size=256 << 20)
    loop = subprocess.run(
        ["losetup", "-f", "--show", str(disk)], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        deadline = time.monotonic() + 20
        while not list((root / "run").glob("mounts/*/p1")) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not list((root / "run").glob("mounts/*/p1")):
            agent.kill()
            raise AssertionError(f"the agent never mounted the device: {agent.communicate()[1]}")
        stopped = time.monotonic()
        agent.terminate()
        assert agent.wait(10) == 0, agent.stderr.read() if agent.stderr else ""
        assert time.monotonic() - stopped < 5.0
        assert leftovers(root / "run") == []
    finally:
        if agent.poll() is None:
            agent.kill()
        subprocess.run(["blockdev", "--setrw", loop], check=False)
        subprocess.run(["losetup", "-d", loop], check=False)


def sync_token_bytes(folder: Path, fs_uuid: str, key: Any) -> bytes:
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    return write_sync_token(folder, fs_uuid, key, now, dt.timedelta(days=1)).read_bytes()


def test_sync_stick_takes_the_journal_and_new_filters_and_a_forged_one_is_evidence(
    kiosk_factory: Callable[..., Kiosk], known: dict[str, bytes], tmp_path: Path
) -> None:
    kiosk = kiosk_factory(with_filter=known, sync=True)
    kiosk.plug(image(tmp_path, {"a.jpg": known["known_0.jpg"]}, "first-scan"))
    kiosk.wait(lambda: kiosk.bay().verdict == "priority_match")
    kiosk.unplug(kiosk.loops[0])
    kiosk.wait(lambda: kiosk.bay().lights.signal.value == "ready")

    station_key = StationHome(kiosk.root / "station").signing_private_key()
    new_filter = build_filter(
        tmp_path, kiosk.root / "keys" / "provider.key", known_files(2), name="from stick"
    )
    fs_uuid = str(uuid.uuid4())
    stick_files = {
        TOKEN_NAME: sync_token_bytes(tmp_path / "token", fs_uuid, station_key),
        f"fieldtriage-filters/{new_filter.name}": new_filter.read_bytes(),
    }
    stick = make_disk_image(
        tmp_path / "fieldtriage-test-sync.img", "dos", [PartitionSpec("ext4", stick_files, uuid=fs_uuid)]
    )
    loop = kiosk.plug(stick)
    kiosk.wait(lambda: kiosk.bay().verdict is not None)
    assert kiosk.bay().verdict == "synced"
    assert kiosk.bay().lights.shown[-2:] == ["sync", "sync_done"]
    assert (kiosk.root / "filters" / new_filter.name).exists(), "the new filter was taken"
    kiosk.unplug(loop)
    with mounted_read_only(stick) as folder:
        segments = list(folder.glob("fieldtriage-journal/*/segment-*"))
    assert segments, "the journal was copied to the stick"

    forger = generate_key_pair(tmp_path / "forger")[0]
    forged_uuid = str(uuid.uuid4())
    forged = make_disk_image(
        tmp_path / "fieldtriage-test-forged.img",
        "dos",
        [
            PartitionSpec(
                "ext4",
                {TOKEN_NAME: sync_token_bytes(tmp_path / "forged", forged_uuid, load_private_key(forger))},
                uuid=forged_uuid,
            )
        ],
    )
    before = forged.read_bytes()
    kiosk.wait(lambda: kiosk.bay().lights.signal.value == "ready")
    kiosk.plug(forged)
    kiosk.wait(lambda: kiosk.bay().verdict is not None)
    assert kiosk.bay().verdict == "no_match", "a stick with a forged token is scanned as evidence"
    assert forged.read_bytes() == before


@contextmanager
def mounted_read_only(disk: Path) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp())
    offset = 1 << 20
    subprocess.run(["mount", "-o", f"ro,noload,loop,offset={offset}", str(disk), str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
        folder.rmdir()
