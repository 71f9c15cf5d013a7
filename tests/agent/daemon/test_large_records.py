"""A device whose scan lists more than one journal record holds (60,000 symbolic links: 12 MiB) is
still journaled and its verdict shown; it used to be refused by the journal ("record: ... bytes
encoded, limit ...") and the bay showed the fault signal, and a priority match 'not journaled'."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agent.config import BayConfig, ScanConfig
from agent.daemon import bay as bay_module
from agent.daemon.bay import Bay, BayWorker
from agent.device_scan import DeviceScanResult
from agent.devices.identity import DeviceIdentity
from agent.journal import EncryptedJournal
from agent.journal.records import RECORD_BYTES
from agent.journal.sync import export_segments
from agent.lights.bay import BayLights, RecordingLights
from agent.lights.signals import Signal
from agent.scan import Scanner
from filters.builder import FilterBuilder
from filters.digests import digest_path
from filters.importers import DigestEntry
from station.home import StationHome
from station.importer import import_sources
from station.scans import load_scans
from station.store import Store
from tests.agent.journal.helpers import enroll, make_station

IDENTITY = DeviceIdentity("/dev/sdz", "/devices/test/sdz", "sdz", 1 << 30, vendor="Test", model="Stick")


class FakeMounter:
    def mount(self, source: str) -> Any:
        return self

    def close(self) -> None:
        pass


def test_a_scan_listing_60000_symbolic_links_and_a_find_is_journaled_and_lit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "device" / "node_modules" / "some-package-name" / "lib"
    tree.mkdir(parents=True)
    for i in range(60_000):
        os.symlink(f"../../target-file-{i}.js", tree / f"link-{i:05}.js")
    known = tmp_path / "device" / "DCIM" / "known.jpg"
    known.parent.mkdir()
    known.write_bytes(os.urandom(40_000))
    builder = FilterBuilder(name="large")
    for kind, digest in digest_path(known, ["sample", "blake3"]).items():
        builder.add(DigestEntry(kind, digest, "known", "priority", from_content=True))
    report = Scanner([builder.build_unsigned()]).scan([os.fsencode(tmp_path / "device")])
    assert report.verdict == "priority_match" and len(report.skipped) == 60_000

    def scan_mounted(mounted: Any, scanner: Any, *, identity: Any, on_event: Any) -> DeviceScanResult:
        return DeviceScanResult("/dev/sdz", report.verdict, identity, report=report)

    monkeypatch.setattr(bay_module, "Scanner", lambda *args, **kwargs: object())
    monkeypatch.setattr(bay_module, "scan_mounted", scan_mounted)
    home = make_station(tmp_path / "station")
    journal = EncryptedJournal.open(tmp_path / "journal", tmp_path / "device.key", home.journal_public_path)
    lights = BayLights("front", RecordingLights())
    bay = Bay(BayConfig("front", red=17, amber=27, green=22), lights)
    worker = BayWorker(bay, IDENTITY, FakeMounter(), [], ScanConfig(), journal)  # type: ignore[arg-type]
    worker.run()
    journal.close()
    assert worker.journal_error is None and bay.phase == "done"
    assert lights.signal is Signal.PRIORITY_MATCH
    (scan,) = [s for s in imported_scans(home, tmp_path) if s["verdict"] == "priority_match"]
    assert [h["path"] for h in scan["hits"]] == [os.fsdecode(os.fsencode(known))]
    assert 0 < len(scan["skipped"]) < 60_000 and scan["counts"]["skipped"] == {"symlink": 60_000}
    assert RECORD_BYTES < 8 << 20


def imported_scans(home: StationHome, tmp_path: Path) -> list[dict[str, Any]]:
    """The scans as the station shows them, after an export and an import."""
    export_segments(tmp_path / "journal", tmp_path / "stick")
    enroll(home, tmp_path / "device.key")
    summary = import_sources(home, [tmp_path / "stick"])
    assert [f.line() for f in summary.findings if f.severity == "alarm"] == []
    return [s.to_json() for s in load_scans(Store.open(home.database_path))]
