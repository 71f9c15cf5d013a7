from __future__ import annotations

from pathlib import Path

from agent.journal import PlainJournal
from agent.journal.clock import ClockReader, read_boot_id
from agent.journal.plain import PLAIN_JOURNAL_NAME, read_plain_journal


def test_plain_journal_round_trip_and_torn_line_set_aside(tmp_path: Path) -> None:
    with PlainJournal.open(tmp_path) as journal:
        journal.append({"type": "a", "raw": b"\x01"})
    with (tmp_path / PLAIN_JOURNAL_NAME).open("ab") as f:
        f.write(b'{"type": "torn')  # a power cut mid-line
    with PlainJournal.open(tmp_path) as journal:
        journal.append({"type": "b"})
    records, unreadable = read_plain_journal(tmp_path)
    assert [r["type"] for r in records] == ["a", "b"]
    assert records[0]["raw"] == b"\x01" and unreadable == 1
    assert set(records[1]["time"]) == {
        "wall_ns",
        "monotonic_ns",
        "boot_id",
        "clock_synchronised",
        "clock_source",
    }


def test_clock_fields() -> None:
    stamp = ClockReader(synchronised=lambda: True, wall_ns=lambda: 5, monotonic_ns=lambda: 7).now()
    assert stamp["wall_ns"] == 5 and stamp["monotonic_ns"] == 7 and stamp["clock_synchronised"] is True
    real = ClockReader().now()
    assert real["clock_synchronised"] in (True, False, None)
    assert real["boot_id"] == read_boot_id()


def test_missing_boot_id_is_empty(tmp_path: Path) -> None:
    assert read_boot_id(tmp_path / "nothing") == ""
