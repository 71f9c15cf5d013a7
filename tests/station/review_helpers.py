"""A kiosk's scans through the real pieces, for the review and share tests: synthetic files (random
bytes stand in for known material), a filter built and signed from them, the real scanner, the
daemon's scan record in a real encrypted journal, the station's import (after enrollment, when the
station enrolls kiosks)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.device_scan import DeviceScanResult, device_verdict
from agent.scan import Scanner
from agent.scan.blocks import BlockHit, BlockSampleResult, BlockSettings, Region
from agent.scan.report import ScanReport
from filters.model import ContrabandFilter
from station.home import StationHome
from station.importer import import_sources
from station.scans import Scan, load_scans
from station.store import Store
from tests.agent.journal.helpers import open_journal, run_cli
from tests.agent.scan.conftest import FilterFactory, write_random

SIZE = 40_000  # sampled blocks: [0, 4096), [16384, 20480), [32768, 36864)
OUTSIDE_SAMPLES = 8_000  # a byte no sampled block holds


def station(*argv: str) -> tuple[int, str, str]:
    from station import cli as station_cli

    return run_cli(station_cli.register, ["station", *argv])


@dataclass
class Unit:
    """A station, one kiosk's journal folder, a lab filter and the files it knows."""

    root: Path
    home: StationHome
    factory: FilterFactory
    known: list[Path]  # known material: in the filter
    benign: Path  # a benign file that a hash set holds by mistake: in the filter too
    collision: Path  # a benign file with the size and sampled blocks of known[0]
    contraband: ContrabandFilter
    journal_folder: Path = field(init=False)

    def __post_init__(self) -> None:
        self.journal_folder = self.root / "kiosk"

    def device(self, name: str, *files: Path, clean: int = 3) -> Path:
        """A device folder holding copies of ``files`` (in DCIM) and a few clean files."""
        folder = self.root / "devices" / name
        for file in files:
            target = folder / "DCIM" / file.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(file.read_bytes())
        for number in range(clean):
            write_random(folder / "Pictures" / f"clean-{number}.jpg", 20_000 + number, hash(name) + number)
        return folder

    def scan(
        self, device: Path, *, mode: str = "auto", filters: list[ContrabandFilter] | None = None
    ) -> ScanReport:
        return Scanner(filters or [self.contraband], workers=1, mode=mode).scan([device])  # type: ignore[arg-type]

    def journal_scans(self, *reports: tuple[str, ScanReport]) -> None:
        """Journal each report as the daemon does (one ``scan`` record), with paths on the device."""
        enroll(self)
        with open_journal(self.journal_folder, self.home) as journal:
            for serial, report in reports:
                journal.append(daemon_record(serial, report, self.root / "devices"))

    def import_journal(self) -> None:
        import_sources(self.home, [self.journal_folder / "journal"])

    def scans(self) -> list[Scan]:
        store = self.store()
        try:
            return load_scans(store)
        finally:
            store.close()

    def store(self) -> Store:
        return Store.open(self.home.database_path)


def daemon_record(serial: str, report: ScanReport, devices: Path) -> dict[str, Any]:
    document = report.to_json(timings=False)
    prefix = f"{devices.as_posix()}/{serial}"
    for entry in document["hits"] + document["skipped"] + document["errors"]:
        entry["path"] = entry["path"].removeprefix(prefix)
    return {
        "type": "scan",
        "bay": "front",
        "device": {"vendor": "Synthetic", "model": "Stick", "serial": serial, "devnode": "/dev/sdx"},
        "filters": [
            {"id": f["filter_id"], "name": f["name"], "signer": f["signer"]} for f in document["filters"]
        ],
        "mode": report.mode,
        "started": "2026-01-10T10:00:00.000000Z",
        "finished": "2026-01-10T10:01:00.000000Z",
        "seconds": 60.0,
        "verdict": report.verdict,
        "removed_early": False,
        "lights_shown": ["scanning", report.verdict],
        "notes": [],
        "scan": document,
    }


def block_sample_fields(
    hits: Sequence[tuple[int, str]] = (),
    *,
    files: str = "not checked: no filesystem recognised (unformatted, unknown or damaged)",
    filter_name: str = "lab",
    category: str = "known",
    stopped: str | None = None,
    seed: int = 2**64 - 1,
) -> dict[str, Any]:
    """The ``blocks``, ``block_hits`` and ``statement`` of a daemon's ``scan`` record, made by the
    kiosk's own classes (agent/scan/blocks.py, agent/device_scan.py) for a 64 MiB stick: partition 1
    (FAT32, files checked), partition 2 (``files``), the space before them; a block hit per
    ``(offset, priority)``, in partition 2."""
    mib = 1 << 20
    regions = [
        Region(0, mib, 0, 4096, "outside partitions 0-1048576"),
        Region(mib, 32 * mib, mib + 16384, 4096, "partition 1", 1, "fat32", "checked"),
        Region(32 * mib, 64 * mib, 32 * mib, 4096, "partition 2", 2, "", files),
    ]
    units = sum(r.units for r in regions)
    found = [
        BlockHit(offset, "partition 2", 2, "f" * 32, filter_name, 3, category, priority, bytes([n]) * 32)
        for n, (offset, priority) in enumerate(hits)
    ]
    result = BlockSampleResult(
        BlockSettings(), seed=seed, block_sets=1, items=2, dense_items=2, regions=regions, units=units,
        planned=units, units_read=units, units_counted=units if stopped is None else units // 2,
        windows_looked_up=units - 40, blank=40, bytes_read=units * 4096, seconds=2.5, stopped=stopped,
        hits=found,
    )  # fmt: skip
    document = DeviceScanResult("/dev/sdx", device_verdict(None, True, result), blocks=result).to_json()
    return {key: document[key] for key in ("blocks", "block_hits", "statement")}


def enroll(unit: Unit) -> None:
    """Enroll the kiosk when this station enrolls kiosks (issue 13: before its first import)."""
    try:
        from station.kiosks import enroll_kiosk, read_enrollment
    except ImportError:
        return
    from agent.daemon.provision import ENROLLMENT_NAME, provision_kiosk

    key = unit.journal_folder / "device.key"
    key.parent.mkdir(parents=True, exist_ok=True)
    provision_kiosk(key)
    store = unit.store()
    try:
        if not store.kiosk_ids():
            enroll_kiosk(store, read_enrollment(key.with_name(ENROLLMENT_NAME)), "Review test bay 1", "lab")
    finally:
        store.close()


def make_unit(root: Path) -> Unit:
    home = StationHome(root / "station")
    home.init()
    factory = FilterFactory(root / "lab")
    files = root / "material"
    known = [write_random(files / f"known-{i}.jpg", SIZE + 1000 * i, 100 + i) for i in range(2)]
    benign = write_random(files / "meme.jpg", 30_000, 200)
    data = bytearray(known[0].read_bytes())
    data[OUTSIDE_SAMPLES] ^= 0xFF
    collision = files / "holiday.jpg"
    collision.write_bytes(bytes(data))
    contraband = factory.make([*known, benign], ("sample", "blake3"), name="lab")
    return Unit(root, home, factory, known, benign, collision, contraband)
