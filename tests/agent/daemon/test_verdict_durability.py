"""A verdict is shown only once its journal record is on disk (the real journal, a real full disk).

One bay's worker run to the end in the test's thread, the scan itself replaced by its result (the
daemon tests, tests/agent/daemon/test_journal_full.py, do the same with real devices).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent.config import BayConfig, ScanConfig
from agent.daemon import bay as bay_module
from agent.daemon.bay import Bay, BayWorker
from agent.daemon.status import format_status
from agent.device_scan import DeviceScanResult
from agent.devices.identity import DeviceIdentity
from agent.journal import EncryptedJournal
from agent.lights.bay import BayLights, RecordingLights
from filters.errors import JournalError
from tests.agent.journal.helpers import make_station
from tests.agent.journal.small_disk import fill, small_filesystem

IDENTITY = DeviceIdentity("/dev/sdz", "/devices/test/sdz", "sdz", 1 << 30, vendor="Test", model="Stick")
VERDICTS = ("priority_match", "match", "no_match", "incomplete")


class FakeMounter:
    def mount(self, source: str) -> Any:
        return self

    def close(self) -> None:
        pass


class WatchedJournal:
    """The real journal; remembers the bay's signal at the moment each record was handed over."""

    def __init__(self, journal: EncryptedJournal, lights: BayLights) -> None:
        self.journal, self.lights = journal, lights
        self.signals_at_append: list[str] = []
        self.records: list[dict[str, Any]] = []

    def append(self, record: dict[str, Any]) -> None:
        self.signals_at_append.append(self.lights.signal.value)
        self.journal.append(record)
        self.records.append(record)

    def close(self) -> None:
        self.journal.close()


@pytest.fixture
def scan_result(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The verdict the next (replaced) scan gives: set ``scan_result[0]``."""
    verdict = ["no_match"]

    def scan_mounted(mounted: Any, scanner: Any, *, identity: Any, on_event: Any) -> DeviceScanResult:
        return DeviceScanResult("/dev/sdz", verdict[0], identity)  # type: ignore[arg-type]

    monkeypatch.setattr(bay_module, "Scanner", lambda *args, **kwargs: object())
    monkeypatch.setattr(bay_module, "scan_mounted", scan_mounted)
    yield verdict


def run_worker(journal: Any, refusal: str | None = None) -> Bay:
    lights = BayLights("front", RecordingLights())
    bay = Bay(BayConfig("front", red=17, amber=27, green=22), lights)
    if isinstance(journal, EncryptedJournal):
        journal = WatchedJournal(journal, lights)
    worker = BayWorker(bay, IDENTITY, FakeMounter(), [], ScanConfig(), journal, refusal=refusal)  # type: ignore[arg-type]
    worker.run()
    return bay


@pytest.fixture
def full_journal(tmp_path: Path) -> Iterator[EncryptedJournal]:
    """A real journal on a 4 MiB tmpfs with no block left (its next record needs a new segment)."""
    home = make_station(tmp_path / "station")
    with small_filesystem(tmp_path / "disk") as disk:
        journal = EncryptedJournal.open(disk / "journal", tmp_path / "device.key", home.journal_public_path)
        journal.append({"type": "before"})
        fill(disk)
        with contextlib.suppress(JournalError):
            journal.rotate()
        yield journal
        with contextlib.suppress(JournalError):
            journal.close()


def test_the_verdict_light_comes_after_its_record_is_on_disk(tmp_path: Path, scan_result: list[str]) -> None:
    home = make_station(tmp_path / "station")
    for verdict in VERDICTS:
        scan_result[0] = verdict
        journal = EncryptedJournal.open(
            tmp_path / "journal", tmp_path / "device.key", home.journal_public_path
        )
        lights = BayLights("front", RecordingLights())
        bay = Bay(BayConfig("front", red=17, amber=27, green=22), lights)
        watched = WatchedJournal(journal, lights)
        BayWorker(bay, IDENTITY, FakeMounter(), [], ScanConfig(), watched).run()  # type: ignore[arg-type]
        journal.close()
        signal = bay_module.VERDICT_SIGNALS[verdict].value
        assert watched.signals_at_append == ["scanning"], "nothing but scanning shown before the record"
        assert lights.shown == ["scanning", signal]
        [record] = watched.records
        assert record["lights_shown"] == ["scanning", signal], "the record names the light it allows"
        assert bay.describe()["verdict"] == verdict and bay.describe()["problem"] is None


@pytest.mark.root
@pytest.mark.parametrize("verdict", VERDICTS)
def test_a_verdict_that_cannot_be_journaled_is_never_shown(
    full_journal: EncryptedJournal, scan_result: list[str], verdict: str
) -> None:
    scan_result[0] = verdict
    bay = run_worker(full_journal)
    expected = "priority_match_unrecorded" if verdict == "priority_match" else "fault"
    assert bay.lights.shown == ["scanning", expected]
    assert "no_match" not in bay.lights.shown and "priority_match" not in bay.lights.shown
    status = bay.describe()
    assert status["phase"] == "not journaled" and status["verdict"] == verdict
    assert "No space left on device" in str(status["problem"]) and "journal" in str(status["problem"])
    text = format_status({"bays": [status]})
    assert "No space left on device" in text


@pytest.mark.root
def test_a_refused_device_whose_record_cannot_be_journaled_says_both(
    full_journal: EncryptedJournal, scan_result: list[str]
) -> None:
    bay = run_worker(full_journal, refusal="no valid filter: none loaded")
    assert bay.lights.shown == ["fault"]
    problem = str(bay.describe()["problem"])
    assert "no valid filter" in problem and "No space left on device" in problem


@pytest.mark.root
def test_a_sync_whose_record_cannot_be_journaled_is_not_shown_done(
    full_journal: EncryptedJournal, scan_result: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Token:
        token_id = "t" * 32

    monkeypatch.setattr(bay_module, "find_sync_partition", lambda mounted, key: ((object(), Token()), []))
    monkeypatch.setattr(bay_module, "run_sync", lambda *args: {"type": "sync", "token_id": Token.token_id})
    lights = BayLights("front", RecordingLights())
    bay = Bay(BayConfig("front", red=17, amber=27, green=22), lights)
    sync: Any = SimpleNamespace(station_key=None)
    BayWorker(bay, IDENTITY, FakeMounter(), [], ScanConfig(), full_journal, sync=sync).run()  # type: ignore[arg-type]
    assert lights.shown == ["scanning", "sync", "fault"]
    assert "No space left on device" in str(bay.describe()["problem"])
