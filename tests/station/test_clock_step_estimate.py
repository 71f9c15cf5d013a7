"""The station's time estimate takes a kiosk's ``clock_step`` record (its clock stepped forward to a
sync stick's signed time) as a reference point of the same boot: a lower bound at the step, carried
by the monotonic clock to every record of that boot, before the step and after."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from agent.journal.clock import ClockReader
from station.clock_estimate import kiosk_clock
from station.importer import import_sources
from station.stick import prepare_stick
from station.store import Store
from tests.agent.journal.helpers import make_station, open_journal

SECOND = 10**9
WRONG_NS = 1_600_000_000 * SECOND  # 2020: the kiosk's clock before the step
PREPARED_NS = 1_777_600_000 * SECOND  # 2026-05-01: the station's time on the stick


class SetTime(ClockReader):
    """The kiosk's time fields, set by the test."""

    def __init__(self) -> None:
        super().__init__(boot_id="boot-1", synchronised=lambda: False)
        self.stamp: dict[str, Any] = {}

    def now(self) -> dict[str, Any]:
        return dict(self.stamp)

    def at(self, boot: str, mono_s: int, wall_ns: int, source: str = "none") -> None:
        self.stamp = {"wall_ns": wall_ns, "monotonic_ns": mono_s * SECOND, "boot_id": boot,
                      "clock_synchronised": False, "clock_source": source}  # fmt: skip


def step_record(mono_s: int, to_ns: Any = PREPARED_NS, **odd: Any) -> dict[str, Any]:
    return {"type": "clock_step", "source": "sync_token", "token_id": "t" * 32, "from_ns": WRONG_NS,
            "to_ns": to_ns, "monotonic_ns": mono_s * SECOND, "observed_step_ns": 0, **odd}  # fmt: skip


def test_a_clock_step_is_a_reference_point_of_its_boot(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    clock = SetTime()
    clock.at("boot-1", 50, WRONG_NS)
    with open_journal(tmp_path, home, clock=clock) as journal:
        kiosk_id = journal.kiosk_id
        journal.append({"type": "test", "n": 0})  # before the step
        clock.at("boot-1", 101, PREPARED_NS + SECOND, "sync_stick")
        journal.append(step_record(100))  # the kiosk's clock stepped at monotonic 100 s
        clock.at("boot-1", 130, PREPARED_NS + 30 * SECOND, "sync_stick")
        journal.append({"type": "sync", "token_id": "t" * 32, "token_created": PREPARED_NS // SECOND})
        clock.at("boot-2", 10, WRONG_NS)  # another boot: the step says nothing of it
        journal.append({"type": "test", "n": 1})
        journal.append(step_record(20, to_ns="2026-05-01"))  # odd ones are left out, never raise
        journal.append(step_record(20, to_ns=-5))
        journal.append(step_record(20, monotonic_ns=None))
    import_sources(home, [tmp_path / "journal"])
    store = Store.open(home.database_path)
    try:
        anchors = kiosk_clock(store, kiosk_id)
    finally:
        store.close()
    assert sorted(anchors.sticks) == ["boot-1"]

    before = anchors.estimate("boot-1", 50 * SECOND, WRONG_NS, False)
    assert before.method == "sync_stick" and before.at_least_ns == PREPARED_NS - 50 * SECOND
    after = anchors.estimate("boot-1", 400 * SECOND, PREPARED_NS + 300 * SECOND, False)
    # the step's own moment (100 s) is a tighter anchor than the sync record written at 130 s
    assert after.at_least_ns == PREPARED_NS + 300 * SECOND and after.lower_offset_ns() == 0
    other = anchors.estimate("boot-2", 10 * SECOND, WRONG_NS, False)
    assert other.method == "none" and other.at_least_ns is None


def test_a_stick_from_a_station_whose_clock_is_not_synchronised_says_so(tmp_path: Path) -> None:
    """Kiosks step their clocks forward to the station's time and never back: a wrong station clock
    ahead would set every kiosk ahead, so an unsynchronised one gets a note."""
    home = make_station(tmp_path / "station")
    for synchronised, noted in ((False, True), (True, False), (None, False)):
        stick = tmp_path / f"stick-{synchronised}"
        stick.mkdir()
        prepared = prepare_stick(
            home, stick, fs_uuid="AAAA-0001", station_clock=functools.partial(said, synchronised)
        )
        assert any("clock is not synchronised" in note for note in prepared.notes) is noted


def said(answer: bool | None) -> bool | None:
    return answer
